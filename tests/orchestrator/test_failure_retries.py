"""Failure-aware retries through the shell, on the in-memory executor: permanent errors and
retry rules end a task at once; an out-of-memory kill is retried with more memory."""

from __future__ import annotations

import pytest

from executors.base import ExecutorError, Launch
from executors.memory import MemoryExecutor
from jobs.models import ProcessRun, TaskEvent, TaskRun, Trigger
from jobs.orchestrator import retry_failed_tasks, trigger_run
from jobs.submission import SubmitLater, launch_for, submit_task_run
from jobs.supervision import advance_due_runs, poll_running
from tests.conftest import make_process, serve_memory

pytestmark = pytest.mark.django_db(transaction=True)

RETRIED_AT_ONCE = {"max_attempts": 3, "retry_initial_delay_s": 0, "retry_jitter": 0}
OOM_REASON = "OutOfMemoryError: Container killed due to memory usage"


@pytest.fixture
def executor(monkeypatch) -> MemoryExecutor:
    return serve_memory(monkeypatch, MemoryExecutor())


def start(executor_config: dict, **task) -> ProcessRun:
    """A one-task run on the memory executor, started."""
    spec = {"executor": "memory", "config": executor_config, **RETRIED_AT_ONCE, **task}
    return trigger_run(make_process("etl", {"load": spec}), Trigger.MANUAL)


def submit_due(run: ProcessRun) -> None:
    """Submit the run's attempt that has fallen due, as a worker would."""
    advance_due_runs()
    (ready,) = run.task_runs.filter(status="ready")
    submit_task_run(ready.pk)


def submit_next(run: ProcessRun, executor: MemoryExecutor) -> Launch:
    """Submit the run's attempt that has fallen due; what the executor was handed."""
    submit_due(run)
    return executor.submitted[-1]


def run_out_of_memory(executor: MemoryExecutor, launch: Launch) -> None:
    """The executor reports the launched job killed for using too much memory."""
    (job,) = [j for j in executor.jobs() if j.launch == launch]
    executor.finish(job.external_id, 137, OOM_REASON, out_of_memory=True)
    poll_running()


def attempts(run: ProcessRun) -> list[tuple]:
    return list(
        run.task_runs.order_by("id").values_list(
            "round", "number", "status", "memory_mib", "out_of_memory"
        )
    )


def events(run: ProcessRun, kind: str) -> list[str]:
    return list(TaskEvent.objects.filter(run=run, kind=kind).values_list("message", flat=True))


def test_an_out_of_memory_kill_is_retried_with_more_memory(executor):
    run = start({"memory_mib": 1024})
    first = submit_next(run, executor)
    assert first.config["memory_mib"] == 1024

    run_out_of_memory(executor, first)
    second = submit_next(run, executor)
    assert second.config["memory_mib"] == 2048, "the executor is asked for twice the memory"
    run_out_of_memory(executor, second)
    third = submit_next(run, executor)
    assert third.config["memory_mib"] == 4096

    assert attempts(run) == [
        (1, 1, "failed", None, True),
        (1, 2, "failed", 2048, True),
        (1, 3, "submitted", 4096, False),
    ]
    (first_retry, _) = events(run, "retry_scheduled")
    assert first_retry.startswith("retry 2 of 3 at ")
    assert first_retry.endswith(" UTC with 2048 MiB after running out of memory")
    assert run.task_runs.get(number=1).reason == f"exit code 137; {OOM_REASON}"


def test_memory_stops_at_the_tasks_cap(executor):
    run = start({"memory_mib": 1024}, oom_memory_max_mib=1536, oom_memory_factor=4)
    run_out_of_memory(executor, submit_next(run, executor))
    assert submit_next(run, executor).config["memory_mib"] == 1536
    assert events(run, "retry_scheduled")[0].endswith(
        "with 1536 MiB (the cap) after running out of memory"
    )


def test_without_a_cap_memory_stops_at_the_most_the_executor_allows(executor):
    run = start({"memory_mib": 40000})  # the memory kind allows 65536 at most
    run_out_of_memory(executor, submit_next(run, executor))
    assert submit_next(run, executor).config["memory_mib"] == 65536


