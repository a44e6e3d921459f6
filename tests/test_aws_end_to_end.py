"""Runs with AWS tasks through a real worker subprocess pointed at moto server.

The worker talks to moto over HTTP, as it would to AWS (``AWS_ENDPOINT_URL``); this test
process plays beat (it polls) and AWS's own scheduler (it starts and ends jobs, through
``AwsWorld``). Faults are real: the worker is SIGKILLed while AWS holds its SubmitJob.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from django.test import override_settings
from moto.batch import models as moto_batch

from jobs.logs import read_after
from jobs.models import TaskRun, Trigger
from jobs.orchestrator import request_kill, trigger_run
from jobs.supervision import poll_running, reconcile
from tests.aws import aws_environment
from tests.aws.world import HeldCall
from tests.conftest import make_process, purge_task_queue
from tests.orchestrator.driving import attempts, wait_for
from tests.workers import Worker, stop_task_processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]

TRANSFORM = {"executor": "batch", "config": {"image": "repo/transform:1", "job_queue": "sundial"}}


@pytest.fixture
def worker(aws, moto_endpoint, tmp_path) -> Iterator[Worker]:
    aws.batch_queue()
    purge_task_queue()
    worker = Worker(tmp_path / "worker", **aws_environment(moto_endpoint))
    try:
        yield worker
    finally:
        worker.kill()
        stop_task_processes()


def attempt_of(run, task: str) -> TaskRun:
    return run.task_runs.filter(task_name=task).latest("id")


def submitted(run, task: str) -> TaskRun:
    """Wait until the worker has submitted the task's latest attempt; returns it."""

    def recorded():
        """the worker to record the job it submitted"""
        task_run = attempt_of(run, task)
        return task_run if task_run.external_id else None

    return wait_for(recorded, timeout=30)


def finished(run) -> None:
    def done():
        """the run to finish"""
        poll_running()
        run.refresh_from_db()
        return run.finished_at is not None

    wait_for(done, timeout=30, interval=0.2)


def test_a_process_mixing_local_batch_and_ecs_tasks_runs_to_success(aws, worker):
    cluster = aws.ecs_cluster()
    publish = {
        "executor": "ecs",
        "config": {
            "image": "repo/publish:1",
            "cluster": cluster.name,
            "subnets": [cluster.subnet],
            "security_groups": [cluster.security_group],
            "log_group": "/sundial/publish",
        },
    }
    process = make_process(
        "mixed",
        {
            "extract": {},
            "transform": {**TRANSFORM, "requires": ["extract"]},
            "load": {"requires": ["transform"]},
            "publish": {**publish, "requires": ["transform"]},
        },
    )
    run = trigger_run(process, Trigger.API)

    transform = submitted(run, "transform")
    job = aws.describe_batch_job(transform.external_id)
    environment = {e["name"]: e["value"] for e in job["container"]["environment"]}
    assert environment["SUNDIAL_TASK_RUN_ID"] == str(transform.pk)
    assert environment["SUNDIAL_TOKEN"] == transform.token
    aws.run_batch_job(transform.external_id, "transforming 10 rows")
    poll_running()
    assert attempt_of(run, "transform").status == "running"
    aws.finish_batch_job(transform.external_id, 0)
    poll_running()

    published = submitted(run, "publish")
    task = aws.describe_ecs_task(published.external_id)
    (overrides,) = task["overrides"]["containerOverrides"]
    assert {"name": "SUNDIAL_TASK_RUN_ID", "value": str(published.pk)} in overrides["environment"]
    aws.run_ecs_task(published.external_id, "published to s3://reports/")
    aws.stop_ecs_task(published.external_id, 0)
    finished(run)

    assert run.status == "succeeded", run.reason
    assert sorted(attempts(run)) == [
        ("extract", 1, "succeeded"),
        ("load", 1, "succeeded"),
        ("publish", 1, "succeeded"),
        ("transform", 1, "succeeded"),
    ]
    transform.refresh_from_db()
    assert transform.resources == {"platform": "EC2", "vcpu": 1.0, "memory_mib": 2048}
    assert [line.text for line in read_after(transform, None).lines] == ["transforming 10 rows"]
    published.refresh_from_db()
    assert [line.text for line in read_after(published, None).lines] == [
        "published to s3://reports/"
    ]


