"""Attacks on the AWS executors through the shell: real PostgreSQL, moto server over HTTP.

This test process plays the worker (it submits, terminates and polls by calling Sundial's
own functions; the broker is replaced by ``network``, so every message is delivered by hand)
and AWS's own scheduler (``AwsWorld``). Faults are injected at the HTTP boundary (a
ThrottlingException answer, a held call) or by what AWS itself would do (a cluster deleted,
a job that ignores a stop). Attacks that need a real worker process are in
``test_attack_aws_worker.py``.
"""

from __future__ import annotations

import contextlib
import json
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from jobs import aws_runtime, dispatch
from jobs.engine import AttemptStatus
from jobs.models import ProcessRun, TaskDefinition, TaskEvent, TaskRun, Trigger
from jobs.orchestrator import advance_run, request_kill, trigger_run
from jobs.submission import submit_task_run
from jobs.supervision import poll_running, reconcile
from tests.aws import REGION
from tests.aws.world import HeldCall
from tests.conftest import make_process
from tests.faults.conftest import Network, deliver
from tests.orchestrator.driving import attempts

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

RETRYING = {"max_attempts": 3, "retry_initial_delay_s": 0, "retry_jitter": 0}


# ---- helpers ----


def batch_task(queue: str = "sundial", **config) -> dict:
    return {"executor": "batch", "config": {"image": "repo/job:1", "job_queue": queue, **config}}


def ecs_task(cluster, **config) -> dict:
    return {
        "executor": "ecs",
        "config": {
            "image": "repo/job:1",
            "cluster": cluster.name,
            "subnets": [cluster.subnet],
            "security_groups": [cluster.security_group],
            **config,
        },
    }


def latest(run: ProcessRun, task: str = "job") -> TaskRun:
    return run.task_runs.filter(task_name=task).latest("id")


def deliver_all(network: Network, kind: str | None = None) -> int:
    """Deliver every pending message (of ``kind``: a dispatch name), as a worker would."""
    delivered = 0
    for _ in range(50):
        pending = [i for i, m in enumerate(network.pending) if kind is None or m.task == kind]
        if not pending:
            return delivered
        message = network.take(pending[0])
        with contextlib.suppress(Exception):  # SubmitLater: Celery would retry it later
            deliver(message)
        delivered += 1
    return delivered


def submit_ready(run: ProcessRun) -> None:
    for pk in run.task_runs.filter(status=AttemptStatus.READY).values_list("pk", flat=True):
        submit_task_run(pk)


def events(run: ProcessRun, kind: str) -> list[int]:
    return list(TaskEvent.objects.filter(run=run, kind=kind).values_list("task_run_id", flat=True))


# ---- 7. bad input never 500s; permanent failures burn no retries ----


def test_an_unknown_batch_queue_fails_once_with_aws_words_and_burns_no_retry(aws, network):
    aws.batch_queue()
    run = trigger_run(
        make_process("noqueue", {"job": {**batch_task("no-such-queue"), **RETRYING}}),
        Trigger.API,
    )
    for _ in range(5):  # a worker takes every submit and every retry's wake-up
        submit_ready(run)
        deliver_all(network)
    run.refresh_from_db()
    first = run.task_runs.order_by("id").first()
    assert first.status == "failed"
    assert "could not start" in first.reason and "no-such-queue" in first.reason, first.reason
    assert aws.batch_jobs() == []
    assert run.status == "failed"
    assert attempts(run) == [("job", 1, "failed")], "an unknown queue is not worth a retry"


def test_an_unknown_ecs_cluster_fails_once_with_aws_words_and_burns_no_retry(aws, network):
    cluster = aws.ecs_cluster()
    task = ecs_task(cluster)
    task["config"]["cluster"] = "no-such-cluster"
    run = trigger_run(make_process("nocluster", {"job": {**task, **RETRYING}}), Trigger.API)
    for _ in range(5):
        submit_ready(run)
        deliver_all(network)
    run.refresh_from_db()
    first = run.task_runs.order_by("id").first()
    assert first.status == "failed"
    assert "could not start" in first.reason and "Cluster" in first.reason, first.reason
    assert run.status == "failed"
    assert attempts(run) == [("job", 1, "failed")], "an unknown cluster is not worth a retry"


