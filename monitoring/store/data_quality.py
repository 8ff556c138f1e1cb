"""The data-quality report of a stream, computed over its lake and stored in DuckDB
(`data_quality`, one row per sensor, replaced on each run)."""
from __future__ import annotations

import pandas as pd

from features.quality import QualityThresholds, quality_report
from monitoring.errors import WarehouseError
from monitoring.store.audit import duplicate_count, quarantine_counts, read_quality, write_quality
from monitoring.store.connection import Warehouse, connect, write
from monitoring.store.readings import has_view, read_readings


def assess_stream(warehouse: Warehouse, stream: str, sensors: list[str], interval_s: float, gap_limit_s: float,
                  thresholds: QualityThresholds = QualityThresholds()) -> pd.DataFrame:
    """Compute, store and return the stream's report. `sensors` empty: every lake column that
    is not timestamp, asset or a label."""
    with connect(warehouse) as con:
        if not has_view(con, stream):
            raise WarehouseError(f"stream '{stream}' has no readings yet; run `aemon ingest {stream}` first")
        frame = read_readings(con, stream)
        n_duplicates = duplicate_count(con, stream)
        quarantined = quarantine_counts(con, stream)
    if not sensors:
        sensors = [c for c in frame.columns if c not in ("timestamp", "asset")
                   and pd.api.types.is_float_dtype(frame[c])]
    report = quality_report(frame, list(sensors), interval_s, gap_limit_s, n_duplicates=n_duplicates,
                            quarantined=quarantined, thresholds=thresholds)

    def store(con) -> pd.DataFrame:
        write_quality(con, stream, report)
        return read_quality(con, stream)

    return write(warehouse, store)
