"""Importing the public benchmark data sets (SKAB, NAB) into the lake through the normal
ingest: each file is one `monitoring.store.ingestion.ingest_file` call with the data set's stream
layout (features.importers), so it gets the same validation, quarantine, exactly-once
hashing and audit rows as any export. The data is read where it lies, never copied.
"""
from __future__ import annotations

from pathlib import Path

from features.importers import NAB_SCHEMA, SKAB_SCHEMA, nab_files, nab_windows, skab_asset, skab_files
from monitoring.store.connection import Warehouse
from monitoring.store.ingestion import BatchResult, ingest_file

DATASETS = ("skab", "nab")


def import_file(warehouse: Warehouse, dataset: str, path: str | Path, *, stream: str | None = None,
                data_dir: str | Path | None = None) -> BatchResult:
    """Readings and labels of one SKAB or NAB file into the lake (stream defaults to the data
    set's name). NAB labels come from windows.json in `data_dir` (default: the file's folder).
    Importing a file again adds nothing."""
    path = Path(path)
    stream = stream or dataset
    if dataset == "skab":
        return ingest_file(warehouse, stream, SKAB_SCHEMA, path, asset=skab_asset(path))
    if dataset == "nab":
        labels = nab_windows(data_dir or path.parent, path.name)
        return ingest_file(warehouse, stream, NAB_SCHEMA, path, asset=path.stem, labels=labels)
    raise ValueError(f"unknown data set {dataset!r}; expected one of {DATASETS}")


def import_dataset(warehouse: Warehouse, dataset: str, data_dir: str | Path, *,
                   stream: str | None = None) -> list[BatchResult]:
    """Every file of a SKAB or NAB folder; one bad file never stops the others."""
    files = skab_files(data_dir) if dataset == "skab" else nab_files(data_dir)
    return [import_file(warehouse, dataset, path, stream=stream, data_dir=data_dir) for path, _ in files]