def test_a_new_round_starts_with_the_memory_the_last_one_ran_out_of(executor):
    run = start({"memory_mib": 1024}, max_attempts=1)
    run_out_of_memory(executor, submit_next(run, executor))
    run.refresh_from_db()
    assert run.status == "failed"

    retry_failed_tasks(run.pk)
    assert submit_next(run, executor).config["memory_mib"] == 2048
    assert attempts(run)[-1] == (2, 1, "submitted", 2048, False)


def test_a_permanent_submit_error_fails_the_task_after_one_attempt(executor):
    unknown_queue = ExecutorError("job queue 'nightly' does not exist", permanent=True)
    executor.fail_next("submit", unknown_queue)
    run = start({})
    submit_next(run, executor)

    run.refresh_from_db()
    assert (run.status, run.reason) == ("failed", "failed: load")
    (only,) = run.task_runs.all()
    assert (only.status, only.permanent) == ("failed", True)
    assert only.reason == "could not start: job queue 'nightly' does not exist"
    assert events(run, "failed") == [
        "could not start: job queue 'nightly' does not exist; not retried: trying again cannot help"
    ]


def test_an_invalid_config_fails_the_task_after_one_attempt(executor):
    run = start({"memory_mib": "lots"})
    submit_due(run)
    (only,) = run.task_runs.all()
    assert (only.status, only.permanent) == ("failed", True)
    assert only.reason.startswith("invalid executor config: memory_mib:")
    assert executor.submitted == []


def test_a_transient_submit_error_still_costs_no_attempt(executor):
    executor.fail_next("submit", ExecutorError("Rate exceeded"))
    run = start({})
    with pytest.raises(SubmitLater, match="Rate exceeded"):
        submit_due(run)
    assert attempts(run) == [(1, 1, "ready", None, False)]
    (said,) = run.events.filter(kind="submit deferred").values_list("message", flat=True)
    assert said == "could not start it yet, trying again: Rate exceeded", "the trail says why"


def test_a_job_the_executor_reports_failed_for_good_is_not_retried(executor):
    run = start({})
    submit_next(run, executor)
    (job,) = executor.jobs()
    executor.finish(job.external_id, 1, "CannotPullContainerError: no such image", permanent=True)
    poll_running()
    run.refresh_from_db()
    assert run.status == "failed"
    assert attempts(run) == [(1, 1, "failed", None, False)]


def test_a_fail_rule_ends_the_task_and_the_trail_says_which(executor):
    run = start({}, retry_rules=[{"exit_codes": [75], "action": "retry"}, {"action": "fail"}])
    submit_next(run, executor)
    executor.finish(executor.jobs()[0].external_id, 75)
    poll_running()
    submit_next(run, executor)  # exit 75: rule 1 retries it
    executor.finish(executor.jobs()[1].external_id, 2)
    poll_running()

    run.refresh_from_db()
    assert run.status == "failed"
    assert [a[:3] for a in attempts(run)] == [(1, 1, "failed"), (1, 2, "failed")]
    assert events(run, "failed")[-1] == "exit code 2; not retried: retry rule 2 says fail"


def test_a_run_from_before_retry_rules_still_runs(executor):
    run = start({"memory_mib": 1024})
    for entry in run.snapshot["tasks"]:
        for key in ("retry_rules", "memory_mib", "oom_memory_factor", "oom_memory_max_mib"):
            del entry[key]
    ProcessRun.objects.filter(pk=run.pk).update(snapshot=run.snapshot)

    run_out_of_memory(executor, submit_next(run, executor))
    assert submit_next(run, executor).config["memory_mib"] == 1024, "nothing to raise from"
    assert events(run, "retry_scheduled")[0].endswith(
        "after running out of memory (its config sets no memory_mib to raise)"
    )


def test_only_kinds_with_memory_get_the_raised_memory(executor):
    run = trigger_run(make_process("etl", {"load": {}}), Trigger.MANUAL)  # local
    TaskRun.objects.filter(run=run).update(memory_mib=4096)
    assert "memory_mib" not in launch_for(run.task_runs.select_related("run").get()).config
