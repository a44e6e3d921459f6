"""Celery tasks: thin, idempotent wrappers over the outbox and the alert scan."""

from __future__ import annotations

from celery import shared_task

from notifications import alerts, outbox


@shared_task(name="notifications.tasks.notice_run")
def notice_run(run_id: int) -> int:
    return len(outbox.notice_run(run_id))


@shared_task(name="notifications.tasks.deliver")
def deliver(delivery_id: int) -> str | None:
    return outbox.deliver(delivery_id)


@shared_task(name="notifications.tasks.reconcile")
def reconcile() -> int:
    return outbox.reconcile()


@shared_task(name="notifications.tasks.scan_alerts")
def scan_alerts() -> int:
    return alerts.scan()