def test_an_image_that_cannot_be_pulled_is_not_retried(aws, network):
    aws.batch_queue()
    run = trigger_run(make_process("noimage", {"job": {**batch_task(), **RETRYING}}), Trigger.API)
    submit_ready(run)
    job = latest(run)
    aws.finish_batch_job(
        job.external_id,
        None,
        status_reason="Task failed to start",
        container_reason="CannotPullContainerError: pull image manifest has been retried 5 times",
    )
    poll_running()
    deliver_all(network)
    run.refresh_from_db()
    first = run.task_runs.order_by("id").first()
    assert "CannotPullContainerError" in first.reason, first.reason
    assert attempts(run) == [("job", 1, "failed")], "a missing image fails every try alike"
    assert run.status == "failed"


@pytest.mark.parametrize(
    "kind, config",
    [
        ("batch", {"image": "repo/x:1", "job_queue": "sundial", "vcpu": -3}),
        ("batch", {"job_queue": "sundial"}),  # neither image nor job definition
        ("batch", ["not", "an", "object"]),
        ("batch", "a string"),
        ("ecs", {"image": "repo/x:1", "cluster": "sundial"}),  # Fargate without subnets
        ("ecs", {"task_definition": "td:1", "cluster": "sundial"}),  # no container named
        ("ecs", {"image": "repo/x:1", "cluster": "sundial", "subnets": ["s"], "cpu": "lots"}),
    ],
    ids=["negative-vcpu", "no-source", "list", "string", "no-subnets", "no-container", "cpu"],
)
def test_a_bad_config_saved_outside_the_admin_fails_the_attempt_with_a_clear_message(
    aws, network, kind, config
):
    aws.batch_queue()
    process = make_process("raw", {"job": {"executor": kind, "config": {"image": "ok"}}})
    TaskDefinition.objects.filter(process=process).update(config=config)
    run = trigger_run(process, Trigger.API)
    submit_ready(run)
    job = latest(run)
    assert job.status == "failed"
    assert job.reason.startswith("invalid executor config:"), job.reason
    assert aws.batch_jobs() == []
    run.refresh_from_db()
    assert run.status == "failed"


def test_a_missing_region_fails_the_attempt_saying_batch_is_unavailable(
    aws, network, settings, monkeypatch
):
    aws.batch_queue()
    run = trigger_run(make_process("noregion", {"job": batch_task()}), Trigger.API)
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    settings.SUNDIAL_AWS_REGION = None
    aws_runtime.forget()
    try:
        submit_ready(run)
    finally:
        settings.SUNDIAL_AWS_REGION = REGION
        aws_runtime.forget()
    job = latest(run)
    assert job.status == "failed"
    assert "unavailable" in job.reason and "region" in job.reason, job.reason


# ---- 5. a job AWS forgets is lost after the grace; a slow one is not lost early ----


def test_a_forgotten_batch_job_is_lost_after_the_grace_and_retried(aws, network, settings):
    settings.SUNDIAL_REMOTE_LOST_AFTER_S = 30
    aws.batch_queue()
    run = trigger_run(make_process("forget", {"job": {**batch_task(), **RETRYING}}), Trigger.API)
    submit_ready(run)
    first = latest(run)
    aws.forget_batch_job(first.external_id)
    poll_running()
    assert latest(run).status == "submitted", "not lost before the grace"
    TaskRun.objects.filter(pk=first.pk).update(submitted_at=timezone.now() - timedelta(seconds=31))
    poll_running()
    first.refresh_from_db()
    assert first.status == "failed" and "no longer knows" in first.reason, first.reason
    deliver_all(network)
    submit_ready(run)
    assert attempts(run) == [("job", 1, "failed"), ("job", 2, "submitted")]


def refuse_describe_tasks_in(cluster: str) -> None:
    """ECS refuses DescribeTasks in ``cluster`` (ClusterNotFoundException: it was deleted
    once its tasks stopped; an IAM policy denying that cluster is answered alike), and
    answers for every other cluster as usual."""
    from botocore.awsrequest import AWSResponse

    from tests.aws.world import _Raw

    body = {"__type": "ClusterNotFoundException", "message": "Cluster not found."}

    def answer(request, **_):
        if f'"cluster": "{cluster}"'.encode() in (request.body or b""):
            headers = {"Content-Type": "application/x-amz-json-1.1"}
            return AWSResponse(request.url, 400, headers, _Raw(json.dumps(body).encode()))
        return None

    client = aws_runtime.clients().client("ecs")
    client.meta.events.register_first("before-send.ecs.DescribeTasks", answer)


