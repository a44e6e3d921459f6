"""Set up a local AWS (moto server, LocalStack) for trying Batch and ECS tasks.

Makes a Batch job queue and an ECS cluster named "sundial" in the AWS that
``AWS_ENDPOINT_URL`` points at, and only there: it refuses any endpoint off this machine,
so it can never touch a real account.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError
from django.core.management.base import BaseCommand, CommandError

from jobs import aws_runtime

NAME = "sundial"
LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1"}


class Command(BaseCommand):
    help = "Make a Batch job queue and an ECS cluster named 'sundial' in a local AWS."

    def handle(self, *args: Any, **options: Any) -> None:
        endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
        if urlsplit(endpoint).hostname not in LOCAL_HOSTS:
            raise CommandError(
                "AWS_ENDPOINT_URL must point at a local AWS (moto server, LocalStack) on this"
                f" machine, e.g. http://127.0.0.1:5000; it is {endpoint or 'unset'}"
            )
        if (reason := aws_runtime.unconfigured()) is not None:
            raise CommandError(reason)
        self._tell_moto(endpoint)
        try:
            queue = self._batch_queue()
            cluster = self._ecs_cluster()
            subnet, group = self._network()
            definition = self._task_definition()
        except (BotoCoreError, ClientError) as exc:
            raise CommandError(f"the local AWS at {endpoint} refused: {exc}") from exc
        self.stdout.write(f"Batch job queue {queue!r} and ECS cluster {cluster!r} are ready.")
        self.stdout.write(
            f"Start Sundial with SUNDIAL_BATCH_JOB_QUEUE={queue} SUNDIAL_ECS_CLUSTER={cluster}"
            " (or name them in each task's config)."
        )
        self.stdout.write(
            "An ECS task to try (moto keeps it running until Sundial stops it; moto cannot run"
            " a task from an image alone):"
            f' {{"task_definition": "{definition}", "container": "main",'
            f' "subnets": ["{subnet}"], "security_groups": ["{group}"]}}'
        )

    def _tell_moto(self, endpoint: str) -> None:
        """moto runs Batch jobs in Docker unless told otherwise; told, it ends each job as
        SUCCEEDED when it is submitted (MOTO_SIMPLE_BATCH_FAIL_AFTER=0 on moto's side makes
        them fail). And it moves an ECS task on to STOPPED a little more at every look,
        with no exit code; told, a task runs until it is stopped."""
        settings = {
            "config": {"batch": {"use_docker": False}},
            "state-manager/set-transition": {
                "model_name": "ecs::task",
                "transition": {"progression": "manual", "times": 10**9},
            },
        }
        for path, body in settings.items():
            request = urllib.request.Request(
                f"{endpoint.rstrip('/')}/moto-api/{path}",
                json.dumps(body).encode(),
                {"Content-Type": "application/json"},
            )
            try:
                urllib.request.urlopen(request, timeout=5).close()
            except (urllib.error.URLError, OSError) as exc:
                self.stdout.write(
                    f"(not moto, or it refused {path}: {exc}; jobs run as it runs them)"
                )
                return

    def _batch_queue(self) -> str:
        batch = aws_runtime.clients().client("batch")
        if batch.describe_job_queues(jobQueues=[NAME])["jobQueues"]:
            return NAME
        iam = aws_runtime.clients().client("iam")
        try:
            role = iam.create_role(RoleName=f"{NAME}-batch", AssumeRolePolicyDocument="{}")["Role"]
        except iam.exceptions.EntityAlreadyExistsException:
            role = iam.get_role(RoleName=f"{NAME}-batch")["Role"]
        environment = batch.create_compute_environment(
            computeEnvironmentName=NAME, type="UNMANAGED", state="ENABLED", serviceRole=role["Arn"]
        )
        batch.create_job_queue(
            jobQueueName=NAME,
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[
                {"order": 1, "computeEnvironment": environment["computeEnvironmentArn"]}
            ],
        )
        return NAME

    def _network(self) -> tuple[str, str]:
        """A subnet and a security group of the default VPC, for Fargate tasks."""
        ec2 = aws_runtime.clients().client("ec2")
        subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])
        groups = ec2.describe_security_groups(
            Filters=[{"Name": "group-name", "Values": ["default"]}]
        )
        return subnets["Subnets"][0]["SubnetId"], groups["SecurityGroups"][0]["GroupId"]

    def _task_definition(self) -> str:
        """A small Fargate task definition whose log Sundial can read."""
        aws_runtime.clients().client("ecs").register_task_definition(
            family=f"{NAME}-sandbox",
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu="256",
            memory="512",
            containerDefinitions=[
                {
                    "name": "main",
                    "image": "busybox",
                    "memory": 512,  # moto needs a container's own memory to place a task
                    "command": ["echo", "hello from ECS"],
                    "logConfiguration": {
                        "logDriver": "awslogs",
                        "options": {
                            "awslogs-group": f"/{NAME}/sandbox",
                            "awslogs-region": aws_runtime.clients().region() or "",
                            "awslogs-stream-prefix": "sandbox",
                        },
                    },
                }
            ],
        )
        return f"{NAME}-sandbox"

    def _ecs_cluster(self) -> str:
        aws_runtime.clients().client("ecs").create_cluster(
            clusterName=NAME
        )  # returns the existing one too
        return NAME
