"""Helpers shared by the benchmarks."""

from __future__ import annotations

import textwrap


def noop_spec(n: int) -> str:
    """A grid of ``n`` runs of ``/bin/true``: pure orchestration overhead."""
    return textwrap.dedent(f"""
        version: 1.1
        kind: operation
        matrix: {{kind: grid, params: {{i: {{kind: range, value: "0:{n}:1"}}}}}}
        component:
          run: {{kind: job, container: {{command: [/bin/true]}}}}
    """)
