"""Handing attempts to executors: claim, submit once, record (recovery: ``jobs/supervision.py``)."""

from __future__ import annotations

import json
import logging
import socket
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import F
from django.utils import timezone

from executors.base import ExecutorError, Launch, Submission
from executors.config import ConfigError, sets_memory, validate_config
from executors.registry import executor_for
from jobs import orchestrator
from jobs.engine import ACTIVE_ATTEMPT, AttemptStatus
from jobs.models import TaskEvent, TaskRun
from jobs.snapshot import task_entry

log = logging.getLogger(__name__)

HOST = socket.gethostname()


class SubmitLater(Exception):
    """The executor failed for now (throttling, network); the attempt is READY again."""


def task_environment(task_run: TaskRun) -> dict[str, str]:
    """What every task finds in its environment, whatever executor runs it."""
    return {
        "SUNDIAL_RUN_ID": str(task_run.run_id),
        "SUNDIAL_TASK_RUN_ID": str(task_run.pk),
        "SUNDIAL_ATTEMPT": str(task_run.number),
        "SUNDIAL_TASK": task_run.task_name,
        "SUNDIAL_PROCESS": task_run.run.snapshot["process"]["name"],
        "SUNDIAL_PARAMETERS": json.dumps(task_run.run.parameters),
        "SUNDIAL_API_URL": settings.SUNDIAL_API_URL,
        "SUNDIAL_TOKEN": task_run.token,
    }


def launch_for(task_run: TaskRun) -> Launch:
    """What the executor is handed for this attempt (at submit, and to find it after a crash);
    ConfigError if the task's config does not fit its kind's schema."""
    entry = task_entry(task_run.run.snapshot, task_run.task_name)
    return Launch(
        task_run_id=task_run.pk,
        run_id=task_run.run_id,
        idempotency_key=task_run.idempotency_key,
        # Checked again here: a definition saved outside the admin was never validated.
        config=validate_config(task_run.executor, _with_raised_memory(task_run, entry["config"])),
        env=task_environment(task_run),
        process=task_run.run.snapshot["process"]["name"],
        task=task_run.task_name,
        attempt=f"{task_run.round}.{task_run.number}",
        resubmit=task_run.submit_tries > 1,
    )


def _with_raised_memory(task_run: TaskRun, config: dict[str, Any]) -> dict[str, Any]:
    """The task's config, asking for the memory the engine raised after an out-of-memory kill
    (only kinds whose config has memory_mib: the engine raises nothing else)."""
    if task_run.memory_mib is None or not sets_memory(task_run.executor):
        return config
    return {**config, "memory_mib": task_run.memory_mib}


def submit_task_run(task_run_id: int) -> bool:
    """Claim a READY attempt and start it on its executor; False if it was not ours to take."""
    now = timezone.now()
    if not TaskRun.objects.filter(pk=task_run_id, status=AttemptStatus.READY).update(
        status=AttemptStatus.SUBMITTING,
        submitting_at=now,
        worker_host=HOST,
        submit_tries=F("submit_tries") + 1,
    ):
        return False
    try:
        task_run = TaskRun.objects.select_related("run").get(pk=task_run_id)
    except DatabaseError as exc:
        # Nothing has started: give the attempt back rather than leave it to be failed as
        # "lost while submitting" (a database blip must not cost a task its only attempt).
        _release_claim(task_run_id)
        raise SubmitLater(f"database error before submitting: {exc}") from exc
    try:
        executor = executor_for(task_run.executor)
        launch = launch_for(task_run)
        if _claim_may_have_lapsed(now) and not _still_claimed(task_run_id):
            return True  # this worker stalled; recovery already decided for the attempt
        submission = executor.submit(launch)
    except ConfigError as exc:
        fail_unstarted(task_run, f"invalid executor config: {exc}", permanent=True)
        return True
    except ExecutorError as exc:
        if exc.permanent:
            fail_unstarted(task_run, f"could not start: {exc.message}", permanent=True)
            return True
        if TaskRun.objects.filter(
            pk=task_run.pk, status=AttemptStatus.SUBMITTING, stop_requested_at__isnull=True
        ).update(status=AttemptStatus.READY):
            # Said on the run's trail, or an executor that keeps failing (AWS answering 500)
            # would leave the page saying only "ready: waiting for a worker".
            TaskEvent.objects.create(
                run_id=task_run.run_id,
                task_run_id=task_run.pk,
                kind="submit deferred",
                message=f"could not start it yet, trying again: {exc.message}",
            )
            raise SubmitLater(exc.message) from exc
        # A stop was asked while we tried: nothing started, so the attempt ends here (as
        # its stop request says) instead of going back to READY with nobody to cancel it.
        fail_unstarted(task_run, f"not started: {exc.message}")
        return True
    try:
        after_submit(task_run, executor.runs_on_submit, submission)
    except DatabaseError:
        # The job runs: its record matters more than this connection. Once more on a fresh
        # one; if that fails too, the worker's heartbeats keep recovery off the attempt and
        # its exit is still recorded.
        connection.close()
        after_submit(task_run, executor.runs_on_submit, submission)
    return True


