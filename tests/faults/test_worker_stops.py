"""Defect 9: a worker that stops (SIGTERM, Ctrl-C twice) leaves no task running unsupervised.

It stops its local processes (SIGTERM, at most SUNDIAL_SHUTDOWN_GRACE_S, then SIGKILL),
records each attempt as failed "worker stopped" with the exit code it saw, and the retry
runs on the next worker.
"""

import signal

import pytest

from jobs.models import Trigger
from jobs.orchestrator import trigger_run
from jobs.supervision import reconcile
from tests.conftest import make_process, purge_task_queue
from tests.orchestrator.driving import attempts, wait_for
from tests.workers import Worker, alive, group_members, stop_task_processes, task_pid

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

GRACE_S = 2  # SUNDIAL_SHUTDOWN_GRACE_S of the stopping worker
RETRYING = {"max_attempts": 2, "retry_initial_delay_s": 0, "retry_jitter": 0}


def _tasks(tmp_path):
    """Two tasks that succeed the second time; the first time they wait for a signal.

    ``trapper`` takes 0.5 s to finish after SIGTERM and exits 7; ``ignorer`` ignores SIGTERM
    (its children inherit that) and asks for an hour's grace, which the shutdown caps.
    """

    def shell(name, on_term):
        once, up = tmp_path / f"{name}-ran", tmp_path / f"{name}-up"
        return f"test -e {once} && exit 0; touch {once}; {on_term}; touch {up}; sleep 60 & wait"

    return {
        "trapper": {
            "config": {"shell": shell("trapper", "trap 'sleep 0.5; exit 7' TERM")},
            **RETRYING,
        },
        "ignorer": {
            "config": {"shell": shell("ignorer", "trap '' TERM"), "kill_grace_s": 3600},
            **RETRYING,
        },
    }


@pytest.mark.parametrize("how", ["SIGTERM (warm)", "SIGINT twice (cold)"])
def test_a_stopping_worker_stops_its_tasks_records_them_and_the_retry_runs_elsewhere(how, tmp_path):
    purge_task_queue()
    process = make_process("stopping", _tasks(tmp_path))
    worker = Worker(tmp_path, SUNDIAL_SHUTDOWN_GRACE_S=str(GRACE_S))
    try:
        run = trigger_run(process, Trigger.API)

        def both_up():
            """both tasks to run with their signal handling in place"""
            up = all((tmp_path / f"{name}-up").exists() for name in ("trapper", "ignorer"))
            return up and run.task_runs.filter(status="running").count() == 2

        wait_for(both_up, timeout=30)
        pids = {t.task_name: task_pid(t) for t in run.task_runs.all()}

        if how.startswith("SIGTERM"):
            worker.signal(signal.SIGTERM)
        else:
            worker.signal(signal.SIGINT)
            worker.wait_for_output("Hitting Ctrl+C again")  # the first one was handled
            worker.signal(signal.SIGINT)
        worker.wait(timeout=GRACE_S + 15)

        for name, pid in pids.items():
            assert not alive(pid), f"{name} outlived its worker"
            assert not group_members(pid), f"{name} left processes in its group"
        first = {t.task_name: t for t in run.task_runs.filter(number=1)}
        assert {name: (t.status, t.exit_code) for name, t in first.items()} == {
            "trapper": ("failed", 7),
            "ignorer": ("failed", -signal.SIGKILL),
        }, worker.output()
        for t in first.values():
            assert "worker stopped" in t.reason
        # The retries exist, and nothing was started on the worker that was stopping.
        assert set(run.task_runs.filter(number=2).values_list("status", flat=True)) <= {
            "waiting",
            "ready",
        }, attempts(run)

        worker = Worker(tmp_path)

        def finished():
            """the retries to succeed on the new worker"""
            reconcile()  # what beat would ask for, in case a message was lost meanwhile
            run.refresh_from_db()
            return run.finished_at is not None

        wait_for(finished, timeout=30, interval=0.2)
        assert run.status == "succeeded"
        assert sorted(attempts(run)) == [
            ("ignorer", 1, "failed"),
            ("ignorer", 2, "succeeded"),
            ("trapper", 1, "failed"),
            ("trapper", 2, "succeeded"),
        ]
    finally:
        worker.kill()
        stop_task_processes()
