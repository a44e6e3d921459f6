"""Pages, and the display helpers and querysets they share with the admin."""

from __future__ import annotations

from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from jobs import dashboard, markers
from jobs.describe import process_zone, wall_clock
from jobs.models import ProcessDefinition, ProcessRun, ScheduleKind


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


def next_fire_text(process: ProcessDefinition) -> str:
    """When the process next fires, on its wall clock (UTC on hover), or a dash."""
    if process.next_fire_at is None:
        return "—"
    return wall_clock(process.next_fire_at, process_zone(process))


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """The dashboard. It polls itself for its board (HTMX) with the marker it was drawn at,
    and gets nothing back (204) while nothing it shows has changed."""
    filters = dashboard.Filters.from_query(request.GET.dict())
    marker = markers.dashboard()
    if request.htmx and request.GET.get("since") == marker:
        return HttpResponse(status=204)
    now = timezone.now()
    board = dashboard.board(filters, now)
    asked = {k: v for k, v in request.GET.items() if k in ("q", "owner", "status") and v}

    def page_url(page: int, **more: str) -> str:
        on_page = {"page": str(page)} if page > 1 else {}
        return f"{request.path}?{urlencode({**asked, **on_page, **more})}"

    context = {
        "cards": [(card, next_fire_text(card.process)) for card in board.cards],
        "board": board,
        "counts": board.counts,
        "filters": filters,
        "previous_url": page_url(board.page - 1) if board.page > 1 else "",
        "next_url": page_url(board.page + 1) if board.page < board.pages else "",
        "owners": dashboard.owners(),
        "status_choices": dashboard.STATUS_CHOICES,
        "refresh_url": page_url(board.page, since=marker),
        "spark": {"width": dashboard.SPARK_WIDTH, "height": dashboard.SPARK_HEIGHT},
    }
    template = "jobs/partials/board.html" if request.htmx else "jobs/dashboard.html"
    return render(request, template, context)
