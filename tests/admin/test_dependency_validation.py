"""Dependencies are checked across all tasks of the save, with messages that name the tasks."""

import pytest
from django.urls import reverse

from jobs.models import ProcessDefinition
from tests.admin.posting import error_messages, process_form

pytestmark = pytest.mark.django_db

ADD = reverse("admin:jobs_processdefinition_add")


def post(client, *tasks):
    return client.post(ADD, process_form(list(tasks)))


def test_a_cycle_is_spelled_out(admin_client):
    response = post(
        admin_client,
        {"name": "extract", "requires": "load"},
        {"name": "load", "requires": "extract"},
    )
    assert error_messages(response) == ["dependency cycle: extract → load → extract"]
    assert not ProcessDefinition.objects.exists()


def test_a_cycle_through_an_optional_edge(admin_client):
    response = post(
        admin_client,
        {"name": "a", "runs_after": "c"},
        {"name": "b", "requires": "a"},
        {"name": "c", "requires": "b"},
    )
    assert error_messages(response) == ["dependency cycle: a → c → b → a"]


def test_a_task_cannot_depend_on_itself(admin_client):
    response = post(admin_client, {"name": "load", "requires": "load"})
    assert error_messages(response) == ["task 'load' cannot depend on itself"]


def test_unknown_upstreams_are_named(admin_client):
    response = post(
        admin_client,
        {"name": "extract"},
        {"name": "load", "requires": "extrct", "runs_after": "cleanup"},
    )
    assert error_messages(response) == [
        "task 'load' requires unknown task 'extrct'",
        "task 'load' runs after unknown task 'cleanup'",
    ]


def test_duplicate_task_names(admin_client):
    response = post(admin_client, {"name": "load"}, {"name": "load"})
    assert error_messages(response) == ["duplicate task name 'load'"]


def test_one_upstream_in_both_fields(admin_client):
    response = post(
        admin_client,
        {"name": "extract"},
        {"name": "load", "requires": "extract", "runs_after": "extract"},
    )
    assert error_messages(response) == [
        "task 'load' lists 'extract' under both Requires and Runs after; choose one"
    ]


def test_a_deleted_task_can_no_longer_be_referenced(admin_client):
    response = post(
        admin_client,
        {"name": "extract", "DELETE": "on"},
        {"name": "load", "requires": "extract"},
    )
    assert error_messages(response) == ["task 'load' requires unknown task 'extract'"]
