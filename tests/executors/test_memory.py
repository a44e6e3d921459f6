"""The in-memory executor: records what it is asked, moves only when told, fails on demand."""

from __future__ import annotations

import threading

import pytest

from executors.base import ExecutorError, Launch, LogChunk, State, Submission
from executors.memory import MemoryConfig, MemoryExecutor, SimulatedCrash


def launch(key: str = "sundial-1-1-extract-1-1", **config) -> Launch:
    return Launch(task_run_id=1, run_id=1, idempotency_key=key, config=config, env={})


@pytest.fixture
def executor() -> MemoryExecutor:
    return MemoryExecutor()


def test_a_submitted_job_is_pending_until_the_test_moves_it(executor):
    sub = executor.submit(launch(label="extract"))
    assert sub == Submission("mem-1", "memory:mem-1")
    assert executor.statuses(["mem-1"])["mem-1"].state is State.PENDING

    executor.start("mem-1")
    running = executor.statuses(["mem-1"])["mem-1"]
    assert running.state is State.RUNNING and running.started_at is not None

    executor.finish("mem-1", 3, reason="Essential container in task exited")
    done = executor.statuses(["mem-1"])["mem-1"]
    assert (done.state, done.exit_code, done.reason) == (
        State.FAILED,
        3,
        "Essential container in task exited",
    )
    assert done.ended_at is not None
    assert executor.live() == []


def test_exit_code_zero_succeeds_even_without_a_start(executor):
    executor.submit(launch())
    executor.finish("mem-1", 0)
    status = executor.statuses(["mem-1"])["mem-1"]
    assert (status.state, status.exit_code, status.started_at) == (State.SUCCEEDED, 0, None)


def test_the_same_key_submitted_twice_is_one_job(executor):
    first = executor.submit(launch("key-a"))
    again = executor.submit(launch("key-a"))
    other = executor.submit(launch("key-b"))
    assert first == again != other
    assert [job.external_id for job in executor.jobs()] == ["mem-1", "mem-2"]
    assert [sent.idempotency_key for sent in executor.submitted] == ["key-a", "key-a", "key-b"]


def test_find_by_key(executor):
    sub = executor.submit(launch("key-a"))
    assert executor.find(launch("key-a")) == sub
    assert executor.find(launch("key")) is None


def test_statuses_leave_out_unknown_ids_and_are_recorded(executor):
    executor.submit(launch())
    assert executor.statuses(["mem-1", "mem-9"]).keys() == {"mem-1"}
    assert executor.status_calls == [["mem-1", "mem-9"]]


def test_a_terminated_job_runs_until_the_test_ends_it(executor):
    executor.submit(launch())
    executor.start("mem-1")
    executor.terminate("mem-1", "run killed")
    executor.terminate("mem-1", "again")

    assert executor.terminations == [("mem-1", "run killed"), ("mem-1", "again")]
    job = executor.job("mem-1")
    assert (job.state, job.stop_reason) == (State.RUNNING, "run killed")
    assert executor.live() == [job], "inside its grace period"

    executor.finish("mem-1", 143, reason="terminated")
    assert executor.live() == []


def test_terminating_a_finished_job_changes_nothing(executor):
    executor.submit(launch())
    executor.finish("mem-1", 0)
    executor.terminate("mem-1", "late")
    assert executor.job("mem-1").stop_reason is None


def test_an_unknown_job_cannot_be_terminated(executor):
    with pytest.raises(ExecutorError) as raised:
        executor.terminate("mem-7", "stop")
    assert raised.value.permanent


def test_a_job_finishes_once(executor):
    executor.submit(launch())
    executor.finish("mem-1", 0)
    with pytest.raises(ValueError, match="already finished"):
        executor.finish("mem-1", 1)
    with pytest.raises(ValueError, match="not pending"):
        executor.start("mem-1")


