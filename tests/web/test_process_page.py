"""The process page: its DAG as the latest run left it, its schedule, its run history with
filters, durations, and Run now / Pause / Resume under the admin's permission, audited."""

from __future__ import annotations

import html as html_text
import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from executors.memory import MemoryExecutor
from jobs.actions import set_paused
from jobs.cron import reschedule
from jobs.models import ProcessRun, TaskRun, Trigger, User
from jobs.orchestrator import request_kill, trigger_run
from jobs.process_page import day_start, percentile
from jobs.submission import submit_task_run
from tests.admin.actions import audit_trail
from tests.conftest import make_process, serve_memory

pytestmark = pytest.mark.django_db

BERLIN = ZoneInfo("Europe/Berlin")
MEMORY = {"executor": "memory", "config": {}}


def page(client, name: str, **query) -> str:
    response = client.get(reverse("process", args=[name]), query)
    assert response.status_code == 200
    return response.content.decode()


def finished(
    process,
    status: str = "succeeded",
    seconds: float = 60,
    *,
    ago_h: float = 1,
    at: datetime | None = None,
    **kw,
):
    started = at or timezone.now() - timedelta(hours=ago_h)
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
    fires = re.findall(
        r'<li><time datetime="[^"]+" title="\d{4}-\d\d-\d\d 0[78]:00:00 UTC">'
        r"(\d{4}-\d\d-\d\d 09:00:00 CES?T)</time></li>",
        html,
    )
    assert len(fires) == 5
    next_run = f"{process.next_fire_at.astimezone(BERLIN):%Y-%m-%d %H:%M:%S %Z}</time>"
    assert "<dt>Next run</dt><dd><time datetime=" in html and next_run in html


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


def listed(html: str) -> list[int]:
    """The runs the history lists, in its order."""
    return [int(pk) for pk in re.findall(r'<tr><td><a href="/runs/(\d+)/">', html)]


def refresh_url(html: str) -> str:
    """Where the page (or its refreshed body) asks for itself next."""
    (url,) = re.findall(r'<div id="process" hx-get="([^"]+)"', html)
    return html_text.unescape(url)


def test_the_page_refreshes_itself_with_its_filters_and_gets_nothing_until_it_changes(
    admin_client, admin_user, monkeypatch
):
    serve_memory(monkeypatch, MemoryExecutor())
    process = make_process("etl", {"extract": MEMORY, "load": {**MEMORY, "requires": ["extract"]}})
    for _ in range(55):
        finished(process, trigger=Trigger.MANUAL)
    url = refresh_url(page(admin_client, "etl", trigger="manual", page=2))
    assert url.startswith("/processes/etl/?trigger=manual&page=2&marker=")
    assert admin_client.get(url, HTTP_HX_REQUEST="true").status_code == 204

    run = trigger_run(process, Trigger.MANUAL)  # a run changes: the body comes back
    changed = admin_client.get(url, HTTP_HX_REQUEST="true")
    body = changed.content.decode()
    assert changed.status_code == 200 and body.startswith('<div id="process" hx-get=')
    assert "<html" not in body and '<g class="task ready"><title>extract — ready</title>' in body
    assert refresh_url(body).startswith("/processes/etl/?trigger=manual&page=2&marker=")
    url = refresh_url(body)
    assert admin_client.get(url, HTTP_HX_REQUEST="true").status_code == 204

    # An attempt submitted leaves no event; its box changes colour all the same.
    extract = TaskRun.objects.get(run=run, task_name="extract")
    assert submit_task_run(extract.pk)
    moved = admin_client.get(url, HTTP_HX_REQUEST="true")
    assert moved.status_code == 200
    assert '<g class="task ready">' not in moved.content.decode()
    url = refresh_url(moved.content.decode())

    set_paused(process, paused=True, user=admin_user)  # the process changes: its badge shows
    paused = admin_client.get(url, HTTP_HX_REQUEST="true")
    assert paused.status_code == 200 and "badge-paused" in paused.content.decode()


def test_another_process_changing_does_not_refresh_this_one(admin_client):
    make_process("etl")
    other = make_process("other")
    url = refresh_url(page(admin_client, "etl"))
    trigger_run(other, Trigger.MANUAL)
    assert admin_client.get(url, HTTP_HX_REQUEST="true").status_code == 204


def test_a_refused_run_now_keeps_polling_the_page_not_the_post(admin_client):
    make_process("empty", tasks={})
    response = admin_client.post(reverse("process-run", args=["empty"]), {"parameters": "{}"})
    assert refresh_url(response.content.decode()).startswith("/processes/empty/?marker=")


def test_dates_are_days_on_the_processs_clock_and_the_zone_is_shown(admin_client):
    process = make_process("la", timezone="America/Los_Angeles")
    utc = [(24, 7), (24, 8), (25, 7), (25, 8)]  # 07:30 UTC is 23:30 PST the day before
    late_23rd, early_24th, late_24th, early_25th = (
        finished(process, at=datetime(2026, 11, day, hour, 30, tzinfo=UTC)) for day, hour in utc
    )
    html = page(admin_client, "la", since="2026-11-24", until="2026-11-24")
    assert listed(html) == [late_24th.pk, early_24th.pk]
    assert "days in America/Los_Angeles" in html
    created = '<time datetime="2026-11-25T07:30:00+00:00" title="2026-11-25 07:30:00 UTC">'
    assert created + "2026-11-24 23:30:00 PST</time>" in html

    assert listed(page(admin_client, "la", until="2026-11-23")) == [late_23rd.pk]
    assert listed(page(admin_client, "la", since="2026-11-25")) == [early_25th.pk]


