"""What Batch and ECS make of a launch alike: the name of the definition Sundial registers,
the tags every job gets, the environment as AWS lists it, and names cut to AWS's limits."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from executors.base import Launch

DIGEST_PREFIX = "sundial-"


def definition_name(launch: Launch, limit: int) -> str:
    """A registered definition's name: one per process and task, so its revisions are the
    task's history."""
    return f"sundial-{launch.process}-{launch.task}"[:limit]


def definition_tags(launch: Launch) -> dict[str, str]:
    return {"sundial:process": launch.process, "sundial:task": launch.task}


def tags(launch: Launch, own: Mapping[str, str]) -> dict[str, str]:
    """The task's own tags and Sundial's, which say whose job it is (cost attribution)."""
    return {
        **own,
        **definition_tags(launch),
        "sundial:run": str(launch.run_id),
        "sundial:attempt": launch.attempt,
    }


def environment(env: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"name": name, "value": value} for name, value in sorted(env.items())]


def fitted(key: str, limit: int) -> str:
    """``key`` as it is when it fits in ``limit`` characters, else a digest of it that does.

    The same key always gives the same name, so a repeated submit sends the same one, and
    the digest keeps keys that share a long prefix apart (cutting them would not).
    """
    if len(key) <= limit:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()
    return DIGEST_PREFIX + digest[: limit - len(DIGEST_PREFIX)]
