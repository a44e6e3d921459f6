"""AWS ECS in the tests' AWS: setting up a cluster, looking at its tasks, and what ECS would
do on its own (moto records tasks but runs nothing: the test moves each one on)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from moto.ecs import models as moto_ecs
from moto.moto_api import state_manager

from tests.aws.world import ACCOUNT, FOREVER, REGION, World

_Backend = moto_ecs.EC2ContainerServiceBackend
_moto_requirements = _Backend._calculate_task_resource_requirements
_moto_run_task = _Backend.run_task


@contextmanager
def tasks_wait_for_the_test(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A task stays as it is until the test moves it on (moto would move it on each time it
    is described); moto is also made to do three things as ECS does: stamp a task when it
    accepts it, only ask the container to stop on StopTask, and take memory given for the
    whole task."""
    state_manager.set_transition("ecs::task", FOREVER)
    monkeypatch.setattr(_Backend, "run_task", _run_task_stamped)
    monkeypatch.setattr(_Backend, "stop_task", _stop_task_as_ecs_does)
    monkeypatch.setattr(
        _Backend, "_calculate_task_resource_requirements", staticmethod(_with_task_memory)
    )
    yield
    state_manager.unset_transition("ecs::task")


def _run_task_stamped(backend: Any, *args: Any, **kwargs: Any) -> Any:
    """ECS stamps each task with when it accepted it (moto does not)."""
    tasks: list[Any] = _moto_run_task(backend, *args, **kwargs)
    for task in tasks:
        task.created_at = datetime.now(UTC)
    return tasks


def _stop_task_as_ecs_does(backend: Any, cluster: str, task: str, reason: str) -> Any:
    """ECS answers StopTask at once and sends the container SIGTERM; the task is STOPPED
    once the container has exited (``EcsWorld.carry_out_ecs_stops``)."""
    backend._get_cluster(cluster)  # an unknown cluster is refused in AWS's words
    stopping = _moto_task(task)
    if stopping.desired_status != "STOPPED":
        stopping.desired_status = "STOPPED"
        stopping.stopped_reason = reason
    return stopping


def _with_task_memory(task_definition: Any) -> Any:
    """moto adds up its containers' memory only, and fails on a container with none; AWS
    also takes memory given for the whole task (as Sundial's registered definitions do)."""
    stand_in = copy.copy(task_definition)
    stand_in.container_definitions = [
        {"memoryReservation": 0, **container} for container in task_definition.container_definitions
    ]
    return _moto_requirements(stand_in)


def _backend() -> Any:
    return moto_ecs.ecs_backends[ACCOUNT][REGION]


def _moto_task(arn: str) -> Any:
    """moto's task whose ARN ends with ``arn``'s task id, in whichever cluster."""
    task_id = arn.rsplit("/", 1)[-1]
    tasks = [task for cluster in _backend().tasks.values() for task in cluster.values()]
    (task,) = [task for task in tasks if task.id == task_id]
    return task


@dataclass(frozen=True)
class EcsCluster:
    name: str
    subnet: str
    security_group: str


