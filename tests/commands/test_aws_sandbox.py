"""`manage.py aws_sandbox`: a queue and a cluster in a local AWS, and never in a real one."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from executors.base import Launch, State
from executors.registry import executor_for
from tests.aws import REGION

pytestmark = pytest.mark.django_db


def test_it_makes_a_queue_and_a_cluster_that_tasks_run_on(aws, capsys):
    call_command("aws_sandbox")
    call_command("aws_sandbox")  # a second time finds them made

    assert [q["jobQueueName"] for q in aws.client("batch").describe_job_queues()["jobQueues"]] == [
        "sundial"
    ]
    clusters = aws.client("ecs").describe_clusters(clusters=["sundial"])["clusters"]
    assert [c["status"] for c in clusters] == ["ACTIVE"]
    said = capsys.readouterr().out
    assert "SUNDIAL_BATCH_JOB_QUEUE=sundial" in said
    assert '"subnets": ["subnet-' in said, "a subnet for Fargate tasks"
    assert '"task_definition": "sundial-sandbox"' in said
    # moto was told to end Batch jobs at once rather than run them in Docker.
    batch = executor_for("batch")
    launch = Launch(1, 1, "sundial-1-1-try-1-1", {"image": "busybox", "job_queue": "sundial"}, {})
    arn = batch.submit(launch).external_id
    assert batch.statuses([arn])[arn].state == State.SUCCEEDED


@pytest.mark.parametrize(
    "endpoint", ["", f"https://batch.{REGION}.amazonaws.com", "http://10.0.0.5:5000"]
)
def test_it_refuses_anything_but_a_local_endpoint(aws, monkeypatch, endpoint):
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    with pytest.raises(CommandError, match="AWS_ENDPOINT_URL must point at a local AWS"):
        call_command("aws_sandbox")
    monkeypatch.undo()
    assert aws.client("batch").describe_job_queues()["jobQueues"] == []
