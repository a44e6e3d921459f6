"""The alert scan against the database: a stuck beat, a long run, a long task and a missed
deadline each alert once, through the channels, and resolve once when they clear; two scans
at once send nothing twice; the scan's queries do not grow with the number of processes."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, time, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from jobs.cron import schedule_tick
from jobs.models import ProcessDefinition, ProcessRun, TaskRun
from notifications import alerts
from notifications.alerts import scan
from notifications.memory.channel import SHARED
from notifications.models import Alert, Delivery, Subscription
from tests.conftest import make_process, purge_task_queue
from tests.notifications.flow import send_due
from tests.orchestrator.driving import race

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def memory_channel():
    """The in-memory channel, empty when each test starts; the broker's queue left empty."""
    SHARED.reset()
    yield SHARED
    SHARED.reset()
    purge_task_queue()


def subscribed(name: str, **fields) -> ProcessDefinition:
    process = make_process(name, **fields)
    Subscription.objects.create(process=process, channel="memory", target="ops")
    return process


def stuck_beat(name: str = "orders", behind: timedelta = timedelta(hours=2)):
    """An hourly process whose fire time the scheduler has not taken for ``behind``."""
    process = subscribed(name, schedule_kind="cron", cron="0 * * * *", overlap="allow")
    ProcessDefinition.objects.filter(pk=process.pk).update(next_fire_at=timezone.now() - behind)
    return process


def run(process, status: str, *, started: datetime, took: timedelta | None = None):
    """A run of ``process`` in ``status``, started at ``started`` (and ended ``took`` later)."""
    return ProcessRun.objects.create(
        definition=process,
        snapshot={},
        trigger="manual",
        status=status,
        started_at=started,
        finished_at=started + took if took is not None else None,
    )


def attempt(
    a_run: ProcessRun, task: str, status: str, *, started: datetime, took: timedelta | None = None
) -> TaskRun:
    """An attempt of ``task`` in ``a_run``, started at ``started`` (and ended ``took`` later)."""
    return TaskRun.objects.create(
        run=a_run,
        task_name=task,
        executor="local",
        status=status,
        started_at=started,
        finished_at=started + took if took is not None else None,
    )


def succeeded(
    process, *, started: datetime, took: timedelta, **tasks_took: timedelta
) -> ProcessRun:
    """A successful run of ``process`` and, for each task named, a successful attempt of it
    that took so long."""
    past = run(process, "succeeded", started=started, took=took)
    for task, task_took in tasks_took.items():
        attempt(past, task, "succeeded", started=started, took=task_took)
    return past


def end(a_run: ProcessRun, status: str = "succeeded", at: datetime | None = None) -> None:
    ProcessRun.objects.filter(pk=a_run.pk).update(status=status, finished_at=at or timezone.now())


def delivered() -> list[tuple[str, str]]:
    """Send every pending delivery as a worker would; what the channel received since."""
    send_due()
    told = [(out.notice.event.value, out.notice.title) for out in SHARED.sent]
    SHARED.reset()
    return told


def test_a_stuck_beat_alerts_once_and_resolves_once_the_fire_time_is_taken():
    process = stuck_beat()
    now = timezone.now()
    assert scan(now) == 1
    assert scan(now + timedelta(seconds=30)) == 0, "a second scan tells nothing again"
    alert = Alert.objects.get()
    assert (alert.kind, alert.process) == ("missed_start", process)
    assert "the scheduler has still not started it" in alert.message
    assert delivered() == [("alert", "orders did not start on time")]

    assert schedule_tick(now) == 1  # beat is back: the fire time is taken, a run starts
    assert scan(now + timedelta(seconds=60)) == 1
    assert scan(now + timedelta(seconds=90)) == 0
    alert.refresh_from_db()
    assert alert.resolved_at is not None
    assert alert.resolution.startswith("the start due at")
    assert delivered() == [("resolved", "orders did not start on time: resolved")]


def test_a_scheduled_run_left_queued_alerts_until_it_starts():
    process = subscribed("orders", schedule_kind="cron", cron="0 * * * *")
    due = timezone.now() - timedelta(minutes=20)
    ProcessDefinition.objects.filter(pk=process.pk).update(
        next_fire_at=timezone.now() + timedelta(minutes=40)
    )
    queued = ProcessRun.objects.create(
        definition=process, snapshot={}, trigger="schedule", scheduled_for=due, status="queued"
    )
    assert scan() == 1
    assert Alert.objects.get().key == due.astimezone(UTC).isoformat()
    ProcessRun.objects.filter(pk=queued.pk).update(status="running", started_at=timezone.now())
    assert scan() == 1
    assert delivered() == [
        ("alert", "orders did not start on time"),
        ("resolved", "orders did not start on time: resolved"),
    ]


