"""The dashboard: every process's colour at a glance, its recent runs, what runs now, filters,
and a refresh that sends nothing while nothing changed."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs.cron import reschedule
from jobs.models import ProcessRun, TaskEvent
from tests.conftest import make_process

pytestmark = pytest.mark.django_db


def run(process, status: str, minutes: float = 2, *, ago_h: float = 1, trigger="schedule"):
    started = timezone.now() - timedelta(hours=ago_h)
    finished = started + timedelta(minutes=minutes) if status not in ("running", "queued") else None
    return ProcessRun.objects.create(
        definition=process,
        snapshot={},
        trigger=trigger,
        status=status,
        started_at=started if status != "queued" else None,
        finished_at=finished,
    )


def board(client, **query) -> str:
    return client.get(reverse("home"), query).content.decode()


def row_of(html: str, name: str) -> str:
    """The dashboard row of one process."""
    rows = re.findall(r'<tr class="process[^"]*">.*?</tr>', html, flags=re.S)
    (row,) = [r for r in rows if f">{name}</a>" in r]
    return row


def test_a_process_is_green_red_or_grey_by_its_latest_finished_run(admin_client):
    run(make_process("good"), "succeeded")
    run(make_process("bad"), "failed")
    run(make_process("stopped"), "killed")
    make_process("fresh")
    run(make_process("resting", paused=True), "succeeded")
    html = board(admin_client)
    assert 'class="process green"' in row_of(html, "good")
    assert 'class="process red"' in row_of(html, "bad")
    assert 'class="process red"' in row_of(html, "stopped")
    assert 'class="process grey"' in row_of(html, "fresh") and "never run" in row_of(html, "fresh")
    assert 'class="process grey"' in row_of(html, "resting")
    assert "1 failing" not in html and "2 failing" in html
    assert "1 green" in html and "2 paused or not run yet" in html


def test_a_skipped_or_queued_trigger_hides_neither_a_failure_nor_a_running_run(admin_client):
    process = make_process("busy", overlap="skip")
    run(process, "failed", ago_h=3)
    run(process, "running", ago_h=0.05)
    run(process, "skipped", ago_h=0.01, trigger="manual")
    run(process, "queued", ago_h=0.01, trigger="api")
    row = row_of(board(admin_client), "busy")
    assert 'class="process red is-running"' in row, "still red (its last finished run failed)"
    assert 'class="light red ring"' in row
    assert re.search(r"running for 3m \d\ds", row), row
    assert "1 running" in board(admin_client)


def test_the_last_20_runs_oldest_first_each_linking_its_run(admin_client):
    process = make_process("busy")
    runs = [run(process, "succeeded", ago_h=30 - i) for i in range(25)]
    row = row_of(board(admin_client), "busy")
    links = re.findall(r'href="/runs/(\d+)/"', row)
    assert [int(pk) for pk in links] == [r.pk for r in runs[5:]]
    assert f'title="run {runs[-1].pk} · succeeded · schedule · ' in row
    assert "<polyline points=" in row, "a sparkline of the durations"


def test_next_run_in_the_process_zone_and_utc(admin_client):
    process = make_process(
        "daily", schedule_kind="cron", cron="0 9 * * *", timezone="Europe/Berlin"
    )
    reschedule(process)
    row = row_of(board(admin_client), "daily")
    assert re.search(
        r'<time datetime="[^"]+" title="[-\d]+ 0[78]:00:00 UTC">[-\d]+ 09:00:00 CES?T<', row
    )


def test_filters_by_name_owner_and_status_are_kept_in_the_url(admin_client):
    run(make_process("orders-etl", owner="data"), "failed")
    run(make_process("orders-report", owner="bi"), "succeeded")
    run(make_process("users-etl", owner="data"), "succeeded")
    html = board(admin_client, q="orders", owner="data")
    assert "orders-etl" in html and "orders-report" not in html and "users-etl" not in html
    assert 'name="q" value="orders"' in html and '<option value="data" selected>' in html
    only_red = board(admin_client, status="red")
    assert "orders-etl" in only_red and "users-etl" not in only_red
    assert "No process matches these filters." in board(admin_client, q="nothing")
    # The board's refresh asks with the same filters.
    assert "q=orders&amp;owner=data&amp;since=" in html


def test_archived_processes_are_left_out(admin_client):
    make_process("kept")
    make_process("retired", archived=True)
    html = board(admin_client)
    assert "kept" in html and "retired" not in html


def test_the_refresh_gets_nothing_while_nothing_changed(admin_client):
    process = make_process("watched")
    first = run(process, "running")
    page = board(admin_client)
    (refresh,) = re.findall(r'<section id="board" hx-get="([^"]+)"', page)
    refresh = refresh.replace("&amp;", "&")
    again = admin_client.get(refresh, HTTP_HX_REQUEST="true")
    assert again.status_code == 204 and again.content == b""
    ProcessRun.objects.filter(pk=first.pk).update(status="failed", finished_at=timezone.now())
    TaskEvent.objects.create(run=first, kind="finished", message="failed: extract")
    changed = admin_client.get(refresh, HTTP_HX_REQUEST="true")
    assert changed.status_code == 200
    body = changed.content.decode()
    assert body.lstrip().startswith('<section id="board"') and "<html" not in body
    assert 'class="process red"' in body


def test_without_javascript_the_page_refreshes_and_filters(admin_client):
    html = board(admin_client)
    assert '<noscript><meta http-equiv="refresh" content="10"></noscript>' in html
    assert '<form class="filters" method="get"' in html


def test_the_dashboard_costs_the_same_queries_for_few_or_many(
    admin_client, django_assert_max_num_queries
):
    def fill(names):
        for name in names:
            process = make_process(name, owner="team")
            for status in ("failed", "succeeded", "running", "skipped"):
                run(process, status)

    fill(["p0"])
    with django_assert_max_num_queries(10) as few:
        board(admin_client)
    fill([f"p{i}" for i in range(1, 30)])
    with django_assert_max_num_queries(len(few)):
        html = board(admin_client)
    assert html.count('class="process green is-running"') == 30


def test_failing_processes_come_first_the_rest_by_name(admin_client):
    for name, status in (("alpha", "succeeded"), ("beta", "failed"), ("gamma", "succeeded")):
        run(make_process(name), status)
    html = board(admin_client)
    order = re.findall(r'<tr class="process[^"]*">.*?>(\w+)</a>', html, flags=re.S)
    assert order == ["beta", "alpha", "gamma"]


def test_the_board_pages_failing_first_and_counts_every_page(admin_client, monkeypatch):
    monkeypatch.setattr("jobs.dashboard.PAGE_SIZE", 2)
    for name, status in (("a", "succeeded"), ("b", "succeeded"), ("c", "failed"), ("d", "running")):
        run(make_process(name), status)
    run(make_process("e"), "failed")
    first = board(admin_client)
    assert re.findall(r'<tr class="process[^"]*">.*?>(\w+)</a>', first, flags=re.S) == ["c", "e"]
    assert "2 failing" in first and "2 green" in first and "1 running" in first
    assert "1\N{EN DASH}2 of 5 (page 1 of 3)" in first and "previous</a>" not in first
    (next_url,) = re.findall(r'<a href="([^"]+)"[^>]*>next \S</a>', first)
    second = admin_client.get(next_url.replace("&amp;", "&")).content.decode()
    assert re.findall(r'<tr class="process[^"]*">.*?>(\w+)</a>', second, flags=re.S) == ["a", "b"]
    # The refresh of a page asks for that page.
    assert re.search(r'<section id="board" hx-get="[^"]*page=2&amp;since=', second)
    # A page past the last shows the last; a page that is not a number, the first.
    past_the_end = board(admin_client, page="99")
    assert ">d</a>" in past_the_end and "page 3 of 3" in past_the_end
    assert "page 1 of 3" in board(admin_client, page="two")
    # A colour filter pages through that colour only, and the counts stay those of all.
    only_red = board(admin_client, status="red")
    assert "pager" not in only_red and "2 green" in only_red
