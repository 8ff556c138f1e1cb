"""The warehouse's tables: their DDL, the key of each (what makes a row the same row), and
`ensure_schema`, which brings a catalog up to date once per schema version.

Every write is idempotent: DuckLake has no primary keys, so inserts skip the rows whose
key is already there (connection.insert_missing), and re-running a flow never duplicates a
row. Each stream's readings are a table `lake."<stream>"`, created by its first ingest.
"""
from __future__ import annotations

import duckdb

from monitoring.errors import WarehouseError

DRIFT_CHECKS = """
        CREATE TABLE IF NOT EXISTS drift_checks (
            check_id VARCHAR NOT NULL,
            stream VARCHAR NOT NULL,
            checked_at TIMESTAMP NOT NULL,
            model_name VARCHAR NOT NULL,
            model_version INTEGER NOT NULL,  -- the champion compared with
            recent_start TIMESTAMP NOT NULL,  -- the recent readings compared
            recent_end TIMESTAMP NOT NULL,
            feature VARCHAR NOT NULL,  -- a sensor, '__score__' or '__alert_rate__'
            kind VARCHAR NOT NULL,  -- sensor, score, alert_rate
            test VARCHAR NOT NULL,  -- ks (two-sample Kolmogorov-Smirnov), binomial (alert rate)
            statistic DOUBLE,  -- KS D; the recent alert rate
            p_value DOUBLE,  -- NULL: not tested (too few samples, see note)
            p_limit DOUBLE NOT NULL,  -- alpha / tests in the check (Bonferroni)
            psi DOUBLE,  -- population stability index
            recent_value DOUBLE,  -- median (alert rate) of the recent side
            reference_value DOUBLE,  -- median of the reference; the implied alert rate
            n_recent BIGINT NOT NULL,
            n_reference BIGINT,
            drifted BOOLEAN NOT NULL,  -- this feature
            note VARCHAR NOT NULL,
            check_drifted BOOLEAN NOT NULL,  -- some feature of the check
            streak INTEGER NOT NULL,  -- drifting checks in a row on new readings
            holds BOOLEAN NOT NULL,  -- streak >= drift.hold_checks
            retrain_requested BOOLEAN NOT NULL,
            decision VARCHAR NOT NULL,
            mlflow_run_id VARCHAR
        )"""

# The inbox manifest: the last file seen under each name with its size, modification time
# and content hash, so a scheduled ingest skips a file it has processed by a stat, not by
# reading it again (monitoring.store.ingestion.scan_inbox).
INBOX_FILES_DDL = """
        CREATE TABLE IF NOT EXISTS inbox_files (
            stream VARCHAR NOT NULL,
            file VARCHAR NOT NULL,
            size_bytes BIGINT NOT NULL,
            mtime_ns BIGINT NOT NULL,
            file_hash VARCHAR NOT NULL,
            seen_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp()
        )"""

