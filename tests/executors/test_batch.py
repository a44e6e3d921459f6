"""The AWS Batch executor against moto server: submit once, find, follow, stop, read logs."""

from __future__ import annotations

from dataclasses import replace

import pytest

from executors.base import ExecutorError, Launch, State
from executors.batch.executor import job_status
from executors.registry import executor_for
from jobs import aws_runtime
from tests.aws import SimulatedCrash

IMAGE = {"image": "repo/etl:1", "job_queue": "sundial", "command": ["python", "etl.py"]}


def launch(n: int = 1, **config) -> Launch:
    return Launch(
        task_run_id=n,
        run_id=7,
        idempotency_key=f"sundial-7-{n}-extract-1-1",
        config={**IMAGE, **config},
        env={"SUNDIAL_RUN_ID": "7", "SUNDIAL_TOKEN": "secret"},
        process="nightly",
        task="extract",
        attempt="1.1",
    )


@pytest.fixture
def batch(aws):
    aws.batch_queue()
    return executor_for("batch")


def fresh_batch(aws):
    """The batch executor built anew from the settings as the test changed them."""
    aws_runtime.forget()
    aws.batch_queue()
    return executor_for("batch")


def definitions(aws, name="sundial-nightly-extract"):
    found = aws.client("batch").describe_job_definitions(jobDefinitionName=name)
    return sorted(found["jobDefinitions"], key=lambda d: d["revision"])


def test_an_image_gets_a_job_definition_named_after_process_and_task(aws, batch):
    submission = batch.submit(launch(env={"MODE": "full"}, memory_mib=4096))

    (definition,) = definitions(aws)
    assert definition["containerProperties"]["image"] == "repo/etl:1"
    assert definition["retryStrategy"] == {"attempts": 1}, "Sundial's retries are Sundial's"
    job = aws.describe_batch_job(submission.external_id)
    assert job["jobName"] == "sundial-7-1-extract-1-1"
    environment = {e["name"]: e["value"] for e in job["container"]["environment"]}
    assert environment["SUNDIAL_TOKEN"] == "secret"
    assert environment["MODE"] == "full"
    assert job["tags"] == {
        "sundial:process": "nightly",
        "sundial:task": "extract",
        "sundial:run": "7",
        "sundial:attempt": "1.1",
    }
    assert submission.resources == {"platform": "EC2", "vcpu": 1.0, "memory_mib": 4096}


def test_the_latest_revision_is_reused_until_the_container_changes(aws, batch):
    batch.submit(launch(1))
    batch.submit(launch(2, memory_mib=8192))  # resources are overrides: same revision
    assert len(definitions(aws)) == 1
    batch.submit(launch(3, command=["python", "etl.py", "--full"]))
    assert [d["revision"] for d in definitions(aws)] == [1, 2]
    # Another worker (a fresh executor) finds the revision that fits instead of adding one.
    aws_runtime.forget()
    executor_for("batch").submit(launch(4, command=["python", "etl.py", "--full"]))
    assert len(definitions(aws)) == 2


def test_a_job_definition_of_the_teams_own_is_used_as_it_is(aws, batch):
    aws.client("batch").register_job_definition(
        jobDefinitionName="legacy-etl",
        type="container",
        containerProperties={"image": "repo/legacy:3", "vcpus": 2, "memory": 1024},
        retryStrategy={"attempts": 3},
    )
    sent: list[dict] = []
    batch.clients.client("batch").meta.events.register(
        "provide-client-params.batch.SubmitJob", lambda params, **_: sent.append(dict(params))
    )
    submission = batch.submit(launch(job_definition="legacy-etl:1", image=None, command=[]))
    job = aws.describe_batch_job(submission.external_id)
    assert job["jobDefinition"].endswith(":job-definition/legacy-etl:1")
    assert definitions(aws) == [], "nothing was registered"
    (request,) = sent
    assert request["retryStrategy"] == {"attempts": 1}, "Sundial's retries stay Sundial's"


def test_a_crash_right_after_submit_job_is_found_by_name_and_never_submitted_twice(aws, batch):
    aws.crash_after("batch", "SubmitJob")
    with pytest.raises(SimulatedCrash):
        batch.submit(launch())
    found = batch.find(launch())
    assert found is not None
    assert [job["jobArn"] for job in aws.batch_jobs()] == [found.external_id]
    assert batch.find(launch(2)) is None


def test_a_resubmit_adopts_the_job_an_earlier_try_started(aws, batch):
    first = batch.submit(launch())  # its answer was lost: the attempt went back to ready
    again = batch.submit(replace(launch(), resubmit=True))
    assert again.external_id == first.external_id
    assert len(aws.batch_jobs()) == 1
    fresh = batch.submit(replace(launch(2), resubmit=True))  # nothing to adopt: starts one
    assert len(aws.batch_jobs()) == 2 and fresh.external_id != first.external_id