class EcsWorld(World):
    # ---- setting up ----

    def ecs_cluster(self, name: str = "sundial") -> EcsCluster:
        """A cluster, with a subnet and a security group for its awsvpc (Fargate) tasks."""
        ec2 = self.client("ec2")
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        # A task's network interface gets a DNS name in the VPC (moto needs one to attach it).
        ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
        subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/24")["Subnet"]["SubnetId"]
        group = ec2.create_security_group(
            GroupName=f"{name}-tasks", Description="Sundial's tasks", VpcId=vpc
        )["GroupId"]
        self.client("ecs").create_cluster(clusterName=name)
        return EcsCluster(name, subnet, group)

    def register_task_definition(
        self, family: str, image: str, *, container: str = "app", log_group: str | None = None
    ) -> str:
        """A Fargate task definition of the team's own; returns "family:revision"."""
        definition: dict[str, Any] = {"name": container, "image": image}
        if log_group:
            definition["logConfiguration"] = {
                "logDriver": "awslogs",
                "options": {
                    "awslogs-group": log_group,
                    "awslogs-region": REGION,
                    "awslogs-stream-prefix": "team",
                },
            }
        registered = self.client("ecs").register_task_definition(
            family=family,
            containerDefinitions=[definition],
            requiresCompatibilities=["FARGATE"],
            networkMode="awsvpc",
            cpu="512",
            memory="1024",
        )["taskDefinition"]
        return f"{family}:{registered['revision']}"

    def use_short_task_arns(self) -> None:
        """The account is on ECS's short task ARNs (task/<id>, no cluster), as accounts could
        choose before 2021."""
        self.client("ecs").put_account_setting(name="taskLongArnFormat", value="disabled")

    def task_definitions(self, family: str) -> list[dict[str, Any]]:
        """Every active revision of the family, oldest first."""
        ecs = self.client("ecs")
        arns = ecs.list_task_definitions(familyPrefix=family)["taskDefinitionArns"]
        definitions = [
            ecs.describe_task_definition(taskDefinition=arn)["taskDefinition"] for arn in arns
        ]
        return sorted(definitions, key=lambda d: d["revision"])

    def ecs_tasks(self, cluster: str = "sundial") -> list[dict[str, Any]]:
        """Every task AWS holds in the cluster, running or stopped."""
        ecs = self.client("ecs")
        arns = [
            arn
            for desired in ("RUNNING", "STOPPED")
            for arn in ecs.list_tasks(cluster=cluster, desiredStatus=desired)["taskArns"]
        ]
        return ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"] if arns else []

    def describe_ecs_task(self, arn: str, cluster: str = "sundial") -> dict[str, Any]:
        ecs = self.client("ecs")
        task_id = arn.rsplit("/", 1)[-1]
        (task,) = ecs.describe_tasks(cluster=cluster, tasks=[task_id], include=["TAGS"])["tasks"]
        return task

    # ---- what AWS would do on its own ----

    def provision_ecs_task(self, arn: str) -> None:
        """ECS accepted the task and is still finding capacity for it."""
        _moto_task(arn).last_status = "PROVISIONING"

    def run_ecs_task(self, arn: str, *log_lines: str) -> None:
        """The task's container started and wrote ``log_lines`` to CloudWatch, where its
        task definition's awslogs options say."""
        task = _moto_task(arn)
        task.last_status = "RUNNING"
        task.started_at = datetime.now(UTC)
        for container in task.containers:
            container.last_status = "RUNNING"
        if log_lines:
            definition = _backend().describe_task_definition(task.task_definition_arn)
            container = definition.container_definitions[0]
            options = container["logConfiguration"]["options"]
            stream = f"{options['awslogs-stream-prefix']}/{container['name']}/{task.id}"
            self.write_log(options["awslogs-group"], stream, *log_lines)

    def stop_ecs_task(
        self,
        arn: str,
        exit_code: int | None,
        *,
        stop_code: str = "EssentialContainerExited",
        reason: str = "Essential container in task exited",
        container_reason: str = "",
    ) -> None:
        """The task stopped: its container exited with ``exit_code`` (None: it never
        started), and ECS says why in its words."""
        task = _moto_task(arn)
        task.last_status = task.desired_status = "STOPPED"
        task.stop_code = stop_code
        task.stopped_reason = reason
        task.stopped_at = datetime.now(UTC)
        for container in task.containers:
            container.last_status = "STOPPED"
            container.exitCode = exit_code
            if container_reason:
                container.reason = container_reason

    def carry_out_ecs_stops(self) -> int:
        """Tasks asked to stop end when their container exits on SIGTERM (143), with the
        reason given to StopTask, as ECS does."""
        stopped = 0
        for cluster in _backend().tasks.values():
            for arn, task in cluster.items():
                if task.desired_status == "STOPPED" and task.last_status != "STOPPED":
                    self.stop_ecs_task(
                        arn, 143, stop_code="UserInitiated", reason=task.stopped_reason
                    )
                    stopped += 1
        return stopped

    def forget_ecs_task(self, arn: str) -> None:
        """The task stopped long ago: ECS no longer returns it."""
        task = _moto_task(arn)
        cluster = _backend().tasks[task.cluster_name]
        del cluster[next(key for key, known in cluster.items() if known is task)]

    def ecs_cannot_place(self, reason: str, detail: str = "", times: int = 1) -> list[int]:
        """ECS answers Sundial's next RunTask calls with a failure instead of a task (no
        instance has room, the agent is gone, …), as RunTask does: 200, and ``failures``."""
        failure = {"reason": reason, **({"detail": detail} if detail else {})}
        return self.answer_instead(
            "ecs", "RunTask", times, 200, {"tasks": [], "failures": [failure]}
        )
