"""Attack on defect 6: overlap `replace` while the replaced run's task is in its grace.

The new run waits until the replaced run's process has stopped: its task never runs beside
the old one (both are polled quickly; the processes also write down when they ended/began).
"""

import time

import pytest

from jobs.engine import ACTIVE_ATTEMPT
from jobs.models import ProcessRun, TaskRun, Trigger
from jobs.orchestrator import trigger_run
from tests.conftest import make_process, purge_task_queue
from tests.orchestrator.driving import wait_for
from tests.workers import Worker, alive, group_members, stop_task_processes, task_pid

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

LIVE = [s.value for s in ACTIVE_ATTEMPT]


def test_a_replacing_run_starts_only_once_the_replaced_process_has_stopped(tmp_path):
    once, up = tmp_path / "once", tmp_path / "up"
    ended, began = tmp_path / "old-ended", tmp_path / "new-began"
    script = (
        f"if test -e {once}; then date +%s.%N > {began}; exit 0; fi; touch {once};"
        f" trap 'sleep 3; date +%s.%N > {ended}; exit 1' TERM; touch {up}; sleep 60 & wait"
    )
    purge_task_queue()
    process = make_process("replaced", {"job": {"config": {"shell": script}}}, overlap="replace")
    worker = Worker(tmp_path)
    try:
        old = trigger_run(process, Trigger.API)
        wait_for(lambda: up.exists(), timeout=30)
        # Recorded just after the spawn: wait for the record, not only the process.
        pid = task_pid(wait_for(lambda: old.task_runs.exclude(external_id="").first()))
        new = trigger_run(process, Trigger.API)
        assert new.status == "queued", new.reason

        deadline = time.monotonic() + 30
        while not ProcessRun.objects.filter(pk=new.pk, finished_at__isnull=False).exists():
            # Read first: a process alive after this read was alive at it.
            new_live = TaskRun.objects.filter(run=new, status__in=LIVE).exists()
            old_final = not TaskRun.objects.filter(run=old, status__in=LIVE).exists()
            if alive(pid) or group_members(pid):
                assert not new_live, "the new run's task runs beside the replaced one"
                assert not old_final, "the replaced attempt ended while its process lives"
            assert time.monotonic() < deadline, "the new run did not finish"
            time.sleep(0.005)
        old.refresh_from_db()
        new.refresh_from_db()
        assert (old.status, new.status) == ("killed", "succeeded")
        assert float(began.read_text()) > float(ended.read_text())
    finally:
        worker.kill()
        stop_task_processes()
