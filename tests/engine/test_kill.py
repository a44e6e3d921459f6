"""Killing a run cancels what has not started and terminates what has."""

import pytest

from jobs.engine import AttemptStatus, Cancel, FinishRun, RunStatus, Step, Terminate, step
from tests.engine.helpers import T0, S, at, attempt, make_state, task

TASKS = [task("a"), task("b"), task("c", max_attempts=3, time_limit_s=5)]
KILLED = FinishRun(RunStatus.KILLED, "killed")


def killed(*attempts) -> object:
    return make_state(TASKS, attempts, kill=True)


def test_pending_attempts_are_cancelled_and_run_finishes_at_once():
    state = killed(attempt("a", S.WAITING), attempt("b", S.READY), attempt("c", S.SUCCEEDED))
    assert step(state, T0) == Step(
        (Cancel(101, "run killed"), Cancel(102, "run killed"), KILLED), None
    )


@pytest.mark.parametrize("active", [S.SUBMITTING, S.SUBMITTED, S.RUNNING])
def test_active_attempts_are_terminated_and_hold_the_run_open(active):
    state = killed(attempt("a", active), attempt("b", S.WAITING), attempt("c", S.FAILED))
    assert step(state, T0) == Step(
        (Terminate(101, "run killed", AttemptStatus.KILLED), Cancel(102, "run killed")), None
    )


def test_no_second_terminate_and_no_finish_while_stopping():
    state = killed(
        attempt("a", S.RUNNING, stop_requested=True),
        attempt("b", S.KILLED),
        attempt("c", S.SUCCEEDED),
    )
    assert step(state, T0) == Step((), None)


def test_finishes_once_nothing_is_active():
    state = killed(attempt("a", S.KILLED), attempt("b", S.KILLED), attempt("c", S.SUCCEEDED))
    assert step(state, T0) == Step((KILLED,), None)


def test_no_retries_after_kill():
    state = killed(attempt("a", S.KILLED), attempt("b", S.SUCCEEDED), attempt("c", S.FAILED))
    assert step(state, T0) == Step((KILLED,), None)


def test_kill_wins_over_time_limit():
    state = killed(
        attempt("a", S.SUCCEEDED),
        attempt("b", S.SUCCEEDED),
        attempt("c", S.RUNNING, started_at=T0),
    )
    assert step(state, at(60)).actions == (Terminate(103, "run killed", AttemptStatus.KILLED),)


def test_killed_run_that_already_finished_does_nothing():
    state = make_state(TASKS, [attempt(t.name, S.KILLED) for t in TASKS], RunStatus.KILLED, True)
    assert step(state, T0) == Step((), None)
