"""The DAG drawing: columns by longest path, dashed optional edges, escaped names, the same
markup for the same process, and the sizes a real process reaches."""

from __future__ import annotations

import re

import pytest

from jobs.dag import (
    LABEL_CHARS,
    Edge,
    graph_from_definition,
    graph_from_snapshot,
    label,
    layers,
    layout,
    render_dag,
)
from jobs.snapshot import take_snapshot
from tests.conftest import make_process


def test_a_task_sits_one_column_right_of_its_deepest_upstream():
    tasks = ["a", "b", "c", "d"]
    edges = [
        Edge("b", "a", True),
        Edge("c", "b", True),
        Edge("d", "a", True),
        Edge("d", "c", False),
    ]
    assert layers(tasks, edges) == {"a": 0, "b": 1, "c": 2, "d": 3}


def test_within_a_column_tasks_keep_the_process_order():
    tasks = ["root", "zeta", "alpha", "mid"]
    edges = [Edge(t, "root", True) for t in ("zeta", "alpha", "mid")]
    nodes, _, _ = layout(tasks, edges)
    column = [n.name for n in sorted(nodes, key=lambda n: n.y) if n.layer == 1]
    assert column == ["zeta", "alpha", "mid"]


def test_a_cycle_written_outside_the_admin_still_draws():
    assert layers(["a", "b"], [Edge("a", "b", True), Edge("b", "a", True)]) in (
        {"a": 0, "b": 1},
        {"a": 1, "b": 0},
    )
    assert "<svg" in render_dag(["a", "b"], [Edge("a", "b", True), Edge("b", "a", True)])


def test_required_edges_are_solid_and_optional_ones_dashed():
    svg = render_dag(["a", "b", "c"], [Edge("b", "a", True), Edge("c", "a", False)])
    edges = re.findall(r"<path class=\"edge (\w+)\"[^>]*>", svg)
    assert len(edges) == 2
    (required,) = [p for p in re.findall(r"<path class=\"edge required\"[^>]*>", svg)]
    (optional,) = [p for p in re.findall(r"<path class=\"edge optional\"[^>]*>", svg)]
    assert "stroke-dasharray" not in required
    assert 'stroke-dasharray="5 4"' in optional


def test_names_are_escaped_and_long_ones_cut_with_the_full_name_in_the_title():
    evil = '<script>alert("x")</script>'
    long = "x" * 100
    svg = render_dag([evil, long], [Edge(long, evil, True)], links={evil: '/t?a=1&b="2"'})
    assert "<script>" not in svg
    assert "&lt;script&gt;alert(&quot;x&quot;)" in svg
    assert 'href="/t?a=1&amp;b=&quot;2&quot;"' in svg
    assert f"<title>{long}</title>" in svg
    assert f">{'x' * (LABEL_CHARS - 1)}…</text>" in svg
    assert len(label(long)) == LABEL_CHARS


def test_boxes_are_coloured_by_status_and_titled_with_it():
    statuses = {"a": "succeeded", "b": "failed", "c": "running", "d": "waiting", "e": "skipped"}
    svg = render_dag(list(statuses), [], statuses)
    for name, status in statuses.items():
        assert f'<g class="task {status}"><title>{name} — {status}</title>' in svg
    fills = dict(re.findall(r'<g class="task (\w+)">.*?fill="(#\w+)"', svg))
    assert len({fills["succeeded"], fills["failed"], fills["running"], fills["waiting"]}) == 4
    assert fills["skipped"] != fills["waiting"]


def test_the_same_process_draws_the_same_markup_whatever_order_the_edges_come_in():
    tasks = [f"t{i}" for i in range(8)]
    edges = [Edge(f"t{i}", f"t{i // 2}", i % 3 != 0) for i in range(1, 8)]
    first = render_dag(tasks, edges, {"t1": "running"}, {"t2": "/x"})
    assert render_dag(tasks, list(reversed(edges)), {"t1": "running"}, {"t2": "/x"}) == first


@pytest.mark.parametrize(
    "tasks, edges, columns, rows",
    [
        (["only"], [], 1, 1),
        (
            ["root", *[f"leaf-{i}" for i in range(50)], "join"],
            [Edge(f"leaf-{i}", "root", True) for i in range(50)]
            + [Edge("join", f"leaf-{i}", True) for i in range(50)],
            3,
            50,
        ),
        (
            [f"step-{i}" for i in range(20)],
            [Edge(f"step-{i}", f"step-{i - 1}", True) for i in range(1, 20)],
            20,
            1,
        ),
    ],
    ids=["one task", "fan-out of 50", "chain of 20"],
)
def test_sizes(tasks, edges, columns, rows):
    nodes, width, height = layout(tasks, edges)
    assert len({n.layer for n in nodes}) == columns
    assert max(sum(1 for n in nodes if n.layer == c) for c in range(columns)) == rows
    # No two boxes overlap, and all lie inside the drawing.
    boxes = {(n.x, n.y) for n in nodes}
    assert len(boxes) == len(tasks)
    assert all(0 <= n.x < width and 0 <= n.y < height for n in nodes)
    svg = render_dag(tasks, edges)
    assert svg.count('<g class="task') == len(tasks)
    assert svg.count('<path class="edge') == len(edges)


@pytest.mark.django_db
def test_the_snapshot_and_the_definition_give_the_same_graph():
    process = make_process(
        "etl",
        {
            "extract": {},
            "transform": {"requires": ["extract"]},
            "report": {"requires": ["transform"], "after": ["extract"]},
        },
    )
    from_rows = graph_from_definition(process)
    assert from_rows[0] == ["extract", "transform", "report"]
    assert sorted(from_rows[1]) == sorted(
        [
            Edge("transform", "extract", True),
            Edge("report", "transform", True),
            Edge("report", "extract", False),
        ]
    )
    tasks, edges = graph_from_snapshot(take_snapshot(process))
    assert tasks == from_rows[0] and sorted(edges) == sorted(from_rows[1])


def test_a_small_dag_is_centred_and_a_tall_fan_out_starts_at_the_top():
    small, _, _ = layout(["root", "a", "b", "c"], [Edge(t, "root", True) for t in "abc"])
    ys = {n.name: n.y for n in small}
    assert ys["root"] == ys["b"]  # level with the middle of its three
    leaves = [f"leaf-{i}" for i in range(50)]
    tall, _, _ = layout(["root", *leaves], [Edge(t, "root", True) for t in leaves])
    ys = {n.name: n.y for n in tall}
    assert ys["root"] == ys["leaf-0"]
