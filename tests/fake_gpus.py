"""A fake ``nvidia-smi`` for resource tests: a script on ``PATH`` that prints four cards of
different sizes, as ``--query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits``
prints them (memory in MiB)."""

from __future__ import annotations

import os
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

#: index, uuid, name, MiB: four cards of different sizes (8, 16, 24 and 80 GiB).
CARDS = (
    (0, "GPU-00000000-0000-0000-0000-000000000008", "Tesla P4", 8192),
    (1, "GPU-11111111-1111-1111-1111-000000000016", "Tesla V100-PCIE-16GB", 16384),
    (2, "GPU-22222222-2222-2222-2222-000000000024", "NVIDIA A10, rev b", 24576),
    (3, "GPU-33333333-3333-3333-3333-000000000080", "NVIDIA A100-SXM4-80GB", 81920),
)
GIB = 1 << 30
UUID_TO_INDEX = {uuid: i for i, uuid, _, _ in CARDS}


def smi_output(cards: tuple[tuple[int, str, str, int], ...] = CARDS) -> str:
    return "".join(
        f"{i}, {uuid}, {name if ',' not in name else chr(34) + name + chr(34)}, {mib}\n"
        for i, uuid, name, mib in cards
    )


def fake_smi(folder: Path, body: str | None = None) -> dict[str, str]:
    """Write ``nvidia-smi`` into ``folder`` and return an environment whose ``PATH`` finds it
    first. ``body`` is the script's Python code (default: print the four cards after checking
    that it was asked the query the inventory asks)."""
    folder.mkdir(parents=True, exist_ok=True)
    code = body or textwrap.dedent(
        f"""
        import sys
        assert sys.argv[1:] == ["--query-gpu=index,uuid,name,memory.total",
                                "--format=csv,noheader,nounits"], sys.argv
        sys.stdout.write({smi_output()!r})
        """
    )
    script = folder / "nvidia-smi"
    script.write_text(f"#!{sys.executable}\n{code}")
    script.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES",)}
    env.pop("ORCHESTRATOR_GPUS", None)
    env["PATH"] = f"{folder}{os.pathsep}{env.get('PATH', os.defpath)}"
    return env


def overcommits(records: Sequence[Mapping[str, object]]) -> list[str]:
    """Each moment some card held more than one whole card, from the children's records."""
    events: list[tuple[float, int, int, int]] = []  # time, 0=end first, card, thousandths
    for r in records:
        cvd = str(r["cvd"] or "")
        share = round(float(str(r["share"])) * 1000) if r["share"] else 1000
        for uuid in filter(None, cvd.split(",")):
            card = UUID_TO_INDEX[uuid]
            events.append((float(str(r["start"])), 1, card, share))
            events.append((float(str(r["end"])), 0, card, -share))
    load: dict[int, int] = {}
    found = []
    for when, _, card, delta in sorted(events):
        load[card] = load.get(card, 0) + delta
        if load[card] > 1000:
            found.append(f"card {card} at {when:.3f}: {load[card] / 1000} cards")
    return found
