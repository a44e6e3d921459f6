"""Made-to-happen races: a message delivered twice, two workers advancing one run."""

import pytest

from jobs.models import TaskEvent, TaskRun, Trigger
from jobs.orchestrator import Outcome, advance_run, record_outcomes, trigger_run
from jobs.submission import submit_task_run
from tests.conftest import make_process
from tests.orchestrator import driving
from tests.orchestrator.driving import attempts, drive

pytestmark = pytest.mark.django_db(transaction=True)


def race(*calls):
    """Run the calls in threads released at the same instant; their results (none may raise)."""
    outcomes = driving.race(*calls)
    for _, exc in outcomes:
        if exc is not None:
            raise exc
    return [result for result, _ in outcomes]


def test_a_submit_message_delivered_twice_starts_one_process(tmp_path):
    starts = tmp_path / "starts"
    process = make_process("once", {"once": {"config": {"shell": f"echo x >> {starts}"}}})
    run = trigger_run(process, Trigger.MANUAL)
    attempt = run.task_runs.get()
    assert sorted(
        race(lambda: submit_task_run(attempt.pk), lambda: submit_task_run(attempt.pk))
    ) == [
        False,
        True,
    ]
    drive(run)
    assert starts.read_text() == "x\n"


def test_two_workers_reporting_the_same_failure_schedule_one_retry():
    process = make_process(
        "dup", {"dup": {"max_attempts": 3, "retry_initial_delay_s": 60, "retry_jitter": 0}}
    )
    run = trigger_run(process, Trigger.MANUAL)
    attempt = run.task_runs.get()
    TaskRun.objects.filter(pk=attempt.pk).update(status="running")
    failure = Outcome(attempt.pk, run.pk, exit_code=1)
    race(lambda: record_outcomes([failure]), lambda: record_outcomes([failure]))
    assert attempts(run) == [("dup", 1, "failed"), ("dup", 2, "waiting")]
    assert TaskEvent.objects.filter(run=run, kind="failed").count() == 1


def test_concurrent_advances_apply_each_decision_once():
    process = make_process(
        "fan", {"root": {}, **{f"leaf{i}": {"requires": ["root"]} for i in range(5)}}
    )
    run = trigger_run(process, Trigger.MANUAL)
    TaskRun.objects.filter(run=run, task_name="root").update(status="succeeded")
    race(*[lambda: advance_run(run.pk) for _ in range(4)])
    statuses = dict(run.task_runs.values_list("task_name", "status"))
    assert [statuses[f"leaf{i}"] for i in range(5)] == ["ready"] * 5
    assert TaskRun.objects.filter(run=run).count() == 6
