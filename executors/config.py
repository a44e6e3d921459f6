"""Config schemas, one per executor kind, and the validation the admin and the executors share.

A task's executor config is stored as JSON. ``validate_config`` checks it against the kind's
schema and returns the normalised dict (defaults filled in), or raises ``ConfigError`` whose
message lists every problem with its field path, because the Django admin shows it verbatim.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/.+")


class ConfigError(ValueError):
    """The config does not fit its schema; the message lists every problem with its path."""


def _env_name(name: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise ValueError(
            "not a valid environment variable name (letters, digits, _; no leading digit)"
        )
    return name


def _no_nul(value: str) -> str:
    # exec() cannot pass NUL bytes and PostgreSQL cannot store them; catching them here
    # beats a confusing error at launch or a failed save.
    if "\0" in value:
        raise ValueError("must not contain NUL characters")
    return value


def _absolute(path: str) -> str:
    # The worker's own cwd is no stable reference, so a relative cwd would be a guess.
    if not path.startswith("/"):
        raise ValueError("must be an absolute path")
    return path


def _role_arn(value: str) -> str:
    if not _ROLE_ARN.fullmatch(value):
        raise ValueError("must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
    return value


# Every str field of every schema is Text (or built on it), so none of them takes NUL.
Text = Annotated[str, AfterValidator(_no_nul)]
# The length before the validator, or pydantic words it "should have at least 1 item".
NonEmptyText = Annotated[str, Field(min_length=1), AfterValidator(_no_nul)]
EnvName = Annotated[str, AfterValidator(_env_name)]  # its pattern already excludes NUL
Env = dict[EnvName, Text]


class _Schema(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LocalConfig(_Schema):
    """A subprocess on the worker's host: an argv list, or a line for /bin/sh -c."""

    command: Annotated[list[Text], Field(min_length=1)] | None = None
    shell: NonEmptyText | None = None
    cwd: Annotated[Text, AfterValidator(_absolute)] | None = None
    env: Env = {}
    kill_grace_s: float = Field(10.0, ge=0, le=3600)  # SIGTERM .. SIGKILL

    @model_validator(mode="after")
    def _one_program(self) -> LocalConfig:
        if (self.command is None) == (self.shell is None):
            raise ValueError("exactly one of command or shell is required")
        return self

    def argv(self) -> list[str]:
        """What to execute: the argv itself, or the shell line under /bin/sh -c."""
        if self.command is not None:
            return self.command
        assert self.shell is not None  # the validator above allows exactly one of them
        return ["/bin/sh", "-c", self.shell]

    @field_validator("command")
    @classmethod
    def _program_named(cls, command: list[str] | None) -> list[str] | None:
        if command is not None and not command[0]:
            raise ValueError("the program (first item) must not be empty")
        return command


class BatchConfig(_Schema):
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
    role_arn: Annotated[Text, AfterValidator(_role_arn)] | None = None


class EcsConfig(_Schema):
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


CONFIG_SCHEMAS: dict[str, type[BaseModel]] = {
    "local": LocalConfig,
    "batch": BatchConfig,
    "ecs": EcsConfig,
}


def _describe(exc: ValidationError) -> str:
    problems = []
    for err in exc.errors():
        # A dict key error ends in "[key]"; the key itself already names the place.
        path = ".".join(str(part) for part in err["loc"] if part != "[key]")
        # Our own ValueErrors read better without pydantic's "Value error, " prefix.
        msg = str(err["ctx"]["error"]) if err["type"] == "value_error" else err["msg"]
        problems.append(f"{path}: {msg}" if path else msg)
    return "; ".join(problems)


def parse_config(kind: str, raw: object) -> BaseModel:
    """The config as its kind's model; ``ConfigError`` lists every problem."""
    schema = CONFIG_SCHEMAS.get(kind)
    if schema is None:
        raise ConfigError(f"unknown executor kind {kind!r}")
    if not isinstance(raw, Mapping):
        raise ConfigError("config must be a JSON object")
    try:
        return schema.model_validate(dict(raw))
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def validate_config(kind: str, raw: object) -> dict:
    """The normalised config (defaults filled in, JSON-ready) or ``ConfigError``."""
    return parse_config(kind, raw).model_dump(mode="json")
