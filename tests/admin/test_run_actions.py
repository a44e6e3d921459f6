"""Kill and retry from the run list; each is audited with the user."""

import pytest

from jobs.models import ProcessRun, Trigger
from jobs.orchestrator import trigger_run
from tests.admin.actions import apply_action, audit_trail
from tests.conftest import make_process

pytestmark = pytest.mark.django_db


@pytest.fixture
def run():
    process = make_process("etl", tasks={"extract": {}, "load": {"requires": ["extract"]}})
    return trigger_run(process, Trigger.MANUAL)


def test_kill_stops_the_run_and_records_who(admin_client, admin_user, run):
    messages = apply_action(admin_client, "processrun", "kill", run)
    assert messages == [f"etl #{run.pk}: kill requested"]
    run.refresh_from_db()
    # Nothing had reached an executor, so the run ends at once.
    assert (run.status, run.kill_requested_by) == ("killed", admin_user)
    event = run.events.get(kind="kill_requested")
    assert (event.message, event.actor) == ("killed by admin", admin_user)
    assert audit_trail(run) == [("admin", "Kill requested")]


def test_killing_a_finished_run_changes_nothing(admin_client, run):
    apply_action(admin_client, "processrun", "kill", run)
    messages = apply_action(admin_client, "processrun", "kill", run)
    assert messages == [f"etl #{run.pk}: already killed"]
    assert audit_trail(run) == [("admin", "Kill requested")]


def test_retry_failed_tasks_starts_a_new_round(admin_client, admin_user, run):
    apply_action(admin_client, "processrun", "kill", run)
    messages = apply_action(admin_client, "processrun", "retry_failed", run)
    assert messages == [f"etl #{run.pk}: retrying extract, load"]
    run.refresh_from_db()
    assert run.status == "running"
    assert sorted(run.task_runs.filter(round=2).values_list("task_name", flat=True)) == [
        "extract",
        "load",
    ]
    assert run.events.get(kind="retry").actor == admin_user
    assert audit_trail(run)[-1] == ("admin", "Retry failed tasks: retrying extract, load")


def test_retrying_a_running_run_is_refused(admin_client, run):
    messages = apply_action(admin_client, "processrun", "retry_failed", run)
    assert messages == [
        f"etl #{run.pk}: run {run.pk} is running; only failed or killed runs can be retried"
    ]
    assert ProcessRun.objects.get().task_runs.count() == 2
    assert audit_trail(run) == []