def _claim_may_have_lapsed(claimed_at: datetime) -> bool:
    """Whether this submit has taken long enough (a frozen worker, say) that recovery may
    have taken the attempt over: half its threshold, so a check costs nothing normally."""
    elapsed = (timezone.now() - claimed_at).total_seconds()
    return elapsed > settings.SUNDIAL_SUBMIT_STUCK_AFTER_S / 2


def _still_claimed(task_run_id: int) -> bool:
    return TaskRun.objects.filter(pk=task_run_id, status=AttemptStatus.SUBMITTING).exists()


def _release_claim(task_run_id: int) -> None:
    """SUBMITTING -> READY on a fresh connection; if that fails too, recovery decides later."""
    try:
        connection.close()
        TaskRun.objects.filter(pk=task_run_id, status=AttemptStatus.SUBMITTING).update(
            status=AttemptStatus.READY
        )
    except DatabaseError:
        log.warning("attempt %s stays submitting: the database is unreachable", task_run_id)


def fail_unstarted(task_run: TaskRun, reason: str, *, permanent: bool = False) -> None:
    """End an attempt that never started. The engine retries it per the task's policy,
    unless the failure is ``permanent``: a retry would be refused the same way."""
    orchestrator.record_outcomes(
        [orchestrator.Outcome(task_run.pk, task_run.run_id, None, reason, permanent=permanent)]
    )


def after_submit(task_run: TaskRun, running: bool, submission: Submission) -> None:
    """Record a submission, then stop it at once if it must not run (see record_submission)."""
    external_id = submission.external_id
    if orchestrator.record_submission(task_run.pk, submission, running=running):
        if TaskRun.objects.filter(pk=task_run.pk, status__in=list(ACTIVE_ATTEMPT)).exists():
            terminate_task_run(task_run.pk)
        else:
            _stop_stray(task_run, external_id)
    elif running and _has_time_limit(task_run):
        orchestrator.advance_run(task_run.run_id)  # the engine sets the run's wake-up time


def _has_time_limit(task_run: TaskRun) -> bool:
    # "is not None": a limit of 0 is a limit (the attempt is stopped at once).
    return task_entry(task_run.run.snapshot, task_run.task_name)["time_limit_s"] is not None


def _stop_stray(task_run: TaskRun, external_id: str) -> None:
    """Stop a job started for an attempt that had already ended (nothing records its end)."""
    try:
        executor_for(task_run.executor).terminate(external_id, "its attempt had already ended")
    except ExecutorError as exc:  # e.g. it has ended already itself
        log.info("stray job %s not stopped: %s", external_id, exc.message)


def terminate_task_run(task_run_id: int) -> None:
    """Ask the executor to stop an attempt whose termination the engine decided."""
    task_run = TaskRun.objects.filter(
        pk=task_run_id, status__in=list(ACTIVE_ATTEMPT), stop_requested_at__isnull=False
    ).first()
    if task_run is None or not task_run.external_id:
        return  # finished already, or still submitting (the submitter checks again)
    try:
        executor_for(task_run.executor).terminate(task_run.external_id, task_run.stop_reason)
    except ExecutorError as exc:
        # E.g. a local process of another worker: its owner sees the request on its next tick.
        log.info("terminate %s deferred: %s", task_run.external_id, exc.message)
