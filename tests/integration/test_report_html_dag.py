"""``report SWEEP --html FILE`` of a pipeline: one self-contained file with its nodes and their
runs, opened from disk by Chromium with nothing fetched; a node's report names its pipeline."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.browser.support import browser_missing, chromium, wait_js
from tests.conftest import CliResult
from tests.integration.dag_helpers import dag_spec

CHAIN = """
- {name: a, dagRef: step, params: {n: {value: a}, x: {value: 1}}}
- name: b
  dagRef: step
  params: {n: {value: b}, x: {ref: ops.a, value: outputs.y}}
  matrix: {kind: grid, params: {mode: {kind: choice, value: ["", "plain"]}}}
- {name: c, dagRef: step, dependencies: [b], params: {n: {value: c}, x: {value: 3}}}
"""


@pytest.fixture
def piped(cli: Callable[..., CliResult], tmp_path: Path) -> tuple[Path, dict[str, object]]:
    """A home with a finished 3-node pipeline (its ``run --json`` answer)."""
    home = tmp_path / "home"
    result = cli("run", "-f", str(dag_spec(tmp_path, CHAIN)), "--home", str(home), "--json")
    assert result.code == 0, result.err
    return home, json.loads(result.out)


def embedded(html: str) -> dict[str, object]:
    found = re.search(
        r'<script type="application/json" id="orchestrator-data">(.*?)</script>', html, re.S
    )
    assert found, "the data is inlined"
    data: dict[str, object] = json.loads(found.group(1))
    return data


def test_a_pipeline_report_holds_its_nodes_and_their_runs(
    cli: Callable[..., CliResult], piped: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    home, body = piped
    pipeline = str(body["sweep"])
    out = tmp_path / "pipeline.html"
    result = cli("report", pipeline[:8], "--html", str(out), "--home", str(home))
    assert result.code == 0, result.err
    html = out.read_text()
    responses = embedded(html)["responses"]
    assert isinstance(responses, dict)
    detail = responses[f"/api/v1/sweeps/{pipeline}"]
    nodes = [(n["name"], n["upstream"], len(n["runs"])) for n in detail["nodes"]]
    assert nodes == [("a", [], 1), ("b", ["a"], 2), ("c", ["b"], 1)]
    assert [s["kind"] for s in responses["/api/v1/sweeps"]] == ["dag"]
    assert "/static/" not in html

    reason = browser_missing()
    if reason:
        pytest.skip(f"browser part skipped: {reason}")
    with chromium() as browser:
        browser.get(out.as_uri())
        wait_js(
            browser,
            "return document.querySelectorAll('#nodes .node').length === 3",
            "the 3 nodes",
        )
        shown = browser.execute_script(
            "return Array.from(document.querySelectorAll('#nodes .node')).map(n => ["
            "n.dataset.node, n.dataset.state, n.dataset.upstream,"
            "Array.from(n.querySelectorAll('table.node-runs tbody tr')).map(r => r.dataset.state)])"
        )
        assert shown == [
            ["a", "succeeded", "", ["succeeded"]],
            ["b", "succeeded", "a", ["succeeded", "succeeded"]],
            ["c", "succeeded", "b", ["succeeded"]],
        ]
        # b's runs' outputs are in the file: y = 2 * x, x being a's y (2).
        cells = browser.execute_script(
            "return Array.from(document.querySelectorAll("
            "'.node[data-node=\"b\"] table.node-runs tbody td.num')).map(c => c.textContent)"
        )
        assert cells.count("4") == 2, cells
        resources = browser.execute_script(
            "return performance.getEntriesByType('resource').map(e => e.name)"
        )
        assert resources == []
        visible = browser.execute_script(
            "const e = document.querySelector('#stop-sweep'); return e.offsetParent !== null"
        )
        assert not visible, "actions are hidden in a report"


def test_a_node_report_names_its_pipeline(
    cli: Callable[..., CliResult], piped: tuple[Path, dict[str, object]], tmp_path: Path
) -> None:
    home, body = piped
    nodes = body["nodes"]
    assert isinstance(nodes, list)
    node_b = nodes[1]["sweep_id"]
    out = tmp_path / "node.html"
    assert cli("report", node_b, "--html", str(out), "--home", str(home)).code == 0
    responses = embedded(out.read_text())["responses"]
    assert isinstance(responses, dict)
    assert [s["id"] for s in responses["/api/v1/sweeps"]] == [node_b, body["sweep"]]
    reason = browser_missing()
    if reason:
        pytest.skip(f"browser part skipped: {reason}")
    with chromium() as browser:
        browser.get(out.as_uri())
        line = wait_js(
            browser,
            "const p = document.querySelector('#pipeline-of'); return p && p.textContent",
            "the line naming the pipeline",
        )
        assert line == "node b of pipeline pipe"
        wait_js(
            browser,
            "return document.querySelectorAll('table#runs tr[data-index]').length === 2",
            "the node's 2 runs",
        )
