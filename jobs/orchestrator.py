"""The shell around the engine: lock a run, ask the engine, apply its actions in one transaction.

Every state change is a conditional UPDATE (``... WHERE status = <expected>``), so a repeated
or late message changes nothing, on PostgreSQL and SQLite alike. Side effects (submitting,
terminating, enqueueing) happen only after the deciding transaction commits.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Case, F, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from jobs import dispatch, engine
from jobs.engine import ACTIVE_ATTEMPT, AttemptStatus, OverlapPolicy, RunStatus
from jobs.models import ProcessDefinition, ProcessRun, ScheduleKind, TaskEvent, TaskRun, User
from jobs.schedule import next_continuous
from jobs.snapshot import run_state, take_snapshot, task_entry, task_spec

log = logging.getLogger(__name__)

ACTIVE_RUN = (RunStatus.QUEUED, RunStatus.RUNNING)
_ACTIVE = [s.value for s in ACTIVE_ATTEMPT]


class TriggerError(Exception):
    """A run cannot be started; the message says why, for a person."""


def trigger_run(
    definition: ProcessDefinition,
    trigger: str,
    *,
    user: User | None = None,
    scheduled_for: datetime | None = None,
    parameters: dict[str, Any] | None = None,
) -> ProcessRun | None:
    """Start, queue or skip a run per the overlap policy; None if ``scheduled_for`` already ran."""
    with transaction.atomic():
        # Locking the definition makes concurrent triggers decide overlap one at a time.
        definition = ProcessDefinition.objects.select_for_update().get(pk=definition.pk)
        if definition.archived:
            raise TriggerError(f"process {definition.name!r} is archived")
        if not definition.tasks.exists():
            raise TriggerError(f"process {definition.name!r} has no tasks")
        active = list(
            definition.runs.filter(status__in=ACTIVE_RUN)
            .order_by("id")
            .values_list("pk", flat=True)
        )
        decision = engine.decide_overlap(OverlapPolicy(definition.overlap), active)
        now = timezone.now()
        try:
            with transaction.atomic():
                run = ProcessRun.objects.create(
                    definition=definition,
                    snapshot=take_snapshot(definition),
                    trigger=trigger,
                    triggered_by=user,
                    scheduled_for=scheduled_for,
                    parameters=parameters or {},
                    status=decision.start,
                    reason=decision.reason,
                    finished_at=now if decision.start == RunStatus.SKIPPED else None,
                )
        except IntegrityError:
            if scheduled_for is None:
                raise
            return None  # another tick or beat created this scheduled run first
        who = f" by {user.get_username()}" if user else ""
        _event(run, None, "triggered", f"{trigger}{who}; {decision.reason or 'started'}", user)
        for replaced_id in decision.replace:
            request_kill(replaced_id, user=user, reason=f"replaced by run {run.pk}")
        if run.status == RunStatus.RUNNING:
            _start(run, now)
    return run


def _start(run: ProcessRun, now: datetime) -> None:
    """Create every task's first attempt and take the first step (inside the caller's lock)."""
    ProcessRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING, started_at=now)
    run.status, run.started_at = RunStatus.RUNNING, now
    TaskRun.objects.bulk_create(
        TaskRun(run=run, task_name=e["name"], executor=e["executor"], status=AttemptStatus.WAITING)
        for e in run.snapshot["tasks"]
    )
    _advance_locked(run, now)


def start_queued_run(definition_id: int) -> ProcessRun | None:
    """Start the oldest queued run of a definition once none of its runs is running."""
    with transaction.atomic():
        definition = ProcessDefinition.objects.select_for_update().get(pk=definition_id)
        if definition.runs.filter(status=RunStatus.RUNNING).exists():
            return None
        run = definition.runs.filter(status=RunStatus.QUEUED).order_by("id").first()
        if run is None:
            return None
        _start(run, timezone.now())
        _event(run, None, "started", "started: the run it queued behind has finished")
        return run


def advance_run(run_id: int, now: datetime | None = None) -> None:
    """Lock the run, ask the engine what to do, and do it; a no-op for finished runs."""
    with transaction.atomic():
        # A blocking lock, not skip_locked: a skipped advance could miss the change that
        # caused it (the holder may have read the run before that change committed).
        run = ProcessRun.objects.select_for_update().filter(pk=run_id).first()
        if run is not None and run.status == RunStatus.RUNNING:
            _advance_locked(run, now or timezone.now())


def _advance_locked(run: ProcessRun, now: datetime) -> None:
    task_runs = list(run.task_runs.all())
    result = engine.step(run_state(run, task_runs), now)
    by_id = {tr.pk: tr for tr in task_runs}
    events: list[TaskEvent] = []
    # Readiness is decided under the run's lock, so one UPDATE serves a whole fan-out.
    ready = [a.attempt_id for a in result.actions if isinstance(a, engine.MarkReady)]
    if ready and TaskRun.objects.filter(pk__in=ready, status=AttemptStatus.WAITING).update(
        status=AttemptStatus.READY
    ):
        for attempt_id in ready:
            dispatch.after_commit(dispatch.SUBMIT, attempt_id)
    for action in result.actions:
        _apply(run, action, by_id, now, events)
    TaskEvent.objects.bulk_create(events)
    if run.status == RunStatus.RUNNING and run.wake_at != result.wake_at:
        ProcessRun.objects.filter(pk=run.pk).update(wake_at=result.wake_at)
        run.wake_at = result.wake_at


def _apply(
    run: ProcessRun,
    action: engine.Action,
    by_id: dict[int, TaskRun],
    now: datetime,
    events: list[TaskEvent],
) -> None:
    match action:
        case engine.MarkReady():
            pass  # applied in bulk by _advance_locked
        case engine.MarkSkipped(attempt_id=attempt_id, reason=reason):
            if _move(
                attempt_id,
                [AttemptStatus.WAITING],
                status=AttemptStatus.SKIPPED,
                reason=reason,
                finished_at=now,
            ):
                events.append(_new_event(run, by_id[attempt_id], "skipped", reason))
        case engine.Cancel(attempt_id=attempt_id, reason=reason):
            if _move(
                attempt_id,
                [AttemptStatus.WAITING, AttemptStatus.READY],
                status=AttemptStatus.KILLED,
                reason=reason,
                finished_at=now,
            ):
                events.append(_new_event(run, by_id[attempt_id], "cancelled", reason))
        case engine.Terminate(attempt_id=attempt_id, reason=reason, outcome=outcome):
            stopped = TaskRun.objects.filter(
                pk=attempt_id, status__in=_ACTIVE, terminate_requested_at__isnull=True
            ).update(terminate_requested_at=now, terminate_as=outcome, reason=reason)
            if stopped:
                events.append(_new_event(run, by_id[attempt_id], "terminating", reason))
                dispatch.after_commit(dispatch.TERMINATE, attempt_id)
        case engine.ScheduleRetry(
            task=task, round=round_, number=number, not_before=at, reason=reason
        ):
            previous = latest_attempt(by_id.values(), task)
            retry = TaskRun.objects.create(
                run=run,
                task_name=task,
                round=round_,
                attempt=number,
                executor=previous.executor,
                status=AttemptStatus.WAITING,
                not_before=at,
            )
            events.append(_new_event(run, retry, "retry_scheduled", reason))
            # Wake the run when the retry falls due; the sweep is the safety net.
            delay = max(0.0, (at - now).total_seconds())
            dispatch.after_commit(dispatch.ADVANCE, run.pk, countdown=delay)
        case engine.FinishRun(status=status, reason=reason):
            _finish_run(run, status, reason, now)
            events.append(_new_event(run, None, "finished", f"{status}: {reason}"))


def latest_attempt(task_runs: Iterable[TaskRun], task: str) -> TaskRun:
    """The latest attempt of one task among a run's attempts."""
    return max(
        (tr for tr in task_runs if tr.task_name == task), key=lambda tr: (tr.round, tr.attempt)
    )


