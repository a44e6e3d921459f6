"""The executor kinds: one table that the model's choices, the admin's list, config validation
and ``executor_for`` all come from, so they cannot disagree.

A kind names its config schema (``executors/<kind>/config.py``) and where this process gets
its executor: an import path, resolved on first use (the local runtime starts threads, AWS
clients open connections). A kind may also name a check of this installation (AWS kinds need
a region); a kind that cannot run here is still listed, with the reason, wherever it is
chosen, and refused at save.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import import_module
from typing import Any

from pydantic import BaseModel

from executors.base import Executor, ExecutorError
from executors.batch import config as batch_config
from executors.batch.config import BatchConfig
from executors.ecs import config as ecs_config
from executors.ecs.config import EcsConfig
from executors.local import config as local_config
from executors.local.config import LocalConfig
from executors.memory import MemoryConfig


@dataclass(frozen=True)
class ExecutorKind:
    name: str  # stored on every task and attempt
    label: str
    schema: type[BaseModel]
    factory: str  # "module:function" giving this process's executor
    offered: bool = True  # shown in the admin; the in-memory executor is for tests only
    check: str | None = None  # "module:function": why this installation cannot run it, or None
    example: Mapping[str, Any] = field(default_factory=dict)  # a config, shown in the admin

    def unavailable(self) -> str | None:
        """Why tasks of this kind cannot run on this installation, or None when they can."""
        if self.check is None:
            return None
        reason: str | None = _resolve(self.check)()
        return reason


KINDS: dict[str, ExecutorKind] = {
    kind.name: kind
    for kind in (
        ExecutorKind(
            "local",
            "Local subprocess",
            LocalConfig,
            "jobs.local_runtime:local_runtime",
            example=local_config.EXAMPLE,
        ),
        ExecutorKind(
            "batch",
            "AWS Batch",
            BatchConfig,
            "jobs.aws_runtime:batch_executor",
            check="jobs.aws_runtime:unconfigured",
            example=batch_config.EXAMPLE,
        ),
        ExecutorKind(
            "ecs",
            "AWS ECS",
            EcsConfig,
            "jobs.aws_runtime:ecs_executor",
            check="jobs.aws_runtime:unconfigured",
            example=ecs_config.EXAMPLE,
        ),
        ExecutorKind(
            "memory", "In memory (tests)", MemoryConfig, "executors.memory:shared", offered=False
        ),
    )
}


def choices() -> list[tuple[str, str]]:
    """(name, label) of the kinds a person may pick, for model and form fields; a kind this
    installation cannot run says why in its label rather than being silently offered."""
    labels = []
    for kind in KINDS.values():
        if kind.offered:
            reason = kind.unavailable()
            labels.append(
                (kind.name, f"{kind.label} (unavailable: {reason})" if reason else kind.label)
            )
    return labels


def executor_for(name: str) -> Executor:
    """This process's executor for a kind; ExecutorError (permanent) if it cannot run here."""
    kind = KINDS.get(name)
    if kind is None:
        raise ExecutorError(f"unknown executor kind {name!r}", permanent=True)
    reason = kind.unavailable()
    if reason is not None:
        raise ExecutorError(f"{kind.label} is unavailable: {reason}", permanent=True)
    executor: Executor = _resolve(kind.factory)()
    return executor


def _resolve(path: str) -> Any:
    module, _, name = path.partition(":")
    return getattr(import_module(module), name)
