"""Validating a task's executor config against its kind's schema, for the admin and executors.

A task's executor config is stored as JSON. ``validate_config`` checks it against the kind's
schema (``executors/<kind>/config.py``, found through the registry) and returns the
normalised dict (defaults filled in), or raises ``ConfigError`` whose message lists every
problem with its field path, because the Django admin shows it verbatim.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from functools import cache
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from executors.registry import KINDS


class ConfigError(ValueError):
    """The config does not fit its schema; the message lists every problem with its path."""


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models a field's type holds (``list[Sidecar] | None`` holds Sidecar)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def _field_names_at(schema: type[BaseModel], loc: tuple[int | str, ...]) -> set[str]:
    """The field names the schema allows where ``loc`` points (a nested model's own)."""
    models = [schema]
    for part in loc:
        if isinstance(part, str) and part != "[key]":
            models = [
                inner
                for model in models
                if part in model.model_fields
                for inner in _models_in(model.model_fields[part].annotation)
            ]
    return {name for model in models for name in model.model_fields}


def _describe(exc: ValidationError, schema: type[BaseModel]) -> str:
    problems = []
    for err in exc.errors():
        # A dict key error ends in "[key]"; the key itself already names the place.
        path = ".".join(str(part) for part in err["loc"] if part != "[key]")
        # Our own ValueErrors read better without pydantic's "Value error, " prefix.
        msg = str(err["ctx"]["error"]) if err["type"] == "value_error" else err["msg"]
        if err["type"] == "extra_forbidden":
            # A misspelt key ("shel") is told the name it was probably meant to have.
            names = _field_names_at(schema, err["loc"][:-1])
            close = difflib.get_close_matches(str(err["loc"][-1]), sorted(names), n=1)
            msg = f"{msg} (did you mean '{close[0]}'?)" if close else msg
        problems.append(f"{path}: {msg}" if path else msg)
    return "; ".join(problems)


def parse_config(kind: str, raw: object) -> BaseModel:
    """The config as its kind's model; ``ConfigError`` lists every problem."""
    known = KINDS.get(kind)
    if known is None:
        raise ConfigError(f"unknown executor kind {kind!r}")
    schema = known.schema
    if not isinstance(raw, Mapping):
        raise ConfigError("config must be a JSON object")
    try:
        return schema.model_validate(dict(raw))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, schema)) from None


def validate_config(kind: str, raw: object) -> dict:
    """The normalised config (defaults filled in, JSON-ready) or ``ConfigError``."""
    return parse_config(kind, raw).model_dump(mode="json")


@cache
def _memory_field(kind: str) -> FieldInfo | None:
    known = KINDS.get(kind)
    return None if known is None else known.schema.model_fields.get("memory_mib")


def sets_memory(kind: str) -> bool:
    """Whether a kind's config has ``memory_mib`` (Batch, ECS): memory a retry may raise."""
    return _memory_field(kind) is not None


def max_memory_mib(kind: str) -> int | None:
    """The most ``memory_mib`` a kind's schema allows; None if it has no memory or no limit."""
    field = _memory_field(kind)
    # Field(le=...) leaves an annotated_types.Le among the metadata.
    limits = [] if field is None else [m.le for m in field.metadata if hasattr(m, "le")]
    return min(limits, default=None)


def configured_memory_mib(kind: str, raw: object) -> int | None:
    """The memory a config asks for, its kind's defaults applied; None if its kind has none,
    it leaves memory to the job's own definition, or it is invalid (its submit says so)."""
    if not sets_memory(kind):
        return None
    try:
        memory: int | None = getattr(parse_config(kind, raw), "memory_mib", None)
    except ConfigError:
        return None
    return memory
