"""The run cache's entries on disk, shared by the cache plugin and ``orchestrator cache``.

One small JSON file per key under ``HOME/cache/runs/``, written atomically (temporary file then
rename), so concurrent orchestrators on one home folder never see half an entry. The key
itself is computed by the cache plugin; this module only stores and lists entries.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from pathlib import Path
from typing import IO, Any

import msgspec

__all__ = ["CacheEntry", "CacheStore", "clear_entries", "list_entries", "parse_age"]


class CacheEntry(msgspec.Struct, kw_only=True):
    key: str
    run_id: str
    sweep_id: str
    finished_at: float
    outputs: dict[str, Any] = {}
    params: dict[str, Any] = {}


_decode = msgspec.json.Decoder(CacheEntry).decode


class CacheStore:
    def __init__(self, home: Path) -> None:
        self.root = home / "cache" / "runs"

    def _path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def get(self, key: str) -> CacheEntry | None:
        try:
            return _decode(self._path(key).read_bytes())
        except (OSError, msgspec.DecodeError, msgspec.ValidationError):
            return None

    def put(self, entry: CacheEntry) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f".{entry.key}.{os.getpid()}.tmp"
        tmp.write_bytes(msgspec.json.encode(entry))
        os.replace(tmp, self._path(entry.key))

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self._path(key).unlink()

    def entries(self) -> list[CacheEntry]:
        if not self.root.is_dir():
            return []
        found = (self.get(p.stem) for p in sorted(self.root.glob("*.json")))
        return sorted((e for e in found if e is not None), key=lambda e: e.finished_at)


def parse_age(text: str) -> float:
    """``90``/``90s``, ``30m``, ``12h``, ``7d`` -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not match:
        raise ValueError(f"expected an age like 90s, 30m, 12h or 7d, got {text!r}")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def list_entries(home: Path, out: IO[str], *, as_json: bool) -> int:
    entries = CacheStore(home).entries()
    if as_json:
        out.write(json.dumps([msgspec.to_builtins(e) for e in entries]) + "\n")
        return 0
    if not entries:
        out.write(f"the cache of {home} is empty\n")
        return 0
    now = time.time()
    for e in entries:
        outputs = " ".join(f"{k}={v}" for k, v in e.outputs.items()) or "-"
        out.write(
            f"{e.key[:16]}  run {e.run_id[:12]}  sweep {e.sweep_id[:12]}  "
            f"age {now - e.finished_at:,.0f}s  {outputs}\n"
        )
    return 0


def clear_entries(home: Path, out: IO[str], *, older_than: float | None) -> int:
    store = CacheStore(home)
    now = time.time()
    removed = 0
    for entry in store.entries():
        if older_than is None or now - entry.finished_at > older_than:
            store.delete(entry.key)
            removed += 1
    out.write(f"removed {removed} cache entr{'y' if removed == 1 else 'ies'}\n")
    return 0
