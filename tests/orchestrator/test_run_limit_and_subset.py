"""A run-level time limit, and runs of a subset of a process's tasks, through the shell."""

import pytest

from jobs.models import ProcessRun, TaskRun, Trigger
from jobs.orchestrator import TriggerError, trigger_run
from jobs.submission import submit_task_run
from tests.conftest import make_process
from tests.orchestrator.driving import attempts, drive, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

CHAIN = {"extract": {}, "transform": {"requires": ["extract"]}, "load": {"requires": ["transform"]}}


def test_a_run_past_its_time_limit_is_stopped_and_fails_with_that_reason():
    sleeper = {"config": {"command": ["sleep", "30"], "kill_grace_s": 0}}
    process = make_process("bounded", {"slow": sleeper, "after": {"requires": ["slow"]}})
    process.run_time_limit_s = 1
    process.save()
    run = trigger_run(process, Trigger.MANUAL)
    assert submit_task_run(run.task_runs.get(task_name="slow").pk)
    # Nothing but this process's runtime is at work: it advances its runs when they are due.
    run = wait_for(lambda: ProcessRun.objects.filter(pk=run.pk, finished_at__isnull=False).first())
    assert (run.status, run.reason) == ("failed", "run time limit of 1s exceeded")
    assert attempts(run) == [("slow", 1, "killed"), ("after", 1, "killed")]
    assert set(run.task_runs.values_list("reason", flat=True)) == {"run time limit of 1s exceeded"}


def test_a_subset_runs_only_the_named_tasks_and_says_what_it_assumed():
    process = make_process("partial", CHAIN)
    run = trigger_run(process, Trigger.MANUAL, only=["load", "transform"])
    assert [t["name"] for t in run.snapshot["tasks"]] == ["transform", "load"]
    assert run.events.get(kind="triggered").message == (
        "manual; no other run is active;"
        " runs only transform, load; upstreams outside it count as done: extract"
    )
    run = drive(run)
    assert run.status == "succeeded"
    assert attempts(run) == [("transform", 1, "succeeded"), ("load", 1, "succeeded")]


@pytest.mark.parametrize(
    ("only", "problem"),
    [
        ([], "choose at least one task to run"),
        (["lod"], "unknown task(s): lod; this process has: extract, transform, load"),
        (["load", "load"], "task(s) named more than once: load"),
    ],
)
def test_a_subset_that_does_not_fit_is_refused_before_anything_is_made(only, problem):
    process = make_process("picky", CHAIN)
    with pytest.raises(TriggerError) as refused:
        trigger_run(process, Trigger.API, only=only)
    assert str(refused.value) == f"process 'picky': {problem}"
    assert not ProcessRun.objects.exists() and not TaskRun.objects.exists()
