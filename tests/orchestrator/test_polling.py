"""Polling executors that do not report their own exits (AWS): batches, transitions, failures."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
from django.utils import timezone

from executors.base import ExecutorError, Launch, LogChunk, State, Status, Submission
from jobs.models import ProcessRun, TaskEvent, TaskRun, Trigger
from jobs.orchestrator import trigger_run
from jobs.supervision import poll_running
from tests.conftest import make_process, serve_memory

pytestmark = pytest.mark.django_db(transaction=True)

# A polled executor (as AWS Batch will be), played by the test under the "memory" kind.
BATCH = {"executor": "memory", "config": {}}
T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
T1 = datetime(2026, 3, 1, 12, 5, 0, tzinfo=UTC)


class RemoteBatch:
    """Stands in for AWS Batch: answers from ``jobs``, records the id batches it was asked."""

    kind = "memory"
    runs_on_submit = False

    def __init__(self) -> None:
        self.jobs: dict[str, Status] = {}
        self.calls: list[list[str]] = []
        self.fail_calls: set[int] = set()  # indexes of statuses() calls that raise

    def submit(self, launch: Launch) -> Submission:
        raise AssertionError("these tests never submit")

    def find(self, idempotency_key: str) -> Submission | None:
        return None

    def statuses(self, external_ids: Sequence[str]) -> dict[str, Status]:
        self.calls.append(list(external_ids))
        if len(self.calls) - 1 in self.fail_calls:
            raise ExecutorError("Rate exceeded")
        return {i: self.jobs[i] for i in external_ids if i in self.jobs}

    def terminate(self, external_id: str, reason: str) -> None:
        raise AssertionError("these tests never terminate")

    def read_logs(self, log_ref: str, cursor: str | None) -> LogChunk:
        return LogChunk((), cursor or "")


@pytest.fixture
def remote(monkeypatch) -> RemoteBatch:
    fake = RemoteBatch()
    return serve_memory(monkeypatch, fake)


def submitted(task_run: TaskRun, external_id: str, status: str = "submitted") -> TaskRun:
    """Put an attempt where a successful submit to AWS leaves it, a moment ago."""
    TaskRun.objects.filter(pk=task_run.pk).update(
        status=status, external_id=external_id, submitted_at=timezone.now()
    )
    task_run.refresh_from_db()
    return task_run


def state(run: ProcessRun) -> list[tuple]:
    """Everything polling may change, to compare before and after."""
    rows = run.task_runs.order_by("id").values_list(
        "task_name", "status", "started_at", "finished_at", "exit_code", "reason"
    )
    run.refresh_from_db()
    return [*rows, (run.status, run.reason, run.wake_at, TaskEvent.objects.count())]


def test_live_attempts_are_polled_at_most_100_ids_per_call(remote):
    process = make_process("wide", {f"t{i:03}": dict(BATCH) for i in range(250)})
    run = trigger_run(process, Trigger.MANUAL)
    ids = {submitted(tr, f"job-{tr.pk}").external_id for tr in run.task_runs.all()}
    before = state(run)

    assert poll_running() == 0  # AWS knows none of them yet
    assert [len(call) for call in remote.calls] == [100, 100, 50]
    asked = [i for call in remote.calls for i in call]
    assert sorted(asked) == sorted(ids), "every live attempt asked about exactly once"
    assert state(run) == before


def test_only_live_attempts_with_an_external_id_are_polled(remote):
    process = make_process("mixed", {n: dict(BATCH) for n in ("live", "running", "ready", "done")})
    run = trigger_run(process, Trigger.MANUAL)
    tr = {t.task_name: t for t in run.task_runs.all()}
    submitted(tr["live"], "job-live")
    submitted(tr["running"], "job-running", status="running")
    submitted(tr["done"], "job-done", status="succeeded")
    TaskRun.objects.filter(pk=tr["ready"].pk).update(status="submitting")  # no id yet

    poll_running()
    assert sorted(remote.calls[0]) == ["job-live", "job-running"]
    assert len(remote.calls) == 1


def test_a_job_seen_running_marks_the_attempt_running(remote):
    run = trigger_run(make_process("one", {"work": dict(BATCH)}), Trigger.MANUAL)
    work = submitted(run.task_runs.get(), "job-1")
    remote.jobs["job-1"] = Status(State.RUNNING, started_at=T1)

    assert poll_running() == 1
    work.refresh_from_db()
    assert (work.status, work.started_at, work.finished_at) == ("running", T1, None)
    run.refresh_from_db()
    assert run.status == "running"


def test_a_job_still_pending_changes_nothing(remote):
    run = trigger_run(make_process("one", {"work": dict(BATCH)}), Trigger.MANUAL)
    submitted(run.task_runs.get(), "job-1")
    remote.jobs["job-1"] = Status(State.PENDING)
    before = state(run)

    assert poll_running() == 0
    assert state(run) == before


def test_finished_jobs_finish_their_attempts_and_move_the_run_on(remote):
    process = make_process(
        "chain", {"extract": dict(BATCH), "load": {**BATCH, "requires": ["extract"]}}
    )
    run = trigger_run(process, Trigger.MANUAL)
    extract = submitted(run.task_runs.get(task_name="extract"), "job-extract", status="running")
    remote.jobs["job-extract"] = Status(State.SUCCEEDED, exit_code=0, started_at=T0, ended_at=T1)

    assert poll_running() == 1
    extract.refresh_from_db()
    assert (extract.status, extract.exit_code, extract.finished_at) == ("succeeded", 0, T1)
    load = run.task_runs.get(task_name="load")
    assert load.status == "ready", "the downstream is released"

    submitted(load, "job-load", status="running")
    remote.jobs["job-load"] = Status(
        State.FAILED, exit_code=2, reason="Essential container in task exited", ended_at=T1
    )
    assert poll_running() == 1
    load.refresh_from_db()
    assert (load.status, load.exit_code) == ("failed", 2)
    assert load.reason == "exit code 2; Essential container in task exited"
    run.refresh_from_db()
    assert run.status == "failed" and run.reason == "failed: load"
    assert run.finished_at is not None


def test_a_job_that_finished_between_two_polls_still_gets_a_start_time(remote):
    run = trigger_run(make_process("one", {"work": dict(BATCH)}), Trigger.MANUAL)
    work = submitted(run.task_runs.get(), "job-1")
    remote.jobs["job-1"] = Status(State.SUCCEEDED, exit_code=0, ended_at=T1)

    assert poll_running() == 1
    work.refresh_from_db()
    assert work.status == "succeeded" and work.started_at is not None
    run.refresh_from_db()
    assert run.status == "succeeded"


def test_ids_the_executor_does_not_know_are_left_alone(remote):
    run = trigger_run(make_process("two", {"a": dict(BATCH), "b": dict(BATCH)}), Trigger.MANUAL)
    a = submitted(run.task_runs.get(task_name="a"), "job-a")
    b = submitted(run.task_runs.get(task_name="b"), "job-b")
    remote.jobs["job-a"] = Status(State.RUNNING, started_at=T1)

    assert poll_running() == 1
    a.refresh_from_db()
    assert a.status == "running"
    b_after = TaskRun.objects.get(pk=b.pk)
    assert (b_after.status, b_after.started_at, b_after.reason) == ("submitted", None, "")


def test_an_executor_error_is_logged_and_changes_nothing(remote, caplog):
    run = trigger_run(make_process("one", {"work": dict(BATCH)}), Trigger.MANUAL)
    submitted(run.task_runs.get(), "job-1")
    remote.jobs["job-1"] = Status(State.SUCCEEDED, exit_code=0, ended_at=T1)
    remote.fail_calls = {0}
    before = state(run)

    with caplog.at_level(logging.WARNING, logger="jobs.supervision"):
        assert poll_running() == 0
    assert state(run) == before
    assert "polling memory failed: Rate exceeded" in caplog.text

    assert poll_running() == 1, "the next poll picks the outcome up"
    run.refresh_from_db()
    assert run.status == "succeeded"


def test_a_failed_batch_does_not_stop_the_next_one(remote):
    process = make_process("wide", {f"t{i:03}": dict(BATCH) for i in range(150)})
    run = trigger_run(process, Trigger.MANUAL)
    for tr in run.task_runs.all():
        submitted(tr, f"job-{tr.pk}")
        remote.jobs[f"job-{tr.pk}"] = Status(State.RUNNING, started_at=T1)
    remote.fail_calls = {0}

    assert poll_running() == 50
    assert [len(call) for call in remote.calls] == [100, 50]
    running = set(run.task_runs.filter(status="running").values_list("external_id", flat=True))
    assert running == set(remote.calls[1])


def test_polling_twice_changes_nothing_the_second_time(remote):
    run = trigger_run(
        make_process("three", {n: dict(BATCH) for n in ("up", "done", "bad")}), Trigger.MANUAL
    )
    tr = {t.task_name: t for t in run.task_runs.all()}
    for name in tr:
        submitted(tr[name], f"job-{name}")
    remote.jobs["job-up"] = Status(State.RUNNING, started_at=T0)
    remote.jobs["job-done"] = Status(State.SUCCEEDED, exit_code=0, ended_at=T1)
    remote.jobs["job-bad"] = Status(State.FAILED, exit_code=1, ended_at=T1)

    assert poll_running() == 3
    after_first = state(run)
    assert poll_running() == 0
    assert state(run) == after_first
    assert remote.calls[-1] == ["job-up"], "only the attempt still live is asked again"


def test_a_kind_missing_from_this_build_does_not_stop_polling_the_others(remote):
    process = make_process(
        "two-kinds",
        {
            "elsewhere": {"executor": "ecs", "config": {}},  # e.g. left by a newer build
            "work": dict(BATCH),
        },
    )
    run = trigger_run(process, Trigger.MANUAL)
    submitted(run.task_runs.get(task_name="elsewhere"), "arn:aws:ecs:task/1")
    work = submitted(run.task_runs.get(task_name="work"), "job-1")
    remote.jobs["job-1"] = Status(State.RUNNING, started_at=T1)

    poll_running()
    work.refresh_from_db()
    assert work.status == "running"
