"""The dashboard's picture of every process: what a person reads from across the room.

A process is green when its latest *finished* run succeeded, red when it failed or was
killed, grey when it is paused or has never finished a run; a ring says a run is going now.
A skipped or queued trigger changes none of that, so it never hides a running or a failed
run. Everything comes from a fixed number of queries, however many processes and runs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import NamedTuple

from django.db.models import F, Max, Prefetch, Q, QuerySet, Window
from django.db.models.functions import RowNumber
from django.urls import reverse
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from jobs.describe import duration, short
from jobs.engine import RunStatus
from jobs.models import ProcessDefinition, ProcessRun, TaskEvent

RECENT_RUNS = 20
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

    @classmethod
    def from_query(cls, query: dict[str, str]) -> Filters:
        colour = query.get("status", "")
        return cls(
            text=query.get("q", "").strip(),
            owner=query.get("owner", "").strip(),
            colour=colour if colour in (*COLOURS, "running") else "",
        )


class RunDot(NamedTuple):
    """A recent run as its square needs it: a plain row, not a model instance (a page of
    1,000 processes reads 20,000 of them)."""

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
        1,000 processes has 20,000 of them, and a template loop (or format_html) per square
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


def cards(filters: Filters, now: datetime) -> list[ProcessCard]:
    """Every live process the filters let through, with what its card shows at ``now``."""
    processes = list(_processes(filters))
    running: dict[int, list[ProcessRun]] = defaultdict(list)
    for run in ProcessRun.objects.filter(
        status=RunStatus.RUNNING, definition__in=[p.pk for p in processes]
    ).only(*_RUN_FIELDS):
        running[run.definition_id].append(run)
    recent = _recent_runs(processes)
    made = [
        _card(process, recent[process.pk], sorted(running[process.pk], key=lambda r: r.pk), now)
        for process in processes
    ]
    # Failing processes first, where they are seen without scrolling; the rest by name.
    made.sort(key=lambda card: card.colour != "red")
    if filters.colour == "running":
        return [card for card in made if card.running]
    if filters.colour:
        return [card for card in made if card.colour == filters.colour]
    return made


def _processes(filters: Filters) -> QuerySet[ProcessDefinition]:
    """The processes with their recent runs and latest finished run: two sliced prefetches,
    one query each whatever the number of processes."""
    chosen = ProcessDefinition.objects.filter(archived=False)
    if filters.text:
        chosen = chosen.filter(name__icontains=filters.text)
    if filters.owner:
        chosen = chosen.filter(owner=filters.owner)
    finished = ProcessRun.objects.only(*_RUN_FIELDS).filter(status__in=FINISHED).order_by("-id")
    return chosen.prefetch_related(Prefetch("runs", queryset=finished[:1], to_attr="finished_runs"))


def _recent_runs(processes: Iterable[ProcessDefinition]) -> dict[int, list[RunDot]]:
    """Each process's newest RECENT_RUNS runs, oldest first, in one query (a window
    function per process), as plain rows."""
    ranked = (
        ProcessRun.objects.filter(definition__in=[p.pk for p in processes])
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


def _card(
    process: ProcessDefinition, recent: list[RunDot], running: list[ProcessRun], now: datetime
) -> ProcessCard:
    last = process.finished_runs[0] if process.finished_runs else None
    if process.paused or last is None:
        colour = "grey"
    else:
        colour = "green" if last.status == RunStatus.SUCCEEDED else "red"
    return ProcessCard(process, colour, running, recent, last, now)


def counts(shown: list[ProcessCard]) -> dict[str, int]:
    tally = {colour: sum(card.colour == colour for card in shown) for colour in COLOURS}
    tally["running"] = sum(bool(card.running) for card in shown)
    return tally


def owners() -> list[str]:
    return list(
        ProcessDefinition.objects.filter(archived=False)
        .exclude(owner="")
        .values_list("owner", flat=True)
        .distinct()
        .order_by("owner")
    )


def marker() -> str:
    """Changes whenever anything the dashboard shows may have: a run's event (triggered,
    an attempt's end, finished) or a process edited. A refresh that brings the same marker
    back is answered with nothing."""
    latest_event = TaskEvent.objects.aggregate(latest=Max("id"))["latest"] or 0
    edited = ProcessDefinition.objects.aggregate(
        latest=Max("updated_at"), fires=Max("next_fire_at", filter=Q(archived=False))
    )
    stamps = (edited["latest"], edited["fires"])
    return f"{latest_event}-" + "-".join(f"{s.timestamp():.6f}" if s else "0" for s in stamps)
