"""Run now, pause and resume from the process list; each is audited with the user."""

import pytest
from django.utils import timezone

from jobs.cron import reschedule
from jobs.models import ProcessRun
from tests.admin.actions import apply_action, audit_trail
from tests.conftest import make_process

pytestmark = pytest.mark.django_db


def test_run_now_starts_a_run_with_its_attempts(admin_client, admin_user):
    process = make_process("etl", tasks={"extract": {}, "load": {"requires": ["extract"]}})
    messages = apply_action(admin_client, "processdefinition", "run_now", process)

    run = ProcessRun.objects.get()
    assert messages == [f"etl: run {run.pk} started"]
    assert (run.status, run.trigger, run.triggered_by) == ("running", "manual", admin_user)
    assert sorted(run.task_runs.values_list("task_name", flat=True)) == ["extract", "load"]
    assert audit_trail(process) == [("admin", f"Run now: run {run.pk} started")]


def test_run_now_while_a_run_is_active_reports_the_skip(admin_client):
    process = make_process("etl", overlap="skip")
    apply_action(admin_client, "processdefinition", "run_now", process)
    first = ProcessRun.objects.get()

    messages = apply_action(admin_client, "processdefinition", "run_now", process)
    second = ProcessRun.objects.exclude(pk=first.pk).get()
    assert second.status == "skipped"
    assert messages == [f"etl: run {second.pk} skipped: run {first.pk} is still active"]


def test_run_now_refused_is_shown_as_an_error(admin_client):
    process = make_process("empty", tasks={})
    messages = apply_action(admin_client, "processdefinition", "run_now", process)
    assert messages == ["empty: process 'empty' has no tasks"]
    assert not ProcessRun.objects.exists()
    assert audit_trail(process) == []


def test_pause_and_resume_move_the_next_fire_time(admin_client):
    process = make_process("etl", schedule_kind="cron", cron="0 9 * * *")
    reschedule(process)
    assert process.next_fire_at is not None

    assert apply_action(admin_client, "processdefinition", "pause", process) == ["Paused: etl"]
    process.refresh_from_db()
    assert process.paused and process.next_fire_at is None

    assert apply_action(admin_client, "processdefinition", "resume", process) == ["Resumed: etl"]
    process.refresh_from_db()
    assert not process.paused and process.next_fire_at > timezone.now()
    assert audit_trail(process) == [("admin", "Paused"), ("admin", "Resumed")]
