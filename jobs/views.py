"""Pages, and the display helpers and querysets they share with the admin."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, render
from django.utils.html import format_html
from django.utils.safestring import SafeString

from jobs.logs import read_log
from jobs.models import ProcessDefinition, ProcessRun, ScheduleKind, TaskRun
from jobs.schedule import ScheduleError, parse_timezone


def with_latest_run(processes: QuerySet[ProcessDefinition]) -> QuerySet[ProcessDefinition]:
    """Each process gets ``latest_runs``: a list holding its newest run, if any.

    A sliced prefetch is one extra query for the whole page (a window function per
    process), however many processes are listed.
    """
    newest = ProcessRun.objects.order_by("-id")[:1]
    return processes.prefetch_related(Prefetch("runs", queryset=newest, to_attr="latest_runs"))


def latest_run(process: ProcessDefinition) -> ProcessRun | None:
    """The newest run of a process fetched through ``with_latest_run``."""
    return process.latest_runs[0] if process.latest_runs else None


def badge(status: str) -> SafeString:
    """A run or attempt status as a coloured label (colours in static/sundial.css)."""
    return format_html('<span class="badge badge-{}">{}</span>', status, status)


def schedule_summary(process: ProcessDefinition) -> str:
    """One line saying when a process runs, e.g. "0 9 * * MON-FRI (Europe/Berlin)"."""
    if process.schedule_kind == ScheduleKind.CRON:
        return f"{process.cron} ({process.timezone})"
    if process.schedule_kind == ScheduleKind.CONTINUOUS:
        return f"continuous, {process.min_gap_seconds} s between runs"
    return "manual / API only"


def local_and_utc(when: datetime, zone_name: str) -> str:
    """The process's wall clock, then UTC: "2026-11-24 09:00 CET (08:00 UTC)"."""
    utc = when.astimezone(UTC)
    try:
        local = when.astimezone(parse_timezone(zone_name))
    except ScheduleError:  # a row written outside the admin: still show the instant
        return f"{utc:%Y-%m-%d %H:%M} UTC"
    if local.tzname() == "UTC":
        return f"{utc:%Y-%m-%d %H:%M} UTC"
    # The date is repeated for UTC only when it differs from the local one.
    utc_text = f"{utc:%H:%M}" if utc.date() == local.date() else f"{utc:%Y-%m-%d %H:%M}"
    return f"{local:%Y-%m-%d %H:%M %Z} ({utc_text} UTC)"


def next_fire_text(process: ProcessDefinition) -> str:
    if process.next_fire_at is None:
        return "—"
    return local_and_utc(process.next_fire_at, process.timezone)


@dataclass(frozen=True)
class ProcessRow:
    """One line of the home page."""

    process: ProcessDefinition
    latest_run: ProcessRun | None

    @property
    def schedule(self) -> str:
        return schedule_summary(self.process)

    @property
    def next_fire(self) -> str:
        return next_fire_text(self.process)

    @property
    def status(self) -> str:
        return badge(self.latest_run.status) if self.latest_run else ""


def home_rows() -> list[ProcessRow]:
    """Every process that is not archived, with its latest run, in two queries."""
    processes = with_latest_run(ProcessDefinition.objects.filter(archived=False))
    return [ProcessRow(process, latest_run(process)) for process in processes]


@login_required
def home(request: HttpRequest) -> HttpResponse:
    # The page polls itself for just its table (HTMX); the full page renders the same partial.
    template = "jobs/partials/process_table.html" if request.htmx else "jobs/home.html"
    return render(request, template, {"rows": home_rows()})


@login_required
def task_log(request: HttpRequest, task_run_id: int) -> HttpResponse:
    task_run = get_object_or_404(TaskRun.objects.select_related("run"), pk=task_run_id)
    return render(request, "jobs/task_log.html", {"task_run": task_run, "log": read_log(task_run)})