def _move(attempt_id: int, expected: Sequence[str], **changes: Any) -> bool:
    """Conditional UPDATE: change the attempt only if it is still in an expected status."""
    return bool(TaskRun.objects.filter(pk=attempt_id, status__in=expected).update(**changes))


def _finish_run(run: ProcessRun, status: RunStatus, reason: str, now: datetime) -> None:
    ProcessRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
        status=status, reason=reason, finished_at=now, wake_at=None
    )
    run.status, run.reason, run.finished_at, run.wake_at = status, reason, now, None
    # Continuous schedules count their gap from the end of the previous run.
    gap = (
        ProcessDefinition.objects.filter(
            pk=run.definition_id, schedule_kind=ScheduleKind.CONTINUOUS
        )
        .values_list("min_gap_seconds", flat=True)
        .first()
    )
    if gap is not None:
        ProcessDefinition.objects.filter(pk=run.definition_id).update(
            next_fire_at=next_continuous(now, timedelta(seconds=gap), now)
        )
    dispatch.after_commit(dispatch.START_QUEUED, run.definition_id)


def request_kill(run_id: int, *, user: User | None = None, reason: str = "killed") -> bool:
    """Ask a queued or running run to stop; True if this call asked (not an earlier one)."""
    now = timezone.now()
    with transaction.atomic():
        asked = ProcessRun.objects.filter(
            pk=run_id, status__in=ACTIVE_RUN, kill_requested_at__isnull=True
        ).update(kill_requested_at=now, kill_requested_by=user)
        if not asked:
            return False
        run = ProcessRun.objects.get(pk=run_id)
        _event(run, None, "kill_requested", reason, user)
        # A queued run never started: it ends at once. A running one stops via the engine.
        ProcessRun.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
            status=RunStatus.KILLED, reason=reason, finished_at=now
        )
        advance_run(run_id, now)
    return True


