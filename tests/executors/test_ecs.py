"""The AWS ECS executor against moto server: run once, find, follow, stop, read logs."""

from __future__ import annotations

import time

import pytest

from executors.base import ExecutorError, Launch, LogChunk, State
from executors.ecs.executor import started_by
from executors.registry import executor_for
from jobs import aws_runtime
from tests.aws import SimulatedCrash
from tests.aws.ecs import EcsCluster

IMAGE = {"image": "repo/etl:1", "command": ["python", "etl.py"], "log_group": "/sundial/etl"}


def launch(within: EcsCluster, n: int = 1, **config) -> Launch:
    return Launch(
        task_run_id=n,
        run_id=7,
        idempotency_key=f"sundial-7-{n}-extract-1-1",
        config={
            **IMAGE,
            "cluster": within.name,
            "subnets": [within.subnet],
            "security_groups": [within.security_group],
            **config,
        },
        env={"SUNDIAL_RUN_ID": "7", "SUNDIAL_TOKEN": "secret"},
        process="nightly",
        task="extract",
        attempt="1.1",
    )


@pytest.fixture
def cluster(aws):
    return aws.ecs_cluster()


@pytest.fixture
def ecs(aws, cluster):
    return executor_for("ecs")


def fresh_ecs(aws):
    """The ecs executor built anew from the settings as the test changed them."""
    aws_runtime.forget()
    return executor_for("ecs")


def environment(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container["environment"]}


def test_an_image_gets_a_task_definition_named_after_process_and_task(aws, cluster, ecs):
    submission = ecs.submit(launch(cluster, env={"MODE": "full"}, memory_mib=4096))

    (definition,) = aws.task_definitions("sundial-nightly-extract")
    (container,) = definition["containerDefinitions"]
    assert (container["name"], container["image"]) == ("main", "repo/etl:1")
    assert container["logConfiguration"]["options"]["awslogs-stream-prefix"] == "sundial"
    task = aws.describe_ecs_task(submission.external_id)
    (overrides,) = task["overrides"]["containerOverrides"]
    assert overrides["name"] == "main"
    assert environment(overrides) == {
        "MODE": "full",
        "SUNDIAL_RUN_ID": "7",
        "SUNDIAL_TOKEN": "secret",
    }
    assert task["overrides"]["memory"] == "4096"
    assert {tag["key"]: tag["value"] for tag in task["tags"]} == {
        "sundial:process": "nightly",
        "sundial:task": "extract",
        "sundial:run": "7",
        "sundial:attempt": "1.1",
    }
    assert submission.resources == {"platform": "FARGATE", "vcpu": 1.0, "memory_mib": 4096}


def test_the_latest_revision_is_reused_until_the_container_changes(aws, cluster, ecs):
    ecs.submit(launch(cluster, 1))
    ecs.submit(launch(cluster, 2, memory_mib=8192, cpu=2048))  # overrides: same revision
    assert len(aws.task_definitions("sundial-nightly-extract")) == 1
    ecs.submit(launch(cluster, 3, command=["python", "etl.py", "--full"]))
    assert [d["revision"] for d in aws.task_definitions("sundial-nightly-extract")] == [1, 2]
    # Another worker (a fresh executor) finds the revision that fits instead of adding one.
    fresh_ecs(aws).submit(launch(cluster, 4, command=["python", "etl.py", "--full"]))
    assert len(aws.task_definitions("sundial-nightly-extract")) == 2
    # Without a command now: the image's own, so not a revision that still names one.
    fresh_ecs(aws).submit(launch(cluster, 5, command=[]))
    latest = aws.task_definitions("sundial-nightly-extract")[-1]
    assert latest["revision"] == 3 and "command" not in latest["containerDefinitions"][0]


def test_a_task_definition_of_the_teams_own_is_used_as_it_is(aws, cluster, ecs):
    own = aws.register_task_definition("legacy-etl", "repo/legacy:3", container="app")
    submission = ecs.submit(
        launch(cluster, task_definition=own, container="app", image=None, log_group=None)
    )
    task = aws.describe_ecs_task(submission.external_id)
    assert task["taskDefinitionArn"].endswith(":task-definition/legacy-etl:1")
    assert task["overrides"]["containerOverrides"][0]["command"] == ["python", "etl.py"]
    assert aws.task_definitions("sundial-nightly-extract") == [], "nothing was registered"
    assert submission.resources == {"platform": "FARGATE"}, "its own resources, not looked up"


