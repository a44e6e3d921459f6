"""The admin reads as states and exact names: labels for paused processes, a link to a
process's runs, durations, task metadata, one date format, and no repeated words."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs.models import ProcessRun, TaskMetadata, Trigger
from jobs.orchestrator import finished_message, trigger_run
from tests.admin.actions import apply_action
from tests.conftest import make_process

pytestmark = pytest.mark.django_db


def test_a_process_list_shows_states_as_words_and_links_to_its_runs(admin_client):
    healthy = make_process("healthy")
    make_process("sleepy", paused=True)
    html = admin_client.get(reverse("admin:jobs_processdefinition_changelist")).content.decode()
    assert "icon-no.svg" not in html and "icon-yes.svg" not in html
    assert '<span class="badge badge-paused">paused</span>' in html
    runs = f"{reverse('admin:jobs_processrun_changelist')}?definition__id__exact={healthy.pk}"
    assert f'<a href="{runs}">runs</a>' in html


def test_the_run_list_filters_by_process_and_date_and_shows_durations(admin_client):
    mine = trigger_run(make_process("mine"), Trigger.MANUAL)
    trigger_run(make_process("other"), Trigger.MANUAL)
    began = timezone.now() - timedelta(minutes=3, seconds=7)
    ProcessRun.objects.filter(pk=mine.pk).update(started_at=began, finished_at=timezone.now())
    url = reverse("admin:jobs_processrun_changelist")
    response = admin_client.get(url, {"definition__id__exact": mine.definition_id})
    assert list(response.context["cl"].result_list) == [mine]
    assert '<td class="field-duration">3m 07s</td>' in response.content.decode()
    today = timezone.now()
    dated = admin_client.get(
        url, {"created_at__year": today.year, "created_at__month": today.month}
    )
    assert len(dated.context["cl"].result_list) == 2


def test_messages_keep_a_process_s_exact_name(admin_client):
    process = make_process("demo-etl")
    page = admin_client.post(
        reverse("admin:jobs_processdefinition_changelist"),
        {"action": "run_now", "_selected_action": [process.pk]},
        follow=True,
    ).content.decode()
    assert "demo-etl: <a" in page and "Demo-etl" not in page
    assert apply_action(admin_client, "processdefinition", "pause", process) == ["Paused: demo-etl"]


def test_a_finished_event_says_its_status_once():
    assert finished_message("failed", "failed: publish") == "failed: publish"
    assert finished_message("succeeded", "all tasks succeeded") == "all tasks succeeded"
    assert finished_message("killed", "killed by admin") == "killed by admin"
    assert finished_message("killed", "not needed") == "killed: not needed"
    limit = "run time limit of 60s exceeded"
    assert finished_message("failed", limit) == f"failed: {limit}"


def test_the_run_page_shows_each_task_s_latest_metadata_and_times_with_seconds(admin_client):
    run = trigger_run(make_process("etl", tasks={"load": {}}), Trigger.MANUAL)
    first = run.task_runs.get()
    TaskMetadata.objects.create(task_run=first, key="rows", value=10, numeric_value=10)
    TaskMetadata.objects.create(task_run=first, key="table", value="sales")
    second = run.task_runs.create(task_name="load", number=2, executor="local", status="running")
    TaskMetadata.objects.create(task_run=second, key="rows", value=12, numeric_value=12)
    html = admin_client.get(reverse("admin:jobs_processrun_change", args=[run.pk])).content.decode()
    assert "<td>load</td>\n      <td>rows</td>\n      <td>12</td>" in html, "the latest attempt's"
    assert "<td>10</td>" not in html
    assert "<td>table</td>\n      <td>sales</td>" in html
    created = timezone.localtime(run.created_at).strftime("%Y-%m-%d %H:%M:%S")
    assert f"{created} UTC" in html, "Django's own read-only dates in the one format"
