"""Attacks on the AWS executors with a real Celery worker subprocess pointed at moto server.

The worker talks to moto over HTTP (``AWS_ENDPOINT_URL``); this test process plays beat
(poll, reconcile) and AWS (moto runs in this process, so a test can make AWS hold a call
or answer it with a ThrottlingException). Faults are real: SIGKILL while AWS holds RunTask,
a storm of throttling on SubmitJob / RunTask / DescribeJobs, recovery racing a slow submit.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from django.test import override_settings
from moto.batch import models as moto_batch
from moto.core.exceptions import AWSError
from moto.ecs import models as moto_ecs

from jobs import aws_runtime
from jobs.models import ProcessRun, TaskRun, Trigger
from jobs.orchestrator import request_kill, trigger_run
from jobs.supervision import poll_running, reconcile
from tests.aws import aws_environment
from tests.aws.world import HeldCall
from tests.conftest import make_process, purge_task_queue
from tests.orchestrator.driving import attempts, wait_for
from tests.workers import Worker, stop_task_processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.postgres]

BATCH = {"executor": "batch", "config": {"image": "repo/transform:1", "job_queue": "sundial"}}
RETRYING = {"max_attempts": 2, "retry_initial_delay_s": 0, "retry_jitter": 0}


@pytest.fixture
def worker_env(aws, moto_endpoint) -> dict[str, str]:
    # One HTTP request per AWS call in the worker: a throttled call fails at once (botocore's
    # own retries are tested elsewhere), so Sundial's handling of it is what is attacked.
    return {**aws_environment(moto_endpoint), "SUNDIAL_AWS_MAX_ATTEMPTS": "1"}


@pytest.fixture
def worker(aws, worker_env, tmp_path) -> Iterator[Worker]:
    aws.batch_queue()
    purge_task_queue()
    worker = Worker(tmp_path / "worker", **worker_env)
    try:
        yield worker
    finally:
        worker.kill()
        stop_task_processes()
        purge_task_queue()


def ecs_task(cluster) -> dict:
    return {
        "executor": "ecs",
        "config": {
            "image": "repo/publish:1",
            "cluster": cluster.name,
            "subnets": [cluster.subnet],
            "security_groups": [cluster.security_group],
        },
    }


def latest(run: ProcessRun, task: str = "job") -> TaskRun:
    return run.task_runs.filter(task_name=task).latest("id")


def finished(run: ProcessRun, timeout: float = 20) -> None:
    def done():
        """the run to finish"""
        poll_running()
        run.refresh_from_db()
        return run.finished_at is not None

    wait_for(done, timeout=timeout, interval=0.2)


class Throttled:
    """AWS answers the next ``times`` calls of a moto backend method with 400
    ThrottlingException (Rate exceeded), as it does under a storm of calls."""

    def __init__(self, monkeypatch, owner, method: str, times: int) -> None:
        self.refused = 0
        original = getattr(owner, method)

        def throttled(backend, *args, **kwargs):
            if self.refused < times:
                self.refused += 1
                raise AWSError("Rate exceeded", "ThrottlingException", 400)
            return original(backend, *args, **kwargs)

        monkeypatch.setattr(owner, method, throttled)


def live_ecs_tasks(aws) -> list[dict]:
    return [t for t in aws.ecs_tasks() if t["desiredStatus"] != "STOPPED"]


# ---- 1. never two tasks / jobs for one attempt ----


@override_settings(SUNDIAL_SUBMIT_STUCK_AFTER_S=1)
def test_a_worker_killed_right_after_run_task_leaves_one_task_and_it_is_adopted(
    aws, worker, monkeypatch
):
    cluster = aws.ecs_cluster()
    held = HeldCall(monkeypatch, moto_ecs.EC2ContainerServiceBackend, "run_task", accept_first=True)
    run = trigger_run(make_process("ecsonce", {"job": ecs_task(cluster)}), Trigger.API)
    held.wait()
    worker.signal(signal.SIGKILL)
    worker.wait(timeout=10)
    held.released.set()
    assert (latest(run).status, latest(run).external_id) == ("submitting", "")

    def adopted():
        """recovery to find the task by startedBy and adopt it"""
        reconcile()
        return latest(run).external_id

    arn = wait_for(adopted, timeout=15, interval=0.3)
    assert [t["taskArn"].rsplit("/", 1)[-1] for t in aws.ecs_tasks()] == [arn.rsplit("/", 1)[-1]]
    aws.run_ecs_task(arn)
    aws.stop_ecs_task(arn, 0)
    finished(run)
    assert run.status == "succeeded", run.reason
    assert attempts(run) == [("job", 1, "succeeded")]


@override_settings(SUNDIAL_SUBMIT_STUCK_AFTER_S=1)
def test_recovery_racing_a_slow_submit_that_then_completes_leaves_one_live_job(
    aws, worker, monkeypatch
):
    """AWS holds SubmitJob before accepting it; recovery finds no job and fails attempt 1 as
    lost; its retry runs. Then AWS accepts the held SubmitJob after all: that job belongs
    to an attempt that has ended and must be stopped at once."""
    held = HeldCall(monkeypatch, moto_batch.BatchBackend, "submit_job", accept_first=False)
    run = trigger_run(make_process("slow", {"job": {**BATCH, **RETRYING}}), Trigger.API)
    held.wait()

    def given_up_and_retried():
        """recovery to fail attempt 1 and the worker to submit attempt 2"""
        reconcile()
        second = run.task_runs.filter(number=2).first()
        return second if second is not None and second.external_id else None

    second = wait_for(given_up_and_retried, timeout=20, interval=0.3)
    held.released.set()

    def stray_stopped():
        """the worker to stop the job its late SubmitJob started"""
        return len(aws.batch_jobs()) == 2 and aws.carry_out_terminations() == 1

    wait_for(stray_stopped, timeout=15, interval=0.2)
    first = run.task_runs.get(number=1)
    assert first.status == "failed" and "lost while submitting" in first.reason, first.reason
    live = [j["jobArn"] for j in aws.batch_jobs() if j["status"] not in ("SUCCEEDED", "FAILED")]
    assert live == [second.external_id], "one live job: the retry's"
    aws.finish_batch_job(second.external_id, 0)
    finished(run)
    assert run.status == "succeeded"
    assert attempts(run) == [("job", 1, "failed"), ("job", 2, "succeeded")]


@override_settings(SUNDIAL_SUBMIT_STUCK_AFTER_S=1)
def test_recovery_adopting_the_job_of_a_slow_submit_keeps_that_one_job(aws, worker, monkeypatch):
    """AWS accepted SubmitJob and holds its answer; recovery finds the job by name and
    adopts it; then the answer reaches the worker, which records the same job."""
    held = HeldCall(monkeypatch, moto_batch.BatchBackend, "submit_job", accept_first=True)
    run = trigger_run(make_process("adopt", {"job": BATCH}), Trigger.API)
    held.wait()

    def adopted():
        """recovery to adopt the job the held SubmitJob started"""
        reconcile()
        return latest(run).external_id

    arn = wait_for(adopted, timeout=15, interval=0.3)
    adopted_at = latest(run).heartbeat_at
    held.released.set()

    def recorded_by_the_worker():
        """the worker to record the answer it was held for"""
        return latest(run).heartbeat_at != adopted_at

    wait_for(recorded_by_the_worker, timeout=15, interval=0.1)
    assert aws.carry_out_terminations() == 0, "the one job is never stopped"
    assert [j["jobArn"] for j in aws.batch_jobs()] == [arn]
    assert latest(run).external_id == arn
    aws.finish_batch_job(arn, 0)
    finished(run)
    assert run.status == "succeeded"
    assert attempts(run) == [("job", 1, "succeeded")]


# ---- 2. a kill racing a submit always ends with the remote job stopped ----


@pytest.mark.parametrize("accept_first", [False, True], ids=["request-held", "answer-held"])
def test_a_kill_racing_run_task_has_the_ecs_task_stopped_and_the_run_killed(
    aws, worker, monkeypatch, accept_first
):
    cluster = aws.ecs_cluster()
    held = HeldCall(
        monkeypatch, moto_ecs.EC2ContainerServiceBackend, "run_task", accept_first=accept_first
    )
    run = trigger_run(make_process("ekill", {"job": ecs_task(cluster)}), Trigger.API)
    held.wait()
    assert request_kill(run.pk, reason="killed")
    held.released.set()

    def stopped():
        """the worker to stop the task it started after the kill"""
        return aws.ecs_tasks() and aws.carry_out_ecs_stops() == 1

    wait_for(stopped, timeout=20, interval=0.2)
    finished(run)
    assert run.status == "killed"
    job = latest(run)
    assert job.status == "killed"
    assert "run killed" in aws.describe_ecs_task(job.external_id)["stoppedReason"]
    assert live_ecs_tasks(aws) == []


def test_a_kill_racing_a_submit_whose_answer_is_lost_still_terminates_the_batch_job(
    aws, worker, monkeypatch
):
    """SubmitJob reaches Batch, which starts the job, and answers 500; the worker (one
    request per call) takes that as transient, finds the job by name and records it —
    while a kill arrived meanwhile."""
    from moto.batch.exceptions import InternalFailure

    held = HeldCall(
        monkeypatch,
        moto_batch.BatchBackend,
        "submit_job",
        accept_first=True,
        fail_with=InternalFailure("We encountered an internal error. Please try again."),
    )
    run = trigger_run(make_process("lost500", {"job": {**BATCH, **RETRYING}}), Trigger.API)
    held.wait()
    assert request_kill(run.pk, reason="killed")
    held.released.set()

    def ended():
        """every job the submit started to be terminated, and the run to end killed"""
        aws.carry_out_terminations()  # Batch carries out each TerminateJob as it comes
        poll_running()
        run.refresh_from_db()
        return run.finished_at is not None

    wait_for(ended, timeout=20, interval=0.2)
    assert all(job["status"] == "FAILED" for job in aws.batch_jobs()), aws.batch_jobs()
    assert run.status == "killed"
    assert attempts(run) == [("job", 1, "killed")]
    recorded = latest(run).external_id
    assert "run killed" in aws.describe_batch_job(recorded)["statusReason"]


# ---- 3. throttling never costs a task a retry ----


def test_a_storm_of_throttling_on_submit_job_and_describe_jobs_costs_no_retry(
    aws, worker, monkeypatch, settings
):
    storm = Throttled(monkeypatch, moto_batch.BatchBackend, "submit_job", times=3)
    run = trigger_run(make_process("storm", {"job": {**BATCH, **RETRYING}}), Trigger.API)

    def submitted():
        """the worker to get its SubmitJob through the storm"""
        return latest(run).external_id

    arn = wait_for(submitted, timeout=25, interval=0.2)
    assert storm.refused == 3
    assert attempts(run) == [("job", 1, "submitted")], "throttling costs no attempt"
    # This process's poller, in the storm too (one request per call, no botocore retry).
    settings.SUNDIAL_AWS_MAX_ATTEMPTS = 1
    aws_runtime.forget()
    aws.run_batch_job(arn)
    aws.finish_batch_job(arn, 0)
    refused = aws.throttle("batch", "DescribeJobs", 6)
    while len(refused) < 6:
        poll_running()
        assert latest(run).status == "submitted", "a throttled poll changes nothing"
    finished(run)
    assert run.status == "succeeded"
    assert attempts(run) == [("job", 1, "succeeded")]


def test_a_storm_of_throttling_on_run_task_costs_no_retry(aws, worker, monkeypatch):
    cluster = aws.ecs_cluster()
    storm = Throttled(monkeypatch, moto_ecs.EC2ContainerServiceBackend, "run_task", times=3)
    run = trigger_run(
        make_process("estorm", {"job": {**ecs_task(cluster), **RETRYING}}), Trigger.API
    )

    def submitted():
        """the worker to get its RunTask through the storm"""
        return latest(run).external_id

    arn = wait_for(submitted, timeout=25, interval=0.2)
    assert storm.refused == 3
    assert attempts(run) == [("job", 1, "submitted")], "throttling costs no attempt"
    assert len(aws.ecs_tasks()) == 1
    aws.run_ecs_task(arn)
    aws.stop_ecs_task(arn, 0)
    finished(run)
    assert run.status == "succeeded"
    assert attempts(run) == [("job", 1, "succeeded")]
