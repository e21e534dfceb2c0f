"""The live display on a real terminal: the CLI runs on a pseudo-terminal and what it draws is
replayed on a tiny terminal emulator, checked every time output arrives.

Output post-processing (``\\n`` -> ``\\r\\n``) is switched off on the pty so that each write
of the orchestrator reaches the reader in one piece (the line discipline would split it at
each newline); the emulator does that translation itself, as the terminal's driver would.
Runs wait on FIFOs the test opens, so every step is synchronised on what the screen shows,
never on time.
"""

from __future__ import annotations

import codecs
import fcntl
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
COLS, ROWS = 100, 50
#: A status line: ``1/3 done · 1 running · ...``.
STATUS = re.compile(r"^\d+/\d+ done · ")
_CSI = re.compile(r"\x1b\[([0-9;?]*)([@-~])")


class Screen:
    """Just enough of a VT100 for rich's live display: printable text with autowrap, CR, LF
    (as CR LF), backspace, and the CSI sequences for cursor moves and erasing."""

    def __init__(self, cols: int) -> None:
        self.cols = cols
        self.rows: list[list[str]] = [[]]
        self.y = self.x = 0
        self._decode = codecs.getincrementaldecoder("utf-8")("replace")
        self._pending = ""

    def feed(self, data: bytes) -> None:
        text = self._pending + self._decode.decode(data)
        self._pending = ""
        i = 0
        while i < len(text):
            char = text[i]
            if char == "\x1b":
                match = _CSI.match(text, i)
                if match is None:
                    if len(text) - i < 16:  # a sequence cut by the read: wait for the rest
                        self._pending = text[i:]
                        return
                    i += 1
                    continue
                self._csi(match.group(1), match.group(2))
                i = match.end()
                continue
            self._char(char)
            i += 1

    def _char(self, char: str) -> None:
        if char == "\r":
            self.x = 0
        elif char == "\n":
            self.x = 0
            self._move(1)
        elif char == "\b":
            self.x = max(self.x - 1, 0)
        elif char >= " ":
            if self.x >= self.cols:
                self.x = 0
                self._move(1)
            row = self.rows[self.y]
            row.extend(" " * (self.x + 1 - len(row)))
            row[self.x] = char
            self.x += 1

    def _move(self, down: int) -> None:
        self.y = max(self.y + down, 0)
        while len(self.rows) <= self.y:
            self.rows.append([])

    def _csi(self, params: str, final: str) -> None:
        if params.startswith("?") or final == "m":
            return  # cursor visibility, colours
        n = int(params.split(";")[0] or 0)
        row = self.rows[self.y]
        if final == "K":
            if n == 0:
                del row[self.x :]
            elif n == 1:
                row[: self.x + 1] = [" "] * min(self.x + 1, len(row))
            else:
                row.clear()
        elif final == "A":
            self._move(-max(n, 1))
        elif final == "B":
            self._move(max(n, 1))
        elif final == "C":
            self.x = min(self.x + max(n, 1), self.cols - 1)
        elif final == "D":
            self.x = max(self.x - max(n, 1), 0)
        elif final == "G":
            self.x = max(n, 1) - 1
        else:
            raise AssertionError(f"unexpected escape sequence ESC [{params}{final}")

    def lines(self) -> list[str]:
        return ["".join(r).rstrip() for r in self.rows]

    def cursor_line(self) -> str:
        return self.lines()[self.y]

    def status_shown(self) -> bool:
        """The status line is on screen below the rest: on the cursor's line (while the sweep
        runs), or just above it once the display ended (the cursor on a new, empty line)."""
        lines = self.lines()
        if STATUS.match(lines[self.y]):
            return True
        return lines[self.y] == "" and self.y > 0 and bool(STATUS.match(lines[self.y - 1]))

    def text(self) -> str:
        return "\n".join(self.lines())


class Terminal:
    """The CLI as the foreground job of a pseudo-terminal of its own."""

    def __init__(self, args: list[str]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLS, 0, 0))
        attrs = termios.tcgetattr(slave)
        attrs[1] &= ~termios.OPOST  # whole writes reach the reader; Screen does CR LF
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
        env["TERM"] = "xterm"
        self.proc = subprocess.Popen(
            [PY, "-m", "orchestrator", *args],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            cwd=ROOT,
            env=env,
            start_new_session=True,
            preexec_fn=_controlling_terminal,
        )
        os.close(slave)
        self.master = master
        self.screen = Screen(COLS)
        self.checked = 0
        self.eof = False
        self.raw = b""

    def chunks(self, timeout: float) -> Iterator[bytes]:
        """What the CLI writes, as it arrives, until EOF or ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; the screen:\n{self.screen.text()}"
            ready, _, _ = select.select([self.master], [], [], left)
            if not ready:
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                data = b""
            if not data:
                self.eof = True
                return
            self.raw += data
            self.screen.feed(data)
            yield data

    def read_until(self, wanted: Callable[[Screen], bool], check: Callable[[Screen], None]) -> None:
        """Read until ``wanted(screen)``, calling ``check(screen)`` after every read."""
        if wanted(self.screen):
            return
        for _ in self.chunks(30):
            check(self.screen)
            self.checked += 1
            if wanted(self.screen):
                return
        raise AssertionError(f"the CLI ended first; the screen:\n{self.screen.text()}")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(30)
        os.close(self.master)


def _controlling_terminal() -> None:
    """In the child, after setsid: its stdin (the pty) becomes its controlling terminal, so
    Ctrl-C typed on the master is SIGINT to it and echoed as ``^C``."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


