"""select_tasks: running a subset of a process's tasks."""

import pytest

from jobs.engine import MarkReady, Step, select_tasks, step
from tests.engine.helpers import T0, attempt, make_state, task

# extract ─┬─> clean ─> load ─> report
#          └─> audit ···> load  (optional)
PROCESS = [
    task("extract"),
    task("clean", requires=["extract"]),
    task("audit", requires=["extract"]),
    task("load", requires=["clean"], after=["audit"], max_attempts=3, time_limit_s=60),
    task("report", requires=["load"]),
]


@pytest.mark.parametrize(
    ("names", "edges", "cut"),
    [
        (["extract"], {"extract": ((), ())}, ()),
        (["load"], {"load": ((), ())}, ("clean", "audit")),
        (["clean", "load"], {"clean": ((), ()), "load": (("clean",), ())}, ("extract", "audit")),
        (["audit", "load"], {"audit": ((), ()), "load": ((), ("audit",))}, ("extract", "clean")),
        # Given in any order, the tasks and what was cut keep the process's order.
        (
            ["report", "clean", "audit"],
            {"clean": ((), ()), "audit": ((), ()), "report": ((), ())},
            ("extract", "load"),
        ),
        (
            ["extract", "clean", "audit", "load", "report"],
            {t.name: (t.requires, t.after) for t in PROCESS},
            (),
        ),
    ],
)
def test_edges_to_tasks_outside_are_cut(names, edges, cut):
    selected, dropped = select_tasks(PROCESS, names)
    assert {t.name: (t.requires, t.after) for t in selected} == edges
    assert [t.name for t in selected] == list(edges)
    assert dropped == cut


def test_everything_but_the_edges_is_kept():
    (load,), _ = select_tasks(PROCESS, ["load"])
    assert (load.max_attempts, load.time_limit_s) == (3, 60)


def test_whole_process_is_returned_unchanged():
    selected, dropped = select_tasks(PROCESS, (t.name for t in reversed(PROCESS)))
    assert (selected, dropped) == (tuple(PROCESS), ())


def test_upstreams_outside_count_as_satisfied():
    selected, _ = select_tasks(PROCESS, ["load", "report"])
    state = make_state(selected, [attempt("load"), attempt("report")])
    assert step(state, T0) == Step((MarkReady(101),), None)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ([], "choose at least one task to run"),
        (
            ["lod", "load", "x", "lod"],
            "unknown task(s): lod, x; this process has: extract, clean, audit, load, report",
        ),
        (["load", "clean", "load"], "task(s) named more than once: load"),
        (["load", "clean", "load", "clean"], "task(s) named more than once: load, clean"),
    ],
)
def test_bad_choices_are_refused_with_a_readable_message(names, message):
    with pytest.raises(ValueError) as error:
        select_tasks(PROCESS, names)
    assert str(error.value) == message
