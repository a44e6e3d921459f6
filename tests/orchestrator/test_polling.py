"""Polling executors that do not report their own exits (AWS): batches, transitions, failures,
what a job's status says beyond its state, and jobs the executor no longer knows.

The in-memory executor plays AWS: attempts reach it through the real submit path, the test
moves its jobs on, and the tests assert on what it was asked (``status_calls``) and on the
attempts.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from executors.base import ExecutorError
from executors.memory import MemoryExecutor, SimulatedCrash
from jobs import orchestrator
from jobs.engine import AttemptStatus
from jobs.models import ProcessRun, TaskEvent, TaskRun, Trigger
from jobs.orchestrator import trigger_run
from jobs.submission import submit_task_run
from jobs.supervision import advance_due_runs, poll_running
from tests.conftest import make_process, serve_memory
from tests.orchestrator.driving import attempts

pytestmark = pytest.mark.django_db(transaction=True)

MEMORY = {"executor": "memory", "config": {}}
ON_SPOT = "EC2 m5.large (spot)"


@pytest.fixture
def executor(monkeypatch) -> MemoryExecutor:
    return serve_memory(monkeypatch, MemoryExecutor())


def run_of(name: str, tasks: dict[str, dict]) -> ProcessRun:
    """A manual run of a process whose tasks ({name: fields}) all run on the memory executor."""
    process = make_process(name, {task: {**MEMORY, **fields} for task, fields in tasks.items()})
    return trigger_run(process, Trigger.MANUAL)


def submit(run: ProcessRun, *names: str) -> dict[str, TaskRun]:
    """Submit the run's READY attempts (of ``names``; all if none) as a worker would.

    Returns the run's latest attempt of each task, as it now stands.
    """
    ready = run.task_runs.filter(status=AttemptStatus.READY).order_by("id")
    if names:
        ready = ready.filter(task_name__in=names)
    for task_run_id in ready.values_list("pk", flat=True):
        assert submit_task_run(task_run_id)
    return by_task(run)


def by_task(run: ProcessRun) -> dict[str, TaskRun]:
    """The run's latest attempt of each task."""
    return {tr.task_name: tr for tr in run.task_runs.order_by("id")}


def submitted_ago(task_run: TaskRun, seconds: float) -> None:
    """Move the attempt's submit back in time (the safety net reads it from the database)."""
    when = timezone.now() - timedelta(seconds=seconds)
    TaskRun.objects.filter(pk=task_run.pk).update(submitted_at=when)


def state(run: ProcessRun) -> list[tuple]:
    """Everything polling may change, to compare before and after."""
    rows = run.task_runs.order_by("id").values_list(
        "task_name",
        "status",
        "started_at",
        "finished_at",
        "exit_code",
        "reason",
        "placement",
        "executor_state",
        "executor_state_since",
    )
    run.refresh_from_db()
    return [*rows, (run.status, run.reason, run.wake_at, TaskEvent.objects.count())]


# ---- what is asked ----


def test_live_attempts_are_polled_at_most_100_ids_per_call(executor):
    run = run_of("wide", {f"t{i:03}": {} for i in range(250)})
    ids = {tr.external_id for tr in submit(run).values()}
    assert len(ids) == 250 and "" not in ids
    before = state(run)

    assert poll_running() == 0  # every job is still pending
    assert [len(call) for call in executor.status_calls] == [100, 100, 50]
    asked = [i for call in executor.status_calls for i in call]
    assert sorted(asked) == sorted(ids), "every live attempt asked about exactly once"
    assert state(run) == before


def test_only_live_attempts_with_an_external_id_are_polled(executor):
    run = run_of("mixed", {n: {} for n in ("live", "running", "done", "submitting", "ready")})
    submit(run, "live", "running", "done")
    executor.crash_next_submit(accept=False)  # its worker died mid-submit: no job id saved
    with pytest.raises(SimulatedCrash):
        submit(run, "submitting")
    tr = by_task(run)  # "ready" is never submitted
    assert (tr["submitting"].status, tr["submitting"].external_id) == ("submitting", "")
    assert (tr["ready"].status, tr["ready"].external_id) == ("ready", "")
    executor.start(tr["running"].external_id)
    executor.finish(tr["done"].external_id, 0)

    assert poll_running() == 2
    assert TaskRun.objects.get(pk=tr["running"].pk).status == "running"
    assert TaskRun.objects.get(pk=tr["done"].pk).status == "succeeded"
    poll_running()
    first, second = executor.status_calls
    assert sorted(first) == sorted(tr[n].external_id for n in ("live", "running", "done"))
    assert sorted(second) == sorted(tr[n].external_id for n in ("live", "running"))


