"""What a person does to a process, from the admin or a page: run it now, pause, resume.

Each action is recorded as an admin LogEntry naming the person, the same audit trail
whichever screen the button was on.
"""

from __future__ import annotations

from django.contrib.admin.models import CHANGE, LogEntry
from django.db import models

from jobs.cron import reschedule
from jobs.engine import RunStatus
from jobs.models import ProcessDefinition, ProcessRun, User


def record(user: User, obj: models.Model, message: str) -> None:
    """Audit one change to ``obj`` by ``user``, as the admin's ``log_change`` does."""
    LogEntry.objects.log_actions(
        user_id=user.pk,
        queryset=[obj],
        action_flag=CHANGE,
        change_message=message,
        single_object=True,
    )


def run_outcome(run: ProcessRun) -> str:
    """What became of a manual run, in words: "run 42 started", or why it did not start
    ("run 43 queued behind run 42")."""
    if run.status == RunStatus.RUNNING:
        return f"run {run.pk} started"
    return f"run {run.pk} {run.reason}"


def record_run_now(user: User, process: ProcessDefinition, run: ProcessRun) -> str:
    """Audit a manual run of ``process``; returns its outcome in words."""
    outcome = run_outcome(run)
    record(user, process, f"Run now: {outcome}")
    return outcome


def set_paused(process: ProcessDefinition, *, paused: bool, user: User) -> str:
    """Pause or resume a process (its next fire time follows), audited; returns the verb."""
    verb = "Paused" if paused else "Resumed"
    process.paused = paused
    process.save(update_fields=["paused", "updated_at"])
    reschedule(process)
    record(user, process, verb)
    return verb
