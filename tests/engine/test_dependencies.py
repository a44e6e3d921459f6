"""Required and optional upstreams, skip propagation, readiness and finishing."""

import pytest

from jobs.engine import FinishRun, MarkReady, MarkSkipped, RunStatus, Step, step
from tests.engine.helpers import T0, S, at, attempt, attempt_id, make_state, statuses, task

EXTRACT = task("extract")
LOAD = task("load", requires=["extract"])
NOTIFY = task("notify", after=["extract"])


def test_ready_once_required_upstream_succeeded():
    state = statuses([EXTRACT, LOAD], extract=S.SUCCEEDED)
    assert step(state, T0) == Step((MarkReady(attempt_id(state, "load")),), None)


@pytest.mark.parametrize("upstream", [S.WAITING, S.READY, S.SUBMITTING, S.SUBMITTED, S.RUNNING])
def test_no_action_while_required_upstream_is_pending(upstream):
    state = statuses([EXTRACT, LOAD], extract=upstream)
    actions = step(state, T0).actions
    assert all(getattr(a, "attempt_id", None) != attempt_id(state, "load") for a in actions)


def test_failed_upstream_with_a_retry_coming_is_still_pending():
    state = statuses([task("extract", max_attempts=2), LOAD], extract=S.FAILED)
    actions = step(state, T0).actions
    assert [type(a).__name__ for a in actions] == ["ScheduleRetry"]


@pytest.mark.parametrize(
    ("upstream", "reason"),
    [
        (S.FAILED, "required upstream 'extract' failed"),
        (S.TIMED_OUT, "required upstream 'extract' timed out"),
        (S.KILLED, "required upstream 'extract' was killed"),
        (S.SKIPPED, "required upstream 'extract' was skipped"),
    ],
)
def test_final_failure_of_required_upstream_skips(upstream, reason):
    spec = task("extract", retry_on_timeout=False)
    state = statuses([spec, LOAD], extract=upstream)
    assert step(state, T0).actions[0] == MarkSkipped(attempt_id(state, "load"), reason)


def test_skip_propagates_down_a_chain_in_one_step():
    tasks = [task("a"), task("b", requires=["a"]), task("c", requires=["b"])]
    state = statuses(tasks, a=S.FAILED)
    assert step(state, T0) == Step(
        (
            MarkSkipped(attempt_id(state, "b"), "required upstream 'a' failed"),
            MarkSkipped(attempt_id(state, "c"), "required upstream 'b' was skipped"),
            FinishRun(RunStatus.FAILED, "failed: a; skipped: b, c"),
        ),
        None,
    )


def test_actions_follow_task_order_not_dependency_order():
    tasks = [task("c", requires=["b"]), task("b", requires=["a"]), task("a")]
    state = statuses(tasks, a=S.FAILED)
    skipped = [a.attempt_id for a in step(state, T0).actions if isinstance(a, MarkSkipped)]
    assert skipped == [attempt_id(state, "c"), attempt_id(state, "b")]


@pytest.mark.parametrize("upstream", [S.SUCCEEDED, S.FAILED, S.TIMED_OUT, S.KILLED, S.SKIPPED])
def test_optional_upstream_with_any_final_outcome_lets_downstream_run(upstream):
    spec = task("extract", retry_on_timeout=False)
    state = statuses([spec, NOTIFY], extract=upstream)
    assert MarkReady(attempt_id(state, "notify")) in step(state, T0).actions


@pytest.mark.parametrize("upstream", [S.WAITING, S.READY, S.RUNNING])
def test_optional_upstream_still_pending_holds_downstream(upstream):
    state = statuses([EXTRACT, NOTIFY], extract=upstream)
    assert MarkReady(attempt_id(state, "notify")) not in step(state, T0).actions


def test_optional_upstream_failed_with_retry_coming_holds_downstream():
    state = statuses([task("extract", max_attempts=3), NOTIFY], extract=S.FAILED)
    assert MarkReady(attempt_id(state, "notify")) not in step(state, T0).actions


def test_optional_upstream_that_can_never_run_does_not_deadlock():
    # report runs after load, but load needs extract, which failed for good.
    tasks = [EXTRACT, LOAD, task("report", after=["load"])]
    state = statuses(tasks, extract=S.FAILED)
    assert step(state, T0).actions[:2] == (
        MarkSkipped(attempt_id(state, "load"), "required upstream 'extract' failed"),
        MarkReady(attempt_id(state, "report")),
    )
    # And once load's skip is recorded, the same decision stands.
    state = statuses(tasks, extract=S.FAILED, load=S.SKIPPED)
    assert step(state, T0).actions == (MarkReady(attempt_id(state, "report")),)


def test_required_and_optional_upstreams_together():
    tasks = [task("x"), task("y"), task("z", requires=["x"], after=["y"])]
    assert step(statuses(tasks, x=S.SUCCEEDED, y=S.FAILED), T0).actions == (MarkReady(103),)
    assert step(statuses(tasks, x=S.SUCCEEDED, y=S.RUNNING), T0).actions == ()
    assert step(statuses(tasks, x=S.RUNNING, y=S.SUCCEEDED), T0).actions == ()


def test_not_before_delays_readiness_and_sets_wake_at():
    state = make_state([EXTRACT], [attempt("extract", not_before=at(60))])
    assert step(state, at(59)) == Step((), at(60))
    assert step(state, at(60)) == Step((MarkReady(101),), None)


def test_not_before_does_not_wake_a_task_whose_upstreams_are_pending():
    state = make_state(
        [EXTRACT, LOAD],
        [attempt("extract", S.RUNNING), attempt("load", not_before=at(60))],
    )
    assert step(state, T0) == Step((), None)


def test_only_waiting_attempts_are_marked():
    state = statuses([EXTRACT, LOAD], extract=S.SUCCEEDED, load=S.READY)
    assert step(state, T0) == Step((), None)


def test_all_succeeded_finishes_the_run():
    state = statuses([EXTRACT, LOAD], extract=S.SUCCEEDED, load=S.SUCCEEDED)
    assert step(state, T0) == Step((FinishRun(RunStatus.SUCCEEDED, "all tasks succeeded"),), None)


def test_run_with_no_tasks_succeeds_at_once():
    (finish,) = step(make_state([], []), T0).actions
    assert finish == FinishRun(RunStatus.SUCCEEDED, "all tasks succeeded")


def test_failed_run_names_failed_tasks_in_task_order():
    tasks = [task("load"), task("report"), task("ok")]
    state = statuses(tasks, load=S.FAILED, report=S.TIMED_OUT, ok=S.SUCCEEDED)
    assert step(state, T0).actions == (FinishRun(RunStatus.FAILED, "failed: load, report"),)


def test_run_stays_open_while_a_task_is_active():
    state = statuses([EXTRACT, NOTIFY], extract=S.FAILED, notify=S.RUNNING)
    assert not any(isinstance(a, FinishRun) for a in step(state, T0).actions)


@pytest.mark.parametrize(
    "run_status",
    [RunStatus.QUEUED, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.KILLED, RunStatus.SKIPPED],
)
@pytest.mark.parametrize("kill", [False, True])
def test_queued_and_final_runs_do_nothing(run_status, kill):
    state = make_state(
        [EXTRACT, LOAD],
        [attempt("extract", S.SUCCEEDED), attempt("load", S.RUNNING, started_at=T0)],
        status=run_status,
        kill=kill,
    )
    assert step(state, at(10_000)) == Step((), None)


def test_queued_run_without_attempts_is_not_malformed():
    assert step(make_state([EXTRACT], [], status=RunStatus.QUEUED), T0) == Step((), None)