def test_a_kind_missing_from_this_build_does_not_stop_polling_the_others(executor, caplog):
    run = run_of("two-kinds", {"elsewhere": {}, "work": {}})
    work = submit(run, "work")["work"]
    # An attempt of a kind this build does not have, left by another build during a deploy:
    # no path of this build makes one, so it is put where that build left it.
    TaskRun.objects.filter(run=run, task_name="elsewhere").update(
        executor="retired", status="submitted", external_id="job-1", submitted_at=timezone.now()
    )
    executor.start(work.external_id)

    with caplog.at_level(logging.ERROR, logger="jobs.supervision"):
        assert poll_running() == 1
    assert "cannot poll retired attempts: unknown executor kind 'retired'" in caplog.text
    work.refresh_from_db()
    assert work.status == "running"
    assert executor.status_calls == [[work.external_id]]


# ---- transitions ----


def test_a_job_seen_running_marks_the_attempt_running_with_the_executors_start_time(executor):
    run = run_of("one", {"work": {}})
    work = submit(run)["work"]
    assert work.status == "submitted"
    executor.start(work.external_id)

    assert poll_running() == 1
    work.refresh_from_db()
    started = executor.job(work.external_id).started_at
    assert (work.status, work.started_at, work.finished_at) == ("running", started, None)
    run.refresh_from_db()
    assert run.status == "running"


def test_a_job_still_pending_changes_nothing(executor):
    run = run_of("one", {"work": {}})
    submit(run)
    before = state(run)

    assert poll_running() == 0
    assert state(run) == before


def test_finished_jobs_finish_their_attempts_and_move_the_run_on(executor):
    run = run_of("chain", {"extract": {}, "load": {"requires": ["extract"]}})
    extract = submit(run)["extract"]
    executor.start(extract.external_id)
    assert poll_running() == 1
    executor.finish(extract.external_id, 0)

    assert poll_running() == 1
    extract.refresh_from_db()
    job = executor.job(extract.external_id)
    assert (extract.status, extract.exit_code) == ("succeeded", 0)
    assert (extract.started_at, extract.finished_at) == (job.started_at, job.ended_at)
    assert run.task_runs.get(task_name="load").status == "ready", "the downstream is released"

    load = submit(run)["load"]
    executor.start(load.external_id)
    executor.finish(load.external_id, 2, reason="Essential container in task exited")
    assert poll_running() == 1
    load.refresh_from_db()
    assert (load.status, load.exit_code) == ("failed", 2)
    assert load.reason == "exit code 2; Essential container in task exited"
    assert load.finished_at == executor.job(load.external_id).ended_at
    run.refresh_from_db()
    assert run.status == "failed" and run.reason == "failed: load"
    assert run.finished_at is not None


def test_a_job_that_finished_between_two_polls_still_gets_a_start_time(executor):
    run = run_of("one", {"work": {}})
    work = submit(run)["work"]
    executor.finish(work.external_id, 0)  # never seen running
    assert executor.job(work.external_id).started_at is None

    assert poll_running() == 1
    work.refresh_from_db()
    assert work.status == "succeeded"
    assert work.started_at == work.finished_at == executor.job(work.external_id).ended_at
    run.refresh_from_db()
    assert run.status == "succeeded"


def test_a_job_that_ran_between_two_polls_keeps_the_executors_start_time(executor):
    run = run_of("one", {"work": {}})
    work = submit(run)["work"]
    executor.start(work.external_id)
    executor.finish(work.external_id, 0)  # started and ended before anyone polled

    assert poll_running() == 1
    work.refresh_from_db()
    job = executor.job(work.external_id)
    assert (work.started_at, work.finished_at) == (job.started_at, job.ended_at)
    assert work.started_at < work.finished_at, "its run time (and cost) is not lost"


