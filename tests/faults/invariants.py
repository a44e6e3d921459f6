"""The promises the core keeps whatever the interleaving, one function each.

Each takes the harness and raises ``Violation`` naming the promise and what broke it.
``ALWAYS`` holds at every check point, in the middle of a sequence too; ``EVENTUALLY`` holds
once the faults have stopped and everything has been delivered, polled and finished.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from executors.memory import Job
from jobs.engine import ACTIVE_ATTEMPT, FINAL_ATTEMPT, FINAL_RUN, OverlapPolicy
from jobs.models import ProcessRun, TaskEvent, TaskRun
from jobs.snapshot import task_entry

if TYPE_CHECKING:
    from tests.faults.harness import Harness

_ACTIVE = [s.value for s in ACTIVE_ATTEMPT]


class Violation(AssertionError):
    def __init__(self, invariant: str, detail: str) -> None:
        super().__init__(f"{invariant}: {detail}")
        self.invariant = invariant
        self.detail = detail


def _runs(h: Harness) -> list[ProcessRun]:
    return list(ProcessRun.objects.filter(definition=h.process).order_by("pk"))


def _attempts(h: Harness) -> list[TaskRun]:
    return list(TaskRun.objects.filter(run__definition=h.process).order_by("pk"))


def _live_jobs(h: Harness) -> dict[int, Job]:
    """Unfinished jobs, by the attempt they belong to."""
    return {job.launch.task_run_id: job for job in h.executor.live()}


@dataclass(frozen=True)
class Live:
    """An attempt that is live: active in the database, or its job unfinished at the executor
    (whatever the database says about it)."""

    attempt_id: int
    run_id: int
    run_status: str
    task: str
    why: str


def live_attempts(h: Harness) -> list[Live]:
    """Every live attempt, from one query and one look at the executor."""
    jobs = _live_jobs(h)
    live = []
    for pk, run_id, run_status, task, status in TaskRun.objects.filter(
        run__definition=h.process
    ).values_list("pk", "run_id", "run__status", "task_name", "status"):
        reasons = []
        if status in _ACTIVE:
            reasons.append(f"attempt {pk} is {status}")
        if pk in jobs:
            reasons.append(f"job {jobs[pk].external_id} is {jobs[pk].state}")
        if reasons:
            live.append(Live(pk, run_id, run_status, task, " and ".join(reasons)))
    return live


# ---- always (given the live attempts of one moment) ----


def at_most_one_live_attempt_per_task(h: Harness, live: list[Live]) -> None:
    """Never two live attempts of one task in a run; nor in the process unless overlap allows."""
    per_run: dict[tuple[int, str], list[str]] = defaultdict(list)
    per_task: dict[str, list[str]] = defaultdict(list)
    for a in live:
        per_run[a.run_id, a.task].append(a.why)
        per_task[a.task].append(f"run {a.run_id}: {a.why}")
    for (run_id, task), whys in per_run.items():
        if len(whys) > 1:
            raise Violation(
                "at most one live attempt per task",
                f"task {task!r} of run {run_id} has {len(whys)}: {'; '.join(whys)}",
            )
    if h.process.overlap != OverlapPolicy.ALLOW:
        for task, whys in per_task.items():
            if len(whys) > 1:
                raise Violation(
                    f"at most one live copy of a task under overlap {h.process.overlap}",
                    f"task {task!r}: {'; '.join(whys)}",
                )


def final_runs_have_nothing_live(h: Harness, live: list[Live]) -> None:
    """A final run has no active attempt and no unfinished job."""
    for a in live:
        if a.run_status in FINAL_RUN:
            raise Violation(
                "a final run has no live attempt",
                f"run {a.run_id} is {a.run_status} but its task {a.task!r} is live: {a.why}",
            )


ALWAYS: tuple[Callable[[Harness, list[Live]], None], ...] = (
    at_most_one_live_attempt_per_task,
    final_runs_have_nothing_live,
)


# ---- eventually (once the faults stop) ----


def stops_reach_the_executor(h: Harness) -> None:
    """Every attempt whose stop was decided had its job asked to terminate.

    Checked after everything has been delivered and reconciled, before the test ends the
    remaining jobs itself: a stop that never reached the executor leaves a job running
    (and costing money) until it ends by itself.
    """
    asked = {external_id for external_id, _ in h.executor.terminations}
    for task_run in TaskRun.objects.filter(
        run__definition=h.process, stop_requested_at__isnull=False
    ):
        job = _live_jobs(h).get(task_run.pk)
        if job is not None and job.external_id not in asked:
            raise Violation(
                "a decided stop reaches the executor",
                f"attempt {task_run.pk} ({task_run.task_name}, run {task_run.run_id}) was to be "
                f"stopped ({task_run.reason!r}) but job {job.external_id} was never asked to "
                "terminate, and nothing will ask again",
            )


def every_run_is_final(h: Harness) -> None:
    pending = [f"run {run.pk} is {run.status}" for run in _runs(h) if run.status not in FINAL_RUN]
    if pending:
        raise Violation("every run reaches a final state once the faults stop", "; ".join(pending))


def no_task_exceeds_its_attempts(h: Harness) -> None:
    """Within a round, attempts are numbered 1..n with n <= max_attempts."""
    numbers: dict[tuple[int, str, int], list[int]] = defaultdict(list)
    limits: dict[tuple[int, str], int] = {}
    for task_run in TaskRun.objects.filter(run__definition=h.process).select_related("run"):
        numbers[task_run.run_id, task_run.task_name, task_run.round].append(task_run.number)
        limits[task_run.run_id, task_run.task_name] = task_entry(
            task_run.run.snapshot, task_run.task_name
        )["max_attempts"]
    for (run_id, task, round_), seen in numbers.items():
        limit = limits[run_id, task]
        if sorted(seen) != list(range(1, len(seen) + 1)) or len(seen) > limit:
            raise Violation(
                "no task exceeds its attempts within a round",
                f"task {task!r} of run {run_id}, round {round_}: attempts {sorted(seen)}, "
                f"max_attempts {limit}",
            )


def exit_codes_recorded_once(h: Harness) -> None:
    """One job per attempt; each finished job's exit code is on its attempt, and only there."""
    jobs_of: dict[int, list[Job]] = defaultdict(list)
    for accepted in h.executor.jobs():
        jobs_of[accepted.launch.task_run_id].append(accepted)
    for task_run in _attempts(h):
        jobs = jobs_of.get(task_run.pk, [])
        where = f"attempt {task_run.pk} ({task_run.task_name}, run {task_run.run_id})"
        if len(jobs) > 1:
            ids = ", ".join(each.external_id for each in jobs)
            raise Violation("an attempt starts at most one job", f"{where} started {ids}")
        job = jobs[0] if jobs else None
        if job is not None and job.finished and task_run.exit_code != job.exit_code:
            raise Violation(
                "no exit code lost",
                f"job {job.external_id} exited {job.exit_code}, but {where} is "
                f"{task_run.status} with exit code {task_run.exit_code} ({task_run.reason!r})",
            )
        if task_run.exit_code is not None and (job is None or not job.finished):
            raise Violation(
                "no exit code invented",
                f"{where} has exit code {task_run.exit_code}, but no finished job gave it",
            )


