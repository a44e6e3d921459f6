"""The process page: its DAG as the latest run left it, its schedule, its run history with
filters, how long its runs take, and the buttons Run now, Pause/Resume, Edit.

Every query the page makes is built here, a fixed number of them however many runs and
tasks the process has. The buttons call the same functions as the admin's actions
(``jobs/actions.py``), under the same permission, and are audited the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django.views.decorators.http import require_POST

from jobs import dag, markers
from jobs.actions import record_run_now, set_paused
from jobs.describe import duration, process_zone, short, wall_clock
from jobs.engine import RunStatus
from jobs.json_input import JsonInputError, parse_json_object
from jobs.models import ProcessDefinition, ProcessRun, ScheduleKind, TaskRun, Trigger
from jobs.orchestrator import TriggerError, trigger_run
from jobs.schedule import ScheduleError, next_fire_times
from jobs.views import badge, schedule_summary
from notifications import summary as notifications

RUNS_PER_PAGE = 50
CHART_RUNS = 50
CHART_WIDTH = 600
CHART_HEIGHT = 80
REFRESH_EVERY = "5s"


def day_start(day: date, zone: tzinfo) -> datetime | None:
    """The instant ``day`` begins on ``zone``'s wall clock; None past the calendar's ends.

    Midnight skipped by a DST jump (America/Santiago, Asia/Beirut) reads with the offset
    before the jump (fold=0), which is the jump's instant: where that day's clock starts.
    """
    try:
        return datetime.combine(day, time.min, tzinfo=zone).astimezone(UTC)
    except OverflowError:  # 0001-01-01 east of UTC, 9999-12-31 west of it
        return None


def day_end(day: date, zone: tzinfo) -> datetime | None:
    """The instant the day after ``day`` begins on ``zone``'s wall clock (None past 9999)."""
    return day_start(day + timedelta(days=1), zone) if day < date.max else None


class HistoryFilters(forms.Form):
    """The run history's filters, as they appear in the page's URL. Dates are days on the
    process's wall clock: a run belongs to the day it was created on there."""

    status = forms.ChoiceField(
        required=False, choices=[("", "every status"), *[(s, s) for s in RunStatus]]
    )
    trigger = forms.ChoiceField(required=False, choices=[("", "every trigger"), *Trigger.choices])
    since = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        since, until = cleaned.get("since"), cleaned.get("until")
        if since and until and since > until:
            del cleaned["since"], cleaned["until"]  # shown, not applied, as any invalid filter
            raise forms.ValidationError(f"from {since} is after to {until}: no day is both")
        return cleaned

    def apply(self, runs: QuerySet[ProcessRun], zone: tzinfo) -> QuerySet[ProcessRun]:
        """``runs`` narrowed by the valid filters; an invalid one is shown, not applied."""
        self.is_valid()
        chosen = {k: v for k, v in getattr(self, "cleaned_data", {}).items() if v}
        if "status" in chosen:
            runs = runs.filter(status=chosen["status"])
        if "trigger" in chosen:
            runs = runs.filter(trigger=chosen["trigger"])
        if "since" in chosen and (start := day_start(chosen["since"], zone)):
            runs = runs.filter(created_at__gte=start)
        if "until" in chosen and (end := day_end(chosen["until"], zone)):
            runs = runs.filter(created_at__lt=end)
        return runs


def history(
    process: ProcessDefinition, query: dict[str, str], zone: tzinfo
) -> tuple[HistoryFilters, Page]:
    """One page of the process's runs, newest first, filtered as ``query`` asks (two queries:
    the count and the page)."""
    filters = HistoryFilters(query)
    runs = filters.apply(
        ProcessRun.objects.filter(definition=process)
        .select_related("triggered_by")
        .defer("snapshot", "parameters")
        .order_by("-id"),
        zone,
    )
    return filters, Paginator(runs, RUNS_PER_PAGE).get_page(query.get("page"))


def drawing(process: ProcessDefinition, run: ProcessRun | None) -> SafeString:
    """The DAG coloured by each task's latest attempt in ``run``; the definition's DAG,
    uncoloured, before the first run. Each box links to its attempt's log."""
    if run is None:
        tasks, edges = dag.graph_from_definition(process)
        return dag.render_dag(tasks, edges)
    tasks, edges = dag.graph_from_snapshot(run.snapshot)
    latest: dict[str, tuple[int, str]] = {}
    for pk, name, status in (
        TaskRun.objects.filter(run=run).order_by("id").values_list("id", "task_name", "status")
    ):
        latest[name] = (pk, status)  # later attempts (ordered by id) replace earlier ones
    statuses = {name: status for name, (_, status) in latest.items()}
    links = {name: reverse("task-run-log", args=[pk]) for name, (pk, _) in latest.items()}
    return dag.render_dag(tasks, edges, statuses, links)


def upcoming(process: ProcessDefinition, now: datetime, zone: tzinfo, count: int = 5) -> list[str]:
    """The next ``count`` fire times on the process's wall clock (or why there are none)."""
    if process.schedule_kind != ScheduleKind.CRON:
        return []
    try:
        fires = next_fire_times(process.cron, process.timezone, now, count)
    except ScheduleError as exc:
        return [str(exc)]
    return [wall_clock(fire, zone) for fire in fires]


@dataclass(frozen=True)
class Durations:
    chart: SafeString
    p50: float | None
    p95: float | None
    count: int

    def text(self, seconds: float | None) -> str:
        return short(None if seconds is None else timedelta(seconds=seconds))

    @property
    def p50_text(self) -> str:
        return self.text(self.p50)

    @property
    def p95_text(self) -> str:
        return self.text(self.p95)


