"""Attack on defect 2: many sweeps at once, in several processes, over one orphan.

Beat may send a sweep while the last one still runs, and every worker runs the ones it
receives: here a worker (4 threads) and this process sweep together, again and again, while
an orphan of a SIGKILLed worker is in its grace. The orphan's attempt must end once, only
after its process is gone, and its retry must run once, after it.
"""

import signal
import threading
import time

import pytest
from celery import current_app
from django.db import connection

from jobs.engine import ACTIVE_ATTEMPT
from jobs.models import ProcessRun, TaskEvent, Trigger
from jobs.orchestrator import trigger_run
from jobs.supervision import sweep
from tests.conftest import make_process, purge_task_queue
from tests.orchestrator.driving import attempts, wait_for
from tests.workers import Worker, alive, group_members, stop_task_processes, task_pid

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

LIVE = {s.value for s in ACTIVE_ATTEMPT}
SHORT_HEARTBEATS = {"SUNDIAL_HEARTBEAT_INTERVAL_S": "0.3", "SUNDIAL_LOST_AFTER_S": "1"}


def test_sweeps_at_once_in_two_processes_end_an_orphan_once_and_retry_it_once(tmp_path, settings):
    settings.SUNDIAL_LOST_AFTER_S = 1
    once, up, ran = tmp_path / "once", tmp_path / "up", tmp_path / "ran"
    script = (
        f"echo $SUNDIAL_ATTEMPT >> {ran}; test -e {once} && exit 0; touch {once};"
        f" trap 'sleep 2; exit 1' TERM; touch {up}; sleep 60 & wait"
    )
    retrying = {"max_attempts": 3, "retry_initial_delay_s": 0, "retry_jitter": 0}
    purge_task_queue()
    process = make_process("swept", {"job": {"config": {"shell": script}, **retrying}})
    worker = Worker(tmp_path, **SHORT_HEARTBEATS)
    try:
        run = trigger_run(process, Trigger.API)
        wait_for(lambda: up.exists(), timeout=30)
        # Recorded just after the spawn: wait for the record, not only the process.
        pid = task_pid(wait_for(lambda: run.task_runs.exclude(external_id="").first()))
        worker.signal(signal.SIGKILL)
        worker.wait(timeout=10)
        worker = Worker(tmp_path, concurrency=4, **SHORT_HEARTBEATS)

        def sweep_in_threads():
            barrier = threading.Barrier(2)

            def here():
                try:
                    barrier.wait(timeout=10)
                    sweep()
                finally:
                    connection.close()

            thread = threading.Thread(target=here)
            thread.start()
            barrier.wait(timeout=10)
            sweep()
            thread.join()

        deadline = time.monotonic() + 30
        while not ProcessRun.objects.filter(pk=run.pk, finished_at__isnull=False).exists():
            statuses = dict(run.task_runs.values_list("number", "status"))
            if alive(pid) or group_members(pid):
                assert statuses.get(2) not in LIVE, "attempt 2 runs beside attempt 1"
                assert statuses[1] in LIVE, f"attempt 1 is {statuses[1]} while its process lives"
            assert time.monotonic() < deadline, f"the run did not finish: {attempts(run)}"
            for _ in range(4):
                current_app.send_task("jobs.tasks.sweep")  # beat, impatient
            sweep_in_threads()
            time.sleep(0.01)
        run.refresh_from_db()
        assert run.status == "succeeded"
        assert attempts(run) == [("job", 1, "failed"), ("job", 2, "succeeded")]
        first = run.task_runs.get(number=1)
        kinds = list(TaskEvent.objects.filter(task_run=first).values_list("kind", flat=True))
        assert (kinds.count("lost"), kinds.count("failed")) == (1, 1), kinds
        assert ran.read_text().split() == ["1", "2"]
    finally:
        worker.kill()
        stop_task_processes()