def test_polling_twice_changes_nothing_the_second_time(executor):
    run = run_of("three", {n: {} for n in ("up", "done", "bad")})
    tr = submit(run)
    executor.start(tr["up"].external_id, placement=ON_SPOT)
    executor.finish(tr["done"].external_id, 0)
    executor.finish(tr["bad"].external_id, 1)

    assert poll_running() == 3  # each attempt once, though the running one's placement is new
    after_first = state(run)
    assert poll_running() == 0
    assert state(run) == after_first
    assert executor.status_calls[-1] == [tr["up"].external_id], "only the live attempt again"


# ---- failures of the executor ----


def test_an_executor_error_is_logged_and_changes_nothing(executor, caplog):
    run = run_of("one", {"work": {}})
    work = submit(run)["work"]
    executor.finish(work.external_id, 0)
    executor.fail_next("statuses", ExecutorError("Rate exceeded"))
    before = state(run)

    with caplog.at_level(logging.WARNING, logger="jobs.supervision"):
        assert poll_running() == 0
    assert state(run) == before
    assert "polling memory failed: Rate exceeded" in caplog.text

    assert poll_running() == 1, "the next poll picks the outcome up"
    run.refresh_from_db()
    assert run.status == "succeeded"
    assert len(executor.status_calls) == 2


def test_a_failed_batch_does_not_stop_the_next_one(executor):
    run = run_of("wide", {f"t{i:03}": {} for i in range(150)})
    for task_run in submit(run).values():
        executor.start(task_run.external_id)
    executor.fail_next("statuses", ExecutorError("Rate exceeded"))

    assert poll_running() == 50
    assert [len(call) for call in executor.status_calls] == [100, 50]
    running = set(run.task_runs.filter(status="running").values_list("external_id", flat=True))
    assert running == set(executor.status_calls[1])


# ---- jobs the executor no longer knows ----


def test_ids_the_executor_does_not_know_are_left_alone_while_recent(executor):
    run = run_of("two", {"a": {}, "b": {}})
    tr = submit(run)
    executor.start(tr["a"].external_id)
    executor.forget(tr["b"].external_id)
    submitted_ago(tr["b"], settings.SUNDIAL_REMOTE_LOST_AFTER_S - 30)
    b_before = TaskRun.objects.filter(pk=tr["b"].pk).values().get()

    assert poll_running() == 1
    assert TaskRun.objects.get(pk=tr["a"].pk).status == "running"
    assert TaskRun.objects.filter(pk=tr["b"].pk).values().get() == b_before
    assert tr["b"].external_id in executor.status_calls[0]


@pytest.mark.parametrize("seen_running", [False, True], ids=["submitted", "running"])
def test_a_job_the_executor_no_longer_knows_is_lost_after_a_while_and_retried(
    executor, seen_running
):
    run = run_of("one", {"work": {"max_attempts": 2, "retry_initial_delay_s": 0}})
    work = submit(run)["work"]
    job = work.external_id
    if seen_running:
        executor.start(job)
        assert poll_running() == 1
    executor.forget(job)  # e.g. it ended and expired from AWS's history unseen
    submitted_ago(work, settings.SUNDIAL_REMOTE_LOST_AFTER_S - 30)
    before = state(run)

    assert poll_running() == 0
    assert state(run) == before, "AWS's reads can lag its writes: not lost yet"

    submitted_ago(work, settings.SUNDIAL_REMOTE_LOST_AFTER_S + 1)
    assert poll_running() == 1
    work.refresh_from_db()
    assert (work.status, work.exit_code) == ("failed", None)
    assert work.reason == f"lost: memory no longer knows job {job}"
    assert work.finished_at is not None
    assert attempts(run) == [("work", 1, "failed"), ("work", 2, "waiting")], "retried"
    run.refresh_from_db()
    assert run.status == "running"

    assert advance_due_runs() == 1  # its backoff (none) has passed
    retry = submit(run)["work"]
    assert (retry.number, retry.status) == (2, "submitted")
    assert retry.external_id not in ("", job), "the retry is a job of its own"


