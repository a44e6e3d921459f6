"""The frozen copy of a definition that a run carries, and its translation into engine values.

A run reads its tasks only from its snapshot, so editing or archiving a definition never
changes a run in flight.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple

from executors.config import configured_memory_mib, max_memory_mib
from jobs.engine import (
    Attempt,
    AttemptStatus,
    Backoff,
    RetryRule,
    RunState,
    RunStatus,
    TaskSpec,
    parse_retry_rules,
    select_tasks,
)
from jobs.models import ProcessDefinition, ProcessRun, TaskDefinition, TaskRun

SNAPSHOT_VERSION = 1


def take_snapshot(
    definition: ProcessDefinition, only: Sequence[str] | None = None
) -> dict[str, Any]:
    """A JSON-ready copy of the definition and its tasks, edges included.

    ``only`` names a subset of tasks to run: the others are left out, and so are the edges
    to them (those upstreams count as satisfied; ``subset`` records which). ValueError,
    worded for a person, if the names do not fit the process or a task's retry rules are
    invalid (the admin checks them; a definition saved elsewhere may not be).
    """
    snapshot = _copy(definition)
    specs = [task_spec(e) for e in snapshot["tasks"]]
    if only is not None:
        chosen, assumed = select_tasks(specs, only)
        edges = {spec.name: spec for spec in chosen}
        snapshot["tasks"] = [
            {
                **e,
                "requires": list(edges[e["name"]].requires),
                "after": list(edges[e["name"]].after),
            }
            for e in snapshot["tasks"]
            if e["name"] in edges
        ]
        snapshot["subset"] = {"tasks": list(edges), "assumed_done": list(assumed)}
    return snapshot


def subset_note(snapshot: dict[str, Any]) -> str:
    """What a run of a subset of tasks says about itself; "" for a whole run."""
    subset = snapshot.get("subset")
    if subset is None:
        return ""
    note = f"runs only {', '.join(subset['tasks'])}"
    if subset["assumed_done"]:
        note += f"; upstreams outside it count as done: {', '.join(subset['assumed_done'])}"
    return note


def _copy(definition: ProcessDefinition) -> dict[str, Any]:
    tasks = list(definition.tasks.prefetch_related("upstream_edges__upstream"))
    return {
        "version": SNAPSHOT_VERSION,
        "process": {
            "name": definition.name,
            "overlap": definition.overlap,
            "critical": definition.critical,
            "time_limit_s": definition.run_time_limit_s,
        },
        "tasks": [
            {
                "name": task.name,
                "executor": task.executor,
                "config": task.config,
                "max_attempts": task.max_attempts,
                "backoff": {
                    "initial_delay_s": task.retry_initial_delay_s,
                    "multiplier": task.retry_multiplier,
                    "max_delay_s": task.retry_max_delay_s,
                    "jitter": task.retry_jitter,
                },
                "time_limit_s": task.time_limit_s,
                "retry_on_timeout": task.retry_on_timeout,
                "require_explicit_success": task.require_explicit_success,
                "retry_rules": task.retry_rules,
                **_memory_policy(task),
                "requires": sorted(
                    e.upstream.name for e in task.upstream_edges.all() if e.required
                ),
                "after": sorted(
                    e.upstream.name for e in task.upstream_edges.all() if not e.required
                ),
            }
            for task in tasks
        ],
    }


def _memory_policy(task: TaskDefinition) -> dict[str, Any]:
    """What a retry after an out-of-memory kill starts from and may reach, resolved now: the
    memory the config asks for (its kind's defaults applied), and the task's cap within the
    most its kind allows (its submit would refuse more)."""
    caps = [c for c in (task.oom_memory_max_mib, max_memory_mib(task.executor)) if c is not None]
    return {
        "memory_mib": configured_memory_mib(task.executor, task.config),
        "oom_memory_factor": task.oom_memory_factor,
        "oom_memory_max_mib": min(caps, default=None),
    }


def task_entry(snapshot: dict[str, Any], name: str) -> dict[str, Any]:
    """One task's frozen definition; KeyError if the run has no such task."""
    for entry in snapshot["tasks"]:
        if entry["name"] == name:
            return entry
    raise KeyError(f"run snapshot has no task {name!r}")


def executor_kinds(snapshot: dict[str, Any]) -> dict[str, str]:
    """Each task's executor kind, by task name."""
    return {entry["name"]: entry["executor"] for entry in snapshot["tasks"]}


def task_spec(entry: dict[str, Any]) -> TaskSpec:
    return TaskSpec(
        name=entry["name"],
        requires=tuple(entry["requires"]),
        after=tuple(entry["after"]),
        max_attempts=entry["max_attempts"],
        backoff=Backoff(**entry["backoff"]),
        time_limit_s=entry["time_limit_s"],
        retry_on_timeout=entry["retry_on_timeout"],
        require_explicit_success=entry["require_explicit_success"],
        # .get: runs started before retry rules existed have none, and no memory to raise.
        retry_rules=_retry_rules(entry),
        memory_mib=entry.get("memory_mib"),
        oom_memory_factor=entry.get("oom_memory_factor", 1.0),
        oom_memory_max_mib=entry.get("oom_memory_max_mib"),
    )


def _retry_rules(entry: dict[str, Any]) -> tuple[RetryRule, ...]:
    rules = entry.get("retry_rules")
    # Most tasks have none: not even the error's prefix is built for them on every step.
    return parse_retry_rules(rules, f"task {entry['name']!r}: retry_rules") if rules else ()


# The columns the engine needs, read as plain rows: building full model instances for every
# attempt on every hand-off costs more than the queries themselves.
ATTEMPT_FIELDS = (
    "pk",
    "task_name",
    "round",
    "number",
    "status",
    "not_before",
    "started_at",
    "finished_at",
    "stop_requested_at",
    "stop_reason",
    "exit_code",
    "reason",
    "out_of_memory",
    "permanent",
    "memory_mib",
)


class StoredAttempt(NamedTuple):
    """An attempt as the engine sees it, plus what finishing it needs."""

    attempt: Attempt
    stop_as: str
    reported_success: bool | None


def _attempt(row: Sequence[Any]) -> Attempt:
    pk, task, round_, number, status, not_before, started, finished, stopping, why, *ended = row
    exit_code, reason, out_of_memory, permanent, memory_mib = ended
    return Attempt(
        id=pk,
        task=task,
        round=round_,
        number=number,
        status=AttemptStatus(status),
        not_before=not_before,
        started_at=started,
        finished_at=finished,
        stop_requested=stopping is not None,
        stop_reason=why if stopping is not None else None,
        exit_code=exit_code,
        reason=reason,
        out_of_memory=out_of_memory,
        permanent=permanent,
        memory_mib=memory_mib,
    )


def attempt_of(task_run: TaskRun) -> Attempt:
    return _attempt([getattr(task_run, field) for field in ATTEMPT_FIELDS])


def load_attempts(run: ProcessRun) -> list[StoredAttempt]:
    """Every attempt of a run, in creation order, in one query."""
    rows = run.task_runs.values_list(*ATTEMPT_FIELDS, "stop_as", "reported_success")
    return [StoredAttempt(_attempt(row[:-2]), row[-2], row[-1]) for row in rows]


def run_state(run: ProcessRun, attempts: Iterable[Attempt]) -> RunState:
    """The engine's view of one run: its frozen tasks and the given attempts."""
    return RunState(
        run_id=run.pk,
        status=RunStatus(run.status),
        tasks=tuple(task_spec(entry) for entry in run.snapshot["tasks"]),
        attempts=tuple(attempts),
        kill_requested=run.kill_requested_at is not None,
        started_at=run.started_at,
        # .get: runs started before run time limits existed have none.
        time_limit_s=run.snapshot["process"].get("time_limit_s"),
    )
