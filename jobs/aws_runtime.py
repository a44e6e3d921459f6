"""This process's AWS executors, built once from settings (the executors know no Django)."""

from __future__ import annotations

from functools import cache

from django.conf import settings

from executors.aws.clients import AwsClients, AwsOptions
from executors.batch.executor import BatchExecutor
from executors.ecs.executor import EcsExecutor


@cache
def clients() -> AwsClients:
    return AwsClients(
        AwsOptions(
            region=settings.SUNDIAL_AWS_REGION,
            max_attempts=settings.SUNDIAL_AWS_MAX_ATTEMPTS,
            rates=settings.SUNDIAL_AWS_RATES,
        )
    )


def unconfigured() -> str | None:
    """Why this installation cannot run AWS tasks, or None when it can."""
    if clients().region() is None:
        return "no AWS region: set AWS_REGION (or SUNDIAL_AWS_REGION)"
    return None


@cache
def batch_executor() -> BatchExecutor:
    return BatchExecutor(clients(), default_queue=settings.SUNDIAL_BATCH_JOB_QUEUE)


@cache
def ecs_executor() -> EcsExecutor:
    return EcsExecutor(clients(), default_cluster=settings.SUNDIAL_ECS_CLUSTER)


def forget() -> None:
    """Build the executors again on next use (settings or the AWS environment changed)."""
    clients.cache_clear()
    batch_executor.cache_clear()
    ecs_executor.cache_clear()