def test_a_capacity_provider_strategy_says_where_the_task_runs(aws, cluster, ecs):
    spot = [{"capacity_provider": "FARGATE_SPOT", "weight": 1}]
    submission = ecs.submit(launch(cluster, capacity_provider_strategy=spot, disk_gib=50))
    task = aws.describe_ecs_task(submission.external_id)
    assert task["overrides"]["ephemeralStorage"] == {"sizeInGiB": 50}
    assert submission.resources == {
        "platform": "FARGATE_SPOT",
        "vcpu": 1.0,
        "memory_mib": 2048,
        "disk_gib": 50,
    }
    aws.run_ecs_task(submission.external_id)
    status = ecs.statuses([submission.external_id])[submission.external_id]
    assert status.placement == "FARGATE_SPOT"


def test_run_task_names_the_attempt_with_a_client_token_and_started_by(aws, cluster, ecs):
    sent: list[dict] = []
    ecs.clients.client("ecs").meta.events.register(
        "provide-client-params.ecs.RunTask", lambda params, **_: sent.append(dict(params))
    )
    long_key = Launch(**{**launch(cluster).__dict__, "idempotency_key": "sundial-" + "x" * 80})

    ecs.submit(launch(cluster))
    ecs.submit(long_key)

    short, long = sent
    assert short["clientToken"] == "sundial-7-1-extract-1-1", "it fits: sent as it is"
    assert short["startedBy"] == "sundial-7-1-extract-1-1"
    assert len(long["clientToken"]) == 64 and long["clientToken"].startswith("sundial-")
    assert len(long["startedBy"]) == 36 and long["startedBy"] == started_by(long_key)
    assert long["startedBy"] != started_by(Launch(**{**long_key.__dict__, "idempotency_key": "b"}))


def test_a_crash_right_after_run_task_is_found_and_never_run_twice(aws, cluster, ecs):
    aws.crash_after("ecs", "RunTask")
    with pytest.raises(SimulatedCrash):
        ecs.submit(launch(cluster))
    found = ecs.find(launch(cluster))
    assert found is not None
    assert [task["taskArn"] for task in aws.ecs_tasks()] == [found.external_id]
    assert ecs.find(launch(cluster, 2)) is None


def test_a_second_task_for_one_attempt_is_stopped_and_the_first_kept(aws, cluster, ecs):
    first = ecs.submit(launch(cluster))
    # The same attempt run again, as after the client token's 24 hours.
    aws.client("ecs").run_task(
        cluster=cluster.name,
        taskDefinition="sundial-nightly-extract",
        launchType="FARGATE",
        startedBy=started_by(launch(cluster)),
        networkConfiguration={
            "awsvpcConfiguration": {
                "subnets": [cluster.subnet],
                "securityGroups": [cluster.security_group],
            }
        },
    )
    found = ecs.find(launch(cluster))
    assert found == first
    kept = [t["taskArn"] for t in aws.ecs_tasks() if t["desiredStatus"] == "RUNNING"]
    assert kept == [first.external_id] and len(aws.ecs_tasks()) == 2


def test_a_found_stopped_task_is_adopted_too(aws, cluster, ecs):
    arn = ecs.submit(launch(cluster)).external_id
    aws.stop_ecs_task(arn, 0)
    found = ecs.find(launch(cluster))
    assert found is not None and found.external_id == arn


def test_throttling_is_retried_by_botocore_and_runs_one_task(aws, cluster, ecs):
    refused = aws.throttle("ecs", "RunTask", times=2)
    ecs.submit(launch(cluster))
    assert len(refused) == 2
    assert len(aws.ecs_tasks()) == 1


def test_throttling_beyond_the_retries_is_transient_and_runs_nothing(aws, cluster, settings):
    settings.SUNDIAL_AWS_MAX_ATTEMPTS = 2  # botocore's backoff would make the test slow
    ecs = fresh_ecs(aws)
    aws.throttle("ecs", "RunTask", times=100)
    with pytest.raises(ExecutorError) as raised:
        ecs.submit(launch(cluster))
    assert not raised.value.permanent, "throttling must not cost the task a retry"
    assert "ThrottlingException" in raised.value.message
    assert aws.ecs_tasks() == []


def test_no_room_for_the_task_is_transient_in_ecs_words(aws, cluster, ecs):
    aws.ecs_cannot_place("RESOURCE:MEMORY")
    with pytest.raises(ExecutorError) as raised:
        ecs.submit(launch(cluster))
    assert not raised.value.permanent
    assert raised.value.message == "RunTask in cluster 'sundial': RESOURCE:MEMORY"


def test_a_missing_instance_is_permanent_in_ecs_words(aws, cluster, ecs):
    aws.ecs_cannot_place("MISSING", detail="container instance not found")
    with pytest.raises(ExecutorError) as raised:
        ecs.submit(launch(cluster))
    assert raised.value.permanent
    assert "MISSING: container instance not found" in raised.value.message


