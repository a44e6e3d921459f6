"""The local executor's config schema."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, field_validator, model_validator

from executors.schema import Env, NonEmptyText, Schema, Text, absolute_path


class LocalConfig(Schema):
    """A subprocess on the worker's host: an argv list, or a line for /bin/sh -c."""

    command: Annotated[list[Text], Field(min_length=1)] | None = None
    shell: NonEmptyText | None = None
    cwd: Annotated[Text, AfterValidator(absolute_path)] | None = None
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


# Shown in the admin under the config field; a test checks it fits the schema.
EXAMPLE = {"command": ["python", "etl.py", "--day", "today"], "env": {"MODE": "full"}}
