"""``orchestrator dask-local N``: a Dask cluster on this machine, to try ``--executor dask``.

A ``LocalCluster`` of N worker processes (each under a nanny, which restarts a worker that
dies), bound to loopback only (scheduler, workers and, when asked for, the dashboard), with
the scheduler settings the Dask executor wants where it owns the scheduler: no re-run of a
lost worker's tasks (``allowed-failures: 0``; the claims make a re-run harmless anyway) and a
short per-topic event history (the scheduler keeps that many messages of every run output
topic). It prints the scheduler's address, then serves until SIGINT or SIGTERM.
"""

from __future__ import annotations

import signal
import threading
from typing import IO, Any

__all__ = ["LOOPBACK", "cluster_config", "serve_local_cluster"]

LOOPBACK = "127.0.0.1"


def cluster_config() -> dict[str, Any]:
    """The scheduler settings for a cluster the orchestrator starts itself."""
    return {
        "distributed.scheduler.allowed-failures": 0,
        "distributed.admin.low-level-log-length": 200,
    }


def serve_local_cluster(
    workers: int,
    *,
    threads: int,
    port: int,
    resources: dict[str, float] | None,
    dashboard: bool,
    out: IO[str],
) -> int:
    """Run the cluster until SIGINT or SIGTERM; returns the exit code."""
    import dask
    from distributed import LocalCluster

    local_cluster: Any = LocalCluster  # distributed's API is untyped
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with (
        dask.config.set(cluster_config()),
        local_cluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=True,
            host=LOOPBACK,
            scheduler_port=port,
            dashboard_address=f"{LOOPBACK}:8787" if dashboard else None,
            worker_dashboard_address=f"{LOOPBACK}:0" if dashboard else None,
            resources=resources,
        ) as cluster,
    ):
        address = cluster.scheduler_address
        out.write(f"{address}\n")
        out.write(
            f"dask scheduler at {address}, {workers} worker(s) of {threads} thread(s)"
            + (f", resources {resources}" if resources else "")
            + (f"; dashboard {cluster.dashboard_link}" if dashboard else "")
            + f"\nrun sweeps with: orchestrator run SPEC --executor dask --scheduler {address}\n"
            "Ctrl-C stops the cluster\n"
        )
        out.flush()
        stop.wait()
    return 0
