"""Celery tasks: thin, idempotent wrappers over the outbox and the alert scan."""

from __future__ import annotations

from celery import shared_task
from celery.signals import worker_ready, worker_shutdown

from notifications import alerts, outbox
from notifications.watchdog import start_watchdog, stop_watchdog


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
    """Beat's scan: skipped when a worker's watchdog scanned within the period."""
    return alerts.scan_if_due() or 0


# Workers scan for alerts on their own too, so a missed start is seen while beat is down.
# weak=False: module functions.
worker_ready.connect(start_watchdog, weak=False)
worker_shutdown.connect(stop_watchdog, weak=False)
