"""The process's "Run…" page: all tasks or a subset, with parameters, validated and audited."""

import pytest
from django.urls import reverse
from django.utils.html import strip_tags

from jobs.models import ProcessRun, User
from tests.admin.actions import audit_trail
from tests.conftest import make_process

pytestmark = pytest.mark.django_db

CHAIN = {"extract": {}, "transform": {"requires": ["extract"]}, "load": {"requires": ["transform"]}}


def run_page(process) -> str:
    return reverse("admin:jobs_processdefinition_run", args=[process.pk])


def test_the_change_page_links_to_the_run_page_with_every_task_chosen(admin_client):
    process = make_process("etl", CHAIN)
    change = admin_client.get(reverse("admin:jobs_processdefinition_change", args=[process.pk]))
    assert run_page(process) in change.content.decode()
    page = admin_client.get(run_page(process))
    assert page.status_code == 200
    assert page.context["form"]["tasks"].value() == ["extract", "transform", "load"]


def test_a_subset_with_parameters_starts_a_run_that_says_what_it_assumed(admin_client):
    process = make_process("etl", CHAIN)
    response = admin_client.post(
        run_page(process),
        {"tasks": ["transform", "load"], "parameters": '{"day": "2026-12-01"}'},
        follow=True,
    )
    run = ProcessRun.objects.get()
    assert response.redirect_chain[-1][0] == reverse("admin:jobs_processrun_change", args=[run.pk])
    assert [strip_tags(str(m)) for m in response.context["messages"]] == [
        f"etl: run {run.pk} started"
    ]
    assert run.parameters == {"day": "2026-12-01"}
    assert [t["name"] for t in run.snapshot["tasks"]] == ["transform", "load"]
    assert "upstreams outside it count as done: extract" in run.events.get(kind="triggered").message
    assert audit_trail(process) == [("admin", f"Run now: run {run.pk} started")]


def test_all_tasks_chosen_is_a_whole_run(admin_client):
    process = make_process("etl", CHAIN)
    admin_client.post(run_page(process), {"tasks": ["extract", "transform", "load"]})
    assert "subset" not in ProcessRun.objects.get().snapshot


NOT_JSON = "parameters is not valid JSON: Expecting property name enclosed in double quotes"


@pytest.mark.parametrize(
    ("data", "field", "problem"),
    [
        ({"tasks": []}, "tasks", "choose at least one task to run"),
        (
            {"tasks": ["nope"]},
            "tasks",
            "Select a valid choice. nope is not one of the available choices.",
        ),
        (
            {"tasks": ["load"], "parameters": "{day: 1}"},
            "parameters",
            f"{NOT_JSON} (line 1, column 2)",
        ),
        (
            {"tasks": ["load"], "parameters": "[1, 2]"},
            "parameters",
            "parameters must be a JSON object",
        ),
        (
            {"tasks": ["load"], "parameters": '{"n": 1e400}'},
            "parameters",
            "n: number is out of range (beyond ±1.8e308)",
        ),
    ],
)
def test_bad_input_is_named_and_starts_nothing(admin_client, data, field, problem):
    process = make_process("etl", CHAIN)
    response = admin_client.post(run_page(process), data)
    assert response.status_code == 200
    assert response.context["form"].errors[field] == [problem]
    assert not ProcessRun.objects.exists()
    if "parameters" in data:
        assert data["parameters"] in response.content.decode().replace("&quot;", '"')


def test_a_refused_trigger_is_shown_on_the_form(admin_client):
    process = make_process("etl", CHAIN, archived=True)
    response = admin_client.post(run_page(process), {"tasks": ["load"]})
    assert response.context["form"].non_field_errors() == ["process 'etl' is archived"]
    assert not ProcessRun.objects.exists()


def test_a_user_who_may_not_change_the_process_may_not_run_it(client):
    User.objects.create_user("viewer", password="pw", is_staff=True)
    client.login(username="viewer", password="pw")
    process = make_process("etl", CHAIN)
    assert client.post(run_page(process), {"tasks": ["load"]}).status_code == 403
    assert not ProcessRun.objects.exists()