def test_a_deleted_cluster_neither_hides_other_tasks_nor_leaves_its_task_running(
    aws, network, settings
):
    settings.SUNDIAL_REMOTE_LOST_AFTER_S = 30
    kept = aws.ecs_cluster("sundial")
    doomed = aws.ecs_cluster("doomed")
    run = trigger_run(
        make_process("clusters", {"a": ecs_task(doomed), "b": ecs_task(kept)}), Trigger.API
    )
    submit_ready(run)
    a, b = latest(run, "a"), latest(run, "b")
    # Task a stopped and its cluster was deleted before the next poll; task b ended well.
    aws.stop_ecs_task(a.external_id, 0)
    refuse_describe_tasks_in("doomed")
    aws.stop_ecs_task(b.external_id, 0)
    TaskRun.objects.filter(pk=a.pk).update(submitted_at=timezone.now() - timedelta(seconds=31))
    for _ in range(3):
        poll_running()
    b.refresh_from_db()
    a.refresh_from_db()
    assert b.status == "succeeded", "a task in a live cluster is still followed"
    assert a.status == "failed", "a task whose cluster is gone is lost, not left running"


# ---- 4. two pollers at once ----


def _two_pollers() -> None:
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def poll():
        try:
            barrier.wait(timeout=10)
            poll_running()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=poll) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors


def test_two_pollers_record_each_end_once_and_schedule_each_retry_once(aws, network):
    aws.batch_queue()
    tasks = {f"t{i}": {**batch_task(), **RETRYING} for i in range(12)}
    run = trigger_run(make_process("pollers", tasks), Trigger.API)
    submit_ready(run)
    jobs = {name: latest(run, name) for name in tasks}
    for rounds in range(3):
        for i, (_name, tr) in enumerate(sorted(jobs.items())):
            if i % 3 == 0:
                aws.run_batch_job(tr.external_id)
            elif i % 3 == 1:
                aws.finish_batch_job(tr.external_id, 0 if rounds else 1)
            else:
                aws.finish_batch_job(tr.external_id, 3)
        _two_pollers()
        deliver_all(network)
        submit_ready(run)
        jobs = {
            name: latest(run, name)
            for name in tasks
            if latest(run, name).status in ("submitted", "running")
        }
    for kind in ("succeeded", "failed", "running"):
        ids = events(run, kind)
        assert len(ids) == len(set(ids)), f"an attempt {kind} twice"
    retries = events(run, "retry_scheduled")
    per_task = {}
    for task_run in run.task_runs.all():
        per_task.setdefault(task_run.task_name, []).append(task_run.number)
    for name, numbers in per_task.items():
        assert sorted(numbers) == list(range(1, len(numbers) + 1)), (name, numbers)
        assert len(numbers) <= RETRYING["max_attempts"]
    assert len(retries) == TaskRun.objects.filter(run=run, number__gt=1).count()


def test_a_late_poll_answer_never_moves_an_attempt_back(aws, network):
    """Poller A's DescribeJobs answer (the job waits for capacity) is held until poller B
    has seen the job running; A's answer must then not write over B's."""
    aws.batch_queue()
    run = trigger_run(make_process("late", {"job": batch_task()}), Trigger.API)
    submit_ready(run)
    job = latest(run)
    aws.wait_for_capacity(job.external_id)
    held, release = threading.Event(), threading.Event()
    slow = {}

    def hold(**_):
        if threading.current_thread() is slow.get("thread"):
            held.set()
            release.wait(timeout=10)

    client = aws_runtime.clients().client("batch")
    client.meta.events.register("after-call.batch.DescribeJobs", hold)
    errors: list[BaseException] = []

    def poll():
        try:
            poll_running()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    slow["thread"] = threading.Thread(target=poll)
    slow["thread"].start()
    try:
        assert held.wait(timeout=10)
        aws.run_batch_job(job.external_id)
        poll_running()
        job.refresh_from_db()
        assert (job.status, job.executor_state) == ("running", "")
    finally:
        release.set()
        slow["thread"].join(timeout=10)
        client.meta.events.unregister("after-call.batch.DescribeJobs", hold)
    assert not errors, errors
    job.refresh_from_db()
    assert job.status == "running"
    assert job.executor_state == "", (
        f"a running attempt says {job.executor_state!r}: the late answer wrote over the new"
    )


