"""A real daemon for a test: started in a short temporary home, stopped with SIGTERM."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from orchestrator.diagnostics import is_ready_record

__all__ = ["daemon_process", "ready_daemon"]


def ready_daemon(
    args: list[str], *, cwd: Path | None = None, env: Mapping[str, str] | None = None
) -> subprocess.Popen[str]:
    """``python -m orchestrator daemon ARGS``, returned once it logs that it serves (its
    stderr a pipe the caller drains: :func:`daemon_process` does); AssertionError if it
    exits first."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "daemon", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        env=env,
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if is_ready_record(line):
            return proc
    raise AssertionError(f"daemon did not start: {proc.wait()}")


@contextlib.contextmanager
def daemon_process(
    start: Callable[[Path], subprocess.Popen[str]], *, stop_timeout: float
) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """The home and process of a daemon ``start`` launched (returning once it is ready), its
    stderr drained so it never blocks on a full pipe. At the end a SIGTERM must end it
    cleanly (exit 0) within ``stop_timeout`` seconds; the home is removed."""
    home = Path(tempfile.mkdtemp(prefix="orch-", dir="/tmp"))  # AF_UNIX paths are short
    proc = start(home)
    assert proc.stderr is not None
    drain = threading.Thread(target=proc.stderr.read, daemon=True)
    drain.start()
    try:
        yield home, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=stop_timeout)
            assert code == 0, "a SIGTERM ends the daemon cleanly"
        drain.join(5)
        proc.stderr.close()
        shutil.rmtree(home, ignore_errors=True)
