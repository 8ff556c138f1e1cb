"""Drift checks: one row per feature of each check (a sensor, the scores, the alert rate),
with the check's decision repeated on each, and the reads that count drifting checks in a row."""
from __future__ import annotations

import math

import duckdb
import pandas as pd

from monitoring.errors import WarehouseError
from monitoring.store.connection import insert_missing, quote_identifier
from monitoring.store.schema import KEYS

COLUMNS = ["check_id", "stream", "checked_at", "model_name", "model_version", "recent_start", "recent_end", "feature",
           "kind", "test", "statistic", "p_value", "p_limit", "psi", "recent_value", "reference_value", "n_recent",
           "n_reference", "drifted", "note", "check_drifted", "streak", "holds", "retrain_requested", "decision",
           "mlflow_run_id"]


def write_drift_check(con: duckdb.DuckDBPyConnection, rows: pd.DataFrame) -> int:
    """Store a check's rows (COLUMNS); rows already stored (same check_id and feature) are
    kept as they are. Returns the rows written."""
    missing = [c for c in COLUMNS if c not in rows.columns]
    if missing:
        raise WarehouseError(f"drift check rows lack columns {missing}")
    frame = rows[COLUMNS].copy()
    for column in ("statistic", "p_value", "p_limit", "psi", "recent_value", "reference_value"):
        frame[column] = frame[column].astype("float64")  # NaN -> NULL below: not measured
    frame = frame.astype(object).where(frame.notna(), None)
    source = "(SELECT " + ", ".join(f"? AS {quote_identifier(c)}" for c in COLUMNS) + ")"
    written = 0
    for values in frame.itertuples(index=False, name=None):
        written += insert_missing(con, "drift_checks", source, COLUMNS, KEYS["drift_checks"],
                                  params=[_plain(v) for v in values])
    return written


def _plain(value):
    if isinstance(value, pd.Timestamp):
        return value.to_pydatetime()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value.item() if hasattr(value, "item") else value


def read_check_history(con: duckdb.DuckDBPyConnection, stream: str) -> pd.DataFrame:
    """One row per stored check of the stream, newest first: check_id, checked_at,
    model_version, recent_end, drifted, retrain_requested."""
    return con.execute(
        "SELECT check_id, any_value(checked_at) AS checked_at, any_value(model_version) AS model_version, "
        "any_value(recent_end) AS recent_end, bool_or(drifted) AS drifted, "
        "bool_or(retrain_requested) AS retrain_requested FROM drift_checks WHERE stream = ? "
        "GROUP BY check_id ORDER BY checked_at DESC, check_id DESC", [stream]).df()


def read_drift_check(con: duckdb.DuckDBPyConnection, check_id: str) -> pd.DataFrame:
    """The rows of one check: sensors in stored order, then the scores and the alert rate."""
    return con.execute(
        "SELECT * FROM drift_checks WHERE check_id = ? ORDER BY CASE kind WHEN 'sensor' THEN 0 "
        "WHEN 'score' THEN 1 ELSE 2 END, feature", [check_id]).df()
