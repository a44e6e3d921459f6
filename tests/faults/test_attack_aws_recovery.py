"""Attacks on recovering AWS submits that a dead worker left in SUBMITTING: a kill that
arrives meanwhile, a job that ended before recovery found it, and a lookup AWS refuses.

As in ``test_attack_aws.py``, this test process plays the worker (a crash is an exception
raised right after AWS answered, ``AwsWorld.crash_after``) and beat (reconcile, poll).
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs import dispatch
from jobs.models import TaskRun, Trigger
from jobs.orchestrator import request_kill, trigger_run
from jobs.submission import submit_task_run
from jobs.supervision import poll_running, reconcile
from tests.aws import SimulatedCrash
from tests.aws.world import HeldCall
from tests.conftest import make_process
from tests.faults.test_attack_aws import batch_task, deliver_all, ecs_task, latest
from tests.orchestrator.driving import attempts

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def crashed_submit(aws, run, service: str, operation: str) -> TaskRun:
    """The worker called ``operation``, AWS started the job, and the worker died."""
    aws.crash_after(service, operation)
    pk = latest(run).pk
    with pytest.raises(SimulatedCrash):
        submit_task_run(pk)
    task_run = latest(run)
    assert (task_run.status, task_run.external_id) == ("submitting", "")
    return task_run


def stuck_since(task_run: TaskRun, seconds: float) -> None:
    TaskRun.objects.filter(pk=task_run.pk).update(
        submitting_at=timezone.now() - timedelta(seconds=seconds)
    )


def test_a_kill_while_a_dead_workers_batch_job_waits_for_recovery_terminates_it(
    aws, network, settings
):
    settings.SUNDIAL_SUBMIT_STUCK_AFTER_S = 1
    aws.batch_queue()
    run = trigger_run(make_process("deadkill", {"job": batch_task()}), Trigger.API)
    stuck = crashed_submit(aws, run, "batch", "SubmitJob")
    (job,) = aws.batch_jobs()
    assert request_kill(run.pk, reason="killed")
    deliver_all(network, dispatch.TERMINATE)  # no job id yet: nothing to call
    run.refresh_from_db()
    assert run.finished_at is None, "the run waits for the job nobody has recorded"
    stuck_since(stuck, 5)
    reconcile()
    deliver_all(network, dispatch.TERMINATE)
    assert latest(run).external_id == job["jobArn"]
    assert aws.carry_out_terminations() == 1, "the adopted job is terminated"
    assert "run killed" in aws.describe_batch_job(job["jobArn"])["statusReason"]
    poll_running()
    deliver_all(network)
    run.refresh_from_db()
    assert (latest(run).status, run.status) == ("killed", "killed")


def test_an_ecs_task_that_ended_before_recovery_found_it_is_adopted_and_its_end_kept(
    aws, network, settings
):
    settings.SUNDIAL_SUBMIT_STUCK_AFTER_S = 1
    cluster = aws.ecs_cluster()
    run = trigger_run(make_process("deadend", {"job": ecs_task(cluster)}), Trigger.API)
    stuck = crashed_submit(aws, run, "ecs", "RunTask")
    (task,) = aws.ecs_tasks()
    aws.run_ecs_task(task["taskArn"])
    aws.stop_ecs_task(task["taskArn"], 0)
    stuck_since(stuck, 5)
    reconcile()
    poll_running()
    deliver_all(network)
    run.refresh_from_db()
    assert run.status == "succeeded", run.reason
    assert attempts(run) == [("job", 1, "succeeded")]
    assert len(aws.ecs_tasks()) == 1


def test_a_stuck_submit_whose_lookup_aws_refuses_for_good_is_not_stuck_forever(
    aws, network, settings
):
    settings.SUNDIAL_SUBMIT_STUCK_AFTER_S = 1
    settings.SUNDIAL_ORPHAN_UNREACHABLE_AFTER_S = 1
    aws.batch_queue()
    run = trigger_run(make_process("denied", {"job": batch_task()}), Trigger.API)
    stuck = crashed_submit(aws, run, "batch", "SubmitJob")
    # The worker's role may SubmitJob; the reconciler's may not ListJobs (nor ever will).
    aws.answer_instead(
        "batch",
        "ListJobs",
        100,
        403,
        {"__type": "AccessDeniedException", "message": "not authorized to perform ListJobs"},
        {"x-amzn-ErrorType": "AccessDeniedException"},
    )
    stuck_since(stuck, 3600)
    for _ in range(3):
        reconcile()
        deliver_all(network)
    stuck.refresh_from_db()
    run.refresh_from_db()
    assert stuck.status != "submitting", "an attempt nobody can check is not held forever"
    assert "ListJobs" in stuck.reason and "not authorized" in stuck.reason, stuck.reason


def test_a_lost_submit_answer_and_a_throttled_look_up_never_start_a_second_batch_job(
    aws, network, settings, monkeypatch
):
    from moto.batch import models as moto_batch
    from moto.batch.exceptions import InternalFailure

    from jobs import aws_runtime
    from jobs.submission import SubmitLater

    settings.SUNDIAL_AWS_MAX_ATTEMPTS = 1  # one try per call: each fault reaches Sundial
    aws_runtime.forget()
    aws.batch_queue()
    HeldCall(
        monkeypatch,
        moto_batch.BatchBackend,
        "submit_job",
        accept_first=True,
        hold=False,
        fail_with=InternalFailure("We encountered an internal error. Please try again."),
    )
    aws.throttle("batch", "ListJobs", 1)
    run = trigger_run(make_process("twice", {"job": batch_task()}), Trigger.API)
    pk = latest(run).pk
    with pytest.raises(SubmitLater):
        submit_task_run(pk)  # Batch started job A; its answer was lost
    assert len(aws.batch_jobs()) == 1
    assert latest(run).status == "ready"
    submit_task_run(pk)  # Celery's retry of the submit
    job = latest(run)
    live = [j["jobArn"] for j in aws.batch_jobs() if not aws._job(j["jobArn"]).stop]
    assert live == [job.external_id], f"one live job for the attempt, not {len(live)}"