def retry_failed_tasks(run_id: int, *, user: User | None = None) -> list[str]:
    """Rerun a finished run's failed tasks and everything downstream; keep its successes."""
    now = timezone.now()
    with transaction.atomic():
        run = ProcessRun.objects.select_for_update().get(pk=run_id)
        if run.status not in (RunStatus.FAILED, RunStatus.KILLED):
            raise TriggerError(
                f"run {run.pk} is {run.status}; only failed or killed runs can be retried"
            )
        task_runs = list(run.task_runs.all())
        names = engine.rerun_tasks(run_state(run, task_runs))
        next_round = max(tr.round for tr in task_runs) + 1
        executors = {e["name"]: e["executor"] for e in run.snapshot["tasks"]}
        TaskRun.objects.bulk_create(
            TaskRun(
                run=run,
                task_name=name,
                round=next_round,
                executor=executors[name],
                status=AttemptStatus.WAITING,
            )
            for name in names
        )
        ProcessRun.objects.filter(pk=run.pk).update(
            status=RunStatus.RUNNING,
            finished_at=None,
            kill_requested_at=None,
            kill_requested_by=None,
            reason="",
        )
        run.status, run.kill_requested_at = RunStatus.RUNNING, None
        who = f" by {user.get_username()}" if user else ""
        _event(run, None, "retry", f"retrying {', '.join(names)}{who}", user)
        _advance_locked(run, now)
    return names


# ---- attempts reporting back ----


def record_submission(task_run_id: int, external_id: str, log_ref: str, *, running: bool) -> None:
    """Save what the executor said; safe even if the attempt already finished meanwhile."""
    now = timezone.now()
    new_status = AttemptStatus.RUNNING if running else AttemptStatus.SUBMITTED
    TaskRun.objects.filter(pk=task_run_id).update(
        external_id=external_id,
        log_ref=log_ref,
        submitted_at=now,
        heartbeat_at=now,
        # A fast process can exit (and be recorded) before this UPDATE: keep its outcome.
        status=Case(
            When(status=AttemptStatus.SUBMITTING, then=Value(new_status)), default=F("status")
        ),
        started_at=Coalesce(F("started_at"), Value(now)) if running else F("started_at"),
    )


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as its executor (or a safety net) saw it."""

    task_run_id: int
    exit_code: int | None
    note: str = ""  # added to the reason, e.g. "lost: no heartbeat since 14:05:00 UTC"
    ended_at: datetime | None = None  # when the executor saw it end; default: now


def record_outcomes(outcomes: Sequence[Outcome]) -> None:
    """Finish attempts and advance their runs, one transaction per run."""
    by_run: dict[int, list[Outcome]] = defaultdict(list)
    run_of = dict(
        TaskRun.objects.filter(pk__in=[o.task_run_id for o in outcomes]).values_list("pk", "run_id")
    )
    for outcome in outcomes:
        if outcome.task_run_id in run_of:
            by_run[run_of[outcome.task_run_id]].append(outcome)
    for run_id, items in by_run.items():
        with transaction.atomic():
            now = timezone.now()
            run = ProcessRun.objects.select_for_update().get(pk=run_id)
            attempts = {
                tr.pk: tr for tr in run.task_runs.filter(pk__in=[o.task_run_id for o in items])
            }
            for outcome in items:
                _finish_attempt(run, attempts[outcome.task_run_id], outcome, now)
            if run.status == RunStatus.RUNNING:
                _advance_locked(run, now)


def _finish_attempt(run: ProcessRun, tr: TaskRun, outcome: Outcome, now: datetime) -> None:
    spec = task_spec(task_entry(run.snapshot, tr.task_name))
    terminated_as = AttemptStatus(tr.terminate_as) if tr.terminate_as else None
    status, reason = engine.attempt_outcome(
        spec, outcome.exit_code, tr.reported_success, terminated_as
    )
    if outcome.note:
        # With no exit code the note *is* the explanation ("lost: ..."), unless the
        # attempt was being stopped on purpose: then both matter.
        unexplained = outcome.exit_code is None and terminated_as is None
        reason = outcome.note if unexplained or not reason else f"{reason}; {outcome.note}"
    ended = outcome.ended_at or now
    finished = TaskRun.objects.filter(pk=tr.pk, status__in=_ACTIVE).update(
        status=status,
        exit_code=outcome.exit_code,
        reason=reason,
        finished_at=ended,
        started_at=Coalesce(F("started_at"), Value(ended)),
    )
    if finished:
        TaskEvent.objects.create(run=run, task_run=tr, kind=status, message=reason or status)


# ---- events ----


def _new_event(
    run: ProcessRun, tr: TaskRun | None, kind: str, message: str, actor: User | None = None
) -> TaskEvent:
    return TaskEvent(run=run, task_run=tr, kind=kind, message=message, actor=actor)


def _event(
    run: ProcessRun, tr: TaskRun | None, kind: str, message: str, actor: User | None = None
) -> None:
    _new_event(run, tr, kind, message, actor).save()
