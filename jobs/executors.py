"""Which executor runs a given kind of task in this process."""

from __future__ import annotations

from collections.abc import Callable

from executors.base import Executor, ExecutorError


def _local() -> Executor:
    from jobs.local_runtime import local_runtime  # starts a thread: only when needed

    return local_runtime()


# kind -> factory; the AWS executors join this table as they land.
EXECUTORS: dict[str, Callable[[], Executor]] = {"local": _local}


def executor_for(kind: str) -> Executor:
    """The executor for a task's kind; ExecutorError (permanent) if this build has none."""
    try:
        factory = EXECUTORS[kind]
    except KeyError:
        raise ExecutorError(
            f"executor {kind!r} is not available in this version", permanent=True
        ) from None
    return factory()
