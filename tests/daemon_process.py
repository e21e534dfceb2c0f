"""A real daemon for a test: started in a short temporary home, stopped with SIGTERM."""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["daemon_process"]


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
