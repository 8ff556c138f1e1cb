"""Where a flow's parallel tasks run ([runner]): a Dask cluster for many assets.

With `kind = "dask"` the train and score flows hand their per-asset work (and the fits),
and the ingest flow its files' reading and validation, to a DaskTaskRunner: a temporary
LocalCluster of worker processes on this machine, every server bound to 127.0.0.1, or the
scheduler at `address`. A Dask worker is another process:
each task's arguments travel pickled, and the task run reports to the flow run's Prefect
API (the runner passes the flow's settings, its API URL included, with every task). Work
is split by asset, sorted, into contiguous groups, so each task reads only its group's
readings, and a scoring task commits its group's scores, watermarks and incidents together;
files are split the same way, in name order, and their commits stay in the flow.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from prefect.task_runners import TaskRunner

    from flows.config import RunnerSettings

T = TypeVar("T", bound="str | Path")

TASKS_PER_THREAD = 4  # groups per worker thread: a slow group does not leave the others idle


def dask_runner(settings: RunnerSettings) -> TaskRunner[Any]:
    """The DaskTaskRunner of `settings` (kind "dask"), to enter with `with`."""
    from distributed import LocalCluster
    from prefect_dask import DaskTaskRunner

    if settings.address:
        return DaskTaskRunner(address=settings.address)
    return DaskTaskRunner(cluster_class=LocalCluster, cluster_kwargs={
        "n_workers": settings.n_workers, "threads_per_worker": settings.threads_per_worker, "processes": True,
        "host": "127.0.0.1", "dashboard_address": "127.0.0.1:8787" if settings.dashboard else None,
    })


def worker_threads(runner: TaskRunner[Any]) -> int:
    """The threads of the runner's cluster, all workers together (at least 1)."""
    return max(1, sum(runner.client.nthreads().values()))  # type: ignore[attr-defined]


def split_assets(assets: list[T], per_task: int, n_threads: int) -> list[list[T]]:
    """The sorted assets (or files) in contiguous groups of `per_task` (0: TASKS_PER_THREAD
    groups per worker thread, as even as can be); files are local paths or inbox URIs, ordered
    by their text."""
    ordered = sorted(assets, key=str)
    if not ordered:
        return []
    size = per_task or math.ceil(len(ordered) / (TASKS_PER_THREAD * max(1, n_threads)))
    return [ordered[i:i + size] for i in range(0, len(ordered), size)]
