"""Alerts are looked for without beat: one scan per period however many ask (beat's task,
every worker's watchdog), and a worker alone reports the missed start a stopped beat causes."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import ProcessDefinition
from notifications.alerts import scan_if_due
from notifications.models import Alert, ScanClock, Subscription
from tests.conftest import make_process, purge_task_queue
from tests.orchestrator.driving import race, wait_for
from tests.workers import Worker

pytestmark = pytest.mark.django_db(transaction=True)


def stuck(name: str = "hourly") -> ProcessDefinition:
    """An hourly process whose fire time no one took two hours ago (beat is down)."""
    process = make_process(name, schedule_kind="cron", cron="0 * * * *", missed_start_grace_s=60)
    ProcessDefinition.objects.filter(pk=process.pk).update(
        next_fire_at=timezone.now() - timedelta(hours=2)
    )
    return process


def test_one_scan_a_period_however_many_ask(settings):
    settings.SUNDIAL_ALERT_SCAN_EVERY_S = 30
    stuck()
    assert scan_if_due() == 1, "the first ever: the clock is made, and the scan runs"
    assert scan_if_due() is None, "scanned a moment ago: not due"
    due = ScanClock.objects.get().due_at
    assert timedelta(seconds=25) < due - timezone.now() <= timedelta(seconds=30)
    ScanClock.objects.update(due_at=timezone.now() - timedelta(seconds=1))  # time passes
    assert scan_if_due() == 0, "due again: it scans (nothing new)"
    assert Alert.objects.count() == 1


@pytest.mark.postgres
def test_two_callers_at_once_make_one_scan(settings):
    settings.SUNDIAL_ALERT_SCAN_EVERY_S = 30
    stuck()
    for _ in range(2):  # the clock's first claim, then a due one
        outcomes = race(scan_if_due, scan_if_due)
        assert [error for _, error in outcomes] == [None, None]
        results = [result for result, _ in outcomes]
        assert results.count(None) == 1, f"one scanned, the other found it scanned: {results}"
        ScanClock.objects.update(due_at=timezone.now() - timedelta(seconds=1))
    assert Alert.objects.count() == 1


@pytest.mark.redis
def test_a_worker_without_beat_reports_a_missed_start(receiver, tmp_path):
    purge_task_queue()
    process = stuck("nightly")
    Subscription.objects.create(
        process=process, channel="webhook", target=receiver.url, secret="s3cret"
    )
    worker = Worker(tmp_path, SUNDIAL_ALERT_SCAN_EVERY_S="1")  # no beat anywhere
    try:
        wait_for(lambda: receiver.received, timeout=30)
    finally:
        worker.kill()
        purge_task_queue()
    said = json.loads(receiver.received[0].body)
    assert (said["event"], said["title"]) == ("alert", "nightly did not start on time")
    assert "Are celery beat and the workers running?" in said["detail"]
