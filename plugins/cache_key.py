"""The cache key of a run, as named parts: what ``cache explain`` compares, and what is hashed.

Parts are a flat mapping ``"GROUP:NAME" -> value`` (or just ``"GROUP"``), so that two keys
can be compared part by part without knowing this module: ``params:lr`` 0.1 against 0.2 reads
"params changed: lr 0.1→0.2". Groups, following Polyaxon's cache key (``POLYAXONFILE.md`` §5):

* ``component``: the component's hash;
* ``params:NAME`` and ``types:NAME``: the inputs and context params (only those in
  ``cache.io`` when given);
* per ``cache.sections`` (default: all): ``command:argv``, ``command:working_dir``,
  ``env:NAME`` (a digest of the value; run-specific paths and ids masked),
  ``code:tree`` (:func:`orchestrator_plugins.cache_tree.content_tree`) and
  ``code:file ITEM`` (the content of each argv item naming a file), ``init`` and
  ``connections``.

The key is the SHA-256 of the parts, encoded with sorted names.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

__all__ = ["SECTIONS", "command_parts", "digest", "masker", "param_parts", "spec_files"]

SECTIONS = ("init", "connections", "containers")


def digest(parts: dict[str, Any]) -> str:
    """The key: a hash of the parts, stable under their order."""
    return hashlib.sha256(msgspec.json.encode(parts, order="sorted")).hexdigest()


def masker(home: Path, run_id: str) -> Callable[[str], str]:
    """Hide what differs between identical runs: their ids and folders."""
    home_dir = str(home)  # string joins: per run, Path's cost as much as the rest
    run_dir = os.path.join(home_dir, "runs", run_id)

    def mask(text: str) -> str:
        return text.replace(run_dir, "<run>").replace(run_id, "<uuid>").replace(home_dir, "<home>")

    return mask


def param_parts(
    params: dict[str, Any], types: dict[str, str], wanted: set[str] | None
) -> dict[str, Any]:
    """Inputs and context params (matrix keys that are no input) both count, as in Polyaxon's
    ``in-`` and ``ctx-`` parts; ``cache.io`` (``wanted``) filters them all."""
    parts: dict[str, Any] = {}
    for name, value in params.items():
        if wanted is None or name in wanted:
            parts[f"params:{name}"] = value
            parts[f"types:{name}"] = types.get(name)
    return parts


def command_parts(
    argv: list[str], env: dict[str, str], working_dir: str, mask: Callable[[str], str]
) -> dict[str, Any]:
    parts: dict[str, Any] = {
        "command:argv": [mask(a) for a in argv],
        "command:working_dir": mask(working_dir),
    }
    for name, value in env.items():
        # A digest, not the value: the cache file should hold no secret passed in env.
        parts[f"env:{name}"] = hashlib.sha256(mask(value).encode()).hexdigest()[:16]
    return parts


def spec_files(source: str, component_source: str, base_dir: Path) -> list[Path]:
    """The polyaxonfile(s) a sweep was read from, where they are files: their content is in
    the key already (component, params), so the code tree leaves them out."""
    files = []
    for name in {source, component_source}:
        if "://" in name:
            continue  # a urlRef: nothing on disk
        path = Path(name)
        if not path.is_absolute():
            path = base_dir / path.name  # base_dir is the folder of the file given
        if path.is_file():
            files.append(path)
    return files
