"""When a pipeline's node may start: its trigger over its upstream nodes' states (pure).

Polyaxon's scheduler (``haupt/orchestration/scheduler/manager.py``, ``_check_upstream_trigger``
and ``_trigger_downstream``) decides as follows, and so do we:

- an upstream node ``skipped`` skips a node that says ``skipOnUpstreamSkip``;
- ``one_done`` starts on the first upstream node that ends (any final state);
- ``one_succeeded`` / ``one_failed`` start on the first that ends ``succeeded`` / ``failed``;
- ``all_done`` starts once every upstream node has ended; ``all_succeeded`` (the default) /
  ``all_failed`` once every one ended ``succeeded`` / ``failed``;
- a node whose trigger can no longer be met ends ``upstream_failed`` without running.

"failed" means ``failed`` only, as in Polyaxon: an ``upstream_failed`` or ``stopped`` node is
done, but neither succeeded nor failed. One difference, on purpose: Polyaxon decides a
``one_succeeded``/``one_failed`` node when its *first* upstream node ends (so a first one
that failed makes a ``one_succeeded`` node ``upstream_failed`` while another could still
succeed); here such a node waits while its trigger can still be met, as the docs describe it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

__all__ = ["DONE_STATES", "Decision", "trigger_decision"]

Decision = Literal["wait", "run", "skip", "upstream_failed"]

#: The final states of a node (Polyaxon's DONE set).
DONE_STATES = frozenset({"succeeded", "failed", "stopped", "skipped", "upstream_failed"})

#: The state each trigger counts (None: any final state).
_WANTED: dict[str, str | None] = {
    "all_succeeded": "succeeded",
    "all_failed": "failed",
    "all_done": None,
    "one_succeeded": "succeeded",
    "one_failed": "failed",
    "one_done": None,
}


def trigger_decision(
    trigger: str | None,
    upstream_states: Mapping[str, str | None],
    skip_on_upstream_skip: bool = False,
) -> Decision:
    """What a node does now, given the state of each of its upstream nodes (None, or an
    unfinished state: not ended yet). A node without upstream nodes runs."""
    if not upstream_states:
        return "run"
    trigger = trigger or "all_succeeded"
    if trigger not in _WANTED:
        raise ValueError(f"unknown trigger {trigger!r}")
    ended = [s for s in upstream_states.values() if s in DONE_STATES]
    if skip_on_upstream_skip and "skipped" in ended:
        return "skip"
    wanted = _WANTED[trigger]
    matched = [s for s in ended if wanted is None or s == wanted]
    everyone = len(ended) == len(upstream_states)
    if trigger.startswith("one_"):
        if matched:
            return "run"
        return "upstream_failed" if everyone else "wait"
    if len(matched) < len(ended):  # one ended otherwise: "all" can no longer hold
        return "upstream_failed"
    return "run" if everyone else "wait"
