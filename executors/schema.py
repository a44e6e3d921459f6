"""The building blocks of the executor kinds' config schemas (pydantic).

Each kind's package holds its own schema (``executors/<kind>/config.py``) built from these,
so every kind refuses the same things in the same words.
"""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role/.+")


def _env_name(name: str) -> str:
    if not _ENV_NAME.fullmatch(name):
        raise ValueError(
            "not a valid environment variable name (letters, digits, _; no leading digit)"
        )
    return name


def no_nul(value: str) -> str:
    # exec() cannot pass NUL bytes and PostgreSQL cannot store them; catching them here
    # beats a confusing error at launch or a failed save.
    if "\0" in value:
        raise ValueError("must not contain NUL characters")
    return value


def absolute_path(path: str) -> str:
    # The worker's own cwd is no stable reference, so a relative cwd would be a guess.
    if not path.startswith("/"):
        raise ValueError("must be an absolute path")
    return path


def iam_role_arn(value: str) -> str:
    if not _ROLE_ARN.fullmatch(value):
        raise ValueError("must be an IAM role ARN (arn:aws:iam::<account>:role/<name>)")
    return value


# Every str field of every schema is Text (or built on it), so none of them takes NUL.
Text = Annotated[str, AfterValidator(no_nul)]
# The length before the validator, or pydantic words it "should have at least 1 item".
NonEmptyText = Annotated[str, Field(min_length=1), AfterValidator(no_nul)]
EnvName = Annotated[str, AfterValidator(_env_name)]  # its pattern already excludes NUL
Env = dict[EnvName, Text]
# AWS tags: keys up to 128 characters and values up to 256; "aws:" is AWS's own prefix.
TagKey = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(no_nul)]
Tags = dict[TagKey, Annotated[str, Field(max_length=256), AfterValidator(no_nul)]]


class Schema(BaseModel):
    """Every kind's config: unknown keys are refused, not ignored."""

    model_config = ConfigDict(extra="forbid")
