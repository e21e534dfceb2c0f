"""Output whose reader may go away: a closed pipe (``run ... | head -3``) or a closed terminal.

Python ignores SIGPIPE, so a write to a pipe nobody reads raises ``BrokenPipeError`` (and one
to a hung-up terminal ``EIO``); raised inside a sweep, that would tear the engine down with runs
still marked running. :class:`GuardedOutput` wraps a text stream instead: once its reader is
gone, whatever is written is dropped (the file descriptor is pointed at ``/dev/null``, so even
the interpreter's last flush at exit stays quiet) and its listeners hear it once, so that the
runner stops the sweep as it would on SIGTERM. :meth:`GuardedOutput.watch_reader` notices a
pipe's reader leaving even while nothing is written (a sweep whose runs print nothing).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
from collections.abc import Callable
from typing import IO, cast

import anyio

__all__ = ["GuardedOutput"]

#: What a write fails with once nobody can read it: a closed pipe or socket, a hung-up tty.
_READER_GONE = frozenset({errno.EPIPE, errno.ECONNRESET, errno.EIO})


class GuardedOutput(io.TextIOBase):
    """A text stream that drops what can no longer be written instead of raising.

    Written from one thread (the event loop's, or the main thread outside it), like the
    stream it wraps; listeners are called on that thread."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__()
        self.stream = stream
        #: Set once the reader is gone: everything written since was dropped.
        self.gone = False
        self._listeners: list[Callable[[], None]] = []

    def as_io(self) -> IO[str]:
        """This stream, typed as what the rest of the code writes to."""
        return cast(IO[str], self)

    # ------------------------------------------------------------------ the stream
    def write(self, text: str) -> int:
        if not self.gone:
            try:
                self.stream.write(text)
            except OSError as exc:
                self._failed(exc)
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self.stream.flush()
            except OSError as exc:
                self._failed(exc)

    def isatty(self) -> bool:
        return not self.gone and self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    def writable(self) -> bool:
        return True

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.stream, "encoding", None) or "utf-8"

    # ------------------------------------------------------------------ the reader
    def on_gone(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` once the reader is gone (at once if it is already)."""
        if self.gone:
            listener()
        else:
            self._listeners.append(listener)

    def reader_gone(self) -> None:
        """Nobody reads this stream any more: drop all output from now on, say so once."""
        if self.gone:
            return
        self.gone = True
        with contextlib.suppress(OSError, ValueError):  # not a file (StringIO): nothing to do
            fd = self.stream.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, fd)
            os.close(devnull)
        for listener in self._listeners:
            listener()
        self._listeners.clear()

    async def watch_reader(self) -> None:
        """Return once the reader of the pipe behind this stream is gone (then call
        :meth:`reader_gone`); never, for anything but a pipe (a terminal says so with
        SIGHUP). The write end of a pipe turns "readable" (an error) when its reader closes."""
        try:
            fd = self.stream.fileno()
            is_pipe = stat.S_ISFIFO(os.fstat(fd).st_mode)
        except (OSError, ValueError):
            is_pipe = False
        if not is_pipe:
            await anyio.sleep_forever()
        await anyio.wait_readable(fd)
        self.reader_gone()

    def _failed(self, exc: OSError) -> None:
        """A write failed: the reader is gone, or (a full disk) this text is lost."""
        if exc.errno in _READER_GONE:
            self.reader_gone()
