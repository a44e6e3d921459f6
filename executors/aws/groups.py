"""Asking AWS about many jobs, one group at a time (a region, an ECS cluster), so a group
that cannot be asked now hides only its own jobs, never the others' in the same poll."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from executors.base import ExecutorError, IncompleteStatuses, Status

Group = TypeVar("Group")


def statuses_by_group(
    groups: Mapping[Group, Sequence[str]],
    statuses_of: Callable[[Group, Sequence[str]], dict[str, Status]],
) -> dict[str, Status]:
    """Every group's statuses; IncompleteStatuses (with the rest) if any group failed."""
    found: dict[str, Status] = {}
    unasked: set[str] = set()
    problems: list[str] = []
    for group, external_ids in groups.items():
        try:
            found.update(statuses_of(group, external_ids))
        except ExecutorError as exc:
            unasked.update(external_ids)
            problems.append(exc.message)
    if unasked:
        raise IncompleteStatuses("; ".join(problems), found, unasked)
    return found
