"""The process list shows each schedule, next fire time and latest run, in bounded queries."""

import pytest
from django.urls import reverse

from jobs.cron import reschedule
from jobs.models import ProcessRun
from tests.conftest import make_process

pytestmark = pytest.mark.django_db

URL = reverse("admin:jobs_processdefinition_changelist")


def add_runs(process, *statuses):
    return [
        ProcessRun.objects.create(definition=process, snapshot={}, trigger="manual", status=s)
        for s in statuses
    ]


def test_columns(admin_client):
    process = make_process("etl", schedule_kind="cron", cron="0 9 * * *", timezone="Europe/Berlin")
    reschedule(process)
    *_, latest = add_runs(process, "failed", "succeeded")
    html = admin_client.get(URL).content.decode()
    assert "0 9 * * * (Europe/Berlin)" in html
    assert " 09:00:00 CE" in html, "the next fire time in the process's own zone"
    run_url = reverse("admin:jobs_processrun_change", args=[latest.pk])
    assert f'<a href="{run_url}">run {latest.pk}</a> <span class="badge badge-succeeded">' in html


def test_queries_do_not_grow_with_processes(admin_client, django_assert_max_num_queries):
    add_runs(make_process("p0"), "running")
    admin_client.get(URL)
    with django_assert_max_num_queries(6) as one:
        admin_client.get(URL)
    for i in range(1, 10):
        add_runs(make_process(f"p{i}"), "succeeded", "failed")
    with django_assert_max_num_queries(len(one)):
        assert admin_client.get(URL).content.decode().count("badge-") == 10
