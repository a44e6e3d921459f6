"""A local AWS (moto server, LocalStack) made ready for Sundial's Batch and ECS tasks.

``manage.py aws_sandbox`` sets one up for a person trying Sundial; the tests and the
benchmarks set theirs up with the same functions. Each takes the boto3 clients to use and
finds what is already there rather than failing on it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

# What moto is told (POST /moto-api/...): run no Batch job in Docker (each one ends as
# SUCCEEDED when submitted), and keep an ECS task running until it is stopped (moto moves it
# on towards STOPPED at every look otherwise, with no exit code).
MOTO_SETTINGS = {
    "config": {"batch": {"use_docker": False}},
    "state-manager/set-transition": {
        "model_name": "ecs::task",
        "transition": {"progression": "manual", "times": 10**9},
    },
}


def tell_moto(endpoint: str) -> str | None:
    """Apply MOTO_SETTINGS; the problem, if the endpoint is not moto or refused them."""
    for path, body in MOTO_SETTINGS.items():
        request = urllib.request.Request(
            f"{endpoint.rstrip('/')}/moto-api/{path}",
            json.dumps(body).encode(),
            {"Content-Type": "application/json"},
        )
        try:
            urllib.request.urlopen(request, timeout=5).close()
        except (urllib.error.URLError, OSError) as exc:
            return f"{path}: {exc}"
    return None


def batch_queue(iam: Any, batch: Any, name: str) -> str:
    """A job queue ``name`` on an unmanaged compute environment; returns its name."""
    if batch.describe_job_queues(jobQueues=[name])["jobQueues"]:
        return name
    role_name = f"{name}-batch"
    try:
        role = iam.create_role(RoleName=role_name, AssumeRolePolicyDocument="{}")["Role"]
    except iam.exceptions.EntityAlreadyExistsException:
        role = iam.get_role(RoleName=role_name)["Role"]
    environment = batch.create_compute_environment(
        computeEnvironmentName=f"{name}-env",
        type="UNMANAGED",
        state="ENABLED",
        serviceRole=role["Arn"],
    )
    batch.create_job_queue(
        jobQueueName=name,
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[
            {"order": 1, "computeEnvironment": environment["computeEnvironmentArn"]}
        ],
    )
    return name


def ecs_cluster(ecs: Any, name: str) -> str:
    ecs.create_cluster(clusterName=name)  # answers with the existing one as well
    return name


def default_network(ec2: Any) -> tuple[str, str]:
    """A subnet and the security group of the default VPC, for Fargate tasks."""
    subnets = ec2.describe_subnets(Filters=[{"Name": "default-for-az", "Values": ["true"]}])
    groups = ec2.describe_security_groups(Filters=[{"Name": "group-name", "Values": ["default"]}])
    return subnets["Subnets"][0]["SubnetId"], groups["SecurityGroups"][0]["GroupId"]


def task_definition(ecs: Any, family: str, region: str) -> str:
    """A small Fargate task definition, container "main", whose log Sundial can read."""
    ecs.register_task_definition(
        family=family,
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
                        "awslogs-group": f"/{family}",
                        "awslogs-region": region,
                        "awslogs-stream-prefix": "sandbox",
                    },
                },
            }
        ],
    )
    return family