@pytest.fixture
def terminal() -> Iterator[Callable[[list[str]], Terminal]]:
    opened: list[Terminal] = []

    def start(args: list[str]) -> Terminal:
        opened.append(Terminal(args))
        return opened[-1]

    yield start
    for term in opened:
        term.close()


def gated_spec(tmp_path: Path, runs: int, concurrency: int) -> Path:
    """A sweep whose run ``i`` waits until the test opens FIFO ``gates/i``, then exits 0."""
    gates = tmp_path / "gates"
    gates.mkdir()
    for i in range(runs):
        os.mkfifo(gates / str(i))
    values = ", ".join(f"{{i: {i}}}" for i in range(runs))
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        f"""
version: 1.1
kind: operation
matrix: {{kind: mapping, concurrency: {concurrency}, values: [{values}]}}
component:
  inputs: [{{name: i, type: int}}]
  run:
    kind: job
    container:
      command: ["{PY}", -c, "import sys; open(sys.argv[1]).read()", "{gates}/{{{{ i }}}}"]
"""
    )
    return spec


def release(tmp_path: Path, index: int) -> None:
    """Let run ``index`` finish: open its FIFO for writing and close it (EOF to the run)."""
    os.close(os.open(tmp_path / "gates" / str(index), os.O_WRONLY))


def has_line(prefix: str) -> Callable[[Screen], bool]:
    return lambda screen: any(line.startswith(prefix) for line in screen.lines())


def status_says(*parts: str) -> Callable[[Screen], bool]:
    def wanted(screen: Screen) -> bool:
        line = screen.cursor_line()
        return bool(STATUS.match(line)) and all(p in line for p in parts)

    return wanted


def both(*tests: Callable[[Screen], bool]) -> Callable[[Screen], bool]:
    return lambda screen: all(t(screen) for t in tests)


def test_status_line_is_redrawn_right_after_every_transition_line(
    terminal: Callable[[list[str]], Terminal], tmp_path: Path
) -> None:
    spec = gated_spec(tmp_path, runs=3, concurrency=1)
    term = terminal(["run", str(spec), "--nocache", "--home", str(tmp_path / "home")])
    seen_status = False

    ended = has_line("#  state")  # the final table: the display is over

    def check(screen: Screen) -> None:
        nonlocal seen_status
        seen_status = seen_status or screen.status_shown()
        if seen_status and not ended(screen):  # from its first drawing on, never missing
            assert screen.status_shown(), f"no status line at a read point:\n{screen.text()}"

    for i in range(3):
        term.read_until(both(has_line(f"#{i}    running"), status_says("1 running")), check)
        release(tmp_path, i)
        # The line that says it ended and, drawn again below it in the same write, the status
        # line with the new count (the last one is checked on the final screen).
        term.read_until(has_line(f"#{i}    succeeded"), check)
        if i < 2:
            assert status_says(f"{i + 1}/3 done")(term.screen), term.screen.text()
    for _ in term.chunks(30):  # the end: the last status line stays, the table follows
        pass
    assert term.proc.wait(30) == 0
    lines = term.screen.lines()
    statuses = [line for line in lines if STATUS.match(line)]
    assert statuses == [statuses[-1]] and statuses[-1].startswith("3/3 done · 3 succeeded")
    table = next(i for i, line in enumerate(lines) if line.startswith("#  state"))
    assert lines.index(statuses[-1]) < table
    assert term.checked >= 6


def test_ctrl_c_leaves_no_frozen_status_line_and_says_how_to_resume(
    terminal: Callable[[list[str]], Terminal], tmp_path: Path
) -> None:
    spec = gated_spec(tmp_path, runs=3, concurrency=2)
    home = tmp_path / "home"
    term = terminal(["run", str(spec), "--nocache", "--home", str(home)])
    term.read_until(
        both(has_line("#0    running"), has_line("#1    running"), status_says("2 running")),
        lambda screen: None,
    )
    os.write(term.master, b"\x03")  # Ctrl-C, typed: SIGINT to the CLI, and "^C" echoed
    for _ in term.chunks(60):
        pass
    assert term.proc.wait(30) == 1
    screen = term.screen.text()
    assert "^C" not in screen, screen
    statuses = [line for line in term.screen.lines() if STATUS.match(line)]
    assert len(statuses) == 1, screen  # only the final one: none frozen mid-screen
    assert "2 stopped" in statuses[0], screen
    assert "SIGINT: stopping the sweep" in screen
    sweep = re.search(r"^sweep ([0-9a-f]{12}) stopped", screen, re.MULTILINE)
    assert sweep is not None, screen
    said = term.raw.decode()  # lines as written, not as wrapped on the screen
    hint = f" -m orchestrator resume {sweep.group(1)} --home {home}\n"
    assert re.search(rf"^resume: \S*python\S*{re.escape(hint)}", said, re.MULTILINE), said


def test_piped_output_stays_plain_lines_without_rich(tmp_path: Path) -> None:
    """Not a terminal: no escape sequences, and rich is never imported (it costs tens of
    milliseconds that only a terminal's status line is worth)."""
    spec = tmp_path / "one.yaml"
    spec.write_text(
        f"version: 1.1\nkind: component\n"
        f'run: {{kind: job, container: {{command: ["{PY}", -c, "pass"]}}}}\n'
    )
    proc = subprocess.run(
        [PY, "-X", "importtime", "-m", "orchestrator", str(spec), "--home", str(tmp_path / "h")],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    imported = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line]
    assert "orchestrator.reporting" in imported
    assert not [name for name in imported if name.split(".")[0] == "rich"]
    said = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    assert "#0    succeeded" in "\n".join(said)
    assert "\x1b" not in proc.stderr + proc.stdout
