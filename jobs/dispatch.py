"""Enqueue Celery tasks by name once the transaction that decided them has committed.

By name, so the domain modules never import ``jobs.tasks`` (which imports them).
"""

from __future__ import annotations

from celery import current_app
from django.db import transaction

SUBMIT = "jobs.tasks.submit_task_run"
TERMINATE = "jobs.tasks.terminate_task_run"
ADVANCE = "jobs.tasks.advance_run"
START_QUEUED = "jobs.tasks.start_queued_run"


def after_commit(task_name: str, *args: object, countdown: float | None = None) -> None:
    """Send the task after the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(lambda: current_app.send_task(task_name, args=args, countdown=countdown))
