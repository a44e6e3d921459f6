"""The batch executor's config schema."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, model_validator

from executors.schema import Env, NonEmptyText, Schema, Tags, Text, iam_role_arn

RoleArn = Annotated[Text, AfterValidator(iam_role_arn)]

# Applied when Sundial registers the job definition from an image and none are given.
DEFAULT_VCPU = 1.0
DEFAULT_MEMORY_MIB = 2048
# The job's own container, when it runs with sidecars (and so gets a name).
MAIN_CONTAINER = "main"
# Container names, as ECS takes them.
ContainerName = Annotated[NonEmptyText, Field(max_length=255, pattern=r"^[A-Za-z0-9_-]+$")]


class Sidecar(Schema):
    """A container that runs next to the job's own in its ECS task (a log shipper, a
    metadata helper). Essential: the job ends when it exits; otherwise only the job's own
    container decides."""

    name: ContainerName
    image: NonEmptyText
    command: list[Text] = []  # empty: the image's own command
    env: Env = {}
    # AWS's own multi-container examples give every container both.
    vcpu: float = Field(0.25, gt=0, le=256)
    memory_mib: int = Field(256, ge=6, le=61440)
    essential: bool = False


class BatchConfig(Schema):
    """An AWS Batch job: from an existing job definition, or from an image that Sundial
    registers a job definition for (named after the process and task)."""

    job_queue: NonEmptyText | None = None  # None: SUNDIAL_BATCH_JOB_QUEUE
    job_definition: NonEmptyText | None = None  # "name" (its latest revision) or "name:3"
    image: NonEmptyText | None = None
    command: list[Text] = []  # empty: the image's (or job definition's) own command
    # None with a job definition: the definition's own. With an image: 1 vCPU, 2048 MiB.
    vcpu: float | None = Field(None, gt=0, le=256)
    memory_mib: int | None = Field(None, ge=128, le=61440 * 2)
    gpu: int = Field(0, ge=0, le=16)
    env: Env = {}
    platform: Literal["EC2", "FARGATE"] = "EC2"
    disk_gib: int | None = Field(None, ge=21, le=200)  # Fargate ephemeral storage
    assign_public_ip: bool = False  # Fargate: needed in a public subnet without a NAT
    job_role_arn: RoleArn | None = None
    execution_role_arn: RoleArn | None = None  # Fargate: pulls the image, writes the log
    log_group: NonEmptyText | None = None  # None: Batch's own, /aws/batch/job
    tags: Tags = {}
    sidecars: list[Sidecar] = []  # with an image only; the job's own container is "main"
    region: NonEmptyText | None = None  # None: SUNDIAL_AWS_REGION or the AWS default chain

    @model_validator(mode="after")
    def _one_source(self) -> BatchConfig:
        if (self.job_definition is None) == (self.image is None):
            raise ValueError("exactly one of job_definition or image is required")
        if self.job_definition is not None and self.log_group is not None:
            raise ValueError("log_group: set it in the job definition, or give an image")
        if self.disk_gib is not None and self.platform != "FARGATE":
            raise ValueError("disk_gib: ephemeral storage can only be set for FARGATE")
        if self.sidecars and self.image is None:
            raise ValueError("sidecars: give an image (a job definition of your own has its own)")
        names = [sidecar.name for sidecar in self.sidecars]
        if MAIN_CONTAINER in names:
            raise ValueError(f'sidecars: "{MAIN_CONTAINER}" is the job\'s own container')
        if len(set(names)) != len(names):
            raise ValueError("sidecars: each needs a name of its own")
        if self.image is not None:
            self.vcpu = DEFAULT_VCPU if self.vcpu is None else self.vcpu
            self.memory_mib = DEFAULT_MEMORY_MIB if self.memory_mib is None else self.memory_mib
        return self


# Shown in the admin under the config field; a test checks it fits the schema.
EXAMPLE = {
    "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/etl:3",
    "command": ["python", "etl.py"],
    "vcpu": 2,
    "memory_mib": 8192,
    "job_queue": "etl",
}
