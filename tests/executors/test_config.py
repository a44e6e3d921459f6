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
        "sidecars": [],
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


def test_batch_sidecars_run_next_to_an_image():
    shipper = {"name": "shipper", "image": "fluent/fluent-bit:3"}
    config = validate_config("batch", {"image": "i", "sidecars": [shipper]})
    assert config["sidecars"] == [
        {**shipper, "command": [], "env": {}, "vcpu": 0.25, "memory_mib": 256, "essential": False}
    ]
    assert _error("batch", {"job_definition": "etl:3", "sidecars": [shipper]}) == (
        "sidecars: give an image (a job definition of your own has its own)"
    )
    assert _error("batch", {"image": "i", "sidecars": [{**shipper, "name": "main"}]}) == (
        'sidecars: "main" is the job\'s own container'
    )
    assert _error("batch", {"image": "i", "sidecars": [shipper, shipper]}) == (
        "sidecars: each needs a name of its own"
    )
    assert "sidecars.0.name: String should match pattern" in _error(
        "batch", {"image": "i", "sidecars": [{**shipper, "name": "log shipper"}]}
    )
    assert "sidecars.0.memory_mib: Input should be greater than or equal to 6" in _error(
        "batch", {"image": "i", "sidecars": [{**shipper, "memory_mib": 1}]}
    )
    assert "sidecars.0.image: Field required" in _error(
        "batch", {"image": "i", "sidecars": [{"name": "shipper"}]}
    )


ECS = {"cluster": "c", "task_definition": "td:3", "container": "app", "subnets": ["subnet-1"]}


def test_ecs_defaults_and_limits():
    assert validate_config("ecs", ECS) == {
        **ECS,
        "image": None,
        "command": [],
        "env": {},
        "cpu": None,
        "memory_mib": None,
        "launch_type": "FARGATE",
        "capacity_provider_strategy": [],
        "security_groups": [],
        "assign_public_ip": False,
        "disk_gib": None,
        "task_role_arn": None,
        "execution_role_arn": None,
        "log_group": None,
        "tags": {},
        "region": None,
    }
    assert "cpu: Input should be greater than or equal to 256" in _error("ecs", {**ECS, "cpu": 1})
    assert "cpu: Input should be less than or equal to 16384" in _error(
        "ecs", {**ECS, "cpu": 32768}
    )
    assert "disk_gib: Input should be less than or equal to 200" in _error(
        "ecs", {**ECS, "disk_gib": 500}
    )
    assert "launch_type: Input should be 'FARGATE' or 'EC2'" in _error(
        "ecs", {**ECS, "launch_type": "LAMBDA"}
    )
    assert "task_role_arn: must be an IAM role ARN" in _error(
        "ecs", {**ECS, "task_role_arn": "admin"}
    )


def test_ecs_takes_a_task_definition_or_an_image():
    both = {**ECS, "image": "i"}
    assert _error("ecs", both) == "exactly one of task_definition or image is required"
    assert _error("ecs", {"subnets": ["s"]}) == (
        "exactly one of task_definition or image is required"
    )
    assert _error("ecs", {**ECS, "container": None}) == (
        "container: name the task definition's container that gets the overrides"
    )
    assert _error("ecs", {**ECS, "log_group": "/etl"}) == (
        "log_group: set it in the task definition, or give an image"
    )
    # With an image, Sundial names the container and gives the task resources.
    image = validate_config("ecs", {"image": "repo/app:1", "subnets": ["s"]})
    assert (image["container"], image["cpu"], image["memory_mib"]) == ("main", 1024, 2048)
    assert image["cluster"] is None, "SUNDIAL_ECS_CLUSTER's, at run time"


def test_ecs_runs_on_a_launch_type_or_a_capacity_provider_strategy():
    spot = {"capacity_provider": "FARGATE_SPOT", "weight": 3, "base": 1}
    strategy = validate_config("ecs", {**ECS, "capacity_provider_strategy": [spot]})
    assert strategy["launch_type"] is None
    assert strategy["capacity_provider_strategy"] == [spot]
    assert _error("ecs", {**ECS, "launch_type": "EC2", "capacity_provider_strategy": [spot]}) == (
        "give launch_type or capacity_provider_strategy, not both"
    )
    weight = {"capacity_provider": "FARGATE", "weight": 1001}
    assert "capacity_provider_strategy.0.weight: Input should be less than or equal to 1000" in (
        _error("ecs", {**ECS, "capacity_provider_strategy": [weight]})
    )
    aws_spelling = {"capacityProvider": "FARGATE"}
    assert "capacity_provider_strategy.0.capacityProvider: Extra inputs are not permitted" in (
        _error("ecs", {**ECS, "capacity_provider_strategy": [aws_spelling]})
    )


