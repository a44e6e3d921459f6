"""The shell around the engine: lock a run, ask the engine, apply its actions in one transaction.

Every state change is a conditional UPDATE (``... WHERE status = <expected>``), so a repeated
or late message changes nothing, on PostgreSQL and SQLite alike. Side effects (submitting,
terminating, enqueueing) happen only after the deciding transaction commits.

Lock order, everywhere: a definition's row, then a run's row, then attempt rows (attempts are
only ever locked by the conditional UPDATEs that change them). Nothing that holds a run's
lock touches its definition's row, so two transactions can never wait on each other in a
circle. Rows are locked FOR NO KEY UPDATE: PostgreSQL checks a deferred foreign key at
commit with a KEY SHARE lock on the parent row (a run updated twice in one transaction
checks its definition), which a plain FOR UPDATE on that parent would block, in the
reverse order.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.db.models import Case, Exists, F, OuterRef, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from executors.base import Submission
from jobs import dispatch, engine
from jobs.engine import (
    ACTIVE_ATTEMPT,
    PENDING_ATTEMPT,
    Attempt,
    AttemptStatus,
    OverlapPolicy,
    RunStatus,
)
from jobs.models import (
    ProcessDefinition,
    ProcessRun,
    RunEnding,
    ScheduleKind,
    TaskEvent,
    TaskRun,
    Trigger,
    User,
)
from jobs.schedule import next_continuous
from jobs.snapshot import (
    StoredAttempt,
    executor_kinds,
    load_attempts,
    run_state,
    subset_note,
    take_snapshot,
    task_entry,
    task_spec,
)

log = logging.getLogger(__name__)

ACTIVE_RUN = (RunStatus.QUEUED, RunStatus.RUNNING)
_ACTIVE = [s.value for s in ACTIVE_ATTEMPT]
_PENDING = [s.value for s in PENDING_ATTEMPT]
# An engine step whose actions collide with a change made outside the run's lock (a submit
# claiming a READY attempt) is taken again on fresh rows; each collision needs a concurrent
# claim, so a handful of tries is plenty, and the reconciler advances every run regardless.
_MAX_STEPS = 5


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
    only: Sequence[str] | None = None,
) -> ProcessRun:
    """Start, queue or skip a run per the overlap policy (the run records which).

    ``only`` runs a subset of the process's tasks (see ``take_snapshot``).
    """
    with transaction.atomic():
        # Locking the definition makes concurrent triggers decide overlap one at a time.
        definition = ProcessDefinition.objects.select_for_update(no_key=True).get(pk=definition.pk)
        if definition.archived:
            raise TriggerError(f"process {definition.name!r} is archived")
        if not definition.tasks.exists():
            raise TriggerError(f"process {definition.name!r} has no tasks")
        try:
            snapshot = take_snapshot(definition, only)
        except ValueError as exc:
            raise TriggerError(f"process {definition.name!r}: {exc}") from None
        decision = engine.decide_overlap(
            OverlapPolicy(definition.overlap), _active_runs(definition)
        )
        now = timezone.now()
        try:
            with transaction.atomic():
                run = ProcessRun.objects.create(
                    definition=definition,
                    snapshot=snapshot,
                    trigger=trigger,
                    triggered_by=user,
                    scheduled_for=scheduled_for,
                    parameters=parameters or {},
                    status=decision.start,
                    reason=decision.reason,
                    started_at=now if decision.start == RunStatus.RUNNING else None,
                    finished_at=now if decision.start == RunStatus.SKIPPED else None,
                )
        except IntegrityError:
            if scheduled_for is None:
                raise
            raise AlreadyScheduled(f"{definition.name} at {scheduled_for}") from None
        who = f" by {user.get_username()}" if user else ""
        message = "; ".join(
            filter(None, [f"{trigger}{who}", decision.reason, subset_note(snapshot)])
        )
        TaskEvent.objects.create(run=run, kind="triggered", message=message, actor=user)
        log.info("%s run %s: %s (%s)", definition.name, run.pk, run.status, trigger)
        _replace(decision.replace, user, f"replaced by run {run.pk}")
        if run.status == RunStatus.RUNNING:
            _start(run, now)
        elif run.status == RunStatus.QUEUED:
            # A replacing run waits for the runs it replaces to stop; if they already
            # have (nothing of theirs was active), it starts now.
            started = _start_next_queued(definition)
            if started is not None and started.pk == run.pk:
                run = started
    return run


def _active_runs(definition: ProcessDefinition) -> list[int]:
    """Ids of the definition's queued or running runs (its lock held by the caller)."""
    return list(
        definition.runs.filter(status__in=ACTIVE_RUN).order_by("id").values_list("pk", flat=True)
    )


