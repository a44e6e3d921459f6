"""The run page: attempts in time order with their reasons, what tasks reported, the trail,
and Kill and Retry (on the frozen or the current definition) where a person looks."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from jobs.models import ProcessRun, TaskDefinition, TaskEvent, TaskMetadata, TaskRun, Trigger, User
from jobs.orchestrator import trigger_run
from tests.conftest import make_process
from tests.orchestrator.driving import drive

pytestmark = pytest.mark.django_db(transaction=True)


def page(client, run) -> str:
    return client.get(reverse("run", args=[run.pk])).content.decode()


def failed_run():
    """A run whose "load" failed after "extract" succeeded (real local processes)."""
    process = make_process(
        "nightly",
        {"extract": {}, "load": {"config": {"command": ["false"]}, "requires": ["extract"]}},
    )
    return drive(trigger_run(process, Trigger.MANUAL))


def test_attempts_in_the_order_they_started_with_how_they_ended(admin_client):
    run = failed_run()
    html = page(admin_client, run)
    tasks = re.findall(r"<tr>\s*<td>(\w+)</td>\s*<td>attempt", html)
    assert tasks == ["extract", "load"]
    assert "exit code 1" in html and "failed: load" in html
    assert 'class="badge badge-failed"' in html
    assert '<svg class="dag"' in html, "the DAG, coloured by each task's latest attempt"
    assert reverse("task-run-log", args=[run.task_runs.get(task_name="load").pk]) in html


def test_a_waiting_task_says_what_it_waits_for(admin_client):
    process = make_process("slow", {"extract": {}, "load": {"requires": ["extract"]}})
    run = trigger_run(process, Trigger.MANUAL)
    html = page(admin_client, run)
    assert "waiting for extract" in html
    assert 'hx-trigger="every 2s"' in html, "an active run's page keeps itself live"


def test_time_order_is_by_start_not_by_creation(admin_client):
    run = failed_run()
    extract = run.task_runs.get(task_name="extract")
    TaskRun.objects.filter(pk=extract.pk).update(started_at=timezone.now() + timedelta(hours=1))
    tasks = re.findall(r"<tr>\s*<td>(\w+)</td>\s*<td>attempt", page(admin_client, run))
    assert tasks == ["load", "extract"]


def test_what_tasks_reported_and_the_trail_are_shown_escaped(admin_client):
    run = failed_run()
    load = run.task_runs.get(task_name="load")
    TaskMetadata.objects.create(task_run=load, key="rows", value=1042, numeric_value=1042)
    TaskEvent.objects.create(run=run, kind="note", message="<script>alert(1)</script>")
    html = page(admin_client, run)
    assert "<td>rows</td>" in html and "<code>1042</code>" in html
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_kill_stops_a_running_run_and_the_trail_says_who(admin_client, admin_user):
    run = trigger_run(
        make_process("long", {"only": {"config": {"command": ["sleep", "60"]}}}), Trigger.MANUAL
    )
    response = admin_client.post(reverse("run-kill", args=[run.pk]))
    assert response.status_code == 302 and response["Location"] == reverse("run", args=[run.pk])
    drive(run)
    run.refresh_from_db()
    assert run.status == "killed"
    assert run.kill_requested_by == admin_user
    assert f"run {run.pk}: kill requested" in page(admin_client, run)


def test_retry_on_the_frozen_definition_reruns_in_this_run(admin_client):
    run = failed_run()
    response = admin_client.post(reverse("run-retry", args=[run.pk]), {"on": "frozen"})
    assert response["Location"] == reverse("run", args=[run.pk])
    run.refresh_from_db()
    assert run.status == "running"
    assert run.task_runs.filter(task_name="load", round=2).exists()
    assert not run.task_runs.filter(task_name="extract", round=2).exists(), "successes kept"


def test_retry_on_the_current_definition_picks_up_a_fix(admin_client):
    run = failed_run()
    TaskDefinition.objects.filter(name="load").update(config={"command": ["true"]})  # the fix
    response = admin_client.post(reverse("run-retry", args=[run.pk]), {"on": "current"})
    new = ProcessRun.objects.exclude(pk=run.pk).get()
    assert response["Location"] == reverse("run", args=[new.pk])
    drive(new)
    assert new.status == "succeeded"
    assert list(new.task_runs.values_list("task_name", flat=True)) == ["load"]
    assert new.snapshot["subset"]["assumed_done"] == ["extract"]


def test_a_run_that_cannot_be_retried_says_why(admin_client):
    process = make_process("fine", {"only": {}})
    run = drive(trigger_run(process, Trigger.MANUAL))
    admin_client.post(reverse("run-retry", args=[run.pk]), {"on": "frozen"})
    assert "only failed or killed runs can be retried" in page(admin_client, run)


def test_operating_needs_the_permission_and_a_post_with_csrf(client, admin_user):
    run = failed_run()
    reader = User.objects.create_user("reader", password="pw")
    client.force_login(reader)
    assert client.post(reverse("run-retry", args=[run.pk]), {"on": "frozen"}).status_code == 403
    assert "Retry failed tasks" not in page(client, run), "no button one may not press"
    reader.user_permissions.add(Permission.objects.get(codename="change_processrun"))
    checked = Client(enforce_csrf_checks=True)
    checked.force_login(User.objects.get(pk=reader.pk))
    assert checked.post(reverse("run-retry", args=[run.pk]), {"on": "frozen"}).status_code == 403
    assert checked.get(reverse("run-kill", args=[run.pk])).status_code == 405


def test_the_live_page_gets_nothing_while_nothing_changed(admin_client):
    process = make_process("slow", {"extract": {}, "load": {"requires": ["extract"]}})
    run = trigger_run(process, Trigger.MANUAL)
    (url,) = re.findall(r'<div id="run" hx-get="([^"]+)"', page(admin_client, run))
    assert admin_client.get(url, HTTP_HX_REQUEST="true").status_code == 204
    TaskEvent.objects.create(run=run, kind="note", message="something happened")
    changed = admin_client.get(url, HTTP_HX_REQUEST="true")
    assert changed.status_code == 200 and changed.content.decode().startswith('<div id="run"')


def test_an_attempt_moving_on_without_an_event_refreshes_the_page(admin_client):
    process = make_process("slow", {"extract": {}})
    run = trigger_run(process, Trigger.MANUAL)
    (url,) = re.findall(r'<div id="run" hx-get="([^"]+)"', page(admin_client, run))
    assert admin_client.get(url, HTTP_HX_REQUEST="true").status_code == 204
    # A poll saw the job start: the attempt's status changes, no event is written.
    TaskRun.objects.filter(run=run).update(status="running", started_at=timezone.now())
    assert admin_client.get(url, HTTP_HX_REQUEST="true").status_code == 200


def test_the_page_costs_the_same_queries_for_a_small_or_a_big_run(
    admin_client, django_assert_max_num_queries
):
    small = failed_run()
    page(admin_client, small)  # warm the session
    with django_assert_max_num_queries(12) as few:
        page(admin_client, small)
    big = drive(trigger_run(make_process("wide", {f"t{i}": {} for i in range(15)}), Trigger.MANUAL))
    with django_assert_max_num_queries(len(few)):
        assert "t14" in page(admin_client, big)


def test_an_unknown_run_is_404(admin_client):
    assert admin_client.get(reverse("run", args=[999999])).status_code == 404