TABLES = {
    "ingest_batches": """
        CREATE TABLE IF NOT EXISTS ingest_batches (
            batch_id VARCHAR NOT NULL,
            stream VARCHAR NOT NULL,
            file VARCHAR NOT NULL,
            file_hash VARCHAR NOT NULL,
            rows_in BIGINT NOT NULL,
            rows_accepted BIGINT NOT NULL,
            rows_quarantined BIGINT NOT NULL,
            status VARCHAR NOT NULL,
            error VARCHAR,
            rows_duplicate BIGINT NOT NULL DEFAULT 0,
            rows_out_of_order BIGINT NOT NULL DEFAULT 0,
            rows_late BIGINT NOT NULL DEFAULT 0,
            ingested_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp()
        )""",
    "inbox_files": INBOX_FILES_DDL,
    "quarantine": """
        CREATE TABLE IF NOT EXISTS quarantine (
            batch_id VARCHAR NOT NULL,
            stream VARCHAR NOT NULL,
            file VARCHAR NOT NULL,
            row_number BIGINT NOT NULL,
            "column" VARCHAR,
            reason VARCHAR NOT NULL,
            raw VARCHAR,
            quarantined_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp()
        )""",
    "rescore_ranges": """
        CREATE TABLE IF NOT EXISTS rescore_ranges (
            stream VARCHAR NOT NULL,
            asset VARCHAR NOT NULL,
            start TIMESTAMP NOT NULL,
            "end" TIMESTAMP NOT NULL,
            batch_id VARCHAR NOT NULL
        )""",
    "data_quality": """
        CREATE TABLE IF NOT EXISTS data_quality (
            stream VARCHAR NOT NULL,
            sensor VARCHAR NOT NULL,
            n_readings BIGINT NOT NULL,
            missing_pct DOUBLE NOT NULL,
            n_gaps BIGINT NOT NULL,
            largest_gap_s DOUBLE,
            n_duplicates BIGINT NOT NULL,
            n_quarantined BIGINT NOT NULL,
            flatline_pct DOUBLE NOT NULL,
            monotonic VARCHAR,
            interval_s DOUBLE,
            min_value DOUBLE,
            max_value DOUBLE,
            grade VARCHAR NOT NULL,
            advice VARCHAR NOT NULL,
            computed_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp()
        )""",
    "scores": """
        CREATE TABLE IF NOT EXISTS scores (
            stream VARCHAR NOT NULL,
            asset VARCHAR NOT NULL,
            window_start TIMESTAMP NOT NULL,
            window_end TIMESTAMP NOT NULL,
            score DOUBLE NOT NULL,
            threshold DOUBLE NOT NULL,
            is_anomaly BOOLEAN NOT NULL,
            model_name VARCHAR NOT NULL,
            model_version INTEGER NOT NULL,
            scored_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp(),
            excluded BOOLEAN NOT NULL DEFAULT false  -- touches an excluded reading: never flagged
        )""",
    "anomalies": """
        CREATE TABLE IF NOT EXISTS anomalies (
            stream VARCHAR NOT NULL,
            asset VARCHAR NOT NULL,
            window_start TIMESTAMP NOT NULL,
            window_end TIMESTAMP NOT NULL,
            score DOUBLE NOT NULL,
            threshold DOUBLE NOT NULL,
            model_name VARCHAR NOT NULL,
            model_version INTEGER NOT NULL,
            top_sensors VARCHAR NOT NULL,
            contributions JSON NOT NULL,
            detected_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp(),
            severity DOUBLE  -- the model's own scale: 1 at the threshold (ModelBundle.severity)
        )""",
    "incidents": """
        CREATE TABLE IF NOT EXISTS incidents (
            incident_id VARCHAR NOT NULL,  -- stable: the same fault keeps its id across runs and rescoring
            stream VARCHAR NOT NULL,
            asset VARCHAR NOT NULL,
            start TIMESTAMP NOT NULL,  -- first flagged window's start
            "end" TIMESTAMP NOT NULL,  -- last flagged window's end
            n_windows INTEGER NOT NULL,
            peak_score DOUBLE NOT NULL,
            peak_severity DOUBLE NOT NULL,
            top_sensors VARCHAR NOT NULL,
            model_versions VARCHAR NOT NULL,  -- the versions whose flags it merges, e.g. '3' or '3,5'
            status VARCHAR NOT NULL,  -- open, acknowledged, recovered, closed (monitoring.alerting.lifecycle)
            updated_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp(),
            severity_level INTEGER NOT NULL DEFAULT 1,  -- 1 warning, 2 major, 3 critical
            directions VARCHAR NOT NULL DEFAULT '',  -- per top sensor: above / below its reconstruction
            opened_at TIMESTAMP,
            closed_at TIMESTAMP,
            closed_reason VARCHAR,
            acknowledged_by VARCHAR,
            acknowledged_at TIMESTAMP,
            revision INTEGER NOT NULL DEFAULT 1  -- the incident_log row this state is
        )""",
    "incident_log": """
        CREATE TABLE IF NOT EXISTS incident_log (
            incident_id VARCHAR NOT NULL,
            revision INTEGER NOT NULL,
            stream VARCHAR NOT NULL,
            asset VARCHAR NOT NULL,
            event VARCHAR NOT NULL,  -- opened, extended, escalated, recovered, reopened, acknowledged, closed
            status VARCHAR NOT NULL,
            start TIMESTAMP NOT NULL,
            "end" TIMESTAMP NOT NULL,
            n_windows INTEGER NOT NULL,
            peak_severity DOUBLE NOT NULL,
            severity_level INTEGER NOT NULL,
            top_sensors VARCHAR NOT NULL,
            directions VARCHAR NOT NULL,
            model_versions VARCHAR NOT NULL,
            reason VARCHAR,
            actor VARCHAR NOT NULL,  -- aemon, or who acknowledged / closed it
            notify BOOLEAN NOT NULL,  -- an alert goes out for this change
            logged_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp()
        )""",
    "alert_deliveries": """
        CREATE TABLE IF NOT EXISTS alert_deliveries (
            alert_id VARCHAR NOT NULL,  -- '<incident_id>/<revision>', or a stream alert's id
            channel VARCHAR NOT NULL,  -- prefect-event, webhook
            delivered_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp()
        )""",
    "feed_status": """
        CREATE TABLE IF NOT EXISTS feed_status (
            stream VARCHAR NOT NULL,
            status VARCHAR NOT NULL,  -- ok, stalled
            since TIMESTAMP NOT NULL,
            last_data_at TIMESTAMP,  -- the last ingest that accepted rows
            updated_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp()
        )""",
    "evaluations": """
        CREATE TABLE IF NOT EXISTS evaluations (
            evaluation_id VARCHAR NOT NULL,  -- a hash of what was evaluated: the same inputs, the same id
            stream VARCHAR NOT NULL,
            model_name VARCHAR NOT NULL,
            model_versions VARCHAR NOT NULL,  -- the versions whose windows were evaluated, e.g. '3' or '3,5'
            label_columns VARCHAR NOT NULL,
            range_start TIMESTAMP NOT NULL,  -- first and last reading evaluated
            range_end TIMESTAMP NOT NULL,
            evaluated_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp(),
            n_assets BIGINT NOT NULL,
            n_rows BIGINT NOT NULL,
            n_labeled_rows BIGINT NOT NULL,
            n_events BIGINT NOT NULL,  -- runs of labeled readings
            n_detected_events BIGINT NOT NULL,
            n_alarms BIGINT NOT NULL,  -- alarm onsets
            tp BIGINT NOT NULL,
            fp BIGINT NOT NULL,
            fn BIGINT NOT NULL,
            tn BIGINT NOT NULL,
            "precision" DOUBLE,  -- NULL: undefined (0 / 0)
            recall DOUBLE,
            f1 DOUBLE,
            far DOUBLE,
            mar DOUBLE,
            f1_point_adjusted DOUBLE,
            event_precision DOUBLE,
            event_recall DOUBLE,
            event_f1 DOUBLE,
            nab_standard DOUBLE,
            nab_low_fp DOUBLE,
            nab_low_fn DOUBLE,
            mean_delay_s DOUBLE,
            mean_forewarning_s DOUBLE,
            mlflow_run_id VARCHAR
        )""",
    "watermarks": """
        CREATE TABLE IF NOT EXISTS watermarks (
            stream VARCHAR NOT NULL,
            asset VARCHAR NOT NULL,
            last_window_end TIMESTAMP NOT NULL,
            model_version INTEGER NOT NULL,
            updated_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp(),
            -- adaptive alarms' history so far, as sums (monitoring.store.results.score_history):
            -- the count, sum and sum of squares of log(score / threshold) over the windows
            -- that sums_model scored (their latest scoring, none excluded) starting before
            -- sums_before, taken by a run whose windows ended from sums_cutoff on; NULL when none
            sums_model VARCHAR,
            sums_before TIMESTAMP,
            sums_cutoff TIMESTAMP,
            sums_count BIGINT,
            sums_total DOUBLE,
            sums_total_sq DOUBLE
        )""",
    "drift_checks": DRIFT_CHECKS,
}

