"""Where a stream stands, from the warehouse alone (`aemon status`): per asset how far the
lake and the scoring have come and what is open; per stream the ingest's last accepted data,
its rejected files and quarantined rows, and the feed's status."""
from __future__ import annotations

from dataclasses import dataclass

import duckdb
import pandas as pd

from monitoring.store.connection import scalar, view_name
from monitoring.store.incident_records import ACTIVE, last_data_at, read_feed_status
from monitoring.store.readings import has_view

ASSET_COLUMNS = ["asset", "readings", "last_reading", "scored_through", "unscored_readings", "last_scoring_run",
                 "model_version", "active_incidents", "last_incident_start"]


@dataclass(frozen=True)
class StreamStatus:
    """A stream's ingest and feed, and one row per asset (ASSET_COLUMNS)."""

    stream: str
    files: int  # inbox files an ingest accepted rows of
    rejected_files: int  # files whose latest ingest rejected them
    quarantined_rows: int
    last_ingest: pd.Timestamp | None  # wall time an ingest last accepted rows
    feed: str | None  # the stale-feed check's status (None: never checked)
    feed_since: pd.Timestamp | None
    assets: pd.DataFrame

    def to_dict(self) -> dict:
        """Plain JSON values: times in ISO 8601, a missing value None."""
        rows = [{k: _plain(v) for k, v in r.items()} for r in self.assets.astype(object).to_dict("records")]
        return {"stream": self.stream, "files": self.files, "rejected_files": self.rejected_files,
                "quarantined_rows": self.quarantined_rows, "last_ingest": _plain(self.last_ingest),
                "feed": self.feed, "feed_since": _plain(self.feed_since), "assets": rows}


def _plain(value: object) -> object:
    if value is None or pd.isna(value):
        return None
    return value.isoformat() if isinstance(value, pd.Timestamp) else value


def stream_status(con: duckdb.DuckDBPyConnection, stream: str) -> StreamStatus:
    """The stream's status. An asset appears once the lake, the scores or the incidents hold
    it; `unscored_readings` counts its readings after the end of its last scored window (a
    tail shorter than a window waits for more readings; an asset never scored: all of them)."""
    # a file is rejected while its latest ingest was (a rejected file taken on a retry is not)
    files, rejected = con.execute(
        "SELECT count(*) FILTER (WHERE accepted), count(*) FILTER (WHERE latest = 'rejected') FROM "
        "(SELECT bool_or(rows_accepted > 0) AS accepted, arg_max(status, ingested_at) AS latest "
        " FROM ingest_batches WHERE stream = ? GROUP BY file)", [stream]).fetchall()[0]
    quarantined = scalar(con, "SELECT count(*) FROM quarantine WHERE stream = ?", [stream])
    feed = read_feed_status(con, stream)
    return StreamStatus(stream, int(files), int(rejected), int(quarantined), last_data_at(con, stream),
                        None if feed is None else feed["status"], None if feed is None else feed["since"],
                        _asset_rows(con, stream))


def _asset_rows(con: duckdb.DuckDBPyConnection, stream: str) -> pd.DataFrame:
    # without a lake table yet (nothing ingested), the readings part is an empty relation of the same shape
    lake = (f"SELECT r.asset, count(*) AS readings, max(r.timestamp) AS last_reading, count(*) FILTER "
            f"(WHERE w.last_window_end IS NULL OR r.timestamp > w.last_window_end) AS unscored_readings "
            f"FROM {view_name(stream)} r LEFT JOIN wm w USING (asset) GROUP BY r.asset"
            if has_view(con, stream) else
            "SELECT NULL::VARCHAR AS asset, 0::BIGINT AS readings, NULL::TIMESTAMP AS last_reading, "
            "0::BIGINT AS unscored_readings WHERE false")
    active = ", ".join("?" for _ in ACTIVE)
    sql = f"""
        WITH wm AS (SELECT asset, last_window_end, updated_at FROM watermarks WHERE stream = ?),
        lake AS ({lake}),
        sc AS (SELECT asset, arg_max(model_version, window_end) AS model_version FROM scores
               WHERE stream = ? GROUP BY asset),
        inc AS (SELECT asset, count(*) FILTER (WHERE status IN ({active})) AS active_incidents,
                       max(start) AS last_incident_start FROM incidents WHERE stream = ? GROUP BY asset)
        SELECT asset, coalesce(readings, 0) AS readings, last_reading, last_window_end AS scored_through,
               coalesce(unscored_readings, 0) AS unscored_readings, updated_at AS last_scoring_run, model_version,
               coalesce(active_incidents, 0) AS active_incidents, last_incident_start
        FROM lake FULL JOIN wm USING (asset) FULL JOIN sc USING (asset) FULL JOIN inc USING (asset)
        ORDER BY asset"""
    rows = con.execute(sql, [stream, stream, *ACTIVE, stream]).df()[ASSET_COLUMNS]
    return rows.astype({"model_version": "Int64"})  # an asset never scored has none (not NaN as a float)
