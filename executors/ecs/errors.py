"""How ECS words a task it did not start, read into whether trying again can help.

RunTask answers 200 even when it placed nothing, listing why in ``failures``: a cluster
short of CPU, memory, ports or network interfaces ("RESOURCE:MEMORY"), an agent that is not
connected, Fargate out of capacity, the account at its limit of running tasks. Those pass
as capacity comes and goes; anything else (a missing cluster or instance, a placement
constraint no instance meets) fails the same way on every try.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from executors.base import ExecutorError

TRANSIENT_WORDS = (
    "RESOURCE:",  # RESOURCE:CPU, :MEMORY, :PORTS, :ENI, :GPU
    "AGENT",
    "Capacity is unavailable",  # Fargate
    "reached the limit",  # of tasks running at once in the account
)


def placement_failure(action: str, failures: Sequence[Mapping[str, Any]]) -> ExecutorError:
    """The error for a RunTask that placed nothing, in ECS's words; transient when capacity
    may come back."""
    words = [_words(failure) for failure in failures] or ["no task started and no reason given"]
    message = "; ".join(words)
    transient = any(word in message for word in TRANSIENT_WORDS)
    return ExecutorError(f"{action}: {message}", permanent=not transient)


def _words(failure: Mapping[str, Any]) -> str:
    return ": ".join(str(failure[key]) for key in ("reason", "detail") if failure.get(key))
