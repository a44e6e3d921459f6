"""The executor kinds: one table that the model's choices, the admin's list, config validation
and ``executor_for`` all come from, so they cannot disagree.

A kind names its config schema (``executors/<kind>/config.py``) and where this process gets
its executor: an import path, resolved on first use (the local runtime starts threads, AWS
clients open connections). A kind without one is listed but not available in this version,
and says so wherever it is chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import import_module

from pydantic import BaseModel

from executors.base import Executor, ExecutorError
from executors.batch.config import BatchConfig
from executors.ecs.config import EcsConfig
from executors.local.config import LocalConfig
from executors.memory import MemoryConfig


@dataclass(frozen=True)
class ExecutorKind:
    name: str  # stored on every task and attempt
    label: str
    schema: type[BaseModel]
    factory: str | None  # "module:function" giving this process's executor; None: not built
    offered: bool = True  # shown in the admin; the in-memory executor is for tests only

    @property
    def available(self) -> bool:
        return self.factory is not None


KINDS: dict[str, ExecutorKind] = {
    kind.name: kind
    for kind in (
        ExecutorKind("local", "Local subprocess", LocalConfig, "jobs.local_runtime:local_runtime"),
        ExecutorKind("batch", "AWS Batch", BatchConfig, None),
        ExecutorKind("ecs", "AWS ECS", EcsConfig, None),
        ExecutorKind(
            "memory", "In memory (tests)", MemoryConfig, "executors.memory:shared", offered=False
        ),
    )
}


def choices() -> list[tuple[str, str]]:
    """(name, label) of the kinds a person may pick, for model and form fields; a kind this
    version cannot run says so in its label rather than being silently offered."""
    return [
        (kind.name, kind.label if kind.available else f"{kind.label} (not available yet)")
        for kind in KINDS.values()
        if kind.offered
    ]


def executor_for(name: str) -> Executor:
    """This process's executor for a kind; ExecutorError (permanent) if it has none."""
    kind = KINDS.get(name)
    if kind is None or kind.factory is None:
        raise ExecutorError(f"executor {name!r} is not available in this version", permanent=True)
    module, _, function = kind.factory.partition(":")
    executor: Executor = getattr(import_module(module), function)()
    return executor
