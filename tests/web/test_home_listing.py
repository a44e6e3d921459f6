"""The home page lists live processes with their schedule and latest run, linking the admin."""

import pytest
from django.urls import reverse

from jobs.cron import reschedule
from jobs.models import ProcessRun
from tests.conftest import make_process

pytestmark = pytest.mark.django_db


def home(client) -> str:
    return client.get(reverse("home")).content.decode()


def test_processes_with_their_latest_run(admin_client):
    process = make_process("etl", schedule_kind="cron", cron="0 9 * * *", timezone="Europe/Berlin")
    reschedule(process)
    ProcessRun.objects.create(definition=process, snapshot={}, trigger="schedule", status="failed")
    latest = ProcessRun.objects.create(
        definition=process, snapshot={}, trigger="manual", status="running"
    )
    html = home(admin_client)
    process_url = reverse("admin:jobs_processdefinition_change", args=[process.pk])
    run_url = reverse("admin:jobs_processrun_change", args=[latest.pk])
    assert f'<a href="{process_url}">etl</a>' in html
    assert "0 9 * * * (Europe/Berlin)" in html
    assert " 09:00 CE" in html
    assert f'<a href="{run_url}">run {latest.pk}</a>' in html
    assert '<span class="badge badge-running">running</span>' in html
    assert "<td>manual</td>" in html
    assert "badge-failed" not in html, "only the latest run is shown"
    assert f'href="{reverse("admin:index")}"' in html


def test_a_process_that_never_ran(admin_client):
    make_process("fresh")
    assert "never run" in home(admin_client)


def test_archived_processes_are_left_out(admin_client):
    make_process("kept")
    make_process("retired", archived=True)
    html = home(admin_client)
    assert "kept" in html and "retired" not in html


def test_without_javascript_the_page_still_refreshes_itself(admin_client):
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in home(admin_client)


def test_the_page_polls_for_its_table_and_gets_just_the_table(admin_client):
    make_process("polled")
    page = admin_client.get(reverse("home")).content.decode()
    assert 'hx-trigger="every 5s"' in page and "htmx-2.0.11.min.js" in page
    partial = admin_client.get(reverse("home"), HTTP_HX_REQUEST="true").content.decode()
    assert partial.lstrip().startswith('<table class="processes" id="processes"')
    assert "polled" in partial and "<html" not in partial
