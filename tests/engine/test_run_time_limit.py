"""A run's own time limit stops it like a kill, and it finishes FAILED with that reason."""

from dataclasses import replace

import pytest

from jobs.engine import (
    AttemptStatus,
    Cancel,
    FinishRun,
    MarkReady,
    RunStatus,
    Step,
    Terminate,
    attempt_outcome,
    step,
    waiting_reasons,
)
from tests.engine.helpers import T0, S, at, attempt, make_state, task

TASKS = [task("extract"), task("clean", max_attempts=3), task("load", requires=["extract"])]
REASON = "run time limit of 3600s exceeded"
TIMED_OUT = FinishRun(RunStatus.FAILED, REASON)


def limited(*attempts, **kw) -> object:
    """A run of TASKS started at T0 with a one-hour limit."""
    return make_state(TASKS, attempts, time_limit_s=3600, **kw)


def test_running_run_wakes_at_its_deadline():
    state = limited(attempt("extract", S.RUNNING), attempt("clean", S.RUNNING), attempt("load"))
    assert step(state, at(10)) == Step((), at(3600))


@pytest.mark.parametrize(
    ("task_limit", "retry_at", "wake"),
    [
        (30, None, 30),  # a task's limit comes first
        (None, 5000, 3600),  # the run's deadline comes before a retry
        (None, 100, 100),  # a retry comes first
    ],
)
def test_wake_at_is_the_earliest_of_all_wakes(task_limit, retry_at, wake):
    tasks = [task("extract", time_limit_s=task_limit), task("clean", max_attempts=3), TASKS[2]]
    clean = [attempt("clean", S.SUCCEEDED)]
    if retry_at is not None:
        clean = [attempt("clean", S.FAILED), attempt("clean", number=2, not_before=at(retry_at))]
    state = make_state(
        tasks,
        [attempt("extract", S.RUNNING, started_at=T0), *clean, attempt("load")],
        time_limit_s=3600,
    )
    assert step(state, at(10)).wake_at == at(wake)


def test_past_the_deadline_pending_is_cancelled_and_active_terminated_as_killed():
    state = limited(attempt("extract", S.RUNNING), attempt("clean", S.READY), attempt("load"))
    assert step(state, at(3600)) == Step(
        (
            Terminate(101, REASON, AttemptStatus.KILLED),
            Cancel(102, REASON),
            Cancel(103, REASON),
        ),
        None,
    )


def test_finishes_failed_at_once_when_nothing_is_active():
    state = limited(attempt("extract", S.SUCCEEDED), attempt("clean", S.SUCCEEDED), attempt("load"))
    assert step(state, at(4000)) == Step((Cancel(103, REASON), TIMED_OUT), None)


def test_no_finish_while_an_attempt_is_stopping_then_failed_with_the_reason():
    stopping = attempt("extract", S.RUNNING, stop_requested=True, stop_reason=REASON, id=101)
    rest = [attempt("clean", S.KILLED), attempt("load", S.KILLED)]
    assert step(limited(stopping, *rest), at(3700)) == Step((), None)
    status, reason = attempt_outcome(TASKS[0], -15, None, S.KILLED, REASON)
    assert (status, reason) == (S.KILLED, REASON)
    stopped = replace(stopping, status=status, finished_at=at(3701))
    assert step(limited(stopped, *rest), at(3701)) == Step((TIMED_OUT,), None)


def test_no_new_work_becomes_ready_past_the_deadline():
    state = limited(attempt("extract", S.SUCCEEDED), attempt("clean", S.SUCCEEDED), attempt("load"))
    assert step(state, at(3599)) == Step((MarkReady(103),), at(3600))
    assert step(state, at(3600)).actions[0] == Cancel(103, REASON)


def test_no_retry_past_the_deadline():
    state = limited(attempt("extract", S.SUCCEEDED), attempt("clean", S.FAILED), attempt("load"))
    assert step(state, at(3600)) == Step((Cancel(103, REASON), TIMED_OUT), None)


def test_the_run_limit_wins_over_a_task_limit_reached_at_the_same_time():
    tasks = [task("extract", time_limit_s=3600, max_attempts=3), *TASKS[1:]]
    attempts = [
        attempt("extract", S.RUNNING, started_at=T0),
        attempt("clean", S.SUCCEEDED),
        attempt("load"),
    ]
    state = make_state(tasks, attempts, time_limit_s=3600)
    assert step(state, at(3600)).actions == (
        Terminate(101, REASON, AttemptStatus.KILLED),
        Cancel(103, REASON),
    )


def test_a_kill_wins_in_wording():
    state = limited(attempt("extract", S.RUNNING), attempt("clean", S.FAILED), attempt("load"))
    killed = replace(state, kill_requested=True)
    assert step(killed, at(5000)) == Step(
        (Terminate(101, "run killed", AttemptStatus.KILLED), Cancel(103, "run killed")), None
    )
    done = limited(
        attempt("extract", S.KILLED), attempt("clean", S.FAILED), attempt("load", S.KILLED)
    )
    assert step(replace(done, kill_requested=True), at(5000)) == Step(
        (FinishRun(RunStatus.KILLED, "killed"),), None
    )


@pytest.mark.parametrize(
    ("limit", "reason"),
    [
        (0, "run time limit of 0s exceeded"),
        (1.5, "run time limit of 1.5s exceeded"),
        (86400, "run time limit of 86400s exceeded"),
    ],
)
def test_limit_is_written_like_a_task_limit(limit, reason):
    state = make_state([task("a")], [attempt("a")], time_limit_s=limit)
    assert step(state, at(limit)) == Step(
        (Cancel(101, reason), FinishRun(RunStatus.FAILED, reason)), None
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"time_limit_s": None},
        {"started_at": None},  # not started yet: the limit has nothing to count from
    ],
)
def test_no_limit_no_deadline(changes):
    state = limited(attempt("extract", S.RUNNING), attempt("clean"), attempt("load"))
    assert step(replace(state, **changes), at(10_000)) == Step((MarkReady(102),), None)


@pytest.mark.parametrize("status", [RunStatus.QUEUED, RunStatus.SUCCEEDED, RunStatus.FAILED])
def test_runs_not_running_are_left_alone(status):
    state = limited(
        attempt("extract", S.SUCCEEDED),
        attempt("clean", S.SUCCEEDED),
        attempt("load", S.SUCCEEDED),
        status=status,
    )
    assert step(state, at(10_000)) == Step((), None)


def test_waiting_reasons_say_the_pending_tasks_are_being_cancelled():
    state = limited(attempt("extract", S.RUNNING), attempt("clean", S.READY), attempt("load"))
    assert waiting_reasons(state, at(3599)) == {
        "extract": "running",
        "clean": "ready: waiting for a worker",
        "load": "waiting for extract",
    }
    assert waiting_reasons(state, at(3600)) == {
        "extract": "running",
        "clean": f"cancelling: {REASON}",
        "load": f"cancelling: {REASON}",
    }
    killed = replace(state, kill_requested=True)
    assert waiting_reasons(killed, at(3600))["load"] == "cancelling: run killed"
