"""Attack on defect 9: a task already being stopped when its worker stops outlives the worker.

A kill (or a time limit, or a replace) terminates the process with the task's own grace
(``kill_grace_s``, up to an hour). When the worker then stops, its shutdown asks for the
shorter SUNDIAL_SHUTDOWN_GRACE_S — but ``LocalExecutor.terminate`` ignores a second call
("a second call must not restart the grace"), so the process keeps its hour, the shutdown
gives up waiting after grace + 10 s, and the worker exits leaving it running unsupervised.
"""

import signal

import pytest

from jobs.models import Trigger
from jobs.orchestrator import request_kill, trigger_run
from tests.conftest import make_process, purge_task_queue
from tests.orchestrator.driving import wait_for
from tests.workers import Worker, alive, group_members, stop_task_processes, task_pid

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

GRACE_S = 2


def test_a_task_in_its_kill_grace_is_stopped_when_its_worker_stops(tmp_path):
    up, termed = tmp_path / "up", tmp_path / "termed"
    purge_task_queue()
    slow_to_stop = {
        # Notes SIGTERM and carries on (a checkpointing job, say); its children die of it.
        "shell": f"trap 'touch {termed}' TERM; touch {up}; while :; do sleep 0.1; done",
        "kill_grace_s": 3600,
    }
    process = make_process("graceful", {"job": {"config": slow_to_stop}})
    worker = Worker(tmp_path, SUNDIAL_SHUTDOWN_GRACE_S=str(GRACE_S))
    try:
        run = trigger_run(process, Trigger.API)
        wait_for(lambda: up.exists(), timeout=30)
        pid = task_pid(run.task_runs.get())
        request_kill(run.pk, reason="killed by a test")
        wait_for(lambda: termed.exists(), timeout=10)  # in its hour of grace now

        worker.signal(signal.SIGTERM)
        worker.wait(timeout=GRACE_S + 25)
        assert not alive(pid) and not group_members(pid), (
            "the task outlived its stopped worker; its attempt is "
            f"{run.task_runs.get().status}:\n{worker.output()[-2000:]}"
        )
    finally:
        worker.kill()
        stop_task_processes()
