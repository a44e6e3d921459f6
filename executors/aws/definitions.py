"""Definitions Sundial registers for a task that gives an image (Batch job definitions, ECS
task definitions): one name per process and task, and a new revision only when what Sundial
puts in it changes, so retries, runs and other workers reuse the latest one.

Each process remembers what it registered or found; a fresh process (another worker) asks
AWS for the latest active revision and compares it before registering one more.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import Any


class Definitions:
    """The revisions this process registered or found, by region, name and content."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[tuple[str, str, str], str] = {}

    def revision(
        self,
        region: str,
        name: str,
        content: Mapping[str, Any],
        *,
        latest_holding: Callable[[], str | None],
        register: Callable[[], str],
    ) -> str:
        """ "name:revision" of a definition holding ``content``: remembered, else the latest
        one AWS has if it holds it (``latest_holding``), else a new one (``register``)."""
        key = (region, name, json.dumps(content, sort_keys=True))
        with self._lock:
            known = self._known.get(key)
        if known is None:
            # Two threads may both ask AWS here; at worst both register, and both revisions
            # hold the same content, so either serves.
            known = latest_holding() or register()
            with self._lock:
                self._known[key] = known
        return known


def holds(existing: Any, wanted: Any) -> bool:
    """Whether a definition AWS returned holds what Sundial would register: AWS adds its own
    defaults to what it returns (so keys Sundial does not name are ignored) and returns lists
    in its own order (so lists are compared as sets of items).

    A key Sundial names with None is one it leaves unset (a command, a role, a log
    configuration the task no longer gives): AWS must have nothing there, or an empty
    default of its own, or a revision that still has it would be reused.
    """
    if wanted is None:
        return not existing
    if isinstance(wanted, Mapping):
        return isinstance(existing, Mapping) and all(
            holds(existing.get(key), value) for key, value in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(existing, list)
            and len(existing) == len(wanted)
            and all(any(holds(item, one) for item in existing) for one in wanted)
        )
    return bool(existing == wanted)


def registrable(content: Any) -> Any:
    """``content`` without the keys Sundial leaves unset (None), as AWS takes it."""
    if isinstance(content, Mapping):
        return {key: registrable(value) for key, value in content.items() if value is not None}
    if isinstance(content, list):
        return [registrable(item) for item in content]
    return content
