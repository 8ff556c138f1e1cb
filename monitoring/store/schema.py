"""The warehouse's tables: their DDL, the columns added since a table's first release, and
`ensure_schema`, which brings a DuckDB file up to date once per schema version.

Every write is idempotent: tables carry primary keys and inserts skip rows that are
already there, so re-running a flow never duplicates a row.
"""
from __future__ import annotations

import duckdb

TABLES = {
    "ingest_batches": """
        CREATE TABLE IF NOT EXISTS ingest_batches (
            batch_id VARCHAR PRIMARY KEY,
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
    "quarantine": """
        CREATE TABLE IF NOT EXISTS quarantine (
            batch_id VARCHAR NOT NULL,
            stream VARCHAR NOT NULL,
            file VARCHAR NOT NULL,
            row_number BIGINT NOT NULL,
            "column" VARCHAR,
            reason VARCHAR NOT NULL,
            raw VARCHAR,
            quarantined_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp(),
            PRIMARY KEY (batch_id, row_number)
        )""",
    "rescore_ranges": """
        CREATE TABLE IF NOT EXISTS rescore_ranges (
            stream VARCHAR NOT NULL,
            asset VARCHAR NOT NULL,
            start TIMESTAMP NOT NULL,
            "end" TIMESTAMP NOT NULL,
            batch_id VARCHAR NOT NULL,
            PRIMARY KEY (stream, asset, batch_id)
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
            computed_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp(),
            PRIMARY KEY (stream, sensor)
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
            PRIMARY KEY (stream, asset, window_start, model_name, model_version)
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
            severity DOUBLE,  -- the model's own scale: 1 at the threshold (ModelBundle.severity)
            PRIMARY KEY (stream, asset, window_start, model_name, model_version)
        )""",
    "incidents": """
        CREATE TABLE IF NOT EXISTS incidents (
            stream VARCHAR NOT NULL,
            asset VARCHAR NOT NULL,
            start TIMESTAMP NOT NULL,  -- first flagged window's start
            "end" TIMESTAMP NOT NULL,  -- last flagged window's end
            n_windows INTEGER NOT NULL,
            peak_score DOUBLE NOT NULL,
            peak_severity DOUBLE NOT NULL,
            top_sensors VARCHAR NOT NULL,
            model_versions VARCHAR NOT NULL,  -- the versions whose flags it merges, e.g. '3' or '3,5'
            status VARCHAR NOT NULL,  -- open: the next scoring run may still extend it; closed
            updated_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp(),
            PRIMARY KEY (stream, asset, start)
        )""",
    "evaluations": """
        CREATE TABLE IF NOT EXISTS evaluations (
            evaluation_id VARCHAR PRIMARY KEY,  -- a hash of what was evaluated: the same inputs, the same id
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
            PRIMARY KEY (stream, asset)
        )""",
}

# Columns added after a table's first release: warehouses created earlier gain them on connect.
MIGRATIONS = [
    "ALTER TABLE ingest_batches ADD COLUMN IF NOT EXISTS rows_duplicate BIGINT DEFAULT 0",
    "ALTER TABLE ingest_batches ADD COLUMN IF NOT EXISTS rows_out_of_order BIGINT DEFAULT 0",
    "ALTER TABLE ingest_batches ADD COLUMN IF NOT EXISTS rows_late BIGINT DEFAULT 0",
    "ALTER TABLE scores ADD COLUMN IF NOT EXISTS excluded BOOLEAN DEFAULT false",
    # anomalies written before severity was stored: NULL, read as score / threshold
    "ALTER TABLE anomalies ADD COLUMN IF NOT EXISTS severity DOUBLE",
]

# Bump when TABLES or MIGRATIONS change: a warehouse records the version its tables were
# brought to, and a connection runs the DDL only when the file is behind (once per file
# version, not on every connect).
SCHEMA_VERSION = 1
VERSION_TABLE = "aemon_schema"


def schema_version(con: duckdb.DuckDBPyConnection) -> int | None:
    """The schema version a warehouse file was brought to; None before any (a new file, or
    one written before versions were recorded)."""
    try:
        rows = con.execute(f"SELECT max(version) FROM {VERSION_TABLE}").fetchall()
    except duckdb.CatalogException:
        return None
    return None if rows[0][0] is None else int(rows[0][0])


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create every table and apply the migrations, unless the file is at SCHEMA_VERSION."""
    if schema_version(con) == SCHEMA_VERSION:
        return
    con.execute("CREATE SCHEMA IF NOT EXISTS lake")
    for ddl in [*TABLES.values(), *MIGRATIONS]:
        con.execute(ddl)
    con.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER NOT NULL, "
                "applied_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp())")
    con.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (?)", [SCHEMA_VERSION])
