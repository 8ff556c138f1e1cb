"""Offline evaluation: detection metrics, the evaluation of stored alarms against labels,
and the benchmarks on public labeled data."""
