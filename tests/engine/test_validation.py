"""Malformed states raise ValueError, and the admin's cycle finder."""

import pytest

from jobs.engine import rerun_tasks, step, task_graph_cycle, waiting_reasons
from tests.engine.helpers import T0, attempt, make_state, task


@pytest.mark.parametrize(
    ("tasks", "attempts", "message"),
    [
        ([task("a"), task("b")], [attempt("a")], "task(s) without an attempt: b"),
        ([task("a")], [attempt("a"), attempt("zz")], "attempt 102 belongs to unknown task 'zz'"),
        ([task("a", requires=["x"])], [attempt("a")], "task 'a' depends on unknown task 'x'"),
        ([task("a", after=["x"])], [attempt("a")], "task 'a' depends on unknown task 'x'"),
        ([task("a"), task("a")], [attempt("a")], "duplicate task 'a'"),
    ],
)
@pytest.mark.parametrize("function", [step, waiting_reasons, lambda s, _now: rerun_tasks(s)])
def test_malformed_state(tasks, attempts, message, function):
    with pytest.raises(ValueError) as error:
        function(make_state(tasks, attempts), T0)
    assert str(error.value) == message


def test_step_rejects_a_dependency_cycle():
    tasks = [task("a"), task("extract", requires=["load"]), task("load", after=["extract"])]
    state = make_state(tasks, [attempt(t.name) for t in tasks])
    with pytest.raises(ValueError, match=r"^dependency cycle: extract → load → extract$"):
        step(state, T0)


@pytest.mark.parametrize(
    ("edges", "cycle"),
    [
        ({}, None),
        ({"a": []}, None),
        ({"b": ["a"], "c": ["a", "b"]}, None),  # a diamond-ish DAG; "a" only as a target
        ({"a": ["a"]}, ["a", "a"]),
        ({"extract": ["load"], "load": ["extract"]}, ["extract", "load", "extract"]),
        ({"a": ["b"], "b": ["c"], "c": ["b"]}, ["b", "c", "b"]),
        ({"x": ["y"], "y": ["z"], "z": ["x"], "q": ["q"]}, ["q", "q"]),  # sorted: q first
        ({"a": ("b", "c"), "b": iter(["d"]), "c": {"d"}, "d": ["c"]}, ["c", "d", "c"]),
    ],
)
def test_task_graph_cycle(edges, cycle):
    assert task_graph_cycle(edges) == cycle


def test_cycle_is_the_same_whatever_the_insertion_order():
    edges = {"c": ["a"], "b": ["c"], "a": ["b"], "d": ["a"]}
    reordered = dict(reversed(list(edges.items())))
    assert task_graph_cycle(edges) == task_graph_cycle(reordered) == ["a", "b", "c", "a"]
