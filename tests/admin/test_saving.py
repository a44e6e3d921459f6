"""A valid save stores tasks and their edges, replaces edges on edit, and reschedules."""

from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs.models import ProcessDefinition, TaskDependency
from tests.admin.posting import current_form, process_form
from tests.conftest import make_process

pytestmark = pytest.mark.django_db


def edges(process):
    return set(
        TaskDependency.objects.filter(task__process=process).values_list(
            "task__name", "upstream__name", "required"
        )
    )


def change_url(process):
    return reverse("admin:jobs_processdefinition_change", args=[process.pk])


def test_a_new_process_gets_its_tasks_edges_and_next_fire_time(admin_client):
    tasks = [
        {"name": "extract"},
        {"name": "load", "requires": "extract, transform", "runs_after": "audit"},
        {"name": "transform", "requires": "extract"},
        {"name": "audit", "config": '{"shell": "echo ok"}'},
    ]
    data = process_form(tasks, schedule_kind="cron", cron=" 0  9 * * * ", timezone="Europe/Berlin")
    response = admin_client.post(reverse("admin:jobs_processdefinition_add"), data)
    assert response.status_code == 302, response.context and response.context["errors"]

    process = ProcessDefinition.objects.get()
    assert process.cron == "0 9 * * *", "the expression is stored normalised"
    assert sorted(process.tasks.values_list("name", flat=True)) == [
        "audit",
        "extract",
        "load",
        "transform",
    ]
    assert process.tasks.get(name="audit").config == {"shell": "echo ok"}
    assert edges(process) == {
        ("load", "extract", True),
        ("load", "transform", True),
        ("load", "audit", False),
        ("transform", "extract", True),
    }
    assert process.next_fire_at is not None and process.next_fire_at > timezone.now()
    local = process.next_fire_at.astimezone(ZoneInfo("Europe/Berlin"))
    assert (local.hour, local.minute) == (9, 0)


def test_editing_replaces_the_edges_and_shows_the_current_ones(admin_client):
    process = make_process(
        "etl",
        tasks={"extract": {}, "audit": {}, "load": {"requires": ["extract"], "after": ["audit"]}},
    )
    page = admin_client.get(change_url(process)).content.decode()
    assert 'name="tasks-2-requires" value="extract"' in page
    assert 'name="tasks-2-runs_after" value="audit"' in page

    data = current_form(process)
    data |= {"tasks-2-requires": "audit", "tasks-2-runs_after": ""}
    assert admin_client.post(change_url(process), data).status_code == 302
    assert edges(process) == {("load", "audit", True)}


def test_a_task_added_in_the_same_save_can_be_required(admin_client):
    process = make_process("etl", tasks={"extract": {}})
    data = current_form(process)
    new_task = process_form([{}, {"name": "load", "requires": "extract"}])
    data |= {key: value for key, value in new_task.items() if key.startswith("tasks-1-")}
    data["tasks-TOTAL_FORMS"] = "2"
    assert admin_client.post(change_url(process), data).status_code == 302
    assert edges(process) == {("load", "extract", True)}


def test_saving_a_paused_process_clears_its_next_fire_time(admin_client):
    process = make_process("etl", schedule_kind="cron", cron="0 9 * * *")
    ProcessDefinition.objects.filter(pk=process.pk).update(next_fire_at=timezone.now())
    data = current_form(process, schedule_kind="cron", cron="0 9 * * *", paused="on")
    assert admin_client.post(change_url(process), data).status_code == 302
    process.refresh_from_db()
    assert process.paused and process.next_fire_at is None


def test_the_change_page_costs_the_same_however_many_tasks(
    admin_client, django_assert_max_num_queries
):
    small = make_process("small", tasks={"a": {}, "b": {"requires": ["a"]}})
    big = make_process(
        "big", tasks={f"t{i}": {"requires": [f"t{i - 1}"] if i else []} for i in range(10)}
    )
    admin_client.get(change_url(small))
    # Session, user, the process, its tasks with their edges, its notifications, the rest.
    with django_assert_max_num_queries(8) as small_queries:
        admin_client.get(change_url(small))
    with django_assert_max_num_queries(len(small_queries)):
        assert admin_client.get(change_url(big)).status_code == 200
