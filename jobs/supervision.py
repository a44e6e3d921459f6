"""Periodic safety nets: deadlines, lost processes, lost messages, executor polling.

Each function does one sweep and returns how much it did, so tests call it once. The
database says what is due; these re-derive work from it, so a lost or repeated Celery
message never loses or duplicates anything.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from executors.base import ExecutorError, IncompleteStatuses, State, Status
from executors.config import ConfigError
from executors.registry import executor_for
from jobs import dispatch, orchestrator
from jobs.engine import ACTIVE_ATTEMPT, AttemptStatus, RunStatus
from jobs.local_runtime import local_runtime
from jobs.models import ProcessDefinition, ProcessRun, ScheduleKind, TaskEvent, TaskRun
from jobs.submission import HOST, after_submit, fail_unstarted, launch_for

log = logging.getLogger(__name__)

POLL_BATCH = 100  # DescribeJobs / DescribeTasks take at most 100 ids per call
PLACEMENT_LIMIT = TaskRun._meta.get_field("placement").max_length
EXECUTOR_STATE_LIMIT = TaskRun._meta.get_field("executor_state").max_length


def advance_due_runs() -> int:
    """Advance runs whose wake-up time has passed (retries falling due, time limits)."""
    due = list(
        ProcessRun.objects.filter(
            status=RunStatus.RUNNING, wake_at__lte=timezone.now()
        ).values_list("pk", flat=True)
    )
    for run_id in due:
        orchestrator.advance_run(run_id)
    return len(due)


def stop_lost_local_attempts() -> int:
    """Local attempts whose heartbeat stopped (their worker died): stop the orphan, then fail.

    An attempt ends only once its process is known to be gone, so its retry never runs beside
    it: an orphan on this host is stopped here (SIGTERM, grace, SIGKILL) and its attempt ends
    when the process has; one on another host is left to a sweep on that host, and given up
    on (saying so) after SUNDIAL_ORPHAN_UNREACHABLE_AFTER_S.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.SUNDIAL_LOST_AFTER_S)
    lost = list(
        TaskRun.objects.filter(
            executor="local", status__in=[AttemptStatus.SUBMITTED, AttemptStatus.RUNNING]
        )
        .filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, submitted_at__lt=cutoff))
        .values_list("pk", "run_id", "heartbeat_at", "submitted_at", "external_id", "worker_host")
    )
    if not lost:
        return 0
    local = local_runtime()
    give_up = cutoff - timedelta(seconds=settings.SUNDIAL_ORPHAN_UNREACHABLE_AFTER_S)
    unreachable = []
    for pk, run_id, heartbeat, submitted, external_id, host in lost:
        note = _lost_note(heartbeat)
        # Said at once, so the page reads "stopping: lost: ..." while the process is stopped.
        if orchestrator.request_stop(pk, AttemptStatus.FAILED, note, now):
            TaskEvent.objects.create(run_id=run_id, task_run_id=pk, kind="lost", message=note)
        if local.runs_here(external_id):
            local.stop_orphan(pk, run_id, external_id, note)
        elif (heartbeat or submitted) < give_up:
            unreachable.append(
                orchestrator.Outcome(
                    pk,
                    run_id,
                    None,
                    f"its process on host {host or '?'} could not be stopped from here"
                    " and may still be running",
                )
            )
    orchestrator.record_outcomes(unreachable)
    return len(lost)


def stop_strays_here() -> int:
    """Stop processes on this host that still run for a lost attempt that has ended.

    A lost process on a host whose workers were all gone is given up on after a while (its
    attempt fails, saying it may still run, and is retried); when a worker is back on that
    host, this finds the process and stops it. Only lost attempts of the last day are
    looked at: few, and each costs one read of /proc.
    """
    since = timezone.now() - timedelta(days=1)
    ended = list(
        TaskRun.objects.filter(
            executor="local",
            worker_host=HOST,
            stop_as=AttemptStatus.FAILED,
            finished_at__gte=since,
        )
        .exclude(status__in=list(ACTIVE_ATTEMPT))
        .exclude(external_id="")
        .values_list("external_id", flat=True)
    )
    if not ended:
        return 0
    local = local_runtime()
    strays = [eid for eid, st in local.statuses(ended).items() if st.state == State.RUNNING]
    for external_id in strays:
        local.stop_stray(external_id)
    return len(strays)


def _lost_note(heartbeat: datetime | None) -> str:
    since = f"since {heartbeat:%H:%M:%S} UTC" if heartbeat else "ever"
    return f"lost: no heartbeat {since} (its worker stopped)"


