"""A real worker process is SIGKILLed while its task runs: the attempt is lost, then retried."""

import signal

import pytest

from jobs.models import TaskRun, Trigger
from jobs.orchestrator import trigger_run
from jobs.supervision import sweep
from tests.conftest import make_process, purge_task_queue
from tests.orchestrator.driving import attempts, wait_for
from tests.workers import Worker, alive, stop_task_processes, task_pid

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

SHORT_HEARTBEATS = {"SUNDIAL_HEARTBEAT_INTERVAL_S": "0.3", "SUNDIAL_LOST_AFTER_S": "1"}


def test_a_task_whose_worker_was_killed_is_failed_stopped_and_retried(tmp_path, settings):
    settings.SUNDIAL_LOST_AFTER_S = 1
    purge_task_queue()
    marker = tmp_path / "second-time"
    process = make_process(
        "survivor",
        {
            "job": {
                "config": {"shell": f"test -e {marker} && exit 0; touch {marker}; sleep 60"},
                "max_attempts": 2,
                "retry_initial_delay_s": 0,
                "retry_jitter": 0,
            }
        },
    )
    worker = Worker(tmp_path, **SHORT_HEARTBEATS)
    try:
        run = trigger_run(process, Trigger.API)
        first = wait_for(
            lambda: TaskRun.objects.filter(run=run, status="running", number=1).first(),
            timeout=30,
        )
        orphan = task_pid(first)
        worker.signal(signal.SIGKILL)
        worker.wait(timeout=10)
        assert alive(orphan), "the task outlives its worker: it runs in its own session"

        wait_for(lambda: sweep() > 0, timeout=15)
        # The attempt ends only once its orphan is gone, so the retry never runs beside it.
        first = wait_for(
            lambda: TaskRun.objects.filter(pk=first.pk, status="failed").first(), timeout=15
        )
        assert not alive(orphan)
        assert first.reason.startswith("lost: no heartbeat")

        worker = Worker(tmp_path, **SHORT_HEARTBEATS)

        def finished():
            """the retry to succeed on the new worker"""
            sweep()
            run.refresh_from_db()
            return run.finished_at is not None

        wait_for(finished, timeout=30)
        assert run.status == "succeeded"
        assert attempts(run) == [("job", 1, "failed"), ("job", 2, "succeeded")]
    finally:
        worker.kill()
        stop_task_processes()
