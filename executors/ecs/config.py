"""The ecs executor's config schema."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from executors.schema import Env, NonEmptyText, Schema, Text


class EcsConfig(Schema):
    """An ECS task run from an existing task definition, with overrides."""

    cluster: NonEmptyText
    task_definition: NonEmptyText
    container: NonEmptyText  # which container of the task definition gets the overrides
    command: list[Text] = []
    cpu: int | None = Field(None, ge=256, le=16384)  # CPU units: 1024 = 1 vCPU
    memory_mib: int | None = Field(None, ge=128, le=61440 * 2)
    disk_gib: int | None = Field(None, ge=21, le=200)
    env: Env = {}
    subnets: list[NonEmptyText] = []
    security_groups: list[NonEmptyText] = []
    assign_public_ip: bool = False
    launch_type: Literal["FARGATE", "EC2"] = "FARGATE"

    @model_validator(mode="after")
    def _fargate_only(self) -> EcsConfig:
        if self.disk_gib is not None and self.launch_type != "FARGATE":
            raise ValueError("disk_gib: ephemeral storage can only be set for FARGATE")
        return self
