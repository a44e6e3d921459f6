"""Defect 2: a retry never starts beside its predecessor's still-living process.

The process of attempt 1 traps SIGTERM and lives 3 s more. Whether its worker was killed
(the sweep finds it by its stale heartbeat) or died mid-submit (the reconciler finds it by its
idempotency key), attempt 1 ends only once the process is gone, and only then may attempt 2
start. Both are polled quickly until the run finishes; the processes also write down when
attempt 1's ended and attempt 2's began.
"""

import os
import signal
import socket
import subprocess
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.engine import ACTIVE_ATTEMPT
from jobs.models import ProcessRun, TaskRun, Trigger
from jobs.orchestrator import trigger_run
from jobs.supervision import reconcile, sweep
from tests.conftest import make_process, purge_task_queue
from tests.orchestrator.driving import attempts, wait_for
from tests.workers import Worker, alive, group_members, kill_group, stop_task_processes, task_pid

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

SHORT_HEARTBEATS = {"SUNDIAL_HEARTBEAT_INTERVAL_S": "0.3", "SUNDIAL_LOST_AFTER_S": "1"}
LIVE = {s.value for s in ACTIVE_ATTEMPT}


def _script(tmp_path) -> str:
    """The first time: trap SIGTERM, then live 3 s more; the second time: succeed in 1 s."""
    once, up = tmp_path / "once", tmp_path / "up"
    dead, second = tmp_path / "first-ended", tmp_path / "second-began"
    return (
        f"if test -e {once}; then date +%s.%N > {second}; sleep 1; exit 0; fi; touch {once};"
        f" trap 'sleep 3; date +%s.%N > {dead}; exit 1' TERM; touch {up}; sleep 60 & wait"
    )


def _process(tmp_path):
    return make_process(
        "orphaned",
        {
            "job": {
                "config": {"shell": _script(tmp_path)},
                "max_attempts": 2,
                "retry_initial_delay_s": 0,
                "retry_jitter": 0,
            }
        },
    )


def _watch_until_finished(run: ProcessRun, pid: int, safety_net, timeout: float = 30) -> None:
    """Poll attempt statuses, then the first process, until the run is final.

    The database is read first: if the process is alive after a read that showed attempt 2
    live (or attempt 1 final), it was alive at that read too, so the two overlapped.
    """
    deadline = time.monotonic() + timeout
    next_net = 0.0
    while True:
        statuses = dict(run.task_runs.values_list("number", "status"))
        finished = ProcessRun.objects.filter(pk=run.pk, finished_at__isnull=False).exists()
        if alive(pid) or group_members(pid):
            assert statuses.get(2) not in LIVE, f"attempt 2 is {statuses[2]} beside attempt 1"
            assert statuses[1] in LIVE, f"attempt 1 is {statuses[1]} while its process lives"
        if finished:
            return
        assert time.monotonic() < deadline, f"the run did not finish: {attempts(run)}"
        if time.monotonic() >= next_net:
            safety_net()  # what beat asks a worker for every few seconds
            next_net = time.monotonic() + 0.3
        time.sleep(0.005)


def _assert_one_after_the_other(run: ProcessRun, tmp_path) -> None:
    assert attempts(run) == [("job", 1, "failed"), ("job", 2, "succeeded")]
    first, second = run.task_runs.order_by("number")
    assert first.reason.startswith("lost: no heartbeat"), first.reason
    assert second.started_at >= first.finished_at
    ended = float((tmp_path / "first-ended").read_text())
    began = float((tmp_path / "second-began").read_text())
    assert began > ended, f"attempt 2 began {ended - began:.3f}s before attempt 1's process ended"


def test_a_killed_workers_orphan_is_stopped_before_its_retry_starts(tmp_path, settings):
    settings.SUNDIAL_LOST_AFTER_S = 1
    purge_task_queue()
    worker = Worker(tmp_path, **SHORT_HEARTBEATS)
    try:
        run = trigger_run(_process(tmp_path), Trigger.API)
        wait_for(lambda: (tmp_path / "up").exists(), timeout=30)
        pid = task_pid(wait_for(lambda: run.task_runs.filter(status="running").first()))
        worker.signal(signal.SIGKILL)
        worker.wait(timeout=10)
        assert alive(pid), "the task outlives its worker: it runs in its own session"

        worker = Worker(tmp_path, **SHORT_HEARTBEATS)  # ready to run the retry at once
        _watch_until_finished(run, pid, sweep)
        _assert_one_after_the_other(run, tmp_path)
    finally:
        worker.kill()
        stop_task_processes()


def test_an_orphan_of_a_crashed_submit_is_stopped_before_its_retry_starts(tmp_path, settings):
    settings.SUNDIAL_LOST_AFTER_S = 1
    settings.SUNDIAL_SUBMIT_STUCK_AFTER_S = 1
    run = trigger_run(_process(tmp_path), Trigger.API)
    purge_task_queue()  # the dead worker had taken the submit message
    job = run.task_runs.get()
    # Claimed (SUBMITTING) on this host, the process started, then the worker died.
    TaskRun.objects.filter(pk=job.pk).update(
        status="submitting",
        submitting_at=timezone.now() - timedelta(seconds=5),
        worker_host=socket.gethostname(),
    )
    orphan = subprocess.Popen(
        ["/bin/sh", "-c", _script(tmp_path)],
        env={"PATH": os.environ["PATH"], "SUNDIAL_IDEMPOTENCY_KEY": job.idempotency_key},
        start_new_session=True,
    )
    worker = None
    try:
        wait_for(lambda: (tmp_path / "up").exists())
        worker = Worker(tmp_path, **SHORT_HEARTBEATS)  # ready to run the retry at once
        _watch_until_finished(run, orphan.pid, reconcile)
        _assert_one_after_the_other(run, tmp_path)
    finally:
        if worker is not None:
            worker.kill()
        kill_group(orphan.pid)
        orphan.wait()
        stop_task_processes()