def percentile(values: list[float], share: float) -> float | None:
    """The nearest-rank percentile: the smallest value at least ``share`` of them reach."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


def durations(process: ProcessDefinition) -> Durations:
    """The last finished runs' durations as bars (oldest left), with p50 and p95."""
    rows = list(
        ProcessRun.objects.filter(
            definition=process, started_at__isnull=False, finished_at__isnull=False
        )
        .order_by("-finished_at", "-id")
        .values_list("id", "status", "started_at", "finished_at")[:CHART_RUNS]
    )
    rows.reverse()
    seconds = [max((end - start).total_seconds(), 0.0) for _, _, start, end in rows]
    return Durations(
        chart=_bars(rows, seconds),
        p50=percentile(seconds, 0.5),
        p95=percentile(seconds, 0.95),
        count=len(rows),
    )


def _bars(rows: list[tuple[Any, ...]], seconds: list[float]) -> SafeString:
    if not rows:
        return SafeString("")
    longest = max(seconds) or 1.0
    step = CHART_WIDTH / CHART_RUNS
    bars = format_html_join(
        "",
        '<a href="{}"><rect class="{}" x="{}" y="{}" width="{}" height="{}">'
        "<title>run {}: {} ({})</title></rect></a>",
        (
            (
                reverse("run", args=[pk]),
                status,
                # format_html escapes before formatting: numbers go in as text
                f"{i * step:.1f}",
                f"{CHART_HEIGHT - height:.1f}",
                f"{step - 2:.1f}",
                f"{height:.1f}",
                pk,
                short(timedelta(seconds=value)),
                status,
            )
            for i, ((pk, status, _, _), value) in enumerate(zip(rows, seconds, strict=True))
            for height in [max(value / longest * CHART_HEIGHT, 1.0)]
        ),
    )
    return format_html(
        '<svg class="durations" xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" '
        'viewBox="0 0 {} {}" role="img" aria-label="durations of the last {} finished runs">'
        "{}</svg>",
        CHART_WIDTH,
        CHART_HEIGHT,
        CHART_WIDTH,
        CHART_HEIGHT,
        len(rows),
        bars,
    )


CHANGE_PERMISSION = "jobs.change_processdefinition"  # the admin's Run now, Pause, Resume


@login_required
def process_page(request: HttpRequest, name: str) -> HttpResponse:
    """The page. It polls itself (HTMX) with the marker it was drawn at and gets nothing back
    (204) while nothing it shows has changed, else its body, filters and page kept."""
    process = get_object_or_404(ProcessDefinition, name=name)
    if request.htmx and request.GET.get("marker") == markers.process(process):
        return HttpResponse(status=204)
    return _render(request, process)


@require_POST
@login_required
def run_now(request: HttpRequest, name: str) -> HttpResponse:
    """Run the process now with the parameters given (a JSON object, or nothing)."""
    process = _operable(request, name)
    text = request.POST.get("parameters", "")
    try:
        parameters = parse_json_object(text, "parameters") if text.strip() else {}
        run = trigger_run(process, Trigger.MANUAL, user=request.user, parameters=parameters)
    except (JsonInputError, TriggerError) as exc:
        return _render(request, process, parameters=text, problem=str(exc), status=400)
    outcome = record_run_now(request.user, process, run)
    if run.status == RunStatus.RUNNING:
        messages.success(request, outcome)
    else:
        messages.warning(request, outcome)
    return redirect("run", run.pk)


@require_POST
@login_required
def pause(request: HttpRequest, name: str, *, paused: bool) -> HttpResponse:
    process = _operable(request, name)
    verb = set_paused(process, paused=paused, user=request.user)
    messages.success(request, f"{verb} {process.name}")
    return redirect("process", process.name)


def _operable(request: HttpRequest, name: str) -> ProcessDefinition:
    process = get_object_or_404(ProcessDefinition, name=name)
    if not request.user.has_perm(CHANGE_PERMISSION):
        raise PermissionDenied
    return process


def _render(
    request: HttpRequest,
    process: ProcessDefinition,
    *,
    parameters: str = "",
    problem: str = "",
    status: int = 200,
) -> HttpResponse:
    # Read before what it stands for: a change made meanwhile is then shown by the next poll.
    marker = markers.process(process)
    now = timezone.now()
    zone = process_zone(process)
    # The newest run that started: a skipped or queued one has no attempts to colour by.
    latest = (
        ProcessRun.objects.filter(definition=process, started_at__isnull=False)
        .defer("parameters")
        .order_by("-id")
        .first()
    )
    asked = request.GET.dict()
    asked.pop("marker", None)
    filters, page = history(process, asked, zone)
    # The pager's links carry the filters; the refresh carries the page shown as well.
    filtered = {k: v for k, v in asked.items() if k != "page"}
    on_page = {"page": str(page.number)} if page.number > 1 else {}
    context = {
        "process": process,
        "latest": latest,
        "dag": drawing(process, latest),
        "schedule": schedule_summary(process),
        "next_fire": wall_clock(process.next_fire_at, zone) if process.next_fire_at else "—",
        "upcoming": upcoming(process, now, zone),
        "filters": filters,
        "page": page,
        "runs": [
            (run, badge(run.status), short(duration(run, now)), wall_clock(run.created_at, zone))
            for run in page
        ],
        "query": urlencode(filtered),
        "zone": getattr(zone, "key", "UTC"),
        "refresh_url": reverse("process", args=[process.name])
        + "?"
        + urlencode({**filtered, **on_page, "marker": marker}),
        "refresh_every": REFRESH_EVERY,
        "durations": durations(process),
        "notifications": notifications.summary(process),
        "may_operate": request.user.has_perm(CHANGE_PERMISSION),
        "parameters": parameters,
        "problem": problem,
    }
    template = "jobs/partials/process_body.html" if request.htmx else "jobs/process.html"
    return render(request, template, context, status=status)
