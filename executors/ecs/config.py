"""The ecs executor's config schema."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from executors.schema import Env, NonEmptyText, Schema, Tags, Text, iam_role_arn

RoleArn = Annotated[Text, AfterValidator(iam_role_arn)]

# Applied when Sundial registers the task definition from an image and none are given.
DEFAULT_CONTAINER = "main"
DEFAULT_CPU = 1024  # CPU units: 1 vCPU
DEFAULT_MEMORY_MIB = 2048
# AWS's own capacity providers that run tasks on Fargate; any other is an EC2 Auto Scaling
# group's.
FARGATE_PROVIDERS = frozenset({"FARGATE", "FARGATE_SPOT"})


class CapacityProviderItem(Schema):
    """One entry of a capacity provider strategy, as RunTask takes it."""

    capacity_provider: NonEmptyText
    weight: int = Field(0, ge=0, le=1000)  # its share of the tasks beyond the bases
    base: int = Field(0, ge=0, le=100000)  # tasks it runs before any weight counts


class EcsConfig(Schema):
    """An ECS task: from an existing task definition, or from an image that Sundial registers
    a task definition for (named after the process and task)."""

    cluster: NonEmptyText | None = None  # None: SUNDIAL_ECS_CLUSTER
    task_definition: NonEmptyText | None = None  # "family" (its latest revision) or "family:3"
    image: NonEmptyText | None = None
    # The container that gets the overrides and whose exit is the task's. With an image:
    # Sundial names it "main" unless told otherwise.
    container: NonEmptyText | None = None
    command: list[Text] = []  # empty: the image's (or task definition's) own command
    env: Env = {}
    # Task-level, as overrides at every run. None with a task definition: its own. With an
    # image: 1024 CPU units (1 vCPU) and 2048 MiB.
    cpu: int | None = Field(None, ge=256, le=16384)  # CPU units: 1024 = 1 vCPU
    memory_mib: int | None = Field(None, ge=128, le=61440 * 2)
    # Where the task runs: a launch type or a capacity provider strategy, never both;
    # neither given means FARGATE.
    launch_type: Literal["FARGATE", "EC2"] | None = None
    capacity_provider_strategy: list[CapacityProviderItem] = []
    subnets: list[NonEmptyText] = []  # awsvpc networking: required on Fargate
    security_groups: list[NonEmptyText] = []
    assign_public_ip: bool = False  # Fargate: needed in a public subnet without a NAT
    disk_gib: int | None = Field(None, ge=21, le=200)  # Fargate ephemeral storage
    task_role_arn: RoleArn | None = None  # what the task's code may do in AWS
    execution_role_arn: RoleArn | None = None  # pulls the image, writes the log
    log_group: NonEmptyText | None = None  # image only; None: the log goes nowhere Sundial reads
    tags: Tags = {}
    region: NonEmptyText | None = None  # None: SUNDIAL_AWS_REGION or the AWS default chain

    @property
    def essential_container(self) -> str:
        """The container that gets the overrides: validation sets ``container`` always."""
        return self.container or DEFAULT_CONTAINER

    @property
    def on_fargate(self) -> bool:
        if self.capacity_provider_strategy:
            names = {item.capacity_provider for item in self.capacity_provider_strategy}
            return names <= FARGATE_PROVIDERS
        return self.launch_type == "FARGATE"

    @model_validator(mode="after")
    def _one_source(self) -> EcsConfig:
        if (self.task_definition is None) == (self.image is None):
            raise ValueError("exactly one of task_definition or image is required")
        if self.task_definition is not None:
            if self.container is None:
                raise ValueError(
                    "container: name the task definition's container that gets the overrides"
                )
            if self.log_group is not None:
                raise ValueError("log_group: set it in the task definition, or give an image")
        else:
            self.container = self.container or DEFAULT_CONTAINER
            self.cpu = DEFAULT_CPU if self.cpu is None else self.cpu
            self.memory_mib = DEFAULT_MEMORY_MIB if self.memory_mib is None else self.memory_mib
        return self

    @model_validator(mode="after")
    def _one_placement(self) -> EcsConfig:
        if self.launch_type is not None and self.capacity_provider_strategy:
            raise ValueError("give launch_type or capacity_provider_strategy, not both")
        if self.launch_type is None and not self.capacity_provider_strategy:
            self.launch_type = "FARGATE"
        if self.on_fargate and not self.subnets:
            raise ValueError("subnets: a Fargate task needs at least one (awsvpc networking)")
        if self.disk_gib is not None and not self.on_fargate:
            raise ValueError("disk_gib: ephemeral storage can only be set for FARGATE")
        return self


# Shown in the admin under the config field; a test checks it fits the schema.
EXAMPLE = {
    "cluster": "etl",
    "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/report:7",
    "cpu": 1024,
    "memory_mib": 4096,
    "subnets": ["subnet-0abc1234"],
    "security_groups": ["sg-0abc1234"],
}
