"""Set up a local AWS (moto server, LocalStack) for trying Batch and ECS tasks.

Makes a Batch job queue and an ECS cluster named "sundial" in the AWS that
``AWS_ENDPOINT_URL`` points at, and only there: it refuses any endpoint off this machine,
so it can never touch a real account.
"""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError
from django.core.management.base import BaseCommand, CommandError

from jobs import aws_runtime, sandbox

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
        if (problem := sandbox.tell_moto(endpoint)) is not None:
            self.stdout.write(f"(not moto, or it refused {problem}; jobs run as it runs them)")
        clients = aws_runtime.clients()
        try:
            queue = sandbox.batch_queue(clients.client("iam"), clients.client("batch"), NAME)
            cluster = sandbox.ecs_cluster(clients.client("ecs"), NAME)
            subnet, group = sandbox.default_network(clients.client("ec2"))
            definition = sandbox.task_definition(
                clients.client("ecs"), f"{NAME}-sandbox", clients.region() or ""
            )
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
