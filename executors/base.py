"""The executor interface: one adapter per place a task can run (local, batch, ecs).

Executors know nothing about Django or the database. They take plain values and
return plain values; the shell in ``jobs/`` records what they say.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Protocol


class ExecutorError(Exception):
    """An executor call failed. ``permanent`` says whether trying again can help."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


class IncompleteStatuses(ExecutorError):
    """``statuses`` could ask about some jobs only (one region or cluster did not answer):
    what it learnt is in ``statuses``; the jobs in ``unasked`` are neither known nor unknown,
    so nothing may be concluded about them this time."""

    def __init__(self, message: str, statuses: dict[str, Status], unasked: set[str]) -> None:
        super().__init__(message)
        self.statuses = statuses
        self.unasked = unasked


@dataclass(frozen=True)
class Launch:
    """Everything an executor needs to start one attempt."""

    task_run_id: int
    run_id: int  # executors may tag jobs with it (cost attribution, lookups)
    idempotency_key: str  # unique per attempt; submitting twice with it starts one job
    config: Mapping[str, Any]  # validated by the executor kind's config schema
    env: Mapping[str, str]  # SUNDIAL_* variables plus the task's own environment
    # Names for what the executor creates (job definitions, tags): process and task slugs,
    # and the attempt as the pages show it ("1.2": round 1, attempt 2).
    process: str = ""
    task: str = ""
    attempt: str = ""
    # An earlier submit of this attempt failed after it may have reached the executor (a
    # lost answer): a job it started must be looked for before another one is started.
    resubmit: bool = False


@dataclass(frozen=True)
class Submission:
    external_id: str
    log_ref: str
    # What the job asked for, as far as the executor knows it (vcpu, memory_mib, gpu,
    # disk_gib, platform): recorded on the attempt, shown on the run page, priced.
    resources: Mapping[str, Any] = field(default_factory=dict, hash=False)


class State(StrEnum):
    PENDING = "pending"  # accepted, not running yet
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@dataclass(frozen=True)
class Status:
    state: State
    exit_code: int | None = None
    reason: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    # The executor's own word for the state when it says more than ``state`` does, e.g.
    # Batch's RUNNABLE ("waiting for capacity") inside PENDING.
    detail: str = ""
    # Where the job ran, once known: "Fargate", "EC2 m5.large (spot)".
    placement: str = ""
    # Classified by the executor, which alone knows its platform's words for them:
    out_of_memory: bool = False  # killed for using more memory than it asked for
    permanent: bool = False  # trying again cannot help (image not found, bad definition)


@dataclass(frozen=True)
class LogChunk:
    lines: tuple[str, ...]
    next_cursor: str  # opaque; pass it back to read on from here
    # The last line goes on after the cursor: a piece of a line too long for one chunk.
    partial: bool = False
    # Where the log goes on before the first line, for a log read by pages backwards too
    # (CloudWatch): read_logs from this cursor gives the page before. None at the start,
    # and for logs read forward only.
    earlier: str | None = None


class Executor(Protocol):
    kind: str
    # True when a submitted job is running at once and reports its own exit (local);
    # False when it is queued remotely and its state must be polled (Batch, ECS).
    runs_on_submit: bool

    def submit(self, launch: Launch) -> Submission: ...

    def find(self, launch: Launch) -> Submission | None:
        """The job an earlier ``submit`` of this launch started, if any (crash recovery): found
        by its idempotency key, where the launch's config says to look."""

    def statuses(self, external_ids: Sequence[str]) -> dict[str, Status]: ...

    def terminate(self, external_id: str, reason: str) -> None: ...

    def read_logs(self, log_ref: str, cursor: str | None) -> LogChunk: ...
