"""The status line on a terminal, kept below the transition lines by rich's ``Live``.

Every line printed goes out in one write together with the status line redrawn under it, so
the status line is never missing between two refreshes; whatever the terminal put on the
status line meanwhile (the ``^C`` it echoes for Ctrl-C) is erased by the next redraw, and the
last status line stays on the screen when the sweep ends.

Only :mod:`orchestrator.reporting` imports this module, and only when stderr is a terminal:
rich takes tens of milliseconds to import, which ``--help`` and piped runs never pay.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import IO, TYPE_CHECKING, cast

from rich.console import Console
from rich.live import Live
from rich.text import Text

if TYPE_CHECKING:
    from rich.console import ConsoleOptions, RenderResult

__all__ = ["LiveDisplay"]


class _Console(Console):
    """A console that leaves the cursor visible: a sweep killed with ``kill -9`` must not
    leave the terminal without one."""

    def show_cursor(self, show: bool = True) -> bool:
        return True


class _StatusLine:
    """The status line, cropped to one line shorter than the terminal: a character echoed
    after it (``^C``) must not wrap onto a line of its own, out of the redraw's reach."""

    def __init__(self) -> None:
        self.text = ""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        line = Text(self.text, no_wrap=True, overflow="ellipsis")
        line.truncate(max(options.max_width - 1, 1), overflow="ellipsis")
        yield line


class _LineStream:
    """A text stream whose complete lines are printed like transition lines (above the
    status line); a line without its newline waits for the rest, or for :meth:`flush`."""

    def __init__(self, display: LiveDisplay) -> None:
        self._display = display
        self._pending = ""
        self._lock = threading.Lock()

    def write(self, text: str) -> int:
        with self._lock:
            lines = (self._pending + text).split("\n")
            self._pending = lines.pop()
        self._print(lines)
        return len(text)

    def flush(self) -> None:
        with self._lock:
            line, self._pending = self._pending, ""
        self._print([line])

    def isatty(self) -> bool:
        return True

    def _print(self, lines: list[str]) -> None:
        # A blank line only ever served to step off the old status line: not needed here.
        kept = [line.rstrip("\r") for line in lines if line.strip()]
        if kept:
            self._display.show(kept, None)


class LiveDisplay:
    """Transition lines scrolling above a status line that rich redraws in place."""

    def __init__(self, out: IO[str]) -> None:
        self.console = _Console(
            file=out,
            force_terminal=True,
            color_system=None,
            markup=False,
            highlight=False,
            emoji=False,
        )
        self._status = _StatusLine()
        self._live = Live(
            self._status,
            console=self.console,
            auto_refresh=False,  # redrawn after every line and on the reporter's tick
            redirect_stdout=False,
            redirect_stderr=False,
        )
        self._lock = threading.RLock()
        self._stream = _LineStream(self)

    @property
    def stream(self) -> IO[str]:
        return cast("IO[str]", self._stream)

    def show(self, lines: Sequence[str], status: str | None) -> None:
        with self._lock:
            changed = status is not None and status != self._status.text
            if status is not None:
                self._status.text = status
                if not self._live.is_started:
                    self._live.start()
            if lines:
                # One print, one write: the lines, then the status line drawn again below.
                self.console.print(*(Text(line) for line in lines), sep="\n", soft_wrap=True)
            elif changed and self._live.is_started:
                self._live.refresh()

    def close(self) -> None:
        with self._lock:
            self._live.stop()
