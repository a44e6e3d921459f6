"""The process page: its DAG as the latest run left it, its schedule, its run history with
filters, durations, and Run now / Pause / Resume under the admin's permission, audited."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from jobs.cron import reschedule
from jobs.models import ProcessRun, TaskRun, Trigger, User
from jobs.orchestrator import trigger_run
from jobs.process_page import percentile
from tests.admin.actions import audit_trail
from tests.conftest import make_process

pytestmark = pytest.mark.django_db


def page(client, name: str, **query) -> str:
    response = client.get(reverse("process", args=[name]), query)
    assert response.status_code == 200
    return response.content.decode()


def finished(process, status: str = "succeeded", seconds: float = 60, *, ago_h: float = 1, **kw):
    started = timezone.now() - timedelta(hours=ago_h)
    run = ProcessRun.objects.create(
        definition=process,
        snapshot={},
        trigger=kw.get("trigger", Trigger.SCHEDULE),
        status=status,
        started_at=started,
        finished_at=started + timedelta(seconds=seconds),
    )
    ProcessRun.objects.filter(pk=run.pk).update(created_at=started)  # auto_now_add otherwise
    return run


def test_the_dashboard_links_a_process_to_its_page(admin_client):
    make_process("etl")
    html = admin_client.get(reverse("home")).content.decode()
    assert f'href="{reverse("process", args=["etl"])}"' in html


def test_the_dag_is_coloured_by_each_tasks_latest_attempt_in_the_latest_run(admin_client):
    process = make_process("etl", {"extract": {}, "load": {"requires": ["extract"]}})
    run = trigger_run(process, Trigger.MANUAL)
    extract = TaskRun.objects.get(run=run, task_name="extract")
    TaskRun.objects.filter(pk=extract.pk).update(status="failed")
    retry = TaskRun.objects.create(run=run, task_name="extract", number=2, executor="local")
    TaskRun.objects.filter(pk=retry.pk).update(status="running")
    html = page(admin_client, "etl")
    assert '<g class="task running"><title>extract — running</title>' in html
    assert '<g class="task waiting"><title>load — waiting</title>' in html
    assert f'href="{reverse("task-run-log", args=[retry.pk])}"' in html
    assert f'as <a href="{reverse("run", args=[run.pk])}">run {run.pk}</a>' in html


def test_before_the_first_run_the_dag_comes_from_the_definition(admin_client):
    make_process("fresh", {"a": {}, "b": {"after": ["a"]}})
    html = page(admin_client, "fresh")
    assert '<g class="task none"><title>a</title>' in html
    assert 'class="edge optional"' in html
    assert "Never run." in html


def test_the_schedule_in_words_and_the_next_five_fire_times(admin_client):
    process = make_process(
        "daily", schedule_kind="cron", cron="0 9 * * *", timezone="Europe/Berlin"
    )
    reschedule(process)
    html = page(admin_client, "daily")
    assert "0 9 * * * (Europe/Berlin)" in html
    fires = re.findall(r"<li>(\d{4}-\d\d-\d\d 09:00 CES?T \(0[78]:00 UTC\))</li>", html)
    assert len(fires) == 5


def test_history_filters_by_status_trigger_and_date_and_keeps_them_in_the_pages(admin_client):
    process = make_process("etl")
    old = finished(process, "failed", ago_h=24 * 10)
    for _ in range(55):
        finished(process, "succeeded")
    manual = finished(process, "failed", trigger=Trigger.MANUAL)
    assert f">run {old.pk}<" not in page(admin_client, "etl")  # page 1 holds the newest 50
    assert f">run {old.pk}<" in page(admin_client, "etl", page=2)

    failed = page(admin_client, "etl", status="failed")
    assert f">run {old.pk}<" in failed and f">run {manual.pk}<" in failed
    assert failed.count('<tr><td><a href="/runs/') == 2
    only_manual = page(admin_client, "etl", status="failed", trigger="manual")
    assert only_manual.count('<tr><td><a href="/runs/') == 1
    since = (timezone.now() - timedelta(days=2)).date().isoformat()
    recent = page(admin_client, "etl", status="failed", since=since)
    assert f">run {old.pk}<" not in recent and f">run {manual.pk}<" in recent

    paged = page(admin_client, "etl", status="succeeded")
    assert "page 1 of 2" in paged and "?status=succeeded&amp;page=2" in paged


def test_bad_filters_are_shown_not_applied_and_never_fail(admin_client):
    process = make_process("etl")
    finished(process)
    html = page(admin_client, "etl", status="exploded", since="yesterday", page="999x")
    assert "Select a valid choice" in html and "Enter a valid date" in html
    assert html.count('<tr><td><a href="/runs/') == 1


def test_durations_chart_the_last_finished_runs_with_p50_and_p95(admin_client):
    process = make_process("etl")
    for seconds in range(1, 61):  # 60 runs: the chart shows the last 50 (11 s … 60 s)
        finished(process, seconds=seconds, ago_h=100 - seconds)
    html = page(admin_client, "etl")
    assert html.count("<rect class=") == 50
    assert "p50 <strong>35s</strong>" in html and "p95 <strong>58s</strong>" in html
    assert percentile([], 0.5) is None
    assert percentile([3.0], 0.95) == 3.0


def test_run_now_starts_a_run_with_parameters_audited_and_says_so(admin_client, admin_user):
    process = make_process("etl")
    response = admin_client.post(
        reverse("process-run", args=["etl"]), {"parameters": '{"date": "2026-11-24"}'}
    )
    run = ProcessRun.objects.get()
    assert response.status_code == 302 and response.url == reverse("run", args=[run.pk])
    assert (run.trigger, run.triggered_by, run.parameters) == (
        "manual",
        admin_user,
        {"date": "2026-11-24"},
    )
    messages = [str(m) for m in response.wsgi_request._messages]
    assert messages == [f"run {run.pk} started"]
    assert audit_trail(process) == [("admin", f"Run now: run {run.pk} started")]


@pytest.mark.parametrize(
    "text, problem",
    [
        ("{not json", "parameters is not valid JSON"),
        ("[1, 2]", "parameters must be a JSON object"),
        ('{"a": NaN}', "parameters is not valid JSON: NaN is not allowed"),
    ],
)
def test_bad_parameters_show_the_form_again_with_the_text_kept(admin_client, text, problem):
    make_process("etl")
    response = admin_client.post(reverse("process-run", args=["etl"]), {"parameters": text})
    html = response.content.decode()
    assert response.status_code == 400
    assert problem in html
    assert f">{escape(text)}</textarea>" in html
    assert not ProcessRun.objects.exists()


def test_a_refused_run_is_shown_on_the_page(admin_client):
    make_process("empty", tasks={})
    response = admin_client.post(reverse("process-run", args=["empty"]), {"parameters": ""})
    assert response.status_code == 400
    assert "process &#x27;empty&#x27; has no tasks" in response.content.decode()


def test_pause_and_resume_are_audited_and_move_the_next_fire_time(admin_client):
    process = make_process("etl", schedule_kind="cron", cron="0 9 * * *")
    reschedule(process)
    response = admin_client.post(reverse("process-pause", args=["etl"]), follow=True)
    process.refresh_from_db()
    assert process.paused and process.next_fire_at is None
    assert (
        "Paused etl" in response.content.decode()
        and ">Resume</button>" in response.content.decode()
    )
    admin_client.post(reverse("process-resume", args=["etl"]))
    process.refresh_from_db()
    assert not process.paused and process.next_fire_at > timezone.now()
    assert audit_trail(process) == [("admin", "Paused"), ("admin", "Resumed")]


def test_operating_needs_the_admins_permission_and_a_post_with_csrf(client):
    process = make_process("etl")
    reader = User.objects.create_user("reader", password="pw")
    client.force_login(reader)
    assert "Run now" not in page(client, "etl"), "no button one may not press"
    assert client.post(reverse("process-run", args=["etl"])).status_code == 403
    assert client.post(reverse("process-pause", args=["etl"])).status_code == 403
    process.refresh_from_db()
    assert not process.paused and not ProcessRun.objects.exists()

    reader.user_permissions.add(Permission.objects.get(codename="change_processdefinition"))
    checked = Client(enforce_csrf_checks=True)
    checked.force_login(User.objects.get(pk=reader.pk))
    assert "Run now" in page(checked, "etl")
    assert checked.post(reverse("process-run", args=["etl"])).status_code == 403
    assert checked.post(reverse("process-pause", args=["etl"])).status_code == 403
    assert checked.get(reverse("process-run", args=["etl"])).status_code == 405
    assert not ProcessRun.objects.exists()


def test_a_stranger_is_sent_to_log_in_and_an_unknown_process_is_404(client, admin_client):
    make_process("etl")
    assert client.get(reverse("process", args=["etl"])).status_code == 302
    assert admin_client.get(reverse("process", args=["nope"])).status_code == 404


@pytest.mark.parametrize("runs, tasks", [(2, 2), (80, 30)])
def test_the_page_costs_the_same_queries_for_a_small_or_a_big_process(
    admin_client, django_assert_max_num_queries, runs, tasks
):
    specs = {f"t{i}": ({"requires": [f"t{i - 1}"]} if i else {}) for i in range(tasks)}
    process = make_process("etl", specs)
    reschedule(process)
    for _ in range(runs):
        finished(process)
    trigger_run(process, Trigger.MANUAL)
    with django_assert_max_num_queries(10):
        page(admin_client, "etl")


def test_a_skipped_latest_run_leaves_the_dag_to_the_run_before_it(admin_client):
    process = make_process("etl", {"extract": {}}, overlap="skip")
    started = trigger_run(process, Trigger.MANUAL)
    skipped = trigger_run(process, Trigger.MANUAL)
    assert skipped.status == "skipped"
    html = page(admin_client, "etl")
    assert f'as <a href="{reverse("run", args=[started.pk])}">run {started.pk}</a>' in html
    assert '<g class="task none">' not in html
