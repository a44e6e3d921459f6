"""Attacks on defect 9: how a stopping worker ends its tasks.

1. A task already being stopped when its worker stops outlives the worker. A kill (or a time
limit, or a replace) terminates the process with the task's own grace
(``kill_grace_s``, up to an hour). When the worker then stops, its shutdown asks for the
shorter SUNDIAL_SHUTDOWN_GRACE_S — but ``LocalExecutor.terminate`` ignores a second call
("a second call must not restart the grace"), so the process keeps its hour, the shutdown
gives up waiting after grace + 10 s, and the worker exits leaving it running unsupervised.
(The same happens when the supervisor's tick carries out the "worker stopped" request that
``_mark_stopping`` just wrote, before ``shutdown`` calls terminate with the short grace.)
2. A task that finishes its work and exits 0 during the shutdown grace is recorded FAILED
"worker stopped" (a stop asked for makes the exit code "say nothing new") and runs again.
"""

import signal

import pytest

from jobs.models import Trigger
from jobs.orchestrator import request_kill, trigger_run
from jobs.supervision import reconcile
from tests.conftest import make_process, purge_task_queue
from tests.orchestrator.driving import attempts, wait_for
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
        # Recorded just after the spawn: wait for the record, not only the process.
        pid = task_pid(wait_for(lambda: run.task_runs.exclude(external_id="").first()))
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


def test_a_task_that_completes_during_the_shutdown_grace_is_not_run_again(tmp_path):
    up, finish, ran = tmp_path / "up", tmp_path / "finish", tmp_path / "ran"
    purge_task_queue()
    # Does not react to SIGTERM (nor do its children); completes when told to, exit 0.
    finishing = (
        f"trap '' TERM; touch {up}; while ! test -e {finish}; do sleep 0.05; done;"
        f" echo done >> {ran}"
    )
    process = make_process(
        "finishing",
        {"job": {"config": {"shell": finishing}, "max_attempts": 2, "retry_initial_delay_s": 0}},
    )
    worker = Worker(tmp_path, SUNDIAL_SHUTDOWN_GRACE_S=str(GRACE_S))
    try:
        run = trigger_run(process, Trigger.API)
        wait_for(lambda: up.exists(), timeout=30)
        worker.signal(signal.SIGTERM)
        worker.wait_for_output("stopping 1 local task(s)")
        finish.touch()  # its work is done within the grace
        worker.wait(timeout=GRACE_S + 25)
        first = run.task_runs.get(number=1)
        assert first.exit_code == 0, "it completed within the grace"

        worker = Worker(tmp_path)

        def finished():
            """the run to finish on the next worker"""
            reconcile()
            run.refresh_from_db()
            return run.finished_at is not None

        wait_for(finished, timeout=30, interval=0.2)
        assert (first.status, ran.read_text().count("done")) == ("succeeded", 1), (
            f"{first.status} ({first.reason}, exit code 0); {attempts(run)}"
        )
    finally:
        worker.kill()
        stop_task_processes()
