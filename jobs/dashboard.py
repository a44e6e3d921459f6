"""The dashboard's picture of every process: what a person reads from across the room.

A process is green when its latest *finished* run succeeded, red when it failed or was
killed, grey when it is paused or has never finished a run; a ring says a run is going now.
A skipped or queued trigger changes none of that, so it never hides a running or a failed
run. Everything comes from a fixed number of queries, however many processes and runs, and
the board shows them a page at a time (failing first), counting every one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import NamedTuple

from django.db.models import (
    Case,
    Count,
    Exists,
    F,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
    Window,
)
from django.db.models.functions import RowNumber
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from jobs.describe import duration, short
from jobs.engine import RunStatus
from jobs.models import ProcessDefinition, ProcessRun

RECENT_RUNS = 20
# Processes on one page of the board. Failing ones come first, so every red light is on the
# first page unless more than this many fail; past it, a page of 20,000 squares costs the
# server and the browser more than a person can read.
PAGE_SIZE = 100
FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.KILLED)
COLOURS = ("red", "green", "grey")  # in the order the dashboard lists them
_RUN_FIELDS = (
    "id",
    "definition_id",
    "status",
    "trigger",
    "created_at",
    "started_at",
    "finished_at",
)


STATUS_CHOICES = (
    ("red", "failing"),
    ("green", "green"),
    ("running", "running"),
    ("grey", "paused or not run yet"),
)


@dataclass(frozen=True)
class Filters:
    """What the person asked to see, as it stands in the URL."""

    text: str = ""  # part of a process's name
    owner: str = ""
    colour: str = ""  # one of COLOURS, or "running"
    page: int = 1

    @classmethod
    def from_query(cls, query: dict[str, str]) -> Filters:
        """Unknown values are read as "every": a hand-edited URL shows the board, not an
        error (a page past the last one shows the last)."""
        colour = query.get("status", "")
        page = query.get("page", "")
        return cls(
            text=query.get("q", "").strip(),
            owner=query.get("owner", "").strip(),
            colour=colour if colour in (*COLOURS, "running") else "",
            page=max(1, int(page)) if page.isdecimal() and len(page) < 7 else 1,
        )


class RunDot(NamedTuple):
    """A recent run as its square needs it: a plain row, not a model instance (a page of
    the board reads 2,000 of them)."""

    pk: int
    status: str
    trigger: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


@dataclass(frozen=True)
class ProcessCard:
    process: ProcessDefinition
    colour: str  # green, red or grey
    running: list[ProcessRun]  # runs going now, oldest first
    recent: list[RunDot]  # the newest RECENT_RUNS runs, oldest first (left to right)
    last_finished: ProcessRun | None
    now: datetime  # when the card was drawn: a running run's time so far counts to here

    @property
    def last_took(self) -> str:
        return short(duration(self.last_finished)) if self.last_finished else "—"

    @property
    def durations(self) -> list[float]:
        """Seconds each recent finished run took, oldest first (the sparkline)."""
        return [
            d.total_seconds()
            for run in self.recent
            if run.finished_at and (d := duration(run)) is not None
        ]

    @property
    def sparkline(self) -> str:
        """SVG polyline points of the durations, longest at the top (empty for < 2 runs)."""
        values = self.durations
        if len(values) < 2:
            return ""
        top = max(values) or 1.0
        step = SPARK_WIDTH / (len(values) - 1)
        return " ".join(
            f"{i * step:.1f},{SPARK_HEIGHT - value / top * SPARK_HEIGHT:.1f}"
            for i, value in enumerate(values)
        )

    @property
    def squares(self) -> SafeString:
        """A square per recent run, linking it, with its tooltip ("run 42 · failed ·
        schedule · 2026-… · 1m 03s"). Joined here rather than in the template: a page of
        the board has 2,000 of them, and a template loop (or format_html) per square
        took most of the page's time. Every text in it is escaped."""
        path = _runs_path()
        return mark_safe(
            "".join(
                f'<a class="square {escape(run.status)}" href="{path}{run.pk}/"'
                f' title="{tip}" aria-label="{tip}"></a>'
                for run in self.recent
                for tip in (escape(_tooltip(run, self.now)),)
            )
        )

    @property
    def running_for(self) -> str:
        """The oldest run going now: "running for 3m 12s", or ""."""
        if not self.running:
            return ""
        took = duration(self.running[0], self.now)
        more = f" (+{len(self.running) - 1} more)" if len(self.running) > 1 else ""
        return f"running for {short(took)}{more}" if took is not None else f"starting{more}"


SPARK_WIDTH, SPARK_HEIGHT = 80, 18


@dataclass(frozen=True)
class Board:
    cards: list[ProcessCard]  # one page of the processes the filters let through
    counts: dict[str, int]  # by colour, and "running", over every page
    total: int  # processes the filters let through, on every page
    page: int
    pages: int

    @property
    def first(self) -> int:
        """The position of the page's first process among all it pages through (1-based)."""
        return (self.page - 1) * PAGE_SIZE + 1 if self.cards else 0

    @property
    def last(self) -> int:
        return self.first + len(self.cards) - 1 if self.cards else 0


@cache
def _runs_path() -> str:
    """The run page's path without its id ("/runs/"), looked up once."""
    return reverse("run", args=[0]).removesuffix("0/")


def _tooltip(run: RunDot, now: datetime) -> str:
    started = run.started_at or run.created_at
    parts = [f"run {run.pk}", str(run.status), str(run.trigger), f"{started:%Y-%m-%d %H:%M:%S} UTC"]
    if run.started_at is not None:
        parts.append(short(duration(run, now)))
    return " · ".join(parts)


def board(filters: Filters, now: datetime) -> Board:
    """The page of the board the filters ask for: the counts of every process they let
    through, and the cards of one page of them, failing first, the rest by name."""
    matching = _with_colour(filters)
    counts = matching.aggregate(
        **{colour: Count("pk", filter=Q(colour=colour)) for colour in COLOURS},
        running=Count("pk", filter=Q(running_now=True)),
    )
    total = counts[filters.colour] if filters.colour else sum(counts[c] for c in COLOURS)
    pages = max(1, -(-total // PAGE_SIZE))
    page = min(filters.page, pages)
    if filters.colour == "running":
        matching = matching.filter(running_now=True)
    elif filters.colour:
        matching = matching.filter(colour=filters.colour)
    start = (page - 1) * PAGE_SIZE
    processes = list(
        matching.annotate(
            last_finished_id=Subquery(_latest_finished().values("pk")[:1]),
            failing_first=Case(When(colour="red", then=0), default=1),
        ).order_by("failing_first", "name")[start : start + PAGE_SIZE]
    )
    ids = [p.pk for p in processes]
    runs = ProcessRun.objects.filter(
        Q(pk__in=[p.last_finished_id for p in processes if p.last_finished_id])
        | Q(definition__in=ids, status=RunStatus.RUNNING)
    ).only(*_RUN_FIELDS)
    by_id = {run.pk: run for run in runs}
    running: dict[int, list[ProcessRun]] = defaultdict(list)
    for run in sorted(by_id.values(), key=lambda r: r.pk):
        if run.status == RunStatus.RUNNING:
            running[run.definition_id].append(run)
    recent = _recent_runs(ids)
    cards = [
        ProcessCard(
            process,
            process.colour,
            running[process.pk],
            recent[process.pk],
            by_id.get(process.last_finished_id),
            now,
        )
        for process in processes
    ]
    return Board(cards, counts, total, page, pages)


def _latest_finished() -> QuerySet[ProcessRun]:
    """A process's finished runs, newest first (walks the (definition, id) index backwards,
    so its first row costs one index probe, however long the history)."""
    return ProcessRun.objects.filter(definition=OuterRef("pk"), status__in=FINISHED).order_by("-id")


def _with_colour(filters: Filters) -> QuerySet[ProcessDefinition]:
    """The live processes the text and owner filters let through, each with its colour and
    whether a run is going now, computed by the database (the counts and the order need
    them for every process, not just the page shown)."""
    chosen = ProcessDefinition.objects.filter(archived=False)
    if filters.text:
        chosen = chosen.filter(name__icontains=filters.text)
    if filters.owner:
        chosen = chosen.filter(owner=filters.owner)
    return chosen.annotate(
        last_status=Subquery(_latest_finished().values("status")[:1]),
        colour=Case(
            When(paused=True, then=Value("grey")),
            When(last_status=RunStatus.SUCCEEDED, then=Value("green")),
            When(last_status__in=[RunStatus.FAILED, RunStatus.KILLED], then=Value("red")),
            default=Value("grey"),
        ),
        running_now=Exists(
            ProcessRun.objects.filter(definition=OuterRef("pk"), status=RunStatus.RUNNING)
        ),
    )


def _recent_runs(process_ids: list[int]) -> dict[int, list[RunDot]]:
    """Each process's newest RECENT_RUNS runs, oldest first, in one query (a window
    function per process), as plain rows."""
    ranked = (
        ProcessRun.objects.filter(definition__in=process_ids)
        .annotate(
            rank=Window(RowNumber(), partition_by=F("definition_id"), order_by=F("id").desc())
        )
        .filter(rank__lte=RECENT_RUNS)
        .order_by("definition_id", "id")
        .values_list("definition_id", *RunDot._fields)
    )
    recent: dict[int, list[RunDot]] = defaultdict(list)
    for definition_id, *row in ranked:
        recent[definition_id].append(RunDot(*row))
    return recent


def owners() -> list[str]:
    return list(
        ProcessDefinition.objects.filter(archived=False)
        .exclude(owner="")
        .values_list("owner", flat=True)
        .distinct()
        .order_by("owner")
    )
