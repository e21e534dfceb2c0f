"""The web page's files and the self-contained page: assets are read from the package (and
nothing outside it), the shell names only assets that exist, and ``render_page(data)`` inlines
every script, stylesheet and the data so that the file works with no server."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from orchestrator.exceptions import NotFoundError
from orchestrator.web.assets import content_type, read_asset
from orchestrator.web.page import render_page

STATIC = Path(__file__).resolve().parents[2] / "orchestrator" / "web" / "static"


def shell_assets() -> list[str]:
    shell = render_page(None)
    return re.findall(r'(?:src|href)="/static/([^"]+)"', shell)


def test_the_shell_loads_uplot_and_the_page_scripts_from_static() -> None:
    names = shell_assets()
    assert "vendor/uplot/uPlot.iife.min.js" in names
    assert "vendor/uplot/uPlot.min.css" in names
    assert "style.css" in names and "js/core.js" in names and "js/main.js" in names
    for name in names:
        assert read_asset(name), name
    # main.js starts the page, so it comes last; core.js first of the page's own.
    scripts = [n for n in names if n.endswith(".js")]
    assert scripts[0].startswith("vendor/") and scripts[1] == "js/core.js"
    assert scripts[-1] == "js/main.js"


def test_every_script_in_the_folder_is_loaded_by_the_shell() -> None:
    on_disk = {p.relative_to(STATIC).as_posix() for p in (STATIC / "js").glob("*.js")}
    assert on_disk == {n for n in shell_assets() if n.startswith("js/")}


@pytest.mark.parametrize(
    "name",
    ["../page.py", "/etc/passwd", ".hidden", "js/../../page.py", "js//core.js", "", "js/", "js"],
)
def test_names_that_could_leave_the_folder_or_are_not_files_are_not_found(name: str) -> None:
    with pytest.raises(NotFoundError):
        read_asset(name)


def test_content_types() -> None:
    assert content_type("js/core.js") == "text/javascript; charset=utf-8"
    assert content_type("style.css") == "text/css; charset=utf-8"
    assert content_type("index.html") == "text/html; charset=utf-8"
    assert content_type("vendor/uplot/LICENSE") == "text/plain; charset=utf-8"
    assert content_type("vendor/uplot.d/LICENSE") == "text/plain; charset=utf-8"


def test_render_page_inlines_every_asset_and_the_data() -> None:
    data = {
        "route": "/sweeps/abc",
        "responses": {"/api/v1/sweeps/abc": {"name": "</script><script>alert(1)</script>"}},
        "note": "<!-- a comment opener -->",
    }
    page = render_page(data)
    assert not re.search(r"""(?:src|href)=["']?/static""", page), "every asset is inlined"
    assert 'rel="stylesheet"' not in page
    match = re.search(
        r'<script type="application/json" id="orchestrator-data">(.*?)</script>', page, re.S
    )
    assert match is not None
    embedded = match.group(1)
    assert "</" not in embedded and "<!--" not in embedded
    assert json.loads(embedded) == data
    # The data comes before the first script that reads it, and every script is there.
    assert page.index('id="orchestrator-data"') < page.index("<script>")
    for name in shell_assets():
        if name.endswith(".js"):
            body = read_asset(name).decode()
            assert body[:200].replace("</script", "<\\/script") in page, name
    # Nothing but the data element may close a script early.
    scripts = re.findall(r"<script\b", page)
    assert len(scripts) == page.count("</script>")


def test_render_page_writes_nan_and_infinities_as_null() -> None:
    page = render_page({"route": "/", "values": [float("nan"), float("inf"), 1.5]})
    match = re.search(r'id="orchestrator-data">(.*?)</script>', page, re.S)
    assert match is not None and json.loads(match.group(1))["values"] == [None, None, 1.5]


def test_the_vendored_files_match_their_recorded_hashes() -> None:
    notes = (STATIC / "vendor" / "VENDORED.md").read_text()
    assert "uplot@1.6.32" in notes and "sha512-" in notes
    recorded = dict(re.findall(r"`([\w.]+)` `([0-9a-f]{64})`", notes))
    assert set(recorded) == {"uPlot.iife.min.js", "uPlot.min.css", "LICENSE"}
    for name, digest in recorded.items():
        data = read_asset(f"vendor/uplot/{name}")
        assert hashlib.sha256(data).hexdigest() == digest, name
    assert b"(v1.6.32)" in read_asset("vendor/uplot/uPlot.iife.min.js")[:100]


#: The DOM hooks of the contract between the page and its browser tests (CONTRACT18).
HOOKS = [
    "status",
    "sweeps",
    "sweep",
    "runs",
    "filter",
    "metric",
    "chart",
    "scatter",
    "best",
    "stop-sweep",
    "resume-sweep",
    "rerun-failed",
    "compare-selected",
    "run",
    "run-reason",
    "argv",
    "params",
    "provenance",
    "env",
    "attempts",
    "log-stdout",
    "log-stderr",
    "run-charts",
    "stop-run",
    "compare",
    "compare-params",
    "compare-charts",
    "submit-form",
    "spec",
    "spec-file",
    "submit",
]


@pytest.mark.parametrize("hook", HOOKS)
def test_every_dom_hook_of_the_contract_is_made_by_the_page(hook: str) -> None:
    sources = render_page(None) + "".join(
        read_asset(n).decode() for n in shell_assets() if n.startswith("js/")
    )
    made = (
        f'id="{hook}"' in sources  # the shell
        or re.search(rf"""h\(['"][a-z0-9]*#{re.escape(hook)}[.'"]""", sources) is not None
        or f"table('{hook}'" in sources  # a table made with its id
    )
    assert made, f"#{hook} is not made by the page"
