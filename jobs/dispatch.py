"""Enqueue Celery tasks by name once the transaction that decided them has committed.

By name, so the domain modules never import ``jobs.tasks`` (which imports them).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from celery import current_app
from django.db import transaction

SUBMIT = "jobs.tasks.submit_task_run"
TERMINATE = "jobs.tasks.terminate_task_run"
ADVANCE = "jobs.tasks.advance_run"
START_QUEUED = "jobs.tasks.start_queued_run"


def after_commit(task_name: str, *args: object, countdown: float | None = None) -> None:
    """Send the task after the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(lambda: current_app.send_task(task_name, args=args, countdown=countdown))


_kept = threading.local()


@contextmanager
def continue_locally() -> Iterator[list[int]]:
    """Keep the local submissions decided inside this block for the caller to run itself.

    The thread that saw a local process exit submits its successors directly after commit:
    no broker round trip per hand-off, and one thread spawning a fan-out beats many worker
    threads contending for the interpreter lock. If the caller dies before submitting, the
    attempts stay READY in the database and the reconciler sends them to the broker.
    """
    _kept.ids = []
    try:
        yield _kept.ids
    finally:
        del _kept.ids


def submit_after_commit(task_run_id: int, *, local: bool) -> None:
    """Have the attempt submitted once the deciding transaction commits."""
    kept = getattr(_kept, "ids", None)
    if local and kept is not None:
        kept.append(task_run_id)
    else:
        after_commit(SUBMIT, task_run_id)