# The key of each table: inserts skip rows whose key is present (DuckLake has no constraints).
KEYS: dict[str, tuple[str, ...]] = {
    "ingest_batches": ("batch_id",),
    "inbox_files": ("stream", "file"),
    "quarantine": ("batch_id", "row_number"),
    "rescore_ranges": ("stream", "asset", "batch_id"),
    "data_quality": ("stream", "sensor"),
    "scores": ("stream", "asset", "window_start", "model_name", "model_version"),
    "anomalies": ("stream", "asset", "window_start", "model_name", "model_version"),
    "incidents": ("incident_id",),
    "incident_log": ("incident_id", "revision"),
    "alert_deliveries": ("alert_id", "channel"),
    "feed_status": ("stream",),
    "evaluations": ("evaluation_id",),
    "watermarks": ("stream", "asset"),
    "drift_checks": ("check_id", "feature"),
}

# An incident's id from its stream, asset and start (incident_records.incident_id in SQL),
# for the incidents of earlier releases, which had none.
INCIDENT_ID_SQL = ("substr(md5(stream || chr(31) || asset || chr(31) || strftime(start, '%Y-%m-%dT%H:%M:%S.%f')), "
                   "1, 12)")
# Columns an earlier release's table lacks that are derived from the columns it has.
DERIVED_COLUMNS: dict[str, dict[str, str]] = {
    "incidents": {"incident_id": INCIDENT_ID_SQL, "opened_at": "updated_at",
                  "closed_at": "CASE WHEN status = 'closed' THEN updated_at END",
                  "closed_reason": "CASE WHEN status = 'closed' THEN 'recovered' END"},
}