# ---- 6. time limits and kills: the stop is sent with its reason, re-sent, and the attempt
# ends only when AWS says the job stopped ----


def test_a_batch_job_ignoring_its_time_limit_is_stopped_again_and_ends_when_aws_says(aws, network):
    aws.batch_queue()
    run = trigger_run(
        make_process("limit", {"job": {**batch_task(), "time_limit_s": 1}}), Trigger.API
    )
    submit_ready(run)
    job = latest(run)
    aws.run_batch_job(job.external_id)
    poll_running()
    TaskRun.objects.filter(pk=job.pk).update(started_at=timezone.now() - timedelta(seconds=5))
    advance_run(run.pk)
    deliver_all(network, dispatch.TERMINATE)
    described = aws.describe_batch_job(job.external_id)
    assert described["status"] == "RUNNING"
    assert "time limit of 1s exceeded" in described.get("statusReason", ""), described
    # The job ignores it: it still runs. Polls keep the attempt going; reconcile asks again.
    sent_before = len([m for m in network.sent if m.task == dispatch.TERMINATE])
    for _ in range(3):
        poll_running()
        reconcile()
    assert latest(run).status == "running"
    sent_after = len([m for m in network.sent if m.task == dispatch.TERMINATE])
    assert sent_after > sent_before, "reconcile re-sends the stop of a job that still runs"
    deliver_all(network, dispatch.TERMINATE)
    assert aws.carry_out_terminations() == 1
    poll_running()
    deliver_all(network)
    job.refresh_from_db()
    run.refresh_from_db()
    assert job.status == "timed_out", (job.status, job.reason)
    assert run.status == "failed"


def test_an_ecs_task_ignoring_a_kill_is_stopped_again_and_ends_killed_when_ecs_says(aws, network):
    cluster = aws.ecs_cluster()
    run = trigger_run(make_process("ekill", {"job": ecs_task(cluster)}), Trigger.API)
    submit_ready(run)
    job = latest(run)
    aws.run_ecs_task(job.external_id)
    poll_running()
    assert request_kill(run.pk, reason="killed by attack")
    deliver_all(network, dispatch.TERMINATE)
    task = aws.describe_ecs_task(job.external_id)
    assert task["desiredStatus"] == "STOPPED" and task["lastStatus"] == "RUNNING"
    assert task["stoppedReason"] == "run killed" or "kill" in task["stoppedReason"], task
    for _ in range(2):
        poll_running()
        reconcile()
        deliver_all(network, dispatch.TERMINATE)
    assert latest(run).status == "running", "ends only when ECS says the task stopped"
    run.refresh_from_db()
    assert run.finished_at is None
    assert aws.carry_out_ecs_stops() == 1
    poll_running()
    deliver_all(network)
    run.refresh_from_db()
    assert latest(run).status == "killed"
    assert run.status == "killed"


def test_a_kill_whose_terminate_is_throttled_is_carried_out_by_reconcile(aws, network, settings):
    settings.SUNDIAL_AWS_MAX_ATTEMPTS = 1
    aws_runtime.forget()
    aws.batch_queue()
    run = trigger_run(make_process("thrkill", {"job": batch_task()}), Trigger.API)
    submit_ready(run)
    aws.throttle("batch", "TerminateJob", 3)
    assert request_kill(run.pk)
    deliver_all(network, dispatch.TERMINATE)
    assert aws.carry_out_terminations() == 0, "throttled: nothing reached AWS yet"
    for _ in range(4):
        reconcile()
        deliver_all(network, dispatch.TERMINATE)
    assert aws.carry_out_terminations() == 1
    poll_running()
    deliver_all(network)
    run.refresh_from_db()
    assert latest(run).status == "killed" and run.status == "killed"


# ---- 1. never two jobs for one attempt (in this process) ----