def test_an_unknown_cluster_is_permanent_with_aws_words(aws, cluster, ecs):
    with pytest.raises(ExecutorError) as raised:
        ecs.submit(launch(cluster, cluster="no-such-cluster"))
    assert raised.value.permanent
    assert raised.value.message.startswith("RunTask in cluster 'no-such-cluster': ")
    assert "ClusterNotFoundException" in raised.value.message


def test_no_cluster_anywhere_is_said_plainly(aws, cluster, ecs):
    with pytest.raises(ExecutorError) as raised:
        ecs.submit(launch(cluster, cluster=None))
    assert raised.value.permanent
    assert "SUNDIAL_ECS_CLUSTER" in raised.value.message


def test_the_default_cluster_comes_from_the_settings(aws, cluster, settings):
    settings.SUNDIAL_ECS_CLUSTER = cluster.name
    submission = fresh_ecs(aws).submit(launch(cluster, cluster=None))
    assert "/sundial/" in submission.external_id


def test_statuses_map_every_ecs_state(aws, cluster, ecs):
    arns = [ecs.submit(launch(cluster, n)).external_id for n in range(1, 8)]
    provisioning, running, stopping, succeeded, failed, oom, no_image = arns
    aws.provision_ecs_task(provisioning)
    aws.run_ecs_task(running)
    aws.run_ecs_task(stopping)
    ecs.terminate(stopping, "run killed")
    aws.stop_ecs_task(succeeded, 0)
    aws.stop_ecs_task(failed, 1)
    aws.stop_ecs_task(
        oom, 137, container_reason="OutOfMemoryError: Container killed due to memory usage"
    )
    aws.stop_ecs_task(
        no_image,
        None,
        stop_code="TaskFailedToStart",
        reason="CannotPullContainerError: pull image manifest has been retried 1 time(s)",
    )

    found = ecs.statuses(arns)

    assert (found[provisioning].state, found[provisioning].detail) == (
        State.PENDING,
        "waiting for capacity (PROVISIONING)",
    )
    assert found[running].state == State.RUNNING and found[running].started_at is not None
    assert found[running].detail == ""
    assert found[running].placement == "Fargate"
    assert found[stopping].state == State.RUNNING, "asked to stop, the container still runs"
    assert (found[succeeded].state, found[succeeded].exit_code) == (State.SUCCEEDED, 0)
    assert found[succeeded].ended_at is not None and found[succeeded].reason == ""
    assert (found[failed].state, found[failed].exit_code) == (State.FAILED, 1)
    assert found[failed].reason == "EssentialContainerExited; Essential container in task exited"
    assert not found[failed].out_of_memory and not found[failed].permanent
    assert found[oom].state == State.FAILED and found[oom].out_of_memory
    assert "OutOfMemoryError" in found[oom].reason and not found[oom].permanent
    assert found[no_image].state == State.FAILED and found[no_image].exit_code is None
    assert found[no_image].permanent and not found[no_image].out_of_memory
    assert found[no_image].reason.startswith("TaskFailedToStart; CannotPullContainerError")


def test_a_stopped_task_is_judged_by_its_essential_container(aws, cluster, ecs):
    arn = ecs.submit(launch(cluster)).external_id
    aws.stop_ecs_task(arn, 0, stop_code="UserInitiated", reason="stopped by a person")
    status = ecs.statuses([arn])[arn]
    assert status.state == State.SUCCEEDED, "desired STOPPED says nothing about the exit"


def test_statuses_ask_for_100_tasks_per_call_and_leave_out_forgotten_tasks(aws, cluster, settings):
    settings.SUNDIAL_AWS_RATES = {"ecs": 1000.0}  # 205 runs at 20/s would take 10s
    ecs = fresh_ecs(aws)
    calls: list[int] = []
    arns = [ecs.submit(launch(cluster, n)).external_id for n in range(1, 206)]
    aws.forget_ecs_task(arns[0])
    ecs.clients.client("ecs").meta.events.register(
        "provide-client-params.ecs.DescribeTasks",
        lambda params, **_: calls.append(len(params["tasks"])),
    )

    found = ecs.statuses(arns)

    assert calls == [100, 100, 5]
    assert arns[0] not in found and len(found) == 204


def test_short_task_arns_get_their_cluster_in_the_external_id(aws, cluster, ecs):
    aws.use_short_task_arns()
    submission = ecs.submit(launch(cluster))
    arn = aws.ecs_tasks()[0]["taskArn"]
    assert arn.count("/") == 1, "AWS names no cluster"
    assert submission.external_id == arn.replace("task/", "task/sundial/")
    aws.stop_ecs_task(arn, 0)
    assert ecs.statuses([submission.external_id])[submission.external_id].state == State.SUCCEEDED
    assert ecs.find(launch(cluster)) == submission


