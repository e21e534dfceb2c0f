"""Each run's resource usage, from the kernel's own accounting (wait4): CPU time and peak RSS,
journaled and shown by ``show`` (table, JSON, CSV) and the API."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import CliResult

SPEC = """\
version: 1.1
kind: operation
matrix:
  kind: mapping
  values: [{{mib: 1}}, {{mib: 200}}]
component:
  inputs: [{{name: mib, type: int}}]
  run:
    kind: job
    container:
      command: ["{python}", "-c", "{script}"]
"""
# Touch every page of the buffer, so it is resident, not just reserved.
SCRIPT = (
    "n = {{ mib }} * 2 ** 20; b = bytearray(n); [b.__setitem__(i, 1) for i in range(0, n, 4096)]"
)
MIB = 2**20


def test_peak_rss_and_cpu_time_come_from_the_kernel(
    cli: Callable[..., CliResult], tmp_path: Path
) -> None:
    spec = tmp_path / "alloc.yaml"
    spec.write_text(SPEC.format(python=sys.executable, script=SCRIPT))
    home = str(tmp_path / "home")
    assert cli("run", str(spec), "--home", home).code == 0
    runs = {
        r["params"]["mib"]: r
        for r in json.loads(cli("show", "last", "--home", home, "--json").out)["runs"]
    }
    big, small = runs[200], runs[1]
    assert 200 * MIB <= big["max_rss"] <= 300 * MIB, big["max_rss"]
    assert small["max_rss"] < 100 * MIB
    assert big["cpu_s"] > 0 and big["cpu_s"] >= small["cpu_s"]
    table = cli("show", "last", "--home", home).out.splitlines()
    head = next(line for line in table if line.startswith("#"))
    assert head.split()[:5] == ["#", "state", "duration", "cpu_s", "max_rss"]
    rows = list(csv.DictReader(io.StringIO(cli("show", "last", "--home", home, "--csv").out)))
    assert {int(r["max_rss"]) // MIB >= 200 for r in rows} == {True, False}
    one = json.loads(cli("show", "last:1", "--home", home, "--json").out)
    assert one["max_rss"] == big["max_rss"] and one["cpu_s"] == big["cpu_s"]
