"""A pipeline's page in Chromium: a real 3-node pipeline run by the CLI in the daemon's home
(its nodes' runs finish when the test releases their gates), shown live node by node, each
node linking to its own sweep page, which links back."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.browser.support import PY, ROOT, Daemon, Gates, login, wait_js

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = pytest.mark.browser

Shots = Callable[["WebDriver", str], Path]


def pipeline_spec(gates: Gates) -> str:
    """prepare (gate 0) -> train (a grid of gates 1 and 2) -> report (gate 3)."""
    command = json.dumps([PY, str(gates.script), str(gates.folder), "{{ n }}", "3"])
    return f"""version: 1.1
kind: component
name: gated-pipeline
run:
  kind: dag
  operations:
  - {{name: prepare, dagRef: gated, params: {{n: {{value: 0}}}}}}
  - name: train
    dagRef: gated
    dependencies: [prepare]
    matrix: {{kind: grid, params: {{n: {{kind: choice, value: [1, 2]}}}}}}
  - {{name: report, dagRef: gated, dependencies: [train], params: {{n: {{value: 3}}}}}}
  components:
  - name: gated
    inputs: [{{name: n, type: int}}]
    run: {{kind: job, container: {{command: {command}}}}}
"""


def node_state_is(name: str, state: str) -> str:
    return (
        f"const n = document.querySelector('#nodes .node[data-node=\"{name}\"]');"
        f"return n !== null && n.getAttribute('data-state') === '{state}'"
    )


def test_a_pipeline_shows_its_nodes_live_and_links_to_them(
    daemon: Daemon, gates: Gates, driver: WebDriver, shots: Shots, tmp_path: Path
) -> None:
    spec = tmp_path / "pipeline.yaml"
    spec.write_text(pipeline_spec(gates))
    login(driver, daemon)
    command = [PY, "-m", "orchestrator", "run", str(spec), "--home", str(daemon.home)]
    proc = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        pipeline = wait_js(
            driver,
            "const r = document.querySelector('table#sweeps tr[data-kind=\"dag\"]');"
            "return r && r.dataset.sweep",
            "the CLI's pipeline on the list, as a pipeline",
        )
        driver.get(f"{daemon.url}/sweeps/{pipeline}")
        wait_js(driver, node_state_is("prepare", "running"), "node prepare shown running")
        gates.release(0)
        wait_js(driver, node_state_is("prepare", "succeeded"), "prepare shown succeeded, live")
        wait_js(driver, node_state_is("train", "running"), "node train appears, running")
        gates.release(1)
        gates.release(2)
        wait_js(driver, node_state_is("report", "running"), "node report appears, running")
        gates.release(3)
        wait_js(
            driver,
            "return document.querySelector('#sweep').getAttribute('data-state') === 'succeeded'",
            "the pipeline shown succeeded",
        )
        assert proc.wait(timeout=60) == 0
        nodes = driver.execute_script(
            "return Array.from(document.querySelectorAll('#nodes .node')).map(n => ["
            "n.dataset.node, n.dataset.state, n.dataset.upstream,"
            "n.querySelectorAll('table.node-runs tbody tr').length,"
            "n.querySelector('.kind-tag').textContent])"
        )
        assert nodes == [
            ["prepare", "succeeded", "", 1, "job"],
            ["train", "succeeded", "prepare", 2, "matrix: grid"],
            ["report", "succeeded", "train", 1, "job"],
        ]
        assert driver.execute_script("return document.querySelector('#sweep').dataset.done") == "3"
        shots(driver, "pipeline-finished")

        # The node's link opens its own sweep page with its runs, which links back.
        # (clicked in one script: the page may draw itself again between a find and a click)
        driver.execute_script(
            "document.querySelector('.node[data-node=\"train\"] a.node-link').click()"
        )
        wait_js(
            driver,
            "const t = document.querySelector('table#runs');"
            "return t !== null && t.getAttribute('data-done') === '2'",
            "the train node's page with its 2 runs done",
        )
        line, href = driver.execute_script(
            "const p = document.querySelector('#pipeline-of');"
            "return [p.textContent, p.querySelector('a.pipeline-link').getAttribute('href')]"
        )
        assert line == "node train of pipeline gated-pipeline"
        assert href == f"/sweeps/{pipeline}"
        shots(driver, "pipeline-node")

        # The list has the pipeline alone: its nodes are not sweeps of their own there.
        driver.get(f"{daemon.url}/")
        wait_js(
            driver,
            "return document.querySelectorAll('table#sweeps tr[data-sweep]').length > 0",
            "the list",
        )
        listed = driver.execute_script(
            "return Array.from(document.querySelectorAll('table#sweeps tr[data-sweep]'))"
            ".map(r => [r.dataset.sweep, r.dataset.kind])"
        )
        assert listed == [[pipeline, "dag"]]
    finally:
        gates.release("all")
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        assert proc.stderr is not None
        proc.stderr.close()