def _replace(run_ids: Sequence[int], user: User | None, reason: str) -> None:
    for run_id in run_ids:
        request_kill(run_id, user=user, reason=reason)


def _start(run: ProcessRun, now: datetime) -> None:
    """Give every task its first attempt (a retry made its round already) and take a step."""
    if not run.task_runs.exists():
        TaskRun.objects.bulk_create(
            TaskRun(
                run=run, task_name=e["name"], executor=e["executor"], status=AttemptStatus.WAITING
            )
            for e in run.snapshot["tasks"]
        )
    _advance_locked(run, now)


def settle_definition(definition_id: int) -> ProcessRun | None:
    """After a run ended: start the oldest queued run, or time a continuous schedule's next run.

    Runs in its own transaction, never under a run's lock (see the lock order above).
    Returns the run it started, if any.
    """
    with transaction.atomic():
        definition = (
            ProcessDefinition.objects.select_for_update(no_key=True)
            .filter(pk=definition_id)
            .first()
        )
        if definition is None:
            return None
        started = _start_next_queued(definition)
        if definition.schedule_kind == ScheduleKind.CONTINUOUS and definition.next_fire_at is None:
            next_fire = continuous_next_fire(definition, timezone.now())
            if next_fire is not None:
                ProcessDefinition.objects.filter(pk=definition.pk, next_fire_at=None).update(
                    next_fire_at=next_fire
                )
        return started


def continuous_next_fire(definition: ProcessDefinition, now: datetime) -> datetime | None:
    """When a continuous process starts next: its gap after the last run ended; None while
    a run is active (its end decides) or while the process is paused or archived."""
    if definition.paused or definition.archived:
        return None
    if definition.runs.filter(status__in=ACTIVE_RUN).exists():
        return None
    last = (
        definition.runs.exclude(finished_at=None)
        .order_by("-finished_at")
        .values_list("finished_at", flat=True)
        .first()
    )
    return next_continuous(last, timedelta(seconds=definition.min_gap_seconds), now)


def _start_next_queued(definition: ProcessDefinition) -> ProcessRun | None:
    """Start the oldest queued run once none is running (the definition's lock held)."""
    if definition.runs.filter(status=RunStatus.RUNNING).exists():
        return None
    run = (
        ProcessRun.objects.select_for_update(no_key=True)
        .filter(definition=definition, status=RunStatus.QUEUED)
        .order_by("id")
        .first()
    )
    if run is None:
        return None
    now = timezone.now()
    # The run's lock is held, so this cannot miss: only this transaction changes it now.
    ProcessRun.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
        status=RunStatus.RUNNING, started_at=now
    )
    run.status, run.started_at = RunStatus.RUNNING, now
    TaskEvent.objects.create(run=run, kind="started", message="no other run is active now")
    _start(run, now)
    return run


def advance_run(run_id: int, now: datetime | None = None) -> None:
    """Lock the run, ask the engine what to do, and do it; a no-op for finished runs."""
    with transaction.atomic():
        # A blocking lock, not skip_locked: a skipped advance could miss the change that
        # caused it (the holder may have read the run before that change committed).
        run = ProcessRun.objects.select_for_update(no_key=True).filter(pk=run_id).first()
        if run is not None and run.status == RunStatus.RUNNING:
            _advance_locked(run, now or timezone.now())


