"""The shell around the engine: lock a run, ask the engine, apply its actions in one transaction.

Every state change is a conditional UPDATE (``... WHERE status = <expected>``), so a repeated
or late message changes nothing, on PostgreSQL and SQLite alike. Side effects (submitting,
terminating, enqueueing) happen only after the deciding transaction commits.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Case, F, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from jobs import dispatch, engine
from jobs.engine import ACTIVE_ATTEMPT, Attempt, AttemptStatus, OverlapPolicy, RunStatus
from jobs.models import ProcessDefinition, ProcessRun, ScheduleKind, TaskEvent, TaskRun, User
from jobs.schedule import next_continuous
from jobs.snapshot import (
    StoredAttempt,
    executor_kinds,
    load_attempts,
    run_state,
    take_snapshot,
    task_entry,
    task_spec,
)

log = logging.getLogger(__name__)

ACTIVE_RUN = (RunStatus.QUEUED, RunStatus.RUNNING)
_ACTIVE = [s.value for s in ACTIVE_ATTEMPT]


class TriggerError(Exception):
    """A run cannot be started; the message says why, for a person."""


class AlreadyScheduled(Exception):
    """This definition already has its run for this cron time (another tick or beat made it)."""


def trigger_run(
    definition: ProcessDefinition,
    trigger: str,
    *,
    user: User | None = None,
    scheduled_for: datetime | None = None,
    parameters: dict[str, Any] | None = None,
) -> ProcessRun:
    """Start, queue or skip a run per the overlap policy (the run records which)."""
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
            raise AlreadyScheduled(f"{definition.name} at {scheduled_for}") from None
        who = f" by {user.get_username()}" if user else ""
        TaskEvent.objects.create(
            run=run, kind="triggered", message=f"{trigger}{who}; {decision.reason}", actor=user
        )
        log.info("%s run %s: %s (%s)", definition.name, run.pk, run.status, trigger)
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
        TaskEvent.objects.create(run=run, kind="started", message="the run ahead has finished")
        return run


def advance_run(run_id: int, now: datetime | None = None) -> None:
    """Lock the run, ask the engine what to do, and do it; a no-op for finished runs."""
    with transaction.atomic():
        # A blocking lock, not skip_locked: a skipped advance could miss the change that
        # caused it (the holder may have read the run before that change committed).
        run = ProcessRun.objects.select_for_update().filter(pk=run_id).first()
        if run is not None and run.status == RunStatus.RUNNING:
            _advance_locked(run, now or timezone.now())


def _advance_locked(
    run: ProcessRun,
    now: datetime,
    events: list[TaskEvent] | None = None,
    attempts: list[Attempt] | None = None,
) -> None:
    """Take one engine step for a run whose row this transaction has locked."""
    if attempts is None:
        attempts = [stored.attempt for stored in load_attempts(run)]
    state = run_state(run, attempts)
    result = engine.step(state, now)
    events = events if events is not None else []
    # Readiness is decided under the run's lock, so one UPDATE serves a whole fan-out.
    ready = [a.attempt_id for a in result.actions if isinstance(a, engine.MarkReady)]
    if ready and TaskRun.objects.filter(pk__in=ready, status=AttemptStatus.WAITING).update(
        status=AttemptStatus.READY
    ):
        task_of = {a.id: a.task for a in state.attempts}
        kinds = executor_kinds(run.snapshot)  # one map, not a scan per task of a fan-out
        for attempt_id in ready:
            dispatch.submit_after_commit(attempt_id, local=kinds[task_of[attempt_id]] == "local")
    for action in result.actions:
        _apply(run, action, now, events)
    TaskEvent.objects.bulk_create(events)
    if run.status == RunStatus.RUNNING and run.wake_at != result.wake_at:
        ProcessRun.objects.filter(pk=run.pk).update(wake_at=result.wake_at)
        run.wake_at = result.wake_at


def _apply(run: ProcessRun, action: engine.Action, now: datetime, events: list[TaskEvent]) -> None:
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
                events.append(
                    TaskEvent(run=run, task_run_id=attempt_id, kind="skipped", message=reason)
                )
        case engine.Cancel(attempt_id=attempt_id, reason=reason):
            if _move(
                attempt_id,
                [AttemptStatus.WAITING, AttemptStatus.READY],
                status=AttemptStatus.KILLED,
                reason=reason,
                finished_at=now,
            ):
                events.append(
                    TaskEvent(run=run, task_run_id=attempt_id, kind="cancelled", message=reason)
                )
        case engine.Terminate(attempt_id=attempt_id, reason=reason, outcome=outcome):
            stopped = TaskRun.objects.filter(
                pk=attempt_id, status__in=_ACTIVE, terminate_requested_at__isnull=True
            ).update(terminate_requested_at=now, terminate_as=outcome, reason=reason)
            if stopped:
                events.append(
                    TaskEvent(run=run, task_run_id=attempt_id, kind="terminating", message=reason)
                )
                dispatch.after_commit(dispatch.TERMINATE, attempt_id)
        case engine.ScheduleRetry(
            task=task, round=round_, number=number, not_before=at, reason=reason
        ):
            retry = TaskRun.objects.create(
                run=run,
                task_name=task,
                round=round_,
                attempt=number,
                executor=task_entry(run.snapshot, task)["executor"],
                status=AttemptStatus.WAITING,
                not_before=at,
            )
            events.append(
                TaskEvent(run=run, task_run=retry, kind="retry_scheduled", message=reason)
            )
            # Wake the run when the retry falls due; the sweep is the safety net.
            delay = max(0.0, (at - now).total_seconds())
            dispatch.after_commit(dispatch.ADVANCE, run.pk, countdown=delay)
        case engine.FinishRun(status=status, reason=reason):
            _finish_run(run, status, reason, now)
            events.append(TaskEvent(run=run, kind="finished", message=f"{status}: {reason}"))


def _move(attempt_id: int, expected: Sequence[str], **changes: Any) -> bool:
    """Conditional UPDATE: change the attempt only if it is still in an expected status."""
    return bool(TaskRun.objects.filter(pk=attempt_id, status__in=expected).update(**changes))


def _finish_run(run: ProcessRun, status: RunStatus, reason: str, now: datetime) -> None:
    ProcessRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
        status=status, reason=reason, finished_at=now, wake_at=None
    )
    run.status, run.reason, run.finished_at, run.wake_at = status, reason, now, None
    log.info("%s run %s: %s (%s)", run.snapshot["process"]["name"], run.pk, status, reason)
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
        TaskEvent.objects.create(run=run, kind="kill_requested", message=reason, actor=user)
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
        # Definition, then run: the lock order trigger_run uses, so the two never deadlock.
        run = ProcessRun.objects.get(pk=run_id)
        definition = ProcessDefinition.objects.select_for_update().get(pk=run.definition_id)
        run = ProcessRun.objects.select_for_update().get(pk=run_id)
        if run.status not in (RunStatus.FAILED, RunStatus.KILLED):
            raise TriggerError(
                f"run {run.pk} is {run.status}; only failed or killed runs can be retried"
            )
        # A retried run becomes active again, so the overlap policy has its say.
        others = list(
            definition.runs.filter(status__in=ACTIVE_RUN)
            .order_by("id")
            .values_list("pk", flat=True)
        )
        decision = engine.decide_overlap(OverlapPolicy(definition.overlap), others)
        if decision.start != RunStatus.RUNNING:
            raise TriggerError(f"run {run.pk} cannot be retried now: {decision.reason}")
        for replaced_id in decision.replace:
            request_kill(replaced_id, user=user, reason=f"replaced by the retry of run {run.pk}")
        state = run_state(run, [stored.attempt for stored in load_attempts(run)])
        names = engine.rerun_tasks(state)
        next_round = max(a.round for a in state.attempts) + 1
        kinds = executor_kinds(run.snapshot)
        TaskRun.objects.bulk_create(
            TaskRun(
                run=run,
                task_name=name,
                round=next_round,
                executor=kinds[name],
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
        TaskEvent.objects.create(
            run=run, kind="retry", message=f"retrying {', '.join(names)}{who}", actor=user
        )
        _advance_locked(run, now)
    return names


# ---- attempts reporting back ----


def record_submission(task_run_id: int, external_id: str, log_ref: str, *, running: bool) -> bool:
    """Save what the executor said; True if a stop was asked meanwhile (the caller must act)."""
    now = timezone.now()
    new_status = AttemptStatus.RUNNING if running else AttemptStatus.SUBMITTED
    fields = {
        "external_id": external_id,
        "log_ref": log_ref,
        "submitted_at": now,
        "heartbeat_at": now,
        # A fast process can exit (and be recorded) before this UPDATE: keep its outcome.
        "status": Case(
            When(status=AttemptStatus.SUBMITTING, then=Value(new_status)), default=F("status")
        ),
        "started_at": Coalesce(F("started_at"), Value(now)) if running else F("started_at"),
    }
    attempt = TaskRun.objects.filter(pk=task_run_id)
    # The common case costs one statement; only a concurrent kill needs the second.
    if attempt.filter(terminate_requested_at__isnull=True).update(**fields):
        return False
    attempt.update(**fields)
    return True


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as its executor (or a safety net) saw it."""

    task_run_id: int
    run_id: int
    exit_code: int | None
    note: str = ""  # added to the reason, e.g. "lost: no heartbeat since 14:05:00 UTC"
    ended_at: datetime | None = None  # when the executor saw it end; default: now


