"""A task's retry rules and out-of-memory settings: saved as typed, refused with the reason."""

import pytest
from django.urls import reverse
from django.utils.html import escape

from jobs.models import ProcessDefinition, TaskDefinition
from tests.admin.posting import error_messages, process_form

pytestmark = pytest.mark.django_db

RULES = '[{"exit_codes": [2, 3], "action": "fail"}, {"reason": "Throttl", "action": "retry"}]'
BATCH = {
    "executor": "batch",
    "config": '{"image": "busybox", "job_queue": "q", "memory_mib": 4096}',
}


def save(client, **task):
    """Add a process whose one task has these fields."""
    return client.post(
        reverse("admin:jobs_processdefinition_add"), process_form([{"name": "only", **task}])
    )


def test_rules_and_memory_settings_are_saved(admin_client):
    response = save(admin_client, retry_rules=RULES, oom_memory_factor="1.5")
    assert response.status_code == 302, response.context and response.context["errors"]
    task = TaskDefinition.objects.get()
    assert task.retry_rules == [
        {"exit_codes": [2, 3], "action": "fail"},
        {"reason": "Throttl", "action": "retry"},
    ]
    assert (task.oom_memory_factor, task.oom_memory_max_mib) == (1.5, None)


def test_no_rules_may_be_left_empty(admin_client):
    assert save(admin_client, retry_rules="").status_code == 302
    assert TaskDefinition.objects.get().retry_rules == []


def test_the_form_shows_the_saved_rules(admin_client):
    save(admin_client, retry_rules=RULES)
    process = ProcessDefinition.objects.get()
    page = admin_client.get(reverse("admin:jobs_processdefinition_change", args=[process.pk]))
    assert escape('"exit_codes": [\n      2,\n      3\n    ]') in page.content.decode()


def test_invalid_json_is_explained_and_the_typed_text_kept(admin_client):
    typed = '[{"action": "fail",}]'
    response = save(admin_client, retry_rules=typed)
    assert error_messages(response) == [
        "retry_rules is not valid JSON: Expecting property name enclosed in double quotes"
        " (line 1, column 20)"
    ]
    assert escape(typed) in response.content.decode()
    assert not ProcessDefinition.objects.exists()


@pytest.mark.parametrize(
    ("typed", "error"),
    [
        (
            '{"action": "fail"}',
            'retry_rules must be a list of rules, e.g. [{"exit_codes": [2], "action": "fail"}]',
        ),
        ('[{"exit_codes": [2]}]', 'retry_rules[0].action must be "retry" or "fail"'),
        (
            '[{"action": "fail"}, {"exit_code": 2, "action": "fail"}]',
            "retry_rules[1]: unknown key 'exit_code'; a rule has exit_codes, reason and action",
        ),
        (
            '[{"exit_codes": ["137"], "action": "retry"}]',
            "retry_rules[0].exit_codes must be a list of whole numbers, e.g. [1, 137]",
        ),
        (
            '[{"reason": "a\\u0000b", "action": "fail"}]',
            "retry_rules[0].reason: must not contain NUL characters",
        ),
    ],
)
def test_invalid_rules_are_explained(admin_client, typed, error):
    response = save(admin_client, retry_rules=typed)
    assert error_messages(response) == [error]
    assert not ProcessDefinition.objects.exists()


@pytest.mark.parametrize(
    ("factor", "error"),
    [
        ("0.5", "Ensure this value is greater than or equal to 1."),
        ("17", "Ensure this value is less than or equal to 16."),
    ],
)
def test_the_memory_factor_is_between_1_and_16(admin_client, factor, error):
    assert error_messages(save(admin_client, oom_memory_factor=factor)) == [error]


def test_a_cap_needs_an_executor_with_memory(admin_client):
    response = save(admin_client, oom_memory_max_mib="4096")
    assert error_messages(response) == [
        "Local subprocess tasks have no memory_mib to raise; leave it empty"
    ]


# The suite cannot run Batch tasks (no AWS here), so a Batch task's save shows that error too.


def test_a_cap_within_what_the_executor_allows(admin_client):
    response = save(admin_client, **BATCH, oom_memory_max_mib="200000")
    assert "AWS Batch allows at most 122880 MiB" in error_messages(response)


def test_a_cap_no_lower_than_the_configs_memory(admin_client):
    response = save(admin_client, **BATCH, oom_memory_max_mib="2048")
    assert "must be at least the 4096 MiB the config asks for" in error_messages(response)