def test_a_day_starts_at_local_midnight_across_dst():
    los_angeles, santiago = ZoneInfo("America/Los_Angeles"), ZoneInfo("America/Santiago")
    # 1 November 2026 has 25 hours in Los Angeles: PDT (UTC-7) falls back to PST (UTC-8).
    assert day_start(date(2026, 11, 1), los_angeles) == datetime(2026, 11, 1, 7, tzinfo=UTC)
    assert day_start(date(2026, 11, 2), los_angeles) == datetime(2026, 11, 2, 8, tzinfo=UTC)
    # Santiago skips midnight on 6 September 2026: the day starts at the jump (01:00 -03).
    assert day_start(date(2026, 9, 6), santiago) == datetime(2026, 9, 6, 4, tzinfo=UTC)
    assert day_start(date(1, 1, 1), ZoneInfo("Asia/Tokyo")) is None  # before year 1 in UTC


@pytest.mark.parametrize(
    "query, problem",
    [
        ({"since": "2026-13-45"}, "since: Enter a valid date."),
        ({"until": "yesterday"}, "until: Enter a valid date."),
        ({"status": "nonsense"}, "status: Select a valid choice. nonsense is not one"),
        ({"trigger": "<b>"}, "trigger: Select a valid choice. &lt;b&gt; is not one"),
        ({"since": "2026-11-25", "until": "2026-11-24"}, "from 2026-11-25 is after to 2026-11-24"),
    ],
)
def test_a_bad_filter_says_what_is_wrong_and_shows_every_run(admin_client, query, problem):
    process = make_process("etl")
    finished(process)
    html = page(admin_client, "etl", **query)
    assert f'<p class="problem">{problem}' in html
    assert html.count('<tr><td><a href="/runs/') == 1
    url = refresh_url(html)
    assert admin_client.get(url, HTTP_HX_REQUEST="true").status_code == 204


@pytest.mark.parametrize("zone", ["Asia/Tokyo", "America/Los_Angeles"])
def test_dates_at_the_calendars_ends_do_not_fail(admin_client, zone):
    process = make_process("etl", timezone=zone)
    finished(process)
    html = page(admin_client, "etl", since="0001-01-01", until="9999-12-31")
    assert html.count('<tr><td><a href="/runs/') == 1


def test_a_skipped_run_and_a_killed_one_refresh_the_page(admin_client):
    process = make_process("etl", {"extract": {}}, overlap="skip")
    running = trigger_run(process, Trigger.MANUAL)
    url = refresh_url(page(admin_client, "etl"))
    skipped = trigger_run(process, Trigger.API)  # no event of a running run, no reschedule
    assert skipped.status == "skipped"
    changed = admin_client.get(url, HTTP_HX_REQUEST="true")
    assert changed.status_code == 200 and f">run {skipped.pk}<" in changed.content.decode()
    url = refresh_url(changed.content.decode())
    assert request_kill(running.pk)  # its only attempt had not started: the run ends now
    running.refresh_from_db()
    assert running.status == "killed"
    killed = admin_client.get(url, HTTP_HX_REQUEST="true")
    assert killed.status_code == 200 and "badge-killed" in killed.content.decode()


@pytest.mark.parametrize(
    "query",
    [
        {"page": "-1"},
        {"page": "9" * 40},
        {"since": "99999-01-01"},
        {"since": "0000-00-00", "until": "2026-02-30"},
        {"status": "ü" * 500, "trigger": "\x00"},
        {"marker": "not-a-marker"},
    ],
)
def test_odd_input_is_answered_never_a_500(admin_client, query):
    process = make_process("etl", timezone="Asia/Tokyo")
    finished(process)
    assert admin_client.get(reverse("process", args=["etl"]), query).status_code == 200
    polled = admin_client.get(reverse("process", args=["etl"]), query, HTTP_HX_REQUEST="true")
    assert polled.status_code == 200


def test_notifications_say_who_is_told_which_channel_refuses_and_what_is_open(
    admin_client, settings
):
    from notifications import outbox
    from notifications.models import Alert, Subscription

    settings.SUNDIAL_PAGERDUTY_ROUTING_KEY = "d" * 32
    process = make_process("etl", critical=True, page_after_failures=2)
    assert "Nobody is told about this process" not in page(admin_client, "etl")
    assert (
        'PagerDuty · the default service · <span class="hears">pages when it fails 2 times in a'
        " row</span>" in page(admin_client, "etl")
    )
    Subscription.objects.create(process=process, channel="email", target="ana@example.com")
    slack = Subscription.objects.create(
        process=process,
        channel="slack",
        target="https://hooks.slack.com/services/T0/B0/secretpart",
        policy="on_failure",
    )
    url = refresh_url(page(admin_client, "etl"))
    assert admin_client.get(url, HTTP_HX_REQUEST="true").status_code == 204
    # A channel refusing for good, and an alert opening, each refresh the page.
    Subscription.objects.filter(pk=slack.pk).update(
        broken_at=timezone.now(), broken_reason="hooks.slack.com answered 404: no_service"
    )
    refused = admin_client.get(url, HTTP_HX_REQUEST="true")
    body = refused.content.decode()
    assert refused.status_code == 200 and "secretpart" not in body
    assert (
        'Email · ana@example.com · <span class="hears">every failure, and when it turns green'
        " again</span>" in body
    )
    assert 'Slack · http…part · <span class="hears">every failed run</span>' in body
    assert "refused since" in body and "answered 404: no_service" in body
    alert = Alert.objects.create(
        process=process, kind="missed_start", key="k", message="it is <late>"
    )
    url = refresh_url(body)
    opened = admin_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "etl did not start on time" in opened and "it is &lt;late&gt;" in opened
    outbox.resolve(alert, "it started")
    cleared = admin_client.get(refresh_url(opened), HTTP_HX_REQUEST="true").content.decode()
    assert "did not start on time" not in cleared
