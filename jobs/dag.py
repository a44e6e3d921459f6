"""A process's DAG drawn as server-rendered SVG: a layered layout, then the markup.

The layout is a pure function of the task names and edges (no randomness, no dict-order
surprises), so the same process draws the same picture, byte for byte. Tasks flow left to
right: a task's column is the longest path to it from a task with no upstreams, and
within a column tasks keep the process's order. A wide fan-out makes a tall column and a
long chain a wide picture; the page scrolls the drawing rather than shrinking the text.
Two adapters give the names and edges from a run's snapshot or from a definition's rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from jobs.models import ProcessDefinition, TaskDefinition, TaskDependency

NODE_WIDTH = 184
NODE_HEIGHT = 28
COLUMN_GAP = 56
ROW_GAP = 10
MARGIN = 8
LABEL_CHARS = 24  # what fits in NODE_WIDTH at the drawing's font size
CENTRED_ROWS = 15  # columns are centred while the tallest has at most this many tasks

# Fill, outline and text colour per attempt status; a task not in the run is "none".
_FINAL_BAD = ("#fbe3e1", "#c0392b", "#7b1d14")
_ACTIVE = ("#dfeafb", "#2f6fd6", "#173e7d")
_PENDING = ("#ececec", "#8a8a8a", "#333333")
COLOURS: dict[str, tuple[str, str, str]] = {
    "succeeded": ("#dff3e4", "#2e8b46", "#1b5129"),
    "failed": _FINAL_BAD,
    "killed": _FINAL_BAD,
    "timed_out": _FINAL_BAD,
    "running": _ACTIVE,
    "submitted": _ACTIVE,
    "submitting": _ACTIVE,
    "waiting": _PENDING,
    "ready": _PENDING,
    "skipped": ("#f7f7f7", "#c4c4c4", "#8a8a8a"),
    "none": ("#ffffff", "#8a8a8a", "#333333"),
}


class Edge(NamedTuple):
    """``task`` runs after ``upstream``; required: the upstream must succeed."""

    task: str
    upstream: str
    required: bool


class Node(NamedTuple):
    name: str
    layer: int
    x: int
    y: int


def layers(tasks: Sequence[str], edges: Iterable[Edge]) -> dict[str, int]:
    """Each task's column: 0 for a task with no upstreams, else 1 + its deepest upstream's.

    Edges naming a task not in ``tasks`` are ignored; so is an edge closing a cycle (the
    admin refuses cycles, but a drawing must not loop on a row written elsewhere).
    """
    known = set(tasks)
    upstreams: dict[str, list[str]] = {name: [] for name in tasks}
    for edge in edges:
        if edge.task in known and edge.upstream in known:
            upstreams[edge.task].append(edge.upstream)
    depth: dict[str, int] = {}
    visiting: set[str] = set()

    def visit(name: str) -> int:
        if name in depth:
            return depth[name]
        visiting.add(name)
        ups = [visit(u) for u in upstreams[name] if u not in visiting]
        visiting.discard(name)
        depth[name] = 1 + max(ups) if ups else 0
        return depth[name]

    for name in tasks:
        visit(name)
    return {name: depth[name] for name in tasks}


def layout(tasks: Sequence[str], edges: Iterable[Edge]) -> tuple[list[Node], int, int]:
    """Each task's box (top-left corner), and the drawing's width and height.

    Columns are centred vertically on the tallest one, so a lone root sits level with the
    middle of its fan-out; a column taller than a screen (a wide fan-out) puts them at the
    top instead, where the page's scrolled drawing shows the roots first.
    """
    column_of = layers(tasks, edges)
    columns: dict[int, list[str]] = {}
    for name in tasks:  # the process's order within each column
        columns.setdefault(column_of[name], []).append(name)
    tallest = max((len(c) for c in columns.values()), default=0)
    height = 2 * MARGIN + tallest * NODE_HEIGHT + max(tallest - 1, 0) * ROW_GAP
    count = max(columns, default=-1) + 1
    width = 2 * MARGIN + count * NODE_WIDTH + max(count - 1, 0) * COLUMN_GAP
    nodes = []
    for layer in sorted(columns):
        names = columns[layer]
        own = len(names) * NODE_HEIGHT + (len(names) - 1) * ROW_GAP
        top = MARGIN if tallest > CENTRED_ROWS else MARGIN + (height - 2 * MARGIN - own) // 2
        x = MARGIN + layer * (NODE_WIDTH + COLUMN_GAP)
        for row, name in enumerate(names):
            nodes.append(Node(name, layer, x, top + row * (NODE_HEIGHT + ROW_GAP)))
    return nodes, width, height


def label(name: str) -> str:
    """The text shown in a box: the name, cut with an ellipsis when it would not fit."""
    return name if len(name) <= LABEL_CHARS else name[: LABEL_CHARS - 1] + "…"


def render_dag(
    tasks: Sequence[str],
    edges: Iterable[Edge],
    statuses: Mapping[str, str] | None = None,
    links: Mapping[str, str] | None = None,
) -> SafeString:
    """The DAG as an inline ``<svg>``: boxes coloured by status, required edges solid and
    optional ones dashed, each box titled with its full name and status, linked if given."""
    statuses = statuses or {}
    links = links or {}
    edges = list(edges)
    nodes, width, height = layout(tasks, edges)
    at = {node.name: node for node in nodes}
    paths = format_html_join(
        "", "{}", ((_edge(at[e.upstream], at[e.task], e.required),) for e in _drawn(edges, at))
    )
    boxes = format_html_join(
        "", "{}", ((_box(n, statuses.get(n.name, "none"), links.get(n.name)),) for n in nodes)
    )
    return format_html(
        '<svg class="dag" xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" '
        'viewBox="0 0 {} {}" role="img" aria-label="{}" '
        'font-family="system-ui, sans-serif" font-size="12">'
        "<defs>"
        '<marker id="dag-arrow" viewBox="0 0 8 8" refX="8" refY="4" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L8,4 L0,8 z" fill="#666"/></marker>'
        "</defs>{}{}</svg>",
        width,
        height,
        width,
        height,
        f"DAG of {len(nodes)} tasks",
        paths,
        boxes,
    )


def _drawn(edges: list[Edge], at: Mapping[str, Node]) -> list[Edge]:
    # Sorted so the markup does not depend on the order the edges came in.
    return sorted(
        (e for e in edges if e.task in at and e.upstream in at and e.task != e.upstream),
        key=lambda e: (at[e.upstream].layer, at[e.upstream].y, at[e.task].layer, at[e.task].y),
    )


def _edge(upstream: Node, task: Node, required: bool) -> SafeString:
    x1, y1 = upstream.x + NODE_WIDTH, upstream.y + NODE_HEIGHT // 2
    x2, y2 = task.x, task.y + NODE_HEIGHT // 2
    if task.layer <= upstream.layer:  # only a cycle's edge goes backwards: a plain line
        d = f"M{x1},{y1} L{x2},{y2}"
    else:
        bend = COLUMN_GAP // 2
        d = f"M{x1},{y1} C{x1 + bend},{y1} {x2 - bend},{y2} {x2},{y2}"
    dash = "" if required else ' stroke-dasharray="5 4"'
    kind = "required" if required else "optional"
    return format_html(
        '<path class="edge {}" d="{}" fill="none" stroke="#666" stroke-width="1.3"{} '
        'marker-end="url(#dag-arrow)"/>',
        kind,
        d,
        mark_safe(dash),  # one of two constants above
    )


def _box(node: Node, status: str, url: str | None) -> SafeString:
    fill, stroke, text = COLOURS.get(status, COLOURS["none"])
    title = node.name if status == "none" else f"{node.name} — {status}"
    group = format_html(
        '<g class="task {}"><title>{}</title>'
        '<rect x="{}" y="{}" width="{}" height="{}" rx="6" fill="{}" stroke="{}"/>'
        '<text x="{}" y="{}" fill="{}" dominant-baseline="middle">{}</text></g>',
        status,
        title,
        node.x,
        node.y,
        NODE_WIDTH,
        NODE_HEIGHT,
        fill,
        stroke,
        node.x + 10,
        node.y + NODE_HEIGHT // 2 + 1,
        text,
        label(node.name),
    )
    if url is None:
        return group
    return format_html('<a href="{}">{}</a>', url, group)


def graph_from_snapshot(snapshot: Mapping[str, Any]) -> tuple[list[str], list[Edge]]:
    """A run's tasks, in its process's order, and its edges, from its frozen snapshot."""
    entries = snapshot.get("tasks", [])
    tasks = [entry["name"] for entry in entries]
    edges = [
        Edge(entry["name"], upstream, required)
        for entry in entries
        for key, required in (("requires", True), ("after", False))
        for upstream in entry.get(key, [])
    ]
    return tasks, edges


def graph_from_definition(process: ProcessDefinition) -> tuple[list[str], list[Edge]]:
    """A process's tasks, in its order, and its edges, from its current rows (two queries)."""
    tasks = list(TaskDefinition.objects.filter(process=process).values_list("name", flat=True))
    rows = (
        TaskDependency.objects.filter(task__process=process)
        .order_by("task_id", "upstream_id")
        .values_list("task__name", "upstream__name", "required")
    )
    return tasks, [Edge(*row) for row in rows]
