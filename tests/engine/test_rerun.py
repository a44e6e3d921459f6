""" "Retry failed tasks": what to run again, and how a new round proceeds."""

from jobs.engine import MarkReady, ScheduleRetry, rerun_tasks, step
from tests.engine.helpers import T0, S, attempt, make_state, statuses, task

# a -> b -> c (required), d independent, e after c (optional), f after a only
TASKS = [
    task("a"),
    task("b", requires=["a"]),
    task("c", requires=["b"]),
    task("d"),
    task("e", after=["c"]),
    task("f", requires=["a"]),
]


def test_failed_task_and_everything_downstream():
    state = statuses(
        TASKS, a=S.SUCCEEDED, b=S.FAILED, c=S.SKIPPED, d=S.SUCCEEDED, e=S.SUCCEEDED, f=S.SUCCEEDED
    )
    assert rerun_tasks(state) == ["b", "c", "e"]


def test_downstream_of_a_failure_is_rerun_even_if_it_succeeded():
    state = statuses(
        TASKS, a=S.FAILED, b=S.SKIPPED, c=S.SKIPPED, d=S.SUCCEEDED, e=S.SUCCEEDED, f=S.SKIPPED
    )
    assert rerun_tasks(state) == ["a", "b", "c", "e", "f"]


def test_optional_edges_count():
    state = statuses(
        TASKS,
        a=S.SUCCEEDED,
        b=S.SUCCEEDED,
        c=S.TIMED_OUT,
        d=S.KILLED,
        e=S.SUCCEEDED,
        f=S.SUCCEEDED,
    )
    assert rerun_tasks(state) == ["c", "d", "e"]


def test_nothing_to_rerun_when_all_succeeded():
    assert rerun_tasks(statuses(TASKS, **{t.name: S.SUCCEEDED for t in TASKS})) == []


def test_result_follows_task_order():
    tasks = [task("z", requires=["y"]), task("y", requires=["x"]), task("x")]
    assert rerun_tasks(statuses(tasks, x=S.FAILED, y=S.SKIPPED, z=S.SKIPPED)) == ["z", "y", "x"]


def test_latest_round_decides():
    state = make_state(
        [task("a")], [attempt("a", S.FAILED, round=1), attempt("a", S.SUCCEEDED, round=2)]
    )
    assert rerun_tasks(state) == []


def test_new_round_runs_on_top_of_earlier_success():
    tasks = [task("a"), task("b", requires=["a"], max_attempts=2)]
    state = make_state(
        tasks,
        [
            attempt("a", S.SUCCEEDED),
            attempt("b", S.FAILED, number=1),
            attempt("b", S.FAILED, number=2),
            attempt("b", S.WAITING, round=2),
        ],
    )
    assert step(state, T0).actions == (MarkReady(104),)


def test_new_round_gets_its_own_attempt_budget():
    tasks = [task("b", max_attempts=2)]
    state = make_state(
        tasks,
        [
            attempt("b", S.FAILED, number=1),
            attempt("b", S.FAILED, number=2),
            attempt("b", S.FAILED, round=2, finished_at=T0),
        ],
    )
    (retry,) = step(state, T0).actions
    assert isinstance(retry, ScheduleRetry)
    assert (retry.round, retry.number) == (2, 2)