@override_settings(SUNDIAL_SUBMIT_STUCK_AFTER_S=1)
def test_a_worker_killed_right_after_submit_job_leaves_one_job_and_it_is_adopted(
    aws, worker, monkeypatch
):
    held = HeldCall(monkeypatch, moto_batch.BatchBackend, "submit_job", accept_first=True)
    run = trigger_run(make_process("once", {"transform": TRANSFORM}), Trigger.API)

    held.wait()
    worker.signal(signal.SIGKILL)
    worker.wait(timeout=10)
    held.released.set()
    transform = attempt_of(run, "transform")
    assert (transform.status, transform.external_id) == ("submitting", "")

    def adopted():
        """recovery to find the job by name and adopt it"""
        reconcile()
        return attempt_of(run, "transform").external_id

    arn = wait_for(adopted, timeout=15, interval=0.3)
    assert [job["jobArn"] for job in aws.batch_jobs()] == [arn], "one job, never two"
    assert attempt_of(run, "transform").status == "submitted"
    aws.finish_batch_job(arn, 0)
    finished(run)
    assert run.status == "succeeded"
    assert attempts(run) == [("transform", 1, "succeeded")]


def test_a_run_killed_while_its_batch_job_is_submitted_has_the_job_terminated(
    aws, worker, monkeypatch
):
    held = HeldCall(monkeypatch, moto_batch.BatchBackend, "submit_job", accept_first=False)
    run = trigger_run(make_process("doomed", {"transform": TRANSFORM}), Trigger.API)

    held.wait()
    assert request_kill(run.pk, reason="killed")
    held.released.set()

    def terminated():
        """the worker to terminate the job it submitted after the kill"""
        jobs = aws.batch_jobs()
        return jobs and aws.carry_out_terminations() == 1

    wait_for(terminated, timeout=30, interval=0.2)
    finished(run)
    assert run.status == "killed"
    transform = attempt_of(run, "transform")
    assert transform.status == "killed"
    assert "run killed" in aws.describe_batch_job(transform.external_id)["statusReason"]


def test_a_batch_job_killed_for_memory_is_retried_with_more_through_the_worker(aws, worker):
    process = make_process(
        "hungry",
        {
            "transform": {
                **TRANSFORM,
                "max_attempts": 2,
                "retry_initial_delay_s": 0,
                "retry_jitter": 0,
                "oom_memory_factor": 2,
            }
        },
    )
    run = trigger_run(process, Trigger.API)
    first = submitted(run, "transform")
    aws.run_batch_job(first.external_id)
    aws.finish_batch_job(
        first.external_id,
        137,
        status_reason="Essential container in task exited",
        container_reason="OutOfMemoryError: Container killed due to memory usage",
    )
    poll_running()

    def retried():
        """the worker to submit the retry"""
        poll_running()  # (the retry's wake-up, had the sweep not come first)
        attempt = attempt_of(run, "transform")
        return attempt if attempt.number == 2 and attempt.external_id else None

    second = wait_for(retried, timeout=30, interval=0.2)
    first.refresh_from_db()
    assert (first.status, first.out_of_memory) == ("failed", True)
    assert second.memory_mib == 4096, "2048 MiB x 2 after running out of memory"
    assert aws.asked_memory_mib(first.external_id) == 2048
    assert aws.asked_memory_mib(second.external_id) == 4096, "the retry asked AWS for more"
    aws.finish_batch_job(second.external_id, 0)
    finished(run)
    assert run.status == "succeeded"
    assert attempts(run) == [("transform", 1, "failed"), ("transform", 2, "succeeded")]
