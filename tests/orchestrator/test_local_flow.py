"""A run of real local processes from trigger to finish, through the orchestrator."""

import pytest

from jobs.models import Trigger
from jobs.orchestrator import trigger_run
from tests.conftest import make_process
from tests.orchestrator.driving import attempts, drive

pytestmark = pytest.mark.django_db(transaction=True)


def test_chain_runs_in_dependency_order_and_succeeds(tmp_path):
    out = tmp_path / "order"
    process = make_process(
        "chain",
        {
            "extract": {"config": {"shell": f"sleep 0.2; echo extract >> {out}"}},
            "load": {"config": {"shell": f"echo load >> {out}"}, "requires": ["extract"]},
        },
    )
    run = drive(trigger_run(process, Trigger.MANUAL))
    assert run.status == "succeeded"
    assert attempts(run) == [("extract", 1, "succeeded"), ("load", 1, "succeeded")]
    assert out.read_text().split() == ["extract", "load"]
    extract, load = run.task_runs.order_by("id")
    assert extract.finished_at <= load.started_at


def test_failed_attempt_is_retried_and_the_run_goes_green(tmp_path):
    marker = tmp_path / "failed-once"
    process = make_process(
        "flaky",
        {
            "flaky": {
                "config": {"shell": f"test -e {marker} || {{ touch {marker}; exit 3; }}"},
                "max_attempts": 2,
                "retry_initial_delay_s": 0.2,
                "retry_jitter": 0,
            }
        },
    )
    run = drive(trigger_run(process, Trigger.MANUAL))
    assert run.status == "succeeded"
    assert attempts(run) == [("flaky", 1, "failed"), ("flaky", 2, "succeeded")]
    first = run.task_runs.get(number=1)
    assert first.exit_code == 3 and "exit code 3" in first.reason


def test_required_upstream_failure_skips_downstream_and_fails_the_run():
    process = make_process(
        "broken",
        {
            "extract": {"config": {"command": ["false"]}},
            "load": {"requires": ["extract"]},
            "report": {"after": ["extract"]},
        },
    )
    run = drive(trigger_run(process, Trigger.MANUAL))
    assert run.status == "failed"
    assert dict((t, s) for t, _, s in attempts(run)) == {
        "extract": "failed",
        "load": "skipped",
        "report": "succeeded",  # an optional edge only waits for the upstream to be final
    }


def test_task_sees_its_identity_in_the_environment(tmp_path):
    out = tmp_path / "env"
    process = make_process(
        "env",
        {"show": {"config": {"shell": f"env | grep ^SUNDIAL_ | sort > {out}"}}},
    )
    run = drive(trigger_run(process, Trigger.MANUAL, parameters={"day": "2026-11-24"}))
    task_run = run.task_runs.get()
    env = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert env["SUNDIAL_RUN_ID"] == str(run.pk)
    assert env["SUNDIAL_TASK_RUN_ID"] == str(task_run.pk)
    assert env["SUNDIAL_ATTEMPT"] == "1"
    assert env["SUNDIAL_TOKEN"] == task_run.token
    assert env["SUNDIAL_API_URL"] == "http://testserver"
    assert env["SUNDIAL_PARAMETERS"] == '{"day": "2026-11-24"}'
