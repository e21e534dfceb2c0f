"""``report SWEEP --html FILE``: the sweep page as one self-contained file, to share or attach.

The file holds the page's scripts and styles and the API answers the sweep page would fetch
(read from the journal, so no daemon is needed); opened from disk, it fetches nothing.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from orchestrator.cli.base import Commands, UsageError
from orchestrator.cli.options import home, home_option

if TYPE_CHECKING:
    from orchestrator.store.journal import Journal

__all__ = ["add_parser", "report_data"]

#: Points per run and metric in the file, as the page asks the daemon for by default.
MAX_POINTS = 1000


def add_parser(commands: Commands) -> None:
    report = commands.add_parser(
        "report",
        help="write a sweep's page as one self-contained HTML file",
        description="Write the web page of SWEEP (an id, a unique prefix, or 'last') to FILE: "
        "its run table, metric charts and best run, with the data and every script inlined, "
        "so the file opens in a browser with no daemon and no network.",
    )
    report.add_argument("sweep", metavar="SWEEP")
    report.add_argument("--html", required=True, metavar="FILE", help="the file to write")
    report.add_argument(
        "--max-points",
        type=int,
        default=MAX_POINTS,
        metavar="N",
        help=f"at most N points per run and metric (default {MAX_POINTS}, evenly thinned)",
    )
    home_option(report)
    report.set_defaults(handler=_cmd_report)


def _cmd_report(args: argparse.Namespace, out: IO[str], err: IO[str]) -> int:
    from orchestrator.engine.recovery import open_journal
    from orchestrator.store.layout import existing_journal
    from orchestrator.web.page import render_page

    if not 2 <= args.max_points <= 10_000:
        raise UsageError("--max-points must be between 2 and 10000")
    target = Path(args.html)
    if target.is_dir():
        raise UsageError(f"--html {target} is a folder; give a file name")
    journal = open_journal(existing_journal(home(args)))
    try:
        data = report_data(journal, args.sweep, args.max_points)
    finally:
        journal.close()
    html = render_page(data)  # everything is built before the file is touched
    try:
        target.write_text(html, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    out.write(f"wrote {target} ({_size(len(html.encode()))})\n")
    return 0


def report_data(journal: Journal, ref: str, max_points: int) -> dict[str, Any]:
    """The page's data: the route to show and, by API path, the answers its scripts read,
    built by the same read model the daemon answers with. A pipeline's detail holds its
    nodes and their runs; a node's report lists its pipeline too (the page names it)."""
    from orchestrator.history import find_sweep, sweep_detail
    from orchestrator.store.series import SeriesReader, open_reader
    from orchestrator.sweep_board import Board

    sweep = find_sweep(journal, ref)
    base = f"/api/v1/sweeps/{sweep.id}"
    reader = SeriesReader(open_reader(journal.path), journal.path)
    board = Board()
    try:
        listed = [board.item(reader, sweep, here=())]
        if sweep.parent_id is not None:
            listed.append(board.item(reader, find_sweep(journal, sweep.parent_id), here=()))
        series = reader.sweep_series(sweep.id, None, max_points)
        names = reader.metric_names(sweep.id)
    finally:
        reader.conn.close()
    return {
        "route": f"/sweeps/{sweep.id}",
        "responses": {
            "/api/v1/sweeps": listed,
            base: sweep_detail(journal, sweep.id),
            f"{base}/metrics": {"sweep": sweep.id, "metrics": series},
            f"{base}/metrics/names": {"names": names},
        },
    }


def _size(count: int) -> str:
    return f"{count / 1024:.0f} KiB" if count < 1024 * 1024 else f"{count / 1024**2:.1f} MiB"
