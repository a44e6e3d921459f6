from __future__ import annotations

import json

import pytest

from executors.config import ConfigError, validate_config
from executors.registry import KINDS


def _error(kind: str, raw: object) -> str:
    with pytest.raises(ConfigError) as info:
        validate_config(kind, raw)
    return str(info.value)


def test_schemas_by_kind():
    assert set(KINDS) == {"local", "batch", "ecs", "memory"}
    assert issubclass(ConfigError, ValueError)


def test_local_defaults():
    assert validate_config("local", {"command": ["echo", "hi"]}) == {
        "command": ["echo", "hi"],
        "shell": None,
        "cwd": None,
        "env": {},
        "kill_grace_s": 10.0,
    }
    full = {"shell": "make all", "cwd": "/srv", "env": {"_A1": "x"}, "kill_grace_s": 0}
    assert validate_config("local", full) == {"command": None, **full}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({}, "exactly one of command or shell is required"),
        ({"command": ["a"], "shell": "a"}, "exactly one of command or shell is required"),
        ({"command": []}, "command: List should have at least 1 item after validation, not 0"),
        ({"command": "echo hi"}, "command: Input should be a valid list"),
        ({"command": ["ok", 5]}, "command.1: Input should be a valid string"),
        ({"command": [""]}, "command: the program (first item) must not be empty"),
        ({"command": ["a\0b"]}, "command.0: must not contain NUL characters"),
        ({"shell": ""}, "shell: String should have at least 1 character"),
        ({"shell": "x", "cwd": "rel/dir"}, "cwd: must be an absolute path"),
        ({"shell": "x", "env": {"1X": "v"}}, "env.1X: not a valid environment variable name"),
        ({"shell": "x", "env": {"A-B": "v"}}, "env.A-B: not a valid environment variable name"),
        ({"shell": "x", "env": {"A": 1}}, "env.A: Input should be a valid string"),
        ({"shell": "x", "env": []}, "env: Input should be a valid dictionary"),
        ({"shell": "x", "kill_grace_s": -1}, "kill_grace_s: Input should be greater than or equal"),
        ({"shell": "x", "kill_grace_s": "soon"}, "kill_grace_s: Input should be a valid number"),
        ({"shell": "x", "image": "y"}, "image: Extra inputs are not permitted"),
    ],
)
def test_local_errors_name_their_field(raw, message):
    assert message in _error("local", raw)


def test_every_problem_is_listed():
    message = _error(
        "batch", {"image": "i", "job_queue": "q", "command": [1], "memory_mib": 100, "x": 1}
    )
    assert message == (
        "command.0: Input should be a valid string; "
        "memory_mib: Input should be greater than or equal to 128; "
        "x: Extra inputs are not permitted"
    )


def test_batch_defaults_and_limits():
    assert validate_config("batch", {"image": "repo/app:1"}) == {
        "job_queue": None,
        "job_definition": None,
        "image": "repo/app:1",
        "command": [],
        "vcpu": 1.0,
        "memory_mib": 2048,
        "gpu": 0,
        "env": {},
        "platform": "EC2",
        "disk_gib": None,
        "assign_public_ip": False,
        "job_role_arn": None,
        "execution_role_arn": None,
        "log_group": None,
        "tags": {},
        "region": None,
    }
    base = {"image": "i", "job_queue": "q"}
    assert "vcpu: Input should be greater than 0" in _error("batch", {**base, "vcpu": 0})
    assert "memory_mib: Input should be less than or equal to 122880" in _error(
        "batch", {**base, "memory_mib": 122881}
    )
    assert "gpu: Input should be greater than or equal to 0" in _error("batch", {**base, "gpu": -1})
    assert "disk_gib: Input should be greater than or equal to 21" in _error(
        "batch", {**base, "disk_gib": 5, "platform": "FARGATE"}
    )
    assert "job_role_arn: must be an IAM role ARN" in _error(
        "batch", {**base, "job_role_arn": "admin"}
    )
    arn = "arn:aws:iam::123456789012:role/sundial-job"
    assert validate_config("batch", {**base, "job_role_arn": arn})["job_role_arn"] == arn


def test_batch_takes_an_image_or_a_job_definition():
    both = {"image": "i", "job_definition": "etl:3"}
    assert _error("batch", both) == "exactly one of job_definition or image is required"
    assert _error("batch", {}) == "exactly one of job_definition or image is required"
    # With a job definition of the team's own, its resources stand unless the task sets them.
    own = validate_config("batch", {"job_definition": "etl:3"})
    assert (own["vcpu"], own["memory_mib"]) == (None, None)