@pytest.mark.parametrize("permanent", [False, True])
def test_armed_failures_hit_the_next_calls_of_one_method_only(executor, permanent):
    executor.fail_next("submit", ExecutorError("Rate exceeded", permanent=permanent), times=2)
    for _ in range(2):
        with pytest.raises(ExecutorError) as raised:
            executor.submit(launch())
        assert raised.value.permanent is permanent
    assert executor.jobs() == [], "a failed submit starts nothing"
    assert executor.statuses([]) == {}, "other methods are unaffected"

    assert executor.submit(launch()).external_id == "mem-1"
    assert len(executor.submitted) == 3, "failed calls are recorded too"


def test_unknown_method_names_are_refused(executor):
    with pytest.raises(ValueError, match="unknown call 'sumbit'"):
        executor.fail_next("sumbit", ExecutorError("x"))


def test_a_crash_after_submit_leaves_a_job_that_find_returns(executor):
    executor.crash_next_submit()
    with pytest.raises(SimulatedCrash) as raised:
        executor.submit(launch("key-a"))
    assert not isinstance(raised.value, ExecutorError)
    assert executor.find(launch("key-a")) == Submission("mem-1", "memory:mem-1")
    assert executor.submit(launch("key-a")).external_id == "mem-1", "the retried submit adopts it"


def test_a_crash_before_submit_leaves_nothing(executor):
    executor.crash_next_submit(accept=False)
    with pytest.raises(SimulatedCrash):
        executor.submit(launch("key-a"))
    assert executor.find(launch("key-a")) is None
    assert executor.jobs() == []


def test_heal_disarms_every_fault(executor):
    executor.fail_next("statuses", ExecutorError("down"))
    executor.crash_next_submit()
    executor.heal()
    executor.submit(launch())
    assert executor.statuses(["mem-1"]).keys() == {"mem-1"}


def test_invalid_config_is_a_permanent_error(executor):
    with pytest.raises(ExecutorError) as raised:
        executor.submit(launch(colour="blue"))
    assert raised.value.permanent and "colour" in raised.value.message


def test_config_schema_forbids_unknown_fields():
    assert MemoryConfig.model_validate({"label": "x"}).label == "x"
    with pytest.raises(ValueError, match="extra"):
        MemoryConfig.model_validate({"lable": "x"})


def test_logs_are_read_from_a_cursor(executor):
    sub = executor.submit(launch())
    executor.write_log("mem-1", "one", "two")
    first = executor.read_logs(sub.log_ref, None)
    assert first == LogChunk(("one", "two"), "2")
    executor.write_log("mem-1", "three")
    assert executor.read_logs(sub.log_ref, first.next_cursor) == LogChunk(("three",), "3")


def test_concurrent_submits_of_one_key_make_one_job(executor):
    barrier = threading.Barrier(8)
    results: list[Submission] = []

    def submit() -> None:
        barrier.wait()
        results.append(executor.submit(launch("key-a")))

    threads = [threading.Thread(target=submit) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(executor.jobs()) == 1
    assert set(results) == {Submission("mem-1", "memory:mem-1")}


def test_a_pending_job_says_why_it_waits_until_it_starts_and_where_it_runs(executor):
    executor.submit(launch())
    assert executor.statuses(["mem-1"])["mem-1"].detail == ""
    executor.wait("mem-1", "RUNNABLE")
    waiting = executor.statuses(["mem-1"])["mem-1"]
    assert (waiting.state, waiting.detail, waiting.placement) == (State.PENDING, "RUNNABLE", "")

    executor.start("mem-1", placement="Fargate")
    running = executor.statuses(["mem-1"])["mem-1"]
    assert (running.state, running.detail, running.placement) == (State.RUNNING, "", "Fargate")
    with pytest.raises(ValueError, match="not pending"):
        executor.wait("mem-1", "STARTING")

    executor.finish("mem-1", 0)
    assert executor.statuses(["mem-1"])["mem-1"].placement == "Fargate"


def test_a_forgotten_job_is_left_out_of_statuses_and_find(executor):
    executor.submit(launch("key-a"))
    executor.submit(launch("key-b"))
    executor.forget("mem-1")

    assert executor.statuses(["mem-1", "mem-2"]).keys() == {"mem-2"}
    assert executor.find(launch("key-a")) is None
    assert executor.find(launch("key-b")) == Submission("mem-2", "memory:mem-2")
    assert executor.submit(launch("key-c")).external_id == "mem-3", "its id is not reused"
