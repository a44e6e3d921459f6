"""Time limits count from RUNNING and end the attempt as TIMED_OUT."""

from jobs.engine import AttemptStatus, MarkReady, Step, Terminate, step
from tests.engine.helpers import T0, S, at, attempt, make_state, task

LIMITED = task("load", time_limit_s=30)


def running(started: float, **kw) -> object:
    return make_state([LIMITED], [attempt("load", S.RUNNING, started_at=at(started), **kw)])


def test_running_attempt_wakes_at_its_deadline():
    assert step(running(0), at(29)) == Step((), at(30))


def test_running_attempt_past_its_deadline_is_terminated_as_timed_out():
    terminate = Terminate(101, "time limit of 30s exceeded", AttemptStatus.TIMED_OUT)
    assert step(running(0), at(30)) == Step((terminate,), None)
    assert step(running(0), at(500)) == Step((terminate,), None)


def test_limit_counts_from_running_not_submission():
    # Submitted long ago but only just started: not over the limit.
    assert step(running(100), at(110)) == Step((), at(130))


def test_attempts_not_yet_running_have_no_deadline():
    for status in (S.SUBMITTING, S.SUBMITTED, S.READY):
        state = make_state([LIMITED], [attempt("load", status)])
        assert step(state, at(10_000)) == Step((), None)


def test_running_without_start_time_has_no_deadline():
    state = make_state([LIMITED], [attempt("load", S.RUNNING)])
    assert step(state, at(10_000)) == Step((), None)


def test_no_second_terminate_once_requested():
    assert step(running(0, stop_requested=True), at(100)) == Step((), None)


def test_no_limit_no_deadline():
    state = make_state([task("load")], [attempt("load", S.RUNNING, started_at=T0)])
    assert step(state, at(10_000)) == Step((), None)


def test_fractional_limit_in_reason():
    spec = task("load", time_limit_s=1.5)
    state = make_state([spec], [attempt("load", S.RUNNING, started_at=T0)])
    (terminate,) = step(state, at(2)).actions
    assert terminate.reason == "time limit of 1.5s exceeded"


def test_wake_at_is_the_earliest_clock_event():
    tasks = [LIMITED, task("later")]
    attempts = [
        attempt("load", S.RUNNING, started_at=at(0)),
        attempt("later", not_before=at(20)),
    ]
    assert step(make_state(tasks, attempts), at(5)) == Step((), at(20))
    assert step(make_state(tasks, attempts), at(20)) == Step((MarkReady(102),), at(30))