def _advance_locked(
    run: ProcessRun,
    now: datetime,
    events: list[TaskEvent] | None = None,
    attempts: list[Attempt] | None = None,
    local_ready: list[int] | None = None,
) -> None:
    """Take engine steps for a run whose row this transaction has locked.

    Attempts made READY are sent to the broker after commit, except local ones when the
    caller passes ``local_ready``: those ids are appended for the caller to submit itself.
    """
    events = events if events is not None else []
    for _ in range(_MAX_STEPS):
        if attempts is None:
            attempts = [stored.attempt for stored in load_attempts(run)]
        result = engine.step(run_state(run, attempts), now)
        if _apply_step(run, attempts, result, now, events, local_ready):
            break
        # An attempt moved while we decided (a submit claimed a READY attempt a kill meant to
        # cancel): the step was made on stale rows, so decide again on fresh ones.
        attempts = None
    else:
        log.warning(
            "run %s: attempts kept changing under the engine; the reconciler retries", run.pk
        )
    TaskEvent.objects.bulk_create(events)
    if run.status == RunStatus.RUNNING and run.wake_at != result.wake_at:
        ProcessRun.objects.filter(pk=run.pk).update(wake_at=result.wake_at)
        run.wake_at = result.wake_at


def _apply_step(
    run: ProcessRun,
    attempts: Sequence[Attempt],
    result: engine.Step,
    now: datetime,
    events: list[TaskEvent],
    local_ready: list[int] | None,
) -> bool:
    """Apply one step's actions; False if any found its attempt changed (then the run is
    left unfinished, and the caller steps again)."""
    in_step = True
    # Readiness is decided under the run's lock, so one UPDATE serves a whole fan-out.
    ready = [a.attempt_id for a in result.actions if isinstance(a, engine.MarkReady)]
    if ready:
        in_step = _mark_ready(run, attempts, ready, local_ready)
    for action in result.actions:
        if isinstance(action, engine.FinishRun) and not in_step:
            break  # never finish a run on a view that turned out to be stale
        in_step = _apply(run, action, now, events) and in_step
    return in_step


def _mark_ready(
    run: ProcessRun, attempts: Sequence[Attempt], ready: list[int], local_ready: list[int] | None
) -> bool:
    marked = TaskRun.objects.filter(pk__in=ready, status=AttemptStatus.WAITING).update(
        status=AttemptStatus.READY
    )
    task_of = {a.id: a.task for a in attempts}
    kinds = executor_kinds(run.snapshot)  # one map, not a scan per task of a fan-out
    for attempt_id in ready:
        if local_ready is not None and kinds[task_of[attempt_id]] == "local":
            local_ready.append(attempt_id)
        else:
            dispatch.after_commit(dispatch.SUBMIT, attempt_id)
    return marked == len(ready)


def _apply(run: ProcessRun, action: engine.Action, now: datetime, events: list[TaskEvent]) -> bool:
    """Apply one action; False if its conditional UPDATE found the attempt changed."""
    match action:
        case engine.MarkReady():
            return True  # applied in bulk by _mark_ready
        case engine.MarkSkipped(attempt_id=attempt_id, reason=reason):
            if not _move(
                attempt_id,
                [AttemptStatus.WAITING],
                status=AttemptStatus.SKIPPED,
                reason=reason,
                finished_at=now,
            ):
                return False
            events.append(
                TaskEvent(run=run, task_run_id=attempt_id, kind="skipped", message=reason)
            )
        case engine.Cancel(attempt_id=attempt_id, reason=reason):
            # 0 rows: a submit claimed the attempt after we read it; the next step stops it.
            if not _move(
                attempt_id,
                _PENDING,
                status=AttemptStatus.KILLED,
                reason=reason,
                finished_at=now,
            ):
                return False
            events.append(
                TaskEvent(run=run, task_run_id=attempt_id, kind="cancelled", message=reason)
            )
        case engine.Terminate(attempt_id=attempt_id, reason=reason, outcome=outcome):
            if not request_stop(attempt_id, outcome, reason, now):
                return False  # back to READY (its submit failed for now): cancel it instead
            events.append(
                TaskEvent(run=run, task_run_id=attempt_id, kind="terminating", message=reason)
            )
            dispatch.after_commit(dispatch.TERMINATE, attempt_id)
        case engine.ScheduleRetry(
            task=task,
            round=round_,
            number=number,
            not_before=at,
            reason=reason,
            memory_mib=memory_mib,
        ):
            retry = TaskRun.objects.create(
                run=run,
                task_name=task,
                round=round_,
                number=number,
                executor=task_entry(run.snapshot, task)["executor"],
                status=AttemptStatus.WAITING,
                not_before=at,
                memory_mib=memory_mib,
            )
            events.append(
                TaskEvent(run=run, task_run=retry, kind="retry_scheduled", message=reason)
            )
            # Wake the run when the retry falls due; the sweep is the safety net.
            delay = max(0.0, (at - now).total_seconds())
            dispatch.after_commit(dispatch.ADVANCE, run.pk, countdown=delay)
        case engine.FinishRun(status=status, reason=reason):
            if not _finish_run(run, status, reason, now):
                return False
            events.append(
                TaskEvent(run=run, kind="finished", message=finished_message(status, reason))
            )
    return True