def test_a_long_run_alerts_and_resolves_when_it_ends():
    process = subscribed("orders", long_running_after_s=600)
    now = timezone.now()
    long = run(process, "running", started=now - timedelta(minutes=11))
    run(process, "running", started=now - timedelta(minutes=9))  # not long yet
    assert scan(now) == 1
    alert = Alert.objects.get()
    assert (alert.kind, alert.key) == ("long_running", str(long.pk))
    assert "has been running for 11m 00s, longer than its limit of 10m 00s" in alert.message
    assert scan(now) == 0
    end(long)
    assert scan(now) == 1
    alert.refresh_from_db()
    assert alert.resolution == f"run {long.pk} ended"
    assert delivered() == [
        ("alert", "orders is running long"),
        ("resolved", "orders is running long: resolved"),
    ]


def test_long_against_the_last_30_successes_only():
    process = subscribed("orders", long_running_factor=2.0)
    now = timezone.now()
    for i in range(10):  # old and slow: not among the last 30
        run(process, "succeeded", started=now - timedelta(days=9, hours=i), took=timedelta(hours=3))
    for i in range(30):
        run(
            process,
            "succeeded",
            started=now - timedelta(days=1, hours=i),
            took=timedelta(minutes=1),
        )
    other = subscribed("other", long_running_factor=2.0)
    for i in range(4):  # too few to judge by
        run(other, "succeeded", started=now - timedelta(days=1, hours=i), took=timedelta(minutes=1))
    run(other, "running", started=now - timedelta(minutes=3))
    running = run(process, "running", started=now - timedelta(minutes=3))
    assert scan(now) == 1
    alert = Alert.objects.get()
    assert (alert.process, alert.key) == (process, str(running.pk))
    assert "2 times the p95 of its last 30 successful runs (1m 00s)" in alert.message


def test_a_long_task_alerts_once_and_resolves_when_its_attempt_ends():
    process = subscribed("orders", tasks={"extract": {}, "load": {}}, long_running_factor=2.0)
    now = timezone.now()
    for i in range(6):  # runs of 20 minutes: extract takes 1 of them, load 10
        succeeded(
            process,
            started=now - timedelta(days=1, hours=i),
            took=timedelta(minutes=20),
            extract=timedelta(minutes=1),
            load=timedelta(minutes=10),
        )
    current = run(process, "running", started=now - timedelta(minutes=3))  # not long itself
    extract = attempt(current, "extract", "running", started=now - timedelta(minutes=3))
    attempt(current, "load", "running", started=now - timedelta(minutes=3))  # usual for load

    assert scan(now) == 1
    alert = Alert.objects.get()
    assert (alert.kind, alert.key) == ("long_running", f"task{extract.pk}")
    assert alert.message == (
        f"orders task extract (run {current.pk}, attempt 1) has been running for 3m 00s,"
        " longer than 2 times the p95 of its last 6 successful attempts (1m 00s), that is"
        " 2m 00s."
    )
    assert delivered() == [("alert", "orders is running long")]
    for later in (30, 60):
        assert scan(now + timedelta(seconds=later)) == 0
    assert delivered() == [], "nothing is told twice"

    TaskRun.objects.filter(pk=extract.pk).update(status="succeeded", finished_at=now)
    assert scan(now + timedelta(seconds=90)) == 1
    alert.refresh_from_db()
    assert alert.resolution == "the task's attempt ended"
    assert scan(now + timedelta(seconds=120)) == 0
    assert delivered() == [("resolved", "orders is running long: resolved")]


def test_a_missed_deadline_alerts_and_a_success_resolves_it():
    # 09:00 in New York; it is 10:00 EST there (15:00 UTC) on 2026-11-24.
    process = subscribed("report", timezone="America/New_York", deadline=time(9, 0))
    ProcessDefinition.objects.filter(pk=process.pk).update(
        created_at=datetime(2026, 11, 1, tzinfo=UTC)
    )
    now = datetime(2026, 11, 24, 15, 0, tzinfo=UTC)
    yesterday = run(
        process, "succeeded", started=now - timedelta(days=1, hours=1), took=timedelta(minutes=5)
    )
    assert yesterday.finished_at < now
    assert scan(now) == 1
    alert = Alert.objects.get()
    assert (alert.kind, alert.key) == ("deadline", "2026-11-24")
    assert scan(now + timedelta(minutes=5)) == 0
    late = run(process, "running", started=now)
    end(late, at=now + timedelta(minutes=8))
    assert scan(now + timedelta(minutes=10)) == 1
    alert.refresh_from_db()
    assert alert.resolution == "a run succeeded at 2026-11-24 10:08 EST"
    assert delivered() == [
        ("alert", "report missed its deadline"),
        ("resolved", "report missed its deadline: resolved"),
    ]