def test_a_redelivered_submit_racing_the_first_starts_one_batch_job(aws, network):
    aws.batch_queue()
    run = trigger_run(make_process("redeliver", {"job": batch_task()}), Trigger.API)
    pk = latest(run).pk
    results: list[object] = []
    barrier = threading.Barrier(4)

    def submit():
        try:
            barrier.wait(timeout=10)
            results.append(submit_task_run(pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=submit) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert sorted(results) == [False, False, False, True]
    assert submit_task_run(pk) is False  # a redelivery after it was recorded
    assert len(aws.batch_jobs()) == 1
    assert latest(run).status == "submitted"


def test_a_transient_error_after_batch_accepted_the_job_leaves_one_active_job(
    aws, network, monkeypatch
):
    """SubmitJob reaches Batch, which starts the job, then answers 500 (InternalFailure);
    botocore sends SubmitJob again, and Batch (which does not dedupe by name) starts a
    second job."""
    from moto.batch import models as moto_batch
    from moto.batch.exceptions import InternalFailure

    aws.batch_queue()
    HeldCall(
        monkeypatch,
        moto_batch.BatchBackend,
        "submit_job",
        accept_first=True,
        hold=False,
        fail_with=InternalFailure("We encountered an internal error. Please try again."),
    )
    run = trigger_run(make_process("after500", {"job": batch_task()}), Trigger.API)
    submit_ready(run)
    job = latest(run)
    assert job.status == "submitted"
    all_jobs = aws.batch_jobs()
    assert len(all_jobs) == 2, "botocore sent SubmitJob twice"
    live = [
        j["jobArn"] for j in all_jobs if not aws.describe_batch_job(j["jobArn"]).get("isTerminated")
    ]
    terminated = [
        j["jobArn"]
        for j in all_jobs
        if aws._job(j["jobArn"]).stop  # asked to stop
    ]
    assert len(terminated) == 1 and job.external_id not in terminated, (terminated, job)
    assert job.external_id in live


def test_recovery_after_a_crash_keeps_the_job_the_submit_kept(aws, network, monkeypatch, settings):
    """SubmitJob reaches Batch (job A), which answers 500; botocore sends it again (job B,
    answered). The submit keeps B and terminates A — and the worker dies right after that
    TerminateJob, before recording B. Recovery must adopt B, the job left running."""
    from moto.batch import models as moto_batch
    from moto.batch.exceptions import InternalFailure

    from tests.aws import SimulatedCrash

    settings.SUNDIAL_SUBMIT_STUCK_AFTER_S = 1
    aws.batch_queue()
    HeldCall(
        monkeypatch,
        moto_batch.BatchBackend,
        "submit_job",
        accept_first=True,
        hold=False,
        fail_with=InternalFailure("We encountered an internal error. Please try again."),
    )
    aws.crash_after("batch", "TerminateJob")
    run = trigger_run(make_process("crashkeep", {"job": batch_task()}), Trigger.API)
    pk = latest(run).pk
    with pytest.raises(SimulatedCrash):
        submit_task_run(pk)
    live = [j["jobArn"] for j in aws.batch_jobs() if not aws._job(j["jobArn"]).stop]
    assert len(aws.batch_jobs()) == 2 and len(live) == 1, "the submit kept one job"
    assert latest(run).status == "submitting"
    TaskRun.objects.filter(pk=pk).update(submitting_at=timezone.now() - timedelta(seconds=5))
    reconcile()
    job = latest(run)
    assert job.status == "submitted"
    assert job.external_id == live[0], "recovery adopts the job left running"
    assert not aws._job(live[0]).stop, "the attempt's only live job is never stopped"


def test_sundial_aws_max_attempts_is_the_number_of_tries_per_call(aws, settings):
    settings.SUNDIAL_AWS_MAX_ATTEMPTS = 2
    aws_runtime.forget()
    aws.batch_queue()
    refused = aws.throttle("batch", "DescribeJobs", 10)
    from executors.base import ExecutorError

    with pytest.raises(ExecutorError):
        aws_runtime.batch_executor().statuses([f"arn:aws:batch:{REGION}:123456789012:job/0000"])
    assert len(refused) == 2, f"README: {settings.SUNDIAL_AWS_MAX_ATTEMPTS} tries per AWS call"