# Statements that bring a catalog of an earlier schema version to this one, by the version
# they start from. A new catalog gets TABLES as they are.
MIGRATIONS: dict[int, list[str]] = {
    # 2 -> 3: incidents get a stable id, a lifecycle and a history; alerts are delivered once;
    # drift checks; the inbox manifest
    2: [
        "ALTER TABLE incidents ADD COLUMN incident_id VARCHAR",
        f"UPDATE incidents SET incident_id = {INCIDENT_ID_SQL}",
        "ALTER TABLE incidents ADD COLUMN severity_level INTEGER DEFAULT 1",
        "ALTER TABLE incidents ADD COLUMN directions VARCHAR DEFAULT ''",
        "ALTER TABLE incidents ADD COLUMN opened_at TIMESTAMP",
        "ALTER TABLE incidents ADD COLUMN closed_at TIMESTAMP",
        "ALTER TABLE incidents ADD COLUMN closed_reason VARCHAR",
        "ALTER TABLE incidents ADD COLUMN acknowledged_by VARCHAR",
        "ALTER TABLE incidents ADD COLUMN acknowledged_at TIMESTAMP",
        "ALTER TABLE incidents ADD COLUMN revision INTEGER DEFAULT 1",
        "UPDATE incidents SET " + ", ".join(f"{column} = {expression}" for column, expression
                                            in DERIVED_COLUMNS["incidents"].items() if column != "incident_id"),
        *(TABLES[t] for t in ("incident_log", "alert_deliveries", "feed_status")),
        DRIFT_CHECKS,
        INBOX_FILES_DDL,
    ],
    # 3 -> 4: the watermarks carry adaptive alarms' history sums
    3: [f"ALTER TABLE watermarks ADD COLUMN {column} {kind}" for column, kind in (
        ("sums_model", "VARCHAR"), ("sums_before", "TIMESTAMP"), ("sums_cutoff", "TIMESTAMP"),
        ("sums_count", "BIGINT"), ("sums_total", "DOUBLE"), ("sums_total_sq", "DOUBLE"))],
}

# Bump when TABLES change (and add the MIGRATIONS from the version before): a catalog
# records the version its tables were brought to, and a connection runs DDL only when the
# catalog is behind. DuckLake catalogs start at 2 (1 was the single-file warehouse).
SCHEMA_VERSION = 4
VERSION_TABLE = "aemon_schema"


def schema_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The schema version a catalog was brought to; None before any (a new catalog)."""
    try:
        rows = con.execute(f"SELECT max(version) FROM {VERSION_TABLE}").fetchall()
    except duckdb.CatalogException:
        return None
    return None if rows[0][0] is None else int(rows[0][0])


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every table, or migrate an older catalog, unless it is at SCHEMA_VERSION. Runs
    on a writing connection (it holds the write lock), in one transaction."""
    current = schema_version(con)
    if current == SCHEMA_VERSION:
        return
    if current is not None and current > SCHEMA_VERSION:
        raise WarehouseError(f"the warehouse is at schema version {current}, newer than this release's "
                             f"{SCHEMA_VERSION}; upgrade aemon")
    con.execute("BEGIN TRANSACTION")
    try:
        if current is None:
            # Rows are never inlined into the catalog: flushing inlined rows to Parquet later
            # (ducklake_flush_inlined_data, DuckDB 1.5.5) briefly hides them from a reader on
            # an older snapshot, measured here; small files are merged by the upkeep instead.
            con.execute("CALL ducklake_set_option(current_database(), 'data_inlining_row_limit', 0)").fetchall()
        con.execute("CREATE SCHEMA IF NOT EXISTS lake")
        statements = list(TABLES.values()) if current is None else \
            [s for v in range(current, SCHEMA_VERSION) for s in MIGRATIONS.get(v, [])]
        for ddl in statements:
            con.execute(ddl)
        con.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER NOT NULL, "
                    "applied_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp())")
        con.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (?)", [SCHEMA_VERSION])
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