def test_ecs_fargate_needs_subnets_and_alone_takes_disk():
    on_ec2 = {**ECS, "subnets": [], "launch_type": "EC2"}
    assert validate_config("ecs", on_ec2)["subnets"] == [], "EC2: bridge networking will do"
    assert _error("ecs", {**ECS, "subnets": []}) == (
        "subnets: a Fargate task needs at least one (awsvpc networking)"
    )
    spot = {
        **ECS,
        "subnets": [],
        "capacity_provider_strategy": [{"capacity_provider": "FARGATE_SPOT"}],
    }
    assert _error("ecs", spot) == "subnets: a Fargate task needs at least one (awsvpc networking)"
    assert _error("ecs", {**on_ec2, "disk_gib": 30}) == (
        "disk_gib: ephemeral storage can only be set for FARGATE"
    )
    own_instances = [{"capacity_provider": "my-asg"}]
    assert _error("ecs", {**ECS, "capacity_provider_strategy": own_instances, "disk_gib": 30}) == (
        "disk_gib: ephemeral storage can only be set for FARGATE"
    )
    assert validate_config("ecs", {**ECS, "disk_gib": 30})["disk_gib"] == 30


def test_unknown_kind_and_non_objects():
    assert _error("k8s", {}) == "unknown executor kind 'k8s'"
    for raw in ([], "x", None, 3):
        assert _error("local", raw) == "config must be a JSON object"


BATCH = {"image": "i", "job_queue": "q"}
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
    ("batch", {**BATCH, "sidecars": [{"name": "s", "image": "a\0"}]}, "sidecars.0.image"),
    (
        "batch",
        {**BATCH, "sidecars": [{"name": "s", "image": "i", "command": ["a\0"]}]},
        "sidecars.0.command.0",
    ),
    (
        "batch",
        {**BATCH, "sidecars": [{"name": "s", "image": "i", "env": {"A": "a\0"}}]},
        "sidecars.0.env.A",
    ),
    ("ecs", {**ECS, "cluster": "a\0"}, "cluster"),
    ("ecs", {**ECS, "task_definition": "a\0"}, "task_definition"),
    ("ecs", {**ECS, "container": "a\0"}, "container"),
    ("ecs", {**ECS, "command": ["a\0"]}, "command.0"),
    ("ecs", {**ECS, "env": {"A": "a\0"}}, "env.A"),
    ("ecs", {**ECS, "subnets": ["a\0"]}, "subnets.0"),
    ("ecs", {**ECS, "security_groups": ["a\0"]}, "security_groups.0"),
    ("ecs", {**ECS, "image": "a\0"}, "image"),
    ("ecs", {**ECS, "task_role_arn": "arn:aws:iam::123456789012:role/a\0"}, "task_role_arn"),
    ("ecs", {**ECS, "execution_role_arn": "arn:aws:iam::1:role/a\0"}, "execution_role_arn"),
    ("ecs", {**ECS, "log_group": "a\0"}, "log_group"),
    ("ecs", {**ECS, "region": "a\0"}, "region"),
    ("ecs", {**ECS, "tags": {"team": "a\0"}}, "tags.team"),
    (
        "ecs",
        {**ECS, "capacity_provider_strategy": [{"capacity_provider": "a\0"}]},
        "capacity_provider_strategy.0.capacity_provider",
    ),
]


@pytest.mark.parametrize(("kind", "raw", "path"), NUL_IN_TEXT)
def test_no_text_field_takes_nul(kind, raw, path):
    assert _error(kind, raw) == f"{path}: must not contain NUL characters"


def test_the_nul_cases_cover_every_text_field():
    def holds_free_text(field_schema: dict, definitions: dict) -> bool:
        text = json.dumps(field_schema)
        for name, nested in definitions.items():  # a list of objects: what the objects hold
            if f'"#/$defs/{name}"' in text:
                text += json.dumps(nested)
        return '"type": "string"' in text and '"enum"' not in text  # a choice is no free text

    text_fields = {
        (kind, name)
        for kind, entry in KINDS.items()
        if entry.offered  # the memory executor's label is a test's own
        for schema in [entry.schema.model_json_schema()]
        for name, field_schema in schema["properties"].items()
        if holds_free_text(field_schema, schema.get("$defs", {}))
    }
    assert text_fields == {(kind, path.split(".")[0]) for kind, _, path in NUL_IN_TEXT}


@pytest.mark.parametrize(
    "kind", [kind for kind in KINDS.values() if kind.offered], ids=lambda kind: kind.name
)
def test_every_offered_kind_shows_an_example_that_fits_its_schema(kind):
    assert kind.example, f"{kind.name} shows no example in the admin"
    assert validate_config(kind.name, kind.example)