def test_throttling_is_retried_by_botocore_and_starts_one_job(aws, batch):
    refused = aws.throttle("batch", "SubmitJob", times=2)
    batch.submit(launch())
    assert len(refused) == 2
    assert len(aws.batch_jobs()) == 1


def test_throttling_beyond_the_retries_is_transient_and_starts_nothing(aws, settings):
    settings.SUNDIAL_AWS_MAX_ATTEMPTS = 2  # botocore's backoff would make the test slow
    batch = fresh_batch(aws)
    aws.throttle("batch", "SubmitJob", times=100)
    with pytest.raises(ExecutorError) as raised:
        batch.submit(launch())
    assert not raised.value.permanent, "throttling must not cost the task a retry"
    assert "ThrottlingException" in raised.value.message
    assert aws.batch_jobs() == []


def test_an_unknown_queue_is_permanent_with_aws_words(aws, batch):
    with pytest.raises(ExecutorError) as raised:
        batch.submit(launch(job_queue="no-such-queue"))
    assert raised.value.permanent
    assert "no-such-queue" in raised.value.message


def test_no_queue_anywhere_is_said_plainly(aws, batch):
    with pytest.raises(ExecutorError) as raised:
        batch.submit(launch(job_queue=None))
    assert raised.value.permanent
    assert "SUNDIAL_BATCH_JOB_QUEUE" in raised.value.message


def test_statuses_map_every_batch_state(aws, batch):
    arns = [batch.submit(launch(n)).external_id for n in range(1, 7)]
    waiting, runnable, running, succeeded, oom, no_image = arns
    aws.wait_for_capacity(runnable)
    aws.run_batch_job(running)
    aws.run_batch_job(succeeded)
    aws.finish_batch_job(succeeded, 0)
    aws.finish_batch_job(
        oom,
        137,
        status_reason="Essential container in task exited",
        container_reason="OutOfMemoryError: Container killed due to memory usage",
    )
    aws.finish_batch_job(
        no_image, None, container_reason="CannotPullContainerError: repo/etl:1 not found"
    )

    found = batch.statuses(arns)

    assert (found[waiting].state, found[waiting].detail) == (
        State.PENDING,
        "accepted by AWS Batch (SUBMITTED)",
    )
    assert (found[runnable].state, found[runnable].detail) == (
        State.PENDING,
        "waiting for capacity (RUNNABLE)",
    )
    assert found[running].detail == ""
    assert found[running].state == State.RUNNING and found[running].started_at is not None
    assert (found[succeeded].state, found[succeeded].exit_code) == (State.SUCCEEDED, 0)
    assert found[oom].state == State.FAILED and found[oom].exit_code == 137
    assert found[oom].out_of_memory and not found[oom].permanent
    assert "OutOfMemoryError" in found[oom].reason
    assert found[no_image].permanent and not found[no_image].out_of_memory


def test_statuses_ask_for_100_jobs_per_call_and_leave_out_forgotten_jobs(aws, settings):
    settings.SUNDIAL_AWS_RATES = {"batch": 1000.0}  # 205 submits at 40/s would take 5s
    batch = fresh_batch(aws)
    calls: list[int] = []
    arns = [batch.submit(launch(n)).external_id for n in range(1, 206)]
    aws.forget_batch_job(arns[0])
    client = batch.clients.client("batch")
    client.meta.events.register(
        "provide-client-params.batch.DescribeJobs",
        lambda params, **_: calls.append(len(params["jobs"])),
    )

    found = batch.statuses(arns)

    assert calls == [100, 100, 5]
    assert arns[0] not in found and len(found) == 204


def test_terminate_by_job_id_with_the_reason(aws, batch):
    arn = batch.submit(launch()).external_id
    aws.run_batch_job(arn)
    batch.terminate(arn, "run killed by alice")
    assert aws.carry_out_terminations() == 1
    status = batch.statuses([arn])[arn]
    assert status.state == State.FAILED
    assert "run killed by alice" in status.reason


def test_logs_are_read_forward_by_cursor(aws, batch):
    arn = batch.submit(launch()).external_id
    assert batch.read_logs(arn, None).lines == (), "not started: no stream yet"
    aws.run_batch_job(arn, "extracting", "wrote 10 rows")

    first = batch.read_logs(arn, None)
    assert first.lines == ("extracting", "wrote 10 rows")
    assert batch.read_logs(arn, first.next_cursor).lines == ()
    stream = aws.describe_batch_job(arn)["container"]["logStreamName"]
    aws.write_log("/aws/batch/job", stream, "done\nbye")
    assert batch.read_logs(arn, first.next_cursor).lines == ("done", "bye")


