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
from django.db.models import Q
from django.utils import timezone

from executors.base import ExecutorError, State, Status
from jobs import dispatch, orchestrator
from jobs.engine import AttemptStatus, RunStatus
from jobs.executors import executor_for
from jobs.models import ProcessRun, TaskRun
from jobs.submission import recover_stuck_submissions

log = logging.getLogger(__name__)

POLL_BATCH = 100  # DescribeJobs / DescribeTasks take at most 100 ids per call


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


def fail_lost_local_attempts() -> int:
    """Local attempts whose heartbeat stopped (their worker died) end as failed, then retry."""
    cutoff = timezone.now() - timedelta(seconds=settings.SUNDIAL_LOST_AFTER_S)
    lost = list(
        TaskRun.objects.filter(
            executor="local", status__in=[AttemptStatus.SUBMITTED, AttemptStatus.RUNNING]
        )
        .filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, submitted_at__lt=cutoff))
        .values_list("pk", "run_id", "heartbeat_at", "external_id")
    )
    if not lost:
        return 0
    local = executor_for("local")
    for *_, external_id in lost:
        # The process may outlive its worker (it has its own session): stop it if it runs
        # on this host; elsewhere it cannot be reached, and the retry proceeds regardless.
        try:
            local.terminate(external_id, "its worker stopped")
        except ExecutorError as exc:
            log.info("lost process %s left alone: %s", external_id, exc.message)
    orchestrator.record_outcomes(
        [orchestrator.Outcome(pk, run_id, None, _lost_note(beat)) for pk, run_id, beat, _ in lost]
    )
    return len(lost)


def _lost_note(heartbeat: datetime | None) -> str:
    since = f"since {heartbeat:%H:%M:%S} UTC" if heartbeat else "ever"
    return f"lost: no heartbeat {since} (its worker stopped)"


def sweep() -> int:
    return advance_due_runs() + fail_lost_local_attempts()


def reconcile() -> int:
    """Re-enqueue what the database says is due, in case its message was lost."""
    now = timezone.now()
    count = recover_stuck_submissions()
    # The engine marks an attempt READY only once its backoff has passed: all are due.
    for task_run_id in TaskRun.objects.filter(status=AttemptStatus.READY).values_list(
        "pk", flat=True
    ):
        dispatch.after_commit(dispatch.SUBMIT, task_run_id)
        count += 1
    for run_id in ProcessRun.objects.filter(status=RunStatus.RUNNING).values_list("pk", flat=True):
        orchestrator.advance_run(run_id, now)
    for definition_id in (
        ProcessRun.objects.filter(status=RunStatus.QUEUED)
        .values_list("definition_id", flat=True)
        .distinct()
    ):
        if orchestrator.start_queued_run(definition_id):
            count += 1
    return count


def poll_running() -> int:
    """Ask polled executors (AWS) for the state of every live attempt, 100 ids per call."""
    live: dict[str, list[TaskRun]] = defaultdict(list)
    for task_run in TaskRun.objects.filter(
        status__in=[AttemptStatus.SUBMITTED, AttemptStatus.RUNNING]
    ).exclude(external_id=""):
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
            except ExecutorError as exc:
                log.warning("polling %s failed: %s", kind, exc.message)
                continue
            changed += _apply_statuses(batch, statuses)
    return changed


def _apply_statuses(task_runs: list[TaskRun], statuses: dict[str, Status]) -> int:
    finished = []
    changed = 0
    for task_run in task_runs:
        status = statuses.get(task_run.external_id)
        if status is None:
            continue
        if status.state in (State.SUCCEEDED, State.FAILED):
            finished.append(
                orchestrator.Outcome(
                    task_run.pk, task_run.run_id, status.exit_code, status.reason, status.ended_at
                )
            )
        elif status.state == State.RUNNING and task_run.status == AttemptStatus.SUBMITTED:
            started = status.started_at or timezone.now()
            changed += TaskRun.objects.filter(
                pk=task_run.pk, status=AttemptStatus.SUBMITTED
            ).update(status=AttemptStatus.RUNNING, started_at=started)
            orchestrator.advance_run(task_run.run_id)
    if finished:
        orchestrator.record_outcomes(finished)
    return changed + len(finished)
