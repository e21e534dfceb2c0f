"""Executors run one job each: local subprocesses today, a Dask cluster later."""
