"""The database is the source of truth: lost processes, lost messages, crashed submits."""

import socket
import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone

from executors.local.executor import stat_fields
from jobs.models import TaskRun, Trigger
from jobs.orchestrator import trigger_run
from jobs.supervision import reconcile, stop_lost_local_attempts, stop_strays_here
from tests.conftest import make_process
from tests.orchestrator.driving import attempts, drive, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

RETRYING = {"max_attempts": 2, "retry_initial_delay_s": 0, "retry_jitter": 0}


def _as_left_by_a_dead_worker(job: TaskRun, external_id: str, settings) -> None:
    """Running, its heartbeat stopped long ago: what a SIGKILLed worker leaves behind."""
    long_ago = timezone.now() - timedelta(seconds=settings.SUNDIAL_LOST_AFTER_S + 5)
    TaskRun.objects.filter(pk=job.pk).update(
        status="running", external_id=external_id, started_at=long_ago, heartbeat_at=long_ago
    )


def test_a_process_whose_worker_died_is_failed_by_its_stale_heartbeat_and_retried(settings):
    process = make_process("lost", {"job": RETRYING})
    run = trigger_run(process, Trigger.MANUAL)
    job = run.task_runs.get()
    # On this host, and gone already (no such pid): known stopped, so it ends at once.
    _as_left_by_a_dead_worker(job, f"{socket.gethostname()}:{2**22 + 1}:1", settings)
    assert stop_lost_local_attempts() == 1
    job = wait_for(lambda: TaskRun.objects.filter(pk=job.pk, status="failed").first())
    assert job.reason.startswith("lost: no heartbeat since")
    assert stop_lost_local_attempts() == 0, "a second sweep finds nothing more"
    run = drive(run)
    assert run.status == "succeeded"
    assert attempts(run) == [("job", 1, "failed"), ("job", 2, "succeeded")]


def test_an_orphan_on_another_host_is_given_up_on_only_after_the_unreachable_window(settings):
    process = make_process("far", {"job": RETRYING})
    run = trigger_run(process, Trigger.MANUAL)
    job = run.task_runs.get()
    _as_left_by_a_dead_worker(job, "another-host:4242:1", settings)
    assert stop_lost_local_attempts() == 1
    job.refresh_from_db()
    assert job.status == "running", "a sweep on its own host may still stop it"
    assert job.stop_reason.startswith("lost: no heartbeat"), "the page says why it is stopping"

    settings.SUNDIAL_ORPHAN_UNREACHABLE_AFTER_S = 1
    stop_lost_local_attempts()
    job.refresh_from_db()
    assert job.status == "failed"
    assert "could not be stopped from here and may still be running" in job.reason


def test_a_fresh_heartbeat_is_not_lost(settings):
    process = make_process("alive", {"job": {"config": {"command": ["sleep", "30"]}}})
    run = trigger_run(process, Trigger.MANUAL)
    TaskRun.objects.filter(run=run).update(
        status="running", external_id="h:1:1", heartbeat_at=timezone.now()
    )
    assert stop_lost_local_attempts() == 0


def test_worker_killed_mid_submit_is_recovered_without_running_twice(settings, tmp_path):
    """Claimed (SUBMITTING) then the worker died: maybe the process started, maybe not."""
    process = make_process("crashy", {"job": RETRYING})
    run = trigger_run(process, Trigger.MANUAL)
    job = run.task_runs.get()
    stuck_since = timezone.now() - timedelta(seconds=settings.SUNDIAL_SUBMIT_STUCK_AFTER_S + 1)
    TaskRun.objects.filter(pk=job.pk).update(
        status="submitting", submitting_at=stuck_since, worker_host=socket.gethostname()
    )
    # The dead worker had spawned the process: an orphan carrying the attempt's key.
    orphan = subprocess.Popen(
        ["sleep", "60"],
        env={"SUNDIAL_IDEMPOTENCY_KEY": job.idempotency_key},
        start_new_session=True,
    )
    assert reconcile() >= 1
    assert wait_for(lambda: orphan.poll() is not None), "the unsupervisable orphan is stopped"
    job = wait_for(lambda: TaskRun.objects.filter(pk=job.pk, status="failed").first())
    assert job.reason.startswith("lost: no heartbeat"), job.reason
    run = drive(run)
    assert attempts(run) == [("job", 1, "failed"), ("job", 2, "succeeded")]


def test_a_recent_submit_is_left_alone(settings):
    process = make_process("busy")
    run = trigger_run(process, Trigger.MANUAL)
    TaskRun.objects.filter(run=run).update(status="submitting", submitting_at=timezone.now())
    reconcile()
    assert run.task_runs.get().status == "submitting"


def test_a_run_whose_first_step_message_was_lost_is_advanced_by_reconcile():
    process = make_process("stalled", {"a": {}, "b": {"requires": ["a"]}})
    run = trigger_run(process, Trigger.MANUAL)
    # a finished, but the advance that should have followed never happened.
    TaskRun.objects.filter(run=run, task_name="a").update(
        status="succeeded", finished_at=timezone.now()
    )
    reconcile()
    assert run.task_runs.get(task_name="b").status == "ready"


def test_a_process_given_up_on_is_stopped_when_a_worker_is_back_on_its_host(settings):
    """Its attempt failed as unreachable (no worker on its host); the process ran on."""
    process = make_process("stray", {"job": RETRYING})
    run = trigger_run(process, Trigger.MANUAL)
    job = run.task_runs.get()
    stray = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        external_id = f"{socket.gethostname()}:{stray.pid}:{stat_fields(stray.pid)[19]}"
        TaskRun.objects.filter(pk=job.pk).update(
            status="failed",
            worker_host=socket.gethostname(),
            external_id=external_id,
            stop_requested_at=timezone.now(),
            stop_as="failed",
            finished_at=timezone.now(),
            reason="lost: …; its process on host h could not be stopped from here",
        )
        assert stop_strays_here() == 1
        assert wait_for(lambda: stray.poll() is not None), "the stray is stopped"
        assert stop_strays_here() == 0
    finally:
        stray.kill()
        stray.wait()
