"""The batch executor's config schema."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field

from executors.schema import Env, NonEmptyText, Schema, Text, iam_role_arn


class BatchConfig(Schema):
    """An AWS Batch job."""

    image: NonEmptyText
    command: list[Text] = []  # empty: the image's own command
    job_queue: NonEmptyText
    job_definition: NonEmptyText | None = None  # None: the executor registers one per image
    vcpu: float = Field(1.0, gt=0, le=256)
    memory_mib: int = Field(2048, ge=128, le=61440 * 2)
    gpu: int = Field(0, ge=0, le=16)
    disk_gib: int | None = Field(None, ge=21, le=200)  # Fargate ephemeral storage
    env: Env = {}
    role_arn: Annotated[Text, AfterValidator(iam_role_arn)] | None = None