def recover_stuck_submissions() -> int:
    """Attempts left in SUBMITTING by a dead worker: adopt the job if it started, else fail it.

    A fresh heartbeat means a live worker answers for the attempt (it started the process,
    or holds its exit, and only failed to record the submission): its process is adopted if
    found, and the attempt is otherwise left to that worker. A local process whose worker is
    gone has nobody to report its exit, so it is taken as lost (and so stopped before its
    attempt ends). Local processes are looked up only on their worker's host.
    """
    now = timezone.now()
    cutoff = now - timedelta(seconds=settings.SUNDIAL_SUBMIT_STUCK_AFTER_S)
    give_up = cutoff - timedelta(seconds=settings.SUNDIAL_ORPHAN_UNREACHABLE_AFTER_S)
    alive = now - timedelta(seconds=settings.SUNDIAL_LOST_AFTER_S)
    recovered = 0
    for task_run in TaskRun.objects.select_related("run").filter(
        status=AttemptStatus.SUBMITTING, submitting_at__lt=cutoff
    ):
        answered_for = task_run.heartbeat_at is not None and task_run.heartbeat_at >= alive
        try:
            executor = executor_for(task_run.executor)
            # (An attempt claimed before hosts were recorded has none: it is looked up here.)
            elsewhere = executor.runs_on_submit and task_run.worker_host not in ("", HOST)
            found = None if elsewhere else executor.find(launch_for(task_run))
        except ExecutorError as exc:
            log.warning("cannot look up %s: %s", task_run.idempotency_key, exc.message)
            # Asking again may help (throttling, the network); if the executor refuses for
            # good (no permission to look), the attempt is given up on like an unreachable
            # host's, saying what could not be checked, rather than held forever.
            if exc.permanent and _given_up(task_run, give_up):
                fail_unstarted(
                    task_run,
                    f"lost while submitting (its worker stopped); a job it may have started"
                    f" could not be looked up: {exc.message}",
                )
                recovered += 1
            continue
        except ConfigError:
            found = None  # its submit refused the same config: nothing was started
        if found is None and answered_for:
            continue  # its worker holds it: running elsewhere, or its exit not yet recorded
        if elsewhere:
            if _given_up(task_run, give_up):
                fail_unstarted(
                    task_run,
                    f"lost while submitting on host {task_run.worker_host} (its worker stopped);"
                    " a process it may have started there could not be checked",
                )
                recovered += 1
            continue  # a sweep on that host looks first
        if found is None:
            fail_unstarted(task_run, "lost while submitting (its worker stopped)")
        elif executor.runs_on_submit:
            # Recorded as running with its last sign of life: if its worker lives its
            # heartbeats go on and it finishes as usual; if not, the lost-attempt sweep
            # stops it and fails the attempt once it is gone.
            TaskRun.objects.filter(pk=task_run.pk, status=AttemptStatus.SUBMITTING).update(
                status=AttemptStatus.RUNNING,
                external_id=found.external_id,
                log_ref=found.log_ref,
                submitted_at=task_run.submitting_at,
                started_at=task_run.submitting_at,
                heartbeat_at=Coalesce(F("heartbeat_at"), Value(task_run.submitting_at)),
            )
        else:
            after_submit(task_run, False, found)
        recovered += 1
    return recovered


def _given_up(task_run: TaskRun, give_up: datetime) -> bool:
    return task_run.submitting_at is None or task_run.submitting_at < give_up


def sweep() -> int:
    return advance_due_runs() + stop_lost_local_attempts()


def reconcile() -> int:
    """Re-enqueue what the database says is due, in case its message was lost."""
    now = timezone.now()
    count = recover_stuck_submissions() + stop_lost_local_attempts() + stop_strays_here()
    # A decided stop whose message was lost (or whose executor call failed) is sent again:
    # a remote job that escapes a kill keeps costing money. Local processes are stopped by
    # their owner's tick, or as orphans by the sweep.
    for task_run_id, kind in (
        TaskRun.objects.filter(status__in=list(ACTIVE_ATTEMPT), stop_requested_at__isnull=False)
        .exclude(external_id="")
        .values_list("pk", "executor")
    ):
        if not _runs_on_submit(kind):
            dispatch.after_commit(dispatch.TERMINATE, task_run_id)
            count += 1
    # The engine marks an attempt READY only once its backoff has passed: all are due.
    for task_run_id in TaskRun.objects.filter(status=AttemptStatus.READY).values_list(
        "pk", flat=True
    ):
        dispatch.after_commit(dispatch.SUBMIT, task_run_id)
        count += 1
    for run_id in ProcessRun.objects.filter(status=RunStatus.RUNNING).values_list("pk", flat=True):
        orchestrator.advance_run(run_id, now)
    # Definitions waiting on a finished run (queued runs, a continuous schedule's next
    # start), in case the message that settles them was lost.
    waiting = ProcessDefinition.objects.filter(
        Q(runs__status=RunStatus.QUEUED)
        | Q(schedule_kind=ScheduleKind.CONTINUOUS, next_fire_at=None, paused=False, archived=False)
    ).distinct()
    for definition_id in waiting.values_list("pk", flat=True):
        if orchestrator.settle_definition(definition_id):
            count += 1
    return count


def _runs_on_submit(kind: str) -> bool:
    try:
        return executor_for(kind).runs_on_submit
    except ExecutorError:
        return False  # unknown here: asking again costs a logged error, never a lost stop