def finished_message(status: RunStatus, reason: str) -> str:
    """A run's "finished" event: its status, then its reason, unless the reason already says
    it ("failed: publish", "killed by admin", "all tasks succeeded")."""
    if re.search(rf"\b{re.escape(status)}\b", reason):
        return reason
    return f"{status}: {reason}" if reason else str(status)


def request_stop(attempt_id: int, outcome: AttemptStatus, reason: str, now: datetime) -> bool:
    """Mark an active attempt to be stopped, ending as ``outcome`` with ``reason``.

    False if it is no longer active or already being stopped. Whoever can reach the job
    carries the request out (the executor call, or the local process's owner on its tick).
    """
    return bool(
        TaskRun.objects.filter(
            pk=attempt_id, status__in=_ACTIVE, stop_requested_at__isnull=True
        ).update(stop_requested_at=now, stop_as=outcome, stop_reason=reason)
    )


def _move(attempt_id: int, expected: Sequence[str], **changes: Any) -> bool:
    """Conditional UPDATE: change the attempt only if it is still in an expected status."""
    return bool(TaskRun.objects.filter(pk=attempt_id, status__in=expected).update(**changes))


def _finish_run(run: ProcessRun, status: RunStatus, reason: str, now: datetime) -> bool:
    """End the run, unless one of its attempts is active after all (then False)."""
    active = TaskRun.objects.filter(run=OuterRef("pk"), status__in=_ACTIVE)
    if not (
        ProcessRun.objects.filter(pk=run.pk, status=RunStatus.RUNNING)
        .exclude(Exists(active))
        .update(status=status, reason=reason, finished_at=now, wake_at=None)
    ):
        return False
    run.status, run.reason, run.finished_at, run.wake_at = status, reason, now, None
    log.info("%s run %s: %s (%s)", run.snapshot["process"]["name"], run.pk, status, reason)
    # Queued runs and continuous schedules wait for this one; deciding for them locks the
    # definition, which must not happen under this run's lock.
    dispatch.after_commit(dispatch.SETTLE, run.definition_id)
    _record_ending(run, status, reason, now)
    return True


# The key of the transaction-scoped advisory lock that orders one process's endings.
ENDING_LOCK = 0x53554E44  # "SUND"


