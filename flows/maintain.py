"""maintain-warehouse: the warehouse's upkeep (small files merged, old snapshots expired,
orphaned files removed), scheduled daily."""
from __future__ import annotations

from prefect import flow, get_run_logger

from flows import tasks
from flows.config import load_config


@flow(name="maintain-warehouse")
def maintain_warehouse(config_path: str | None = None) -> dict:
    config = load_config(config_path)
    result = tasks.maintain_warehouse(config.warehouse, config.warehouse_settings.snapshot_retention_days)
    get_run_logger().info("warehouse: %d -> %d data files, %d -> %d snapshots, %d files removed",
                          result.files_before, result.files_after, result.snapshots_before, result.snapshots_after,
                          result.files_removed)
    return result.to_dict()