def test_pausing_a_stuck_process_resolves_its_missed_start_and_resuming_does_not_reopen_it():
    process = stuck_beat()
    assert scan() == 1
    ProcessDefinition.objects.filter(pk=process.pk).update(paused=True)
    assert scan() == 1
    assert Alert.objects.get().resolution == "orders was paused"
    ProcessDefinition.objects.filter(pk=process.pk).update(paused=False)
    assert scan() == 0, "an occurrence alerts once, even if it holds again"
    assert Alert.objects.count() == 1
    assert [event for event, _ in delivered()] == ["alert", "resolved"]


def test_a_process_with_a_zone_no_longer_known_is_reported_and_the_others_are_checked(caplog):
    bad = subscribed("bad", deadline=time(0, 0))
    ProcessDefinition.objects.filter(pk=bad.pk).update(timezone="Mars/Olympus_Mons")
    stuck_beat("good")
    assert scan() == 1
    assert Alert.objects.get().process.name == "good"
    assert "process bad: alert conditions not checked" in caplog.text


def everything_at_once(name: str, now: datetime) -> ProcessDefinition:
    """A process with every condition holding: a stuck beat, a long run, a long task, a missed
    deadline."""
    process = stuck_beat(name)
    ProcessDefinition.objects.filter(pk=process.pk).update(
        long_running_factor=2.0,
        deadline=(now - timedelta(minutes=5)).astimezone(UTC).time(),
        timezone="UTC",
        created_at=now - timedelta(days=2),
    )
    for i in range(5):
        minute = timedelta(minutes=1)
        succeeded(process, started=now - timedelta(days=2, hours=i), took=minute, only=minute)
    current = run(process, "running", started=now - timedelta(minutes=30))
    attempt(current, "only", "running", started=now - timedelta(minutes=30))
    return process


def test_the_scan_reads_in_the_same_number_of_queries_for_2_and_20_processes(
    django_assert_max_num_queries,
):
    now = timezone.now()
    counted, made = [], 0
    for total in (2, 20):
        for i in range(made, total):
            everything_at_once(f"p{i}", now)
        assert scan(now) == 4 * (total - made)
        made = total
        with CaptureQueriesContext(connection) as queries:
            assert scan(now) == 0
        counted.append(len(queries))
    assert counted[0] == counted[1]
    with django_assert_max_num_queries(8):
        scan(now)


@pytest.fixture
def contested(monkeypatch, caplog):
    """Two scans that both read everything before either writes, so every opening and every
    resolve is tried by both; the log lines of the losing tries."""
    caplog.set_level(logging.DEBUG, logger="notifications.alerts")
    both_read = threading.Barrier(2, timeout=20)
    read = alerts._facts

    def read_then_wait(*args):
        found = read(*args)
        both_read.wait()
        return found

    monkeypatch.setattr(alerts, "_facts", read_then_wait)

    def lost(words: str) -> int:
        return sum(words in record.getMessage() for record in caplog.records)

    return lost


@pytest.mark.postgres
def test_two_scans_at_once_send_nothing_twice(contested):
    now = timezone.now()
    processes = [everything_at_once(f"p{i}", now) for i in range(3)]
    opened = race(lambda: scan(now), lambda: scan(now))
    assert [error for _, error in opened] == [None, None]
    assert sum(changed for changed, _ in opened) == 12
    assert contested("exists already") == 12, "each opening was tried by both scans"
    assert Alert.objects.count() == 12
    assert Delivery.objects.filter(event="alert").count() == 12
    assert sorted(event for event, _ in delivered()) == ["alert"] * 12

    for process in processes:  # everything clears: beat back, runs and attempts over, a success
        ProcessDefinition.objects.filter(pk=process.pk).update(
            next_fire_at=now + timedelta(hours=1)
        )
        ProcessRun.objects.filter(definition=process, status="running").update(
            status="succeeded", finished_at=now
        )
        TaskRun.objects.filter(run__definition=process, status="running").update(
            status="succeeded", finished_at=now
        )
    resolved = race(lambda: scan(now), lambda: scan(now))
    assert [error for _, error in resolved] == [None, None]
    assert sum(changed for changed, _ in resolved) == 12
    assert contested("resolved by another scan") == 12, "each resolve was tried by both scans"
    assert Alert.objects.filter(resolved_at__isnull=True).count() == 0
    assert sorted(event for event, _ in delivered()) == ["resolved"] * 12
