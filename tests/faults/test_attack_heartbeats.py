"""Attack on defect 4: heartbeats still depend on other work of the local runtime.

1. The supervisor thread ticks every second (``TICK_S``), so a heartbeat interval below 1 s is
   not honoured: with the shortest legal settings (0.2 s, lost after 1 s) every heartbeat is
   older than SUNDIAL_LOST_AFTER_S for a moment before the next one, and a sweep landing
   then fails a healthy attempt as lost.
2. The heartbeat is one UPDATE over every attempt the worker answers for, including those
   whose exits the recorder is writing; it waits for the recorder's transaction (whose rows
   it needs) — and, with many rows, deadlocks with it (PostgreSQL aborts one after
   ``deadlock_timeout``). While it waits, no attempt of the worker gets a heartbeat.
"""

import itertools
import threading
import time

import pytest
from django.db import connection, transaction
from django.utils import timezone

from jobs.models import TaskRun, Trigger
from jobs.orchestrator import trigger_run
from tests.conftest import make_process, purge_task_queue
from tests.orchestrator.driving import wait_for
from tests.workers import Worker, stop_task_processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.postgres]


def test_heartbeats_come_as_often_as_configured(tmp_path):
    interval = 0.2
    purge_task_queue()
    process = make_process("beating", {"job": {"config": {"command": ["sleep", "4"]}}})
    worker = Worker(tmp_path, SUNDIAL_HEARTBEAT_INTERVAL_S=str(interval), SUNDIAL_LOST_AFTER_S="1")
    try:
        run = trigger_run(process, Trigger.API)
        job = wait_for(lambda: run.task_runs.filter(status="running").first(), timeout=30)
        beats = [job.heartbeat_at]
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            beat = TaskRun.objects.values_list("heartbeat_at", flat=True).get(pk=job.pk)
            if beat != beats[-1]:
                beats.append(beat)
            time.sleep(0.01)
        gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(beats)]
        # Lost after three intervals means a heartbeat may be missed twice at most.
        assert gaps and max(gaps) <= 2 * interval, f"heartbeats {interval}s apart? {gaps}"
    finally:
        worker.kill()
        stop_task_processes()


def test_no_heartbeat_waits_for_exits_being_recorded(tmp_path):
    """While the recorder's transaction waits (here for a lock this test holds; in life for a
    big batch of exits or a slow database), the other attempts must keep their heartbeats."""
    lost_after = 3
    go = tmp_path / "go"
    purge_task_queue()
    process = make_process(
        "busy",
        {
            "first": {"config": {"shell": f"while ! test -e {go}; do sleep 0.05; done"}},
            "then": {"requires": ["first"]},
            "bystander": {"config": {"command": ["sleep", "6"]}},
        },
    )
    worker = Worker(tmp_path, SUNDIAL_HEARTBEAT_INTERVAL_S="0.5", SUNDIAL_LOST_AFTER_S="3")
    locked, release = threading.Event(), threading.Event()

    def hold_then(attempt_id):
        with transaction.atomic():
            TaskRun.objects.select_for_update().get(pk=attempt_id)
            locked.set()
            release.wait(timeout=30)
        connection.close()

    holder = None
    try:
        run = trigger_run(process, Trigger.API)
        wait_for(lambda: run.task_runs.filter(status="running").count() == 2, timeout=30)
        bystander = run.task_runs.get(task_name="bystander")
        holder = threading.Thread(target=hold_then, args=(run.task_runs.get(task_name="then").pk,))
        holder.start()
        assert locked.wait(timeout=10)
        go.touch()  # "first" exits; recording it marks "then" ready, which waits for our lock
        wait_for(lambda: run.task_runs.get(task_name="first").heartbeat_at is not None)
        oldest = 0.0
        deadline = time.monotonic() + lost_after + 1
        while time.monotonic() < deadline:
            beat = TaskRun.objects.values_list("heartbeat_at", flat=True).get(pk=bystander.pk)
            oldest = max(oldest, (timezone.now() - beat).total_seconds())
            time.sleep(0.05)
        # (No sweep meanwhile: it would wait for the same lock. Any sweep after lost_after
        # fails the bystander as lost and stops it.)
        assert oldest < lost_after, (
            f"the bystander's heartbeat got {oldest:.1f}s old while another exit was being"
            f" recorded (lost after {lost_after}s)"
        )
    finally:
        release.set()
        if holder is not None:
            holder.join()
        worker.kill()
        stop_task_processes()