def record_outcomes(outcomes: Sequence[Outcome]) -> None:
    """Finish attempts and advance their runs, one transaction per run."""
    by_run: dict[int, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_run[outcome.run_id].append(outcome)
    for run_id, items in by_run.items():
        with transaction.atomic():
            now = timezone.now()
            run = ProcessRun.objects.select_for_update().get(pk=run_id)
            # One read serves both finishing the attempts and the engine's next step.
            stored = {s.attempt.id: s for s in load_attempts(run)}
            events: list[TaskEvent] = []
            for outcome in items:
                if outcome.task_run_id in stored:
                    finished = _finish_attempt(
                        run, stored[outcome.task_run_id], outcome, now, events
                    )
                    stored[outcome.task_run_id] = stored[outcome.task_run_id]._replace(
                        attempt=finished
                    )
            if run.status == RunStatus.RUNNING:
                _advance_locked(run, now, events, [s.attempt for s in stored.values()])
            else:
                TaskEvent.objects.bulk_create(events)


def _finish_attempt(
    run: ProcessRun, stored: StoredAttempt, outcome: Outcome, now: datetime, events: list[TaskEvent]
) -> Attempt:
    """End one attempt (if it is still active); returns the attempt as it now stands."""
    attempt = stored.attempt
    spec = task_spec(task_entry(run.snapshot, attempt.task))
    terminated_as = AttemptStatus(stored.terminate_as) if stored.terminate_as else None
    status, reason = engine.attempt_outcome(
        spec,
        outcome.exit_code,
        stored.reported_success,
        terminated_as,
        attempt.terminate_reason or "",
    )
    if outcome.note:
        # With no exit code the note *is* the explanation ("lost: ..."), unless the
        # attempt was being stopped on purpose: then both matter.
        unexplained = outcome.exit_code is None and terminated_as is None
        reason = outcome.note if unexplained or not reason else f"{reason}; {outcome.note}"
    ended = outcome.ended_at or now
    started = attempt.started_at or ended
    # Conditional: a repeated report (or a late one for a finished attempt) changes nothing.
    if not TaskRun.objects.filter(pk=attempt.id, status__in=_ACTIVE).update(
        status=status,
        exit_code=outcome.exit_code,
        reason=reason,
        finished_at=ended,
        started_at=Coalesce(F("started_at"), Value(ended)),
    ):
        return attempt
    events.append(TaskEvent(run=run, task_run_id=attempt.id, kind=status, message=reason or status))
    return replace(attempt, status=status, finished_at=ended, started_at=started)
