"""``report SWEEP --html FILE``: one self-contained file of a real sweep's page, opened from
disk by Chromium with nothing fetched; bad input is one line and exit 2, nothing written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.browser.support import (
    attr,
    browser_missing,
    chromium,
    colour_counts,
    wait_js,
)
from tests.conftest import CliResult

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable
RUNS = 3
STEPS = 6
#: Each run reports a falling loss: its own curve on the chart.
SCRIPT = (
    "import json, sys\n"
    "n = int(sys.argv[1])\n"
    "for step in range(STEPS):\n"
    "    loss = (1 + n) / (1 + step)\n"
    "    print(json.dumps({'metrics': {'loss': loss}, 'step': step}), flush=True)\n"
).replace("STEPS", str(STEPS))
HEAVY = {"anyio", "msgspec", "jinja2", "httpx", "starlette", "uvicorn", "sqlite3", "yaml"}


@pytest.fixture
def swept(cli: Callable[..., CliResult], tmp_path: Path) -> tuple[Path, str]:
    """A home with a finished sweep of RUNS runs (its id)."""
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    values = [{"n": i} for i in range(RUNS)]
    command = [PY, str(script), "{{ n }}"]
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "version: 1.1\nkind: operation\n"
        f"matrix: {{kind: mapping, values: {json.dumps(values)}}}\n"
        "component:\n  inputs: [{name: n, type: int}]\n"
        f"  run: {{kind: job, container: {{command: {json.dumps(command)}}}}}\n"
    )
    home = tmp_path / "home"
    result = cli("run", str(spec), "--home", str(home), "--json")
    assert result.code == 0, result.err
    return home, json.loads(result.out)["sweep"]


def embedded(html: str) -> dict[str, object]:
    found = re.search(
        r'<script type="application/json" id="orchestrator-data">(.*?)</script>', html, re.S
    )
    assert found, "the data is inlined"
    data: dict[str, object] = json.loads(found.group(1))
    return data


def test_writes_one_file_with_the_data_and_no_reference_outside_it(
    cli: Callable[..., CliResult], swept: tuple[Path, str], tmp_path: Path
) -> None:
    home, sweep = swept
    out = tmp_path / "share" / "report.html"
    out.parent.mkdir()
    result = cli("report", sweep[:8], "--html", str(out), "--home", str(home))
    assert result.code == 0, result.err
    assert result.out.startswith(f"wrote {out} (")
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.html"]
    html = out.read_text()
    data = embedded(html)
    assert data["route"] == f"/sweeps/{sweep}"
    responses = data["responses"]
    assert isinstance(responses, dict)
    detail = responses[f"/api/v1/sweeps/{sweep}"]
    assert [r["index"] for r in detail["runs"]] == list(range(RUNS))
    series = responses[f"/api/v1/sweeps/{sweep}/metrics"]["metrics"]["loss"]
    assert sorted(series) == [str(i) for i in range(RUNS)]
    assert series["2"] == [[s, 3 / (1 + s)] for s in range(STEPS)]
    assert responses[f"/api/v1/sweeps/{sweep}/metrics/names"] == {"names": ["loss"]}
    # Nothing the browser would fetch: no stylesheet, script or image by URL.
    assert "/static/" not in html
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:|//)""", html, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?(?:https?:|//)", html, re.I)


def test_thins_each_series_to_max_points(
    cli: Callable[..., CliResult], swept: tuple[Path, str], tmp_path: Path
) -> None:
    home, sweep = swept
    out = tmp_path / "r.html"
    assert (
        cli("report", sweep, "--html", str(out), "--home", str(home), "--max-points", "2").code == 0
    )
    responses = embedded(out.read_text())["responses"]
    assert isinstance(responses, dict)
    series = responses[f"/api/v1/sweeps/{sweep}/metrics"]["metrics"]["loss"]["0"]
    assert series == [[0, 1.0], [STEPS - 1, 1 / STEPS]]  # the first and the last


def test_unknown_sweep_is_one_line_and_writes_nothing(
    cli: Callable[..., CliResult], swept: tuple[Path, str], tmp_path: Path
) -> None:
    home, _ = swept
    out = tmp_path / "r.html"
    result = cli("report", "nosuchsweep", "--html", str(out), "--home", str(home))
    assert result.code == 2
    assert result.err.count("\n") == 1 and "nosuchsweep" in result.err
    assert not out.exists()


def test_no_journal_is_one_line_and_creates_no_home(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    result = cli(
        "report", "last", "--html", str(tmp_path / "r.html"), "--home", str(tmp_path / "h")
    )
    assert result.code == 2 and result.err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["missing/r.html", ".", "readonly/r.html"])
def test_unwritable_path_is_one_line_and_nothing_written(
    cli: Callable[..., CliResult], swept: tuple[Path, str], tmp_path: Path, where: str
) -> None:
    home, sweep = swept
    readonly = tmp_path / "readonly"
    readonly.mkdir(mode=0o500)
    before = sorted(p.name for p in tmp_path.iterdir())
    target = tmp_path / where
    result = cli("report", sweep, "--html", str(target), "--home", str(home))
    if where.startswith("readonly") and result.code == 0:  # root writes anywhere
        target.unlink()
        pytest.skip("running as root: a read-only folder is writable")
    assert result.code == 2, result.out
    assert result.err.count("\n") == 1 and "Traceback" not in result.err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert list(readonly.iterdir()) == []


def test_help_is_fast_and_true() -> None:
    code = (
        "import contextlib, io, sys\n"
        "from orchestrator.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    code = main(['report', '--help'])\n"
        f"print(code, sorted({HEAVY!r} & set(sys.modules)))\n"
        "print(out.getvalue())\n"
    )
    proc = subprocess.run([PY, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    first, text = proc.stdout.split("\n", 1)
    assert first == "0 []", proc.stderr
    assert text.startswith("usage: orchestrator report ")
    for option in ("--html FILE", "--home HOME", "--max-points N"):
        assert option in text


def test_chromium_opens_it_from_disk_with_rows_and_chart(
    cli: Callable[..., CliResult], swept: tuple[Path, str], tmp_path: Path
) -> None:
    reason = browser_missing()
    if reason:
        pytest.skip(f"browser test skipped: {reason}")
    home, sweep = swept
    out = tmp_path / "report.html"
    assert cli("report", sweep, "--html", str(out), "--home", str(home)).code == 0
    with chromium() as browser:
        browser.get(out.as_uri())
        wait_js(
            browser,
            f"return document.querySelectorAll('table#runs tr[data-index]').length === {RUNS}",
            "every run's row",
        )
        wait_js(
            browser,
            f"const c = document.querySelector('#chart');"
            f"return c && Number(c.getAttribute('data-series')) === {RUNS}"
            f" && Number(c.getAttribute('data-points')) >= {RUNS * STEPS}",
            "every run's series on the chart",
        )
        assert attr(browser, "table#runs", "data-done") == str(RUNS)
        counts = colour_counts(browser)
        assert len(counts) >= 1 and all(n > 0 for n in counts.values()), counts
        # Opened from disk, the page fetched nothing.
        resources = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        assert resources == []
        for hidden in ("#stop-sweep", "#resume-sweep", "#rerun-failed"):
            visible = browser.execute_script(
                "const e = document.querySelector(arguments[0]);"
                "return e !== null && e.offsetParent !== null",
                hidden,
            )
            assert not visible, f"{hidden} is an action: hidden in a report"