def test_batch_fargate_only_settings():
    assert _error("batch", {"image": "i", "disk_gib": 50}) == (
        "disk_gib: ephemeral storage can only be set for FARGATE"
    )
    fargate = validate_config("batch", {"image": "i", "platform": "FARGATE", "disk_gib": 50})
    assert fargate["disk_gib"] == 50
    assert "platform: Input should be 'EC2' or 'FARGATE'" in _error(
        "batch", {"image": "i", "platform": "fargate"}
    )


def test_ecs_defaults_and_limits():
    base = {"cluster": "c", "task_definition": "td:3", "container": "app"}
    assert validate_config("ecs", base) == {
        **base,
        "command": [],
        "cpu": None,
        "memory_mib": None,
        "disk_gib": None,
        "env": {},
        "subnets": [],
        "security_groups": [],
        "assign_public_ip": False,
        "launch_type": "FARGATE",
    }
    assert "cpu: Input should be greater than or equal to 256" in _error("ecs", {**base, "cpu": 1})
    assert "cpu: Input should be less than or equal to 16384" in _error(
        "ecs", {**base, "cpu": 32768}
    )
    assert "disk_gib: Input should be less than or equal to 200" in _error(
        "ecs", {**base, "disk_gib": 500}
    )
    assert "launch_type: Input should be 'FARGATE' or 'EC2'" in _error(
        "ecs", {**base, "launch_type": "LAMBDA"}
    )
    assert "disk_gib: ephemeral storage can only be set for FARGATE" in _error(
        "ecs", {**base, "disk_gib": 30, "launch_type": "EC2"}
    )
    assert "container: Field required" in _error("ecs", {"cluster": "c", "task_definition": "t"})


def test_unknown_kind_and_non_objects():
    assert _error("k8s", {}) == "unknown executor kind 'k8s'"
    for raw in ([], "x", None, 3):
        assert _error("local", raw) == "config must be a JSON object"


BATCH = {"image": "i", "job_queue": "q"}
ECS = {"cluster": "c", "task_definition": "td:3", "container": "app"}
# Every field that holds text, with NUL in it: exec() cannot pass it, PostgreSQL cannot store it.
NUL_IN_TEXT = [
    ("local", {"command": ["a\0"]}, "command.0"),
    ("local", {"shell": "a\0"}, "shell"),
    ("local", {"shell": "x", "cwd": "/srv\0"}, "cwd"),
    ("local", {"shell": "x", "env": {"A": "a\0"}}, "env.A"),
    ("batch", {**BATCH, "image": "a\0"}, "image"),
    ("batch", {**BATCH, "command": ["a\0"]}, "command.0"),
    ("batch", {**BATCH, "job_queue": "a\0"}, "job_queue"),
    ("batch", {**BATCH, "job_definition": "a\0"}, "job_definition"),
    ("batch", {**BATCH, "env": {"A": "a\0"}}, "env.A"),
    ("batch", {**BATCH, "job_role_arn": "arn:aws:iam::123456789012:role/a\0"}, "job_role_arn"),
    ("batch", {**BATCH, "execution_role_arn": "arn:aws:iam::1:role/a\0"}, "execution_role_arn"),
    ("batch", {**BATCH, "log_group": "a\0"}, "log_group"),
    ("batch", {**BATCH, "region": "a\0"}, "region"),
    ("batch", {**BATCH, "tags": {"team": "a\0"}}, "tags.team"),
    ("ecs", {**ECS, "cluster": "a\0"}, "cluster"),
    ("ecs", {**ECS, "task_definition": "a\0"}, "task_definition"),
    ("ecs", {**ECS, "container": "a\0"}, "container"),
    ("ecs", {**ECS, "command": ["a\0"]}, "command.0"),
    ("ecs", {**ECS, "env": {"A": "a\0"}}, "env.A"),
    ("ecs", {**ECS, "subnets": ["a\0"]}, "subnets.0"),
    ("ecs", {**ECS, "security_groups": ["a\0"]}, "security_groups.0"),
]


@pytest.mark.parametrize(("kind", "raw", "path"), NUL_IN_TEXT)
def test_no_text_field_takes_nul(kind, raw, path):
    assert _error(kind, raw) == f"{path}: must not contain NUL characters"


def test_the_nul_cases_cover_every_text_field():
    def holds_free_text(field_schema: dict) -> bool:
        text = json.dumps(field_schema)
        return '"type": "string"' in text and '"enum"' not in text  # a choice is no free text

    text_fields = {
        (kind, name)
        for kind, entry in KINDS.items()
        if entry.offered  # the memory executor's label is a test's own
        for name, field_schema in entry.schema.model_json_schema()["properties"].items()
        if holds_free_text(field_schema)
    }
    assert text_fields == {(kind, path.split(".")[0]) for kind, _, path in NUL_IN_TEXT}
