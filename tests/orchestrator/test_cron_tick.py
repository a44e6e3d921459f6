"""The scheduler tick: claims, duplicates, two beats at once, catch-up, continuous schedules."""

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from jobs.cron import _fire, reschedule, schedule_tick
from jobs.models import ProcessDefinition, ProcessRun, Trigger
from jobs.orchestrator import AlreadyScheduled, settle_definition, trigger_run
from tests.conftest import make_process
from tests.orchestrator.driving import drive

pytestmark = pytest.mark.django_db(transaction=True)

NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def hourly(name="hourly", **fields):
    fields.setdefault("overlap", "allow")
    process = make_process(name, schedule_kind="cron", cron="0 * * * *", **fields)
    ProcessDefinition.objects.filter(pk=process.pk).update(next_fire_at=NOON)
    process.refresh_from_db()
    return process


def test_a_due_definition_starts_one_run_and_moves_on():
    process = hourly()
    assert schedule_tick(NOON + timedelta(seconds=1)) == 1
    assert schedule_tick(NOON + timedelta(seconds=2)) == 0, "a repeated tick starts nothing"
    run = ProcessRun.objects.get()
    assert (run.trigger, run.scheduled_for) == ("schedule", NOON)
    process.refresh_from_db()
    assert process.next_fire_at == NOON + timedelta(hours=1)


def test_a_beat_acting_on_a_stale_read_starts_nothing():
    process = hourly()
    stale = ProcessDefinition.objects.get(pk=process.pk)
    schedule_tick(NOON)
    assert _fire(stale, NOON) == 0
    assert ProcessRun.objects.count() == 1


def test_two_schedulers_at_once_start_one_run():
    processes = [hourly(f"p{i}") for i in range(5)]
    barrier = threading.Barrier(2)
    started = []

    def beat():
        barrier.wait()
        try:
            started.append(schedule_tick(NOON))
        finally:
            connection.close()

    threads = [threading.Thread(target=beat) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(started) == len(processes)
    assert ProcessRun.objects.count() == len(processes)


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        ("latest", [NOON + timedelta(hours=3)]),
        ("none", []),
        ("all", [NOON + timedelta(hours=h) for h in range(4)]),
    ],
)
def test_catch_up_after_downtime(policy, expected):
    hourly(catch_up=policy)
    now = NOON + timedelta(hours=3, minutes=30)  # beat was down 3.5 hours
    schedule_tick(now)
    assert (
        list(ProcessRun.objects.order_by("scheduled_for").values_list("scheduled_for", flat=True))
        == expected
    )
    assert ProcessDefinition.objects.get().next_fire_at == NOON + timedelta(hours=4)


def test_paused_and_archived_definitions_do_not_fire_and_resume_starts_from_now():
    paused = hourly("paused", paused=True)
    hourly("archived", archived=True)
    assert schedule_tick(NOON + timedelta(days=1)) == 0
    paused.paused = False
    reschedule(paused, now=NOON + timedelta(days=1, minutes=10))
    assert paused.next_fire_at == NOON + timedelta(days=1, hours=1)


def test_a_bad_stored_schedule_is_reported_and_does_not_stop_the_others(caplog):
    broken = hourly("broken")
    ProcessDefinition.objects.filter(pk=broken.pk).update(cron="61 * * * *")
    hourly("fine")
    assert schedule_tick(NOON) == 1
    assert "broken has a bad schedule" in caplog.text
    broken.refresh_from_db()
    assert broken.next_fire_at is None


def test_continuous_schedule_waits_for_the_run_and_then_the_gap():
    process = make_process("loop", schedule_kind="continuous", min_gap_seconds=30)
    reschedule(process, now=NOON)
    assert process.next_fire_at == NOON
    assert schedule_tick(NOON) == 1
    process.refresh_from_db()
    assert process.next_fire_at is None, "no next run while this one is active"
    run = drive(ProcessRun.objects.get())
    settle_definition(process.pk)  # what the worker does with the message the run's end sent
    process.refresh_from_db()
    assert process.next_fire_at == run.finished_at + timedelta(seconds=30)


def test_a_cron_time_gets_one_run_even_if_two_ticks_get_past_the_claim():
    process = hourly()
    trigger_run(process, Trigger.SCHEDULE, scheduled_for=NOON)
    with pytest.raises(AlreadyScheduled):
        trigger_run(process, Trigger.SCHEDULE, scheduled_for=NOON)
    assert ProcessRun.objects.count() == 1