def poll_running() -> int:
    """Ask polled executors (AWS) for the state of every live attempt, 100 ids per call."""
    live: dict[str, list[TaskRun]] = defaultdict(list)
    for task_run in (
        TaskRun.objects.filter(status__in=[AttemptStatus.SUBMITTED, AttemptStatus.RUNNING])
        .exclude(external_id="")
        .only(*_POLLED_FIELDS)
    ):
        live[task_run.executor].append(task_run)
    changed = 0
    for kind, task_runs in live.items():
        try:
            executor = executor_for(kind)
        except ExecutorError as exc:  # e.g. attempts left by another build during a deploy
            log.error("cannot poll %s attempts: %s", kind, exc.message)
            continue
        if executor.runs_on_submit:
            continue  # local processes report their own exits
        for start in range(0, len(task_runs), POLL_BATCH):
            batch = task_runs[start : start + POLL_BATCH]
            try:
                statuses = executor.statuses([tr.external_id for tr in batch])
            except IncompleteStatuses as exc:
                # What was learnt is applied; the jobs it could not ask about wait for the
                # next poll (neither found nor lost).
                log.warning("polling %s: %s", kind, exc.message)
                statuses = exc.statuses
                batch = [tr for tr in batch if tr.external_id not in exc.unasked]
            except ExecutorError as exc:
                log.warning("polling %s failed: %s", kind, exc.message)
                continue
            changed += _apply_statuses(batch, statuses)
    return changed


_POLLED_FIELDS = (
    "run_id",
    "executor",
    "status",
    "external_id",
    "submitted_at",
    "placement",
    "executor_state",
)


def _apply_statuses(task_runs: list[TaskRun], statuses: dict[str, Status]) -> int:
    now = timezone.now()
    forgotten_before = now - timedelta(seconds=settings.SUNDIAL_REMOTE_LOST_AFTER_S)
    finished: list[orchestrator.Outcome] = []
    started: list[tuple[TaskRun, datetime, dict[str, object]]] = []
    notes = _Notes()
    for task_run in task_runs:
        status = statuses.get(task_run.external_id)
        if status is None:
            # AWS forgets finished jobs after a while, and a job it never shows was never
            # started: either way nobody will ever report its end. (Not at once: AWS's reads
            # can lag its writes for a moment.)
            if task_run.submitted_at is not None and task_run.submitted_at < forgotten_before:
                note = f"lost: {task_run.executor} no longer knows job {task_run.external_id}"
                finished.append(orchestrator.Outcome(task_run.pk, task_run.run_id, None, note))
            continue
        progress = _progress(task_run, status, now)
        if status.state in (State.SUCCEEDED, State.FAILED):
            notes.add(task_run, progress, counted=False)  # its end is counted below
            finished.append(
                orchestrator.Outcome(
                    task_run.pk,
                    task_run.run_id,
                    status.exit_code,
                    status.reason,
                    status.ended_at,
                    status.started_at,
                    out_of_memory=status.out_of_memory,
                    permanent=status.permanent,
                )
            )
        elif status.state == State.RUNNING and task_run.status == AttemptStatus.SUBMITTED:
            started.append((task_run, status.started_at or now, progress))
        else:
            notes.add(task_run, progress, counted=True)
    changed = notes.save()
    for task_run, started_at, progress in started:
        changed += TaskRun.objects.filter(pk=task_run.pk, status=AttemptStatus.SUBMITTED).update(
            status=AttemptStatus.RUNNING, started_at=started_at, **progress
        )
        orchestrator.advance_run(task_run.run_id)
    if finished:
        orchestrator.record_outcomes(finished)
    return changed + len(finished)


def _progress(task_run: TaskRun, status: Status, now: datetime) -> dict[str, object]:
    """What the executor says beyond the state that the attempt does not hold yet: where
    the job runs, and its own words for why it waits (with since when)."""
    fields: dict[str, object] = {}
    placement = status.placement[:PLACEMENT_LIMIT]
    if placement and placement != task_run.placement:
        fields["placement"] = placement
    detail = status.detail[:EXECUTOR_STATE_LIMIT]
    if detail != task_run.executor_state:
        fields.update(executor_state=detail, executor_state_since=now)
    return fields


class _Notes:
    """Progress to save, one UPDATE per distinct change rather than one per attempt: the
    first poll of 10,000 waiting jobs finds most of them saying the same thing."""

    def __init__(self) -> None:
        # (the change, the attempts' status as read, whether it counts) -> the attempts
        self._pks: dict[tuple[tuple[tuple[str, object], ...], str, bool], list[int]] = defaultdict(
            list
        )

    def add(self, task_run: TaskRun, fields: dict[str, object], *, counted: bool) -> None:
        if fields:
            self._pks[tuple(sorted(fields.items())), task_run.status, counted].append(task_run.pk)

    def save(self) -> int:
        """Write every change; returns how many of the counted attempts it changed."""
        changed = 0
        for (fields, read_as, counted), pks in self._pks.items():
            # Conditional on the status this poll read: a late answer ("waiting for
            # capacity") must not write over an attempt another poll has seen move on.
            rows = TaskRun.objects.filter(pk__in=pks, status=read_as).update(**dict(fields))
            changed += rows if counted else 0
        return changed