def decisions_are_written_as_events(h: Harness) -> None:
    """Each final attempt, retry, stop and finished run has its one event."""
    kinds: dict[int | None, Counter[str]] = defaultdict(Counter)
    run_events: dict[int, list[str]] = defaultdict(list)
    for run_id, task_run_id, kind in (
        TaskEvent.objects.filter(run__definition=h.process)
        .order_by("pk")
        .values_list("run_id", "task_run_id", "kind")
    ):
        if task_run_id is None:
            run_events[run_id].append(kind)
        else:
            kinds[task_run_id][kind] += 1
    for task_run in _attempts(h):
        where = f"attempt {task_run.pk} ({task_run.task_name}, run {task_run.run_id})"
        seen = kinds[task_run.pk]
        if task_run.status in FINAL_ATTEMPT:
            ending = (
                {task_run.status, "cancelled"} if task_run.status == "killed" else {task_run.status}
            )
            if sum(seen[k] for k in ending) != 1:
                raise Violation(
                    "every decision is written as an event",
                    f"{where} is {task_run.status} with events {dict(seen)}",
                )
        expected = [
            ("retry_scheduled", task_run.number > 1),
            ("terminating", task_run.stop_requested_at is not None),
        ]
        for kind, due in expected:
            if seen[kind] != int(due):
                raise Violation(
                    "every decision is written as an event",
                    f"{where} has {seen[kind]} {kind!r} events (expected {int(due)})",
                )
    for run in _runs(h):
        events = run_events[run.pk]
        if run.status not in FINAL_RUN or run.started_at is None:
            continue  # never started: skipped (its trigger says so) or killed while queued
        last_retry = max((i for i, kind in enumerate(events) if kind == "retry"), default=-1)
        if events[last_retry + 1 :].count("finished") != 1:
            raise Violation(
                "every decision is written as an event",
                f"run {run.pk} is {run.status} with run events {events}",
            )


EVENTUALLY: tuple[Callable[[Harness], None], ...] = (
    every_run_is_final,
    no_task_exceeds_its_attempts,
    exit_codes_recorded_once,
    decisions_are_written_as_events,
)
