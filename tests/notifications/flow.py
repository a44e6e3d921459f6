"""Runs ending and deliveries sent the way workers would, without a broker: what every
channel's tests drive the outbox with."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from jobs.models import ProcessRun, RunEnding
from notifications import outbox
from notifications.models import Delivery, DeliveryStatus


def finish(process, status: str, reason: str = "") -> ProcessRun:
    """A run of ``process`` that just ended with ``status``, noticed as its end would be."""
    now = timezone.now()
    run = ProcessRun.objects.create(
        definition=process,
        snapshot={},
        trigger="manual",
        status=status,
        reason=reason,
        started_at=now - timedelta(minutes=3),
        finished_at=now,
    )
    return end(run, status, reason, at=now)


def end(run: ProcessRun, status: str, reason: str = "", *, at=None) -> ProcessRun:
    """``run`` ends (again: a run retried in place ends more than once) with ``status``, as
    the orchestrator records it, and is noticed."""
    now = at or timezone.now()
    ProcessRun.objects.filter(pk=run.pk).update(status=status, reason=reason, finished_at=now)
    RunEnding.objects.create(
        run=run, definition_id=run.definition_id, status=status, reason=reason, at=now
    )
    outbox.notice_run(run.pk)
    run.refresh_from_db()
    return run


def send_due() -> list[str | None]:
    """What workers do with the delivery messages: try each pending delivery, oldest first."""
    due = Delivery.objects.filter(status=DeliveryStatus.PENDING).order_by("pk")
    return [outbox.deliver(pk) for pk in due.values_list("pk", flat=True)]


def make_due(delivery_ids=None) -> None:
    """Let time pass: every pending delivery is due now."""
    chosen = Delivery.objects.filter(status=DeliveryStatus.PENDING)
    if delivery_ids is not None:
        chosen = chosen.filter(pk__in=delivery_ids)
    chosen.update(next_try_at=timezone.now() - timedelta(seconds=1))