def _record_ending(run: ProcessRun, status: RunStatus, reason: str, now: datetime) -> None:
    """Keep the ending in the transaction that made it, and tell whoever reacts to endings
    once it commits (the database keeps it for them if that message is lost).

    A process's endings commit in the order of their ids: two runs of one process ending
    at once take turns on a transaction-scoped advisory lock (PostgreSQL; SQLite has one
    writer at a time anyway). Otherwise the later ending could be noticed before the
    earlier one is visible, and "N failures in a row" would miss one. It is taken last,
    after the run's own lock, and held only to the commit; nothing waits for a run's lock
    while holding it, so it adds no deadlock."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [ENDING_LOCK, run.definition_id])
    RunEnding.objects.create(
        run=run, definition_id=run.definition_id, status=status, reason=reason, at=now
    )
    dispatch.after_commit(dispatch.NOTICE, run.pk)


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
        # A queued run never started: it ends at once (with a queued retry's new round).
        # A running one stops via the engine.
        if ProcessRun.objects.filter(pk=run_id, status=RunStatus.QUEUED).update(
            status=RunStatus.KILLED, reason=reason, finished_at=now
        ):
            pending = list(run.task_runs.filter(status__in=_PENDING).values_list("pk", flat=True))
            TaskRun.objects.filter(pk__in=pending, status__in=_PENDING).update(
                status=AttemptStatus.KILLED, reason=reason, finished_at=now
            )
            TaskEvent.objects.bulk_create(
                [
                    *(
                        TaskEvent(run=run, task_run_id=pk, kind="cancelled", message=reason)
                        for pk in pending
                    ),
                    TaskEvent(
                        run=run,
                        kind="finished",
                        message=finished_message(RunStatus.KILLED, reason),
                    ),
                ]
            )
            _record_ending(run, RunStatus.KILLED, reason, now)
        advance_run(run_id, now)
    return True


def retry_failed_tasks(run_id: int, *, user: User | None = None) -> list[str]:
    """Rerun a finished run's failed tasks and everything downstream; keep its successes."""
    now = timezone.now()
    with transaction.atomic():
        run = ProcessRun.objects.get(pk=run_id)
        definition = ProcessDefinition.objects.select_for_update(no_key=True).get(
            pk=run.definition_id
        )
        run = ProcessRun.objects.select_for_update(no_key=True).get(pk=run_id)
        if run.status not in (RunStatus.FAILED, RunStatus.KILLED):
            raise TriggerError(
                f"run {run.pk} is {run.status}; only failed or killed runs can be retried"
            )
        # A retried run becomes active again, so the overlap policy has its say.
        decision = engine.decide_overlap(
            OverlapPolicy(definition.overlap), _active_runs(definition)
        )
        if decision.start == RunStatus.SKIPPED:
            raise TriggerError(f"run {run.pk} cannot be retried now: {decision.reason}")
        status = decision.start
        state = run_state(run, [stored.attempt for stored in load_attempts(run)])
        if state.attempts:
            names = engine.rerun_tasks(state)
            next_round = max(a.round for a in state.attempts) + 1
            # A task that ran out of memory would only do so again with what it had.
            memory = engine.next_round_memory(state)
        else:  # killed while queued: it never started, so all of it runs
            names = [spec.name for spec in state.tasks]
            next_round = 1
            memory = {}
        kinds = executor_kinds(run.snapshot)
        TaskRun.objects.bulk_create(
            TaskRun(
                run=run,
                task_name=name,
                round=next_round,
                executor=kinds[name],
                status=AttemptStatus.WAITING,
                memory_mib=memory.get(name),
            )
            for name in names
        )
        # The run starts over: its clock (and so a run time limit) counts from now.
        ProcessRun.objects.filter(pk=run.pk).update(
            status=status,
            started_at=now if status == RunStatus.RUNNING else None,
            finished_at=None,
            kill_requested_at=None,
            kill_requested_by=None,
            reason="" if status == RunStatus.RUNNING else decision.reason,
        )
        run.status, run.kill_requested_at, run.started_at = status, None, now
        who = f" by {user.get_username()}" if user else ""
        TaskEvent.objects.create(
            run=run, kind="retry", message=f"retrying {', '.join(names)}{who}", actor=user
        )
        _replace(decision.replace, user, f"replaced by the retry of run {run.pk}")
        if status == RunStatus.RUNNING:
            _advance_locked(run, now)
        else:
            _start_next_queued(definition)
    return names


def rerun_on_current_definition(run_id: int, *, user: User | None = None) -> ProcessRun:
    """A new run, of the process as it is now, for a finished run's failed tasks and
    everything downstream of them: how a fix made in the admin after the failure is picked
    up (``retry_failed_tasks`` reruns the run's frozen definition). The tasks that
    succeeded count as done; tasks removed from the process since are left out.
    """
    run = ProcessRun.objects.select_related("definition").get(pk=run_id)
    if run.status not in (RunStatus.FAILED, RunStatus.KILLED):
        raise TriggerError(
            f"run {run.pk} is {run.status}; only failed or killed runs can be retried"
        )
    state = run_state(run, [stored.attempt for stored in load_attempts(run)])
    wanted = engine.rerun_tasks(state) if state.attempts else [t.name for t in state.tasks]
    current = set(run.definition.tasks.values_list("name", flat=True))
    kept = [name for name in wanted if name in current]
    if not kept:
        raise TriggerError(
            f"none of the tasks to retry ({', '.join(wanted)}) is in the process any more"
        )
    return trigger_run(
        run.definition, Trigger.MANUAL, user=user, parameters=run.parameters, only=kept
    )


# ---- attempts reporting back ----