def test_without_a_region_batch_is_unavailable_with_the_reason(settings):
    settings.SUNDIAL_AWS_REGION = None
    aws_runtime.forget()
    with pytest.raises(ExecutorError) as raised:
        executor_for("batch")
    assert raised.value.permanent
    assert raised.value.message == (
        "AWS Batch is unavailable: no AWS region: set AWS_REGION (or SUNDIAL_AWS_REGION)"
    )


# ---- sidecars: a job of several containers (ecsProperties) ----

SHIPPER = {"name": "shipper", "image": "fluent/fluent-bit:3", "env": {"OUT": "s3"}}
ROLE = "arn:aws:iam::123456789012:role/etl"


def sent_to(batch, operation: str) -> list[dict]:
    """What Sundial sends AWS for ``operation`` from now on (looked at, not changed)."""
    sent: list[dict] = []
    batch.clients.client("batch").meta.events.register(
        f"provide-client-params.batch.{operation}", lambda params, **_: sent.append(dict(params))
    )
    return sent


def test_sidecars_run_next_to_the_job_in_one_ecs_task(aws, batch):
    registered, submitted = sent_to(batch, "RegisterJobDefinition"), sent_to(batch, "SubmitJob")
    sidecars = [SHIPPER, {"name": "meta", "image": "repo/meta:1", "essential": True}]
    config = {
        "sidecars": sidecars,
        "memory_mib": 4096,
        "platform": "FARGATE",
        "disk_gib": 40,
        "job_role_arn": ROLE,
        "log_group": "/sundial/etl",
    }
    submission = batch.submit(launch(env={"MODE": "full"}, **config))
    # The whole job is priced: its own container and both sidecars.
    assert submission.resources == {
        "platform": "FARGATE",
        "vcpu": 1.5,
        "memory_mib": 4096 + 256 + 256,
        "disk_gib": 40,
    }

    (definition,) = registered
    assert "containerProperties" not in definition
    (task,) = definition["ecsProperties"]["taskProperties"]
    logs = {"logDriver": "awslogs", "options": {"awslogs-group": "/sundial/etl"}}
    main, shipper, meta = task["containers"]
    assert main == {
        "name": "main",
        "essential": True,
        "image": "repo/etl:1",
        "command": ["python", "etl.py"],
        "environment": [{"name": "MODE", "value": "full"}],
        "resourceRequirements": [
            {"type": "VCPU", "value": "1"},
            {"type": "MEMORY", "value": "4096"},
        ],
        "logConfiguration": logs,
    }
    assert shipper == {
        "name": "shipper",
        "essential": False,
        "image": "fluent/fluent-bit:3",
        "environment": [{"name": "OUT", "value": "s3"}],
        "resourceRequirements": [
            {"type": "VCPU", "value": "0.25"},
            {"type": "MEMORY", "value": "256"},
        ],
        "logConfiguration": logs,
    }
    assert (meta["name"], meta["essential"]) == ("meta", True)
    assert {k: v for k, v in task.items() if k != "containers"} == {
        "taskRoleArn": ROLE,
        "platformVersion": "LATEST",
        "networkConfiguration": {"assignPublicIp": "DISABLED"},
        "ephemeralStorage": {"sizeInGiB": 40},
    }
    assert definition["platformCapabilities"] == ["FARGATE"]

    (request,) = submitted
    assert "containerOverrides" not in request
    (override,) = request["ecsPropertiesOverride"]["taskProperties"][0]["containers"]
    assert override["name"] == "main"
    environment = {e["name"]: e["value"] for e in override["environment"]}
    assert (environment["MODE"], environment["SUNDIAL_TOKEN"]) == ("full", "secret")
    job = aws.describe_batch_job(submission.external_id)
    assert [c["name"] for c in job["ecsProperties"]["taskProperties"][0]["containers"]] == [
        "main",
        "shipper",
        "meta",
    ]


def test_with_sidecars_a_retry_with_more_memory_reuses_the_revision(aws, batch):
    submitted = sent_to(batch, "SubmitJob")
    batch.submit(launch(1, sidecars=[SHIPPER]))
    batch.submit(launch(2, sidecars=[SHIPPER], memory_mib=6144))  # raised after an OOM
    assert len(definitions(aws)) == 1
    memory = [
        r["value"]
        for request in submitted
        for r in request["ecsPropertiesOverride"]["taskProperties"][0]["containers"][0][
            "resourceRequirements"
        ]
        if r["type"] == "MEMORY"
    ]
    assert memory == ["2048", "6144"], "the raised memory reaches the job's own container"

    bigger = {**SHIPPER, "memory_mib": 512}  # a sidecar's memory is its definition's
    batch.submit(launch(3, sidecars=[bigger]))
    assert [d["revision"] for d in definitions(aws)] == [1, 2]
    aws_runtime.forget()  # another worker finds the revision that fits
    executor_for("batch").submit(launch(4, sidecars=[bigger], memory_mib=8192))
    assert len(definitions(aws)) == 2
    batch.submit(launch(5))  # without sidecars: one container again
    assert "containerProperties" in definitions(aws)[-1]