def test_a_lost_job_with_no_attempts_left_fails_its_run(executor):
    run = run_of("one", {"work": {}})
    work = submit(run)["work"]
    executor.forget(work.external_id)
    submitted_ago(work, settings.SUNDIAL_REMOTE_LOST_AFTER_S + 1)

    assert poll_running() == 1
    assert attempts(run) == [("work", 1, "failed")]
    run.refresh_from_db()
    assert (run.status, run.reason) == ("failed", "failed: work")


def test_a_job_the_executor_knows_is_never_lost_however_long_it_waits(executor):
    run = run_of("one", {"work": {}})
    work = submit(run)["work"]
    executor.wait(work.external_id, "RUNNABLE")  # no capacity in the queue, for hours
    submitted_ago(work, settings.SUNDIAL_REMOTE_LOST_AFTER_S * 100)

    assert poll_running() == 1  # its executor state, nothing more
    work.refresh_from_db()
    assert (work.status, work.reason, work.executor_state) == ("submitted", "", "RUNNABLE")


# ---- what a status says beyond the state ----


def test_why_a_job_waits_is_saved_when_it_changes_and_cleared_when_it_runs(executor):
    run = run_of("one", {"work": {}})
    work = submit(run)["work"]
    job = work.external_id
    assert (work.executor_state, work.executor_state_since) == ("", None)

    executor.wait(job, "RUNNABLE")
    asked_at = timezone.now()
    assert poll_running() == 1
    work.refresh_from_db()
    assert (work.status, work.executor_state) == ("submitted", "RUNNABLE")
    assert work.executor_state_since is not None and work.executor_state_since >= asked_at
    runnable_since = work.executor_state_since

    assert poll_running() == 0, "the same word again writes nothing"
    work.refresh_from_db()
    assert (work.executor_state, work.executor_state_since) == ("RUNNABLE", runnable_since)

    executor.wait(job, "STARTING")
    assert poll_running() == 1
    work.refresh_from_db()
    assert work.executor_state == "STARTING"
    assert work.executor_state_since > runnable_since

    executor.start(job)
    poll_running()
    work.refresh_from_db()
    assert (work.status, work.executor_state) == ("running", "")


def test_many_jobs_saying_the_same_are_saved_in_one_statement(executor):
    run = run_of("wide", {f"t{i}": {} for i in range(30)})
    jobs = [tr.external_id for tr in submit(run).values()]
    for job in jobs[:20]:
        executor.wait(job, "waiting for capacity (RUNNABLE)")
    for job in jobs[20:]:
        executor.wait(job, "x" * 300)  # longer than the column: cut, not a database error

    with CaptureQueriesContext(connection) as queries:
        assert poll_running() == 30
    updates = [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 2, "one per distinct change, not one per attempt"
    saved = {tr.executor_state for tr in run.task_runs.all()}
    assert saved == {"waiting for capacity (RUNNABLE)", "x" * 200}


def test_where_a_job_runs_is_saved_and_kept_after_it_ends(executor):
    run = run_of("one", {"work": {}})
    work = submit(run)["work"]
    executor.start(work.external_id, placement=ON_SPOT)

    assert poll_running() == 1  # one attempt: running, and where
    work.refresh_from_db()
    assert (work.status, work.placement) == ("running", ON_SPOT)

    executor.finish(work.external_id, 0)
    assert poll_running() == 1
    work.refresh_from_db()
    assert (work.status, work.placement) == ("succeeded", ON_SPOT)


def test_a_late_answer_does_not_write_on_an_attempt_that_has_ended(executor, monkeypatch):
    run = run_of("one", {"work": {}})
    work = submit(run)["work"]
    executor.wait(work.external_id, "RUNNABLE")
    ask = executor.statuses

    def statuses_while_another_poller_records_the_end(external_ids):
        answer = ask(external_ids)  # still "RUNNABLE"
        orchestrator.record_outcomes([orchestrator.Outcome(work.pk, run.pk, 0)])
        return answer

    monkeypatch.setattr(executor, "statuses", statuses_while_another_poller_records_the_end)
    assert poll_running() == 0
    work.refresh_from_db()
    assert (work.status, work.executor_state, work.executor_state_since) == ("succeeded", "", None)
