"""The demo process `make run` loads: three local tasks, one fails once and succeeds on retry."""

import pytest
from django.core.management import call_command

from jobs.models import ProcessDefinition, Trigger
from jobs.orchestrator import trigger_run
from tests.orchestrator.driving import attempts, drive

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_demo_runs_fails_once_retries_and_goes_green():
    call_command("load_demo")
    call_command("load_demo")  # idempotent: a second start keeps the first
    demo = ProcessDefinition.objects.get(name="demo-etl")
    assert (demo.schedule_kind, demo.cron) == ("cron", "* * * * *")
    assert demo.next_fire_at is not None
    run = drive(trigger_run(demo, Trigger.MANUAL), timeout=40)
    assert run.status == "succeeded"
    assert attempts(run) == [
        ("extract", 1, "succeeded"),
        ("transform", 1, "failed"),
        ("load", 1, "succeeded"),
        ("transform", 2, "succeeded"),
    ]
    failed = run.task_runs.get(task_name="transform", number=1)
    assert failed.reason == "exit code 1"
    with open(failed.log_ref, encoding="utf-8") as log:
        assert "upstream API timed out" in log.read()
