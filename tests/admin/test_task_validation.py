"""Each task's executor, config and retry settings are checked before anything is saved."""

import pytest
from django.urls import reverse
from django.utils.html import escape

from jobs.models import ProcessDefinition
from tests.admin.posting import error_messages, process_form

pytestmark = pytest.mark.django_db


def save(client, **task):
    """Add a process whose one task has these fields."""
    return client.post(
        reverse("admin:jobs_processdefinition_add"), process_form([{"name": "only", **task}])
    )


def test_invalid_json_is_explained_and_the_typed_text_kept(admin_client):
    typed = '{"command": ["true"] "oops"}'
    response = save(admin_client, config=typed)
    assert error_messages(response) == [
        "config is not valid JSON: Expecting ',' delimiter (line 1, column 22)"
    ]
    assert escape(typed) in response.content.decode(), "the user's text is re-rendered as typed"
    assert not ProcessDefinition.objects.exists()


@pytest.mark.parametrize(
    ("typed", "error"),
    [
        pytest.param(
            r'{"shell": "true", "cwd": "/srv\u0000"}',
            "cwd: must not contain NUL characters",
            id="NUL",
        ),
        pytest.param(
            r'{"shell": "echo \udc80"}',
            r"shell: must not contain an unpaired surrogate (\udc80)",
            id="lone surrogate",
        ),
        pytest.param(
            '{"shell": "true", "kill_grace_s": 1e400}',
            "kill_grace_s: number is out of range (beyond ±1.8e308)",
            id="infinite",
        ),
        pytest.param(
            '{"shell": "true", "env": ' + "[" * 100_000 + "]" * 100_000 + "}",
            "config is nested more than 64 levels deep",
            id="deep",
        ),
    ],
)
def test_json_that_cannot_be_stored_is_explained_and_the_typed_text_kept(
    admin_client, typed, error
):
    response = save(admin_client, config=typed)
    assert error_messages(response) == [error]
    assert escape(typed) in response.content.decode(), "the user's text is re-rendered as typed"
    assert not ProcessDefinition.objects.exists()


def test_config_schema_errors_name_the_field(admin_client):
    response = save(admin_client, config='{"shell": "echo hi", "env": {"1BAD": "x"}}')
    assert error_messages(response) == [
        "env.1BAD: not a valid environment variable name (letters, digits, _; no leading digit)"
    ]


def test_config_of_the_wrong_type(admin_client):
    response = save(admin_client, config='{"command": "true"}')
    assert error_messages(response) == ["command: Input should be a valid list"]


def test_an_executor_this_installation_cannot_run_is_rejected_with_the_reason(admin_client):
    # The suite runs without an AWS region (tests/settings.py), as a laptop without AWS does.
    response = save(admin_client, executor="batch", config='{"image": "busybox", "job_queue": "q"}')
    assert error_messages(response) == [
        "AWS Batch is unavailable here: no AWS region: set AWS_REGION (or SUNDIAL_AWS_REGION)"
    ]


def test_max_attempts_must_be_at_least_one(admin_client):
    response = save(admin_client, max_attempts="0")
    assert error_messages(response) == ["Ensure this value is greater than or equal to 1."]


@pytest.mark.parametrize("jitter", ["1.5", "-0.1"])
def test_jitter_is_a_fraction(admin_client, jitter):
    response = save(admin_client, retry_jitter=jitter)
    assert error_messages(response) == ["jitter must be between 0 and 1 (a fraction of the delay)"]