def record_submission(task_run_id: int, submission: Submission, *, running: bool) -> bool:
    """Save what the executor said; True if the job must be stopped (the caller must act).

    That is when a stop was asked meanwhile, or when the attempt is no longer the submitting
    one: recovery gave it up while this submit was stalled (its retry may be running now),
    or its job already ended (then stopping it again is a no-op).
    """
    now = timezone.now()
    new_status = AttemptStatus.RUNNING if running else AttemptStatus.SUBMITTED
    fields = {
        "external_id": submission.external_id,
        "log_ref": submission.log_ref,
        "resources": dict(submission.resources),
        "submitted_at": now,
        "heartbeat_at": now,
        # A fast process can exit (and be recorded) before this UPDATE: keep its outcome.
        "status": Case(
            When(status=AttemptStatus.SUBMITTING, then=Value(new_status)), default=F("status")
        ),
        "started_at": Coalesce(F("started_at"), Value(now)) if running else F("started_at"),
    }
    attempt = TaskRun.objects.filter(pk=task_run_id)
    # The common case costs one statement; only a concurrent change needs the second.
    if attempt.filter(status=AttemptStatus.SUBMITTING, stop_requested_at__isnull=True).update(
        **fields
    ):
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
    started_at: datetime | None = None  # when the executor saw it start, if it says
    out_of_memory: bool = False  # as the executor classified it (Status.out_of_memory)
    permanent: bool = False  # as the executor classified it: a retry cannot help


def record_outcomes(outcomes: Sequence[Outcome], *, continue_locally: bool = False) -> list[int]:
    """Finish attempts and advance their runs, one transaction per run.

    With ``continue_locally`` the local attempts this makes READY are not sent to the broker
    but returned, committed, for the caller to submit itself (the local runtime does, saving
    a broker round trip per hand-off); otherwise the list is empty.
    """
    by_run: dict[int, list[Outcome]] = defaultdict(list)
    for outcome in outcomes:
        by_run[outcome.run_id].append(outcome)
    local_ready: list[int] = []
    for run_id, items in by_run.items():
        with transaction.atomic():
            now = timezone.now()
            run = ProcessRun.objects.select_for_update(no_key=True).filter(pk=run_id).first()
            if run is None:
                continue  # deleted meanwhile: nothing is left to record on
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
                _advance_locked(
                    run,
                    now,
                    events,
                    [s.attempt for s in stored.values()],
                    local_ready if continue_locally else None,
                )
            else:
                TaskEvent.objects.bulk_create(events)
    return local_ready


def _finish_attempt(
    run: ProcessRun, stored: StoredAttempt, outcome: Outcome, now: datetime, events: list[TaskEvent]
) -> Attempt:
    """End one attempt (if it is still active); returns the attempt as it now stands."""
    attempt = stored.attempt
    spec = task_spec(task_entry(run.snapshot, attempt.task))
    terminated_as = AttemptStatus(stored.stop_as) if stored.stop_as else None
    status, reason = engine.attempt_outcome(
        spec,
        outcome.exit_code,
        stored.reported_success,
        terminated_as,
        attempt.stop_reason or "",
    )
    if outcome.note:
        # With no exit code the note *is* the explanation ("lost: ..."), unless the
        # attempt was being stopped on purpose: then both matter.
        unexplained = outcome.exit_code is None and terminated_as is None
        reason = outcome.note if unexplained or not reason else f"{reason}; {outcome.note}"
    ended = outcome.ended_at or now
    # A job that started and ended between two polls was never seen running: its start is
    # the executor's word, else its end (it ran for no time we know of).
    started = attempt.started_at or outcome.started_at or ended
    # Conditional: a repeated report (or a late one for a finished attempt) changes nothing.
    if not TaskRun.objects.filter(pk=attempt.id, status__in=_ACTIVE).update(
        status=status,
        exit_code=outcome.exit_code,
        reason=reason,
        out_of_memory=outcome.out_of_memory,
        permanent=outcome.permanent,
        finished_at=ended,
        started_at=Coalesce(F("started_at"), Value(started)),
    ):
        return attempt
    finished = replace(
        attempt,
        status=status,
        finished_at=ended,
        started_at=started,
        exit_code=outcome.exit_code,
        reason=reason,
        out_of_memory=outcome.out_of_memory,
        permanent=outcome.permanent,
    )
    # The trail says why attempts left unused stay unused; the reason stays how it ended,
    # which is what retry rules read.
    message = "; ".join(filter(None, [reason, engine.not_retried_because(spec, finished)]))
    events.append(
        TaskEvent(run=run, task_run_id=attempt.id, kind=status, message=message or status)
    )
    return finished
