"""Read YAML with the safe loader and hard limits, so hostile files fail fast.

PyYAML shares the node of an anchor between its aliases, so an alias bomb ("billion laughs")
loads quickly and only explodes when something walks it. We compose the node graph first and
measure its *expanded* size and depth with memoisation (linear in the number of distinct nodes),
then construct Python objects only when both are within limits.
"""

from __future__ import annotations

from typing import Any

import yaml

from orchestrator.exceptions import SpecError

__all__ = ["MAX_DEPTH", "MAX_FILE_BYTES", "MAX_NODES", "load_yaml"]

#: Largest polyaxonfile we read.
MAX_FILE_BYTES = 4 * 1024 * 1024
#: Most nodes the document may have once every alias is expanded.
MAX_NODES = 1_000_000
#: Deepest nesting of mappings and sequences.
MAX_DEPTH = 64

_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _measure(root: yaml.Node, source: str) -> None:
    """Raise if the expanded document is too large, too deep or recursive."""
    sizes: dict[int, tuple[int, int]] = {}
    on_path: set[int] = set()

    def visit(node: yaml.Node) -> tuple[int, int]:
        key = id(node)
        known = sizes.get(key)
        if known is not None:
            return known
        if key in on_path:
            raise SpecError("recursive YAML alias", file=source)
        if isinstance(node, yaml.ScalarNode):
            return (1, 0)
        on_path.add(key)
        total, depth = 1, 0
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                children.append(k)
                children.append(v)
        for child in children:
            size, child_depth = visit(child)
            total += size
            depth = max(depth, child_depth + 1)
            if total > MAX_NODES:
                raise SpecError(
                    f"YAML document expands to more than {MAX_NODES:,} nodes "
                    "(alias bomb?); refusing to read it",
                    file=source,
                )
        if depth > MAX_DEPTH:
            raise SpecError(f"YAML nesting deeper than {MAX_DEPTH} levels", file=source)
        on_path.discard(key)
        sizes[key] = (total, depth)
        return total, depth

    visit(root)


def load_yaml(text: str | bytes, source: str = "<string>") -> Any:
    """Parse one YAML document safely; ``source`` names it in errors."""
    size = len(text.encode() if isinstance(text, str) else text)
    if size > MAX_FILE_BYTES:
        raise SpecError(
            f"file is {size:,} bytes, larger than the {MAX_FILE_BYTES:,}-byte limit", file=source
        )
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _measure(node, source)
        return loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise SpecError(f"invalid YAML: {where}{problem}", file=source) from None
    except yaml.YAMLError as exc:
        raise SpecError(f"invalid YAML: {' '.join(str(exc).split())}", file=source) from None
    except RecursionError:
        raise SpecError("YAML nesting too deep", file=source) from None
    finally:
        loader.dispose()
