"""The warehouse's tables: their DDL, the key of each (what makes a row the same row), and
`ensure_schema`, which brings a catalog up to date once per schema version.

Every write is idempotent: DuckLake has no primary keys, so inserts skip the rows whose
key is already there (connection.insert_missing), and re-running a flow never duplicates a
row. Each stream's readings are a table `lake."<stream>"`, created by its first ingest.
"""
from __future__ import annotations

import duckdb

from monitoring.errors import WarehouseError

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
            updated_at TIMESTAMP NOT NULL DEFAULT current_localtimestamp()
        )""",
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
    "incidents": ("stream", "asset", "start"),
    "evaluations": ("evaluation_id",),
    "watermarks": ("stream", "asset"),
}

# Statements that bring a catalog of an earlier schema version to this one, by the version
# they start from. A new catalog gets TABLES as they are.
MIGRATIONS: dict[int, list[str]] = {
    2: [INBOX_FILES_DDL],  # 2 -> 3: the inbox manifest
}

# Bump when TABLES change (and add the MIGRATIONS from the version before): a catalog
# records the version its tables were brought to, and a connection runs DDL only when the
# catalog is behind. DuckLake catalogs start at 2 (1 was the single-file warehouse).
SCHEMA_VERSION = 3
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