def test_a_job_with_sidecars_is_followed_and_logged_by_its_own_container(aws, batch):
    arns = [batch.submit(launch(n, sidecars=[SHIPPER])).external_id for n in (1, 2)]
    running, oom = arns
    aws.run_batch_job(running, "extracting")
    aws.run_batch_job(oom)
    aws.finish_batch_job(
        oom,
        137,
        status_reason="Essential container in task exited",
        container_reason="OutOfMemoryError: Container killed due to memory usage",
    )

    found = batch.statuses(arns)

    assert found[running].state == State.RUNNING
    assert batch.read_logs(running, None).lines == ("extracting",)
    assert (found[oom].state, found[oom].exit_code) == (State.FAILED, 137)
    assert found[oom].out_of_memory and not found[oom].permanent


def multi_container_job(main: dict, *sidecars: dict, status: str = "FAILED") -> dict:
    """A DescribeJobs entry for a job with sidecars, as AWS gives it: each sidecar's
    ``essential`` in ``ecsProperties``, its end (exit code, reason) in the last attempt."""
    instance = "arn:aws:ecs:us-east-1:1:container-instance/c/1"
    stream = {"logStreamName": "sundial-nightly-extract/default/1"}
    defined = [{"name": "main", "essential": True, **stream}] + [
        {"name": s["name"], "essential": s.get("essential", False)} for s in sidecars
    ]
    ended = [{"name": "main", **stream, **main}] + [
        {k: v for k, v in s.items() if k != "essential"} for s in sidecars
    ]
    return {
        "jobId": "1",
        "jobName": "sundial-7-1-extract-1-1",
        "jobQueue": "sundial",
        "jobDefinition": "sundial-nightly-extract:1",
        "status": status,
        "statusReason": "Essential container in task exited",
        "startedAt": 1_700_000_000_000,
        "stoppedAt": 1_700_000_060_000,
        "platformCapabilities": ["EC2"],
        "ecsProperties": {
            "taskProperties": [{"containerInstanceArn": instance, "containers": defined}]
        },
        "attempts": [
            {
                "startedAt": 1_700_000_000_000,
                "stoppedAt": 1_700_000_060_000,
                "taskProperties": [{"containerInstanceArn": instance, "containers": ended}],
            }
        ],
    }


def test_a_multi_container_job_is_read_by_its_own_container():
    oom = job_status(
        multi_container_job(
            {"exitCode": 137, "reason": "OutOfMemoryError: Container killed due to memory usage"},
            {"name": "shipper", "exitCode": 143},  # stopped with the job: no part of why
        )
    )
    assert (oom.state, oom.exit_code, oom.placement) == (State.FAILED, 137, "EC2")
    assert oom.out_of_memory and not oom.permanent
    assert oom.reason == (
        "Essential container in task exited; OutOfMemoryError: Container killed due to memory usage"
    )

    sidecar_died = job_status(
        multi_container_job(
            {"exitCode": 143},
            {"name": "meta", "essential": True, "exitCode": 1},
        )
    )
    assert sidecar_died.exit_code == 143
    assert "sidecar meta: exit code 1" in sidecar_died.reason
    assert not sidecar_died.out_of_memory, "more memory for the job's own would not help"

    sidecar_oom = job_status(
        multi_container_job(
            {"exitCode": 143},
            {"name": "shipper", "exitCode": 137, "reason": "OutOfMemoryError: Container killed"},
        )
    )
    assert not sidecar_oom.out_of_memory
    assert "sidecar shipper: exit code 137, OutOfMemoryError" in sidecar_oom.reason

    no_image = job_status(
        multi_container_job(
            {}, {"name": "shipper", "reason": "CannotPullContainerError: fluent-bit:3 not found"}
        )
    )
    assert no_image.permanent, "a sidecar's image that cannot be pulled fails every try"

    succeeded = job_status(
        multi_container_job(
            {"exitCode": 0}, {"name": "shipper", "exitCode": 143}, status="SUCCEEDED"
        )
    )
    assert (succeeded.state, succeeded.exit_code, succeeded.reason) == (State.SUCCEEDED, 0, "")