def test_terminate_stops_the_task_with_the_reason(aws, cluster, ecs):
    arn = ecs.submit(launch(cluster)).external_id
    aws.run_ecs_task(arn)
    ecs.terminate(arn, "run killed by alice")
    assert aws.describe_ecs_task(arn)["desiredStatus"] == "STOPPED"
    assert aws.carry_out_ecs_stops() == 1
    status = ecs.statuses([arn])[arn]
    assert (status.state, status.exit_code) == (State.FAILED, 143)
    assert status.reason == "UserInitiated; run killed by alice"


def test_logs_are_read_forward_by_cursor(aws, cluster, ecs):
    arn = ecs.submit(launch(cluster)).external_id
    assert ecs.read_logs(arn, None).lines == (), "not started: no stream yet"
    aws.run_ecs_task(arn, "extracting", "wrote 10 rows")

    first = ecs.read_logs(arn, None)
    assert first.lines == ("extracting", "wrote 10 rows")
    assert ecs.read_logs(arn, first.next_cursor).lines == ()
    stream = f"sundial/main/{arn.rsplit('/', 1)[-1]}"
    aws.write_log("/sundial/etl", stream, "done\nbye")
    assert ecs.read_logs(arn, first.next_cursor).lines == ("done", "bye")


def test_the_tail_cursor_gives_the_newest_lines_then_reads_on(aws, cluster, ecs):
    arn = ecs.submit(launch(cluster)).external_id
    assert ecs.read_logs(arn, ecs.tail_cursor) == LogChunk((), ecs.tail_cursor), "no stream yet"
    aws.run_ecs_task(arn, *(f"row {i}" for i in range(300)))

    tail = ecs.read_logs(arn, ecs.tail_cursor)
    assert tail.lines == tuple(f"row {i}" for i in range(100, 300))
    assert ecs.read_logs(arn, tail.next_cursor).lines == ()
    time.sleep(0.4)  # the events above are stamped a millisecond apart from when written
    aws.write_log("/sundial/etl", f"sundial/main/{arn.rsplit('/', 1)[-1]}", "row 300")
    assert ecs.read_logs(arn, tail.next_cursor).lines == ("row 300",)


def test_the_tail_pages_backwards_to_the_start_of_the_stream(aws, cluster, ecs):
    arn = ecs.submit(launch(cluster)).external_id
    aws.run_ecs_task(arn, *(f"row {i}" for i in range(450)))

    chunk = ecs.read_logs(arn, ecs.tail_cursor)
    pages = [chunk.lines]
    while chunk.earlier is not None:
        chunk = ecs.read_logs(arn, chunk.earlier)
        pages.insert(0, chunk.lines)
    assert [len(page) for page in pages] == [50, 200, 200], "the start needs no empty page"
    assert [line for page in pages for line in page] == [f"row {i}" for i in range(450)], (
        "no gap, no overlap"
    )


def test_an_earlier_page_of_huge_events_is_asked_again_for_fewer(aws, cluster, ecs):
    arn = ecs.submit(launch(cluster)).external_id
    aws.run_ecs_task(arn, *(f"{i:03d}" + "x" * (100 << 10) for i in range(205)))
    chunk = ecs.read_logs(arn, ecs.tail_cursor)
    pages = []
    while chunk.earlier is not None:
        chunk = ecs.read_logs(arn, chunk.earlier)
        pages.insert(0, [line[:3] for line in chunk.lines])
    assert pages == [["000"], ["001", "002"], ["003", "004"]], "256 KiB a page, none lost"


def test_an_unknown_backward_token_is_a_permanent_error_in_aws_words(aws, cluster, ecs):
    arn = ecs.submit(launch(cluster)).external_id
    aws.run_ecs_task(arn, "one")
    with pytest.raises(ExecutorError) as raised:
        ecs.read_logs(arn, "earlier:nonsense")
    assert raised.value.permanent
    assert "GetLogEvents: InvalidParameterException" in raised.value.message


def test_a_container_without_awslogs_has_no_log_to_read(aws, cluster, ecs):
    arn = ecs.submit(launch(cluster, log_group=None)).external_id
    with pytest.raises(ExecutorError) as raised:
        ecs.read_logs(arn, None)
    assert raised.value.permanent
    assert "container 'main' does not log to CloudWatch Logs" in raised.value.message


def test_without_a_region_ecs_is_unavailable_with_the_reason(settings):
    settings.SUNDIAL_AWS_REGION = None
    aws_runtime.forget()
    with pytest.raises(ExecutorError) as raised:
        executor_for("ecs")
    assert raised.value.permanent
    assert raised.value.message == (
        "AWS ECS is unavailable: no AWS region: set AWS_REGION (or SUNDIAL_AWS_REGION)"
    )
