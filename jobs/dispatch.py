"""Enqueue Celery tasks by name once the transaction that decided them has committed.

By name, so the domain modules never import ``jobs.tasks`` (which imports them).

A send that fails (the broker is down) is logged and dropped, never raised: the decision is
already committed, and the database, not the broker, is the source of truth. The reconciler
and the sweep re-derive every lost message from the database (READY attempts, due wake-ups,
queued runs), so a failed send delays work but never loses it, and never stops the caller
from recording what comes next.
"""

from __future__ import annotations

from celery import current_app
from django.db import transaction

SUBMIT = "jobs.tasks.submit_task_run"
TERMINATE = "jobs.tasks.terminate_task_run"
ADVANCE = "jobs.tasks.advance_run"
SETTLE = "jobs.tasks.settle_definition"
NOTICE = "notifications.tasks.notice_run"  # who hears of a finished run (notifications/)


def after_commit(task_name: str, *args: object, countdown: float | None = None) -> None:
    """Send the task after the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(
        lambda: current_app.send_task(task_name, args=args, countdown=countdown), robust=True
    )
