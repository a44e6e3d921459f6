"""Has anything a live page shows changed? Each page polls with the marker it was drawn at
and gets nothing back (204) while the marker is the same, so an idle page costs a couple
of indexed queries and no rendering.

Events alone do not tell: an attempt moving from submitted to running writes none, yet
recolours the DAG. So the process and run pages also sum the ids of their unfinished
attempts in each status: an attempt moving on takes its id from one sum to another, and a
finished one changes no more.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Max, Q, QuerySet, Subquery, Sum, Window

from jobs.engine import ACTIVE_ATTEMPT, PENDING_ATTEMPT, RunStatus
from jobs.models import ProcessDefinition, ProcessRun, TaskEvent, TaskRun
from notifications.models import Alert, Subscription

_UNFINISHED_RUN = (RunStatus.QUEUED, RunStatus.RUNNING)
# Sorted: a set's order changes with each interpreter's hash seed, and every web worker
# must write the same marker.
_UNFINISHED_ATTEMPT = tuple(sorted(PENDING_ATTEMPT | ACTIVE_ATTEMPT))


def dashboard() -> str:
    """A run's event (triggered, an attempt's end, finished) or a process edited."""
    latest_event = TaskEvent.objects.aggregate(latest=Max("id"))["latest"] or 0
    edited = ProcessDefinition.objects.aggregate(
        latest=Max("updated_at"), fires=Max("next_fire_at", filter=Q(archived=False))
    )
    return _joined(latest_event, edited["latest"], edited["fires"])


def process(definition: ProcessDefinition) -> str:
    """The process (as just read) edited or rescheduled, a run created, started or ended,
    or an attempt of it moving on: one query of indexed scalar subqueries, whatever its
    history (its events would say as much, but they are every run's, read in full)."""
    runs = ProcessRun.objects.filter(definition=definition)
    attempts = TaskRun.objects.filter(run__definition=definition)
    alerts = Alert.objects.filter(process=definition)
    refusing = Subscription.objects.filter(process=definition, broken_at__isnull=False)
    parts = {
        "newest": Subquery(runs.order_by("-id").values("id")[:1]),
        **{f"run_{s}": _sum_of_ids(runs, s) for s in _UNFINISHED_RUN},
        **{f"attempt_{s}": _sum_of_ids(attempts, s) for s in _UNFINISHED_ATTEMPT},
        # What its notifications section shows: an alert opened or resolved, a channel
        # refusing or working again.
        "newest_alert": Subquery(alerts.order_by("-id").values("id")[:1]),
        "open_alerts": _sum_of_ids(alerts.filter(resolved_at__isnull=True), ""),
        "refusing": _sum_of_ids(refusing, ""),
    }
    sums = (
        ProcessDefinition.objects.filter(pk=definition.pk)
        .annotate(**parts)
        .values_list(*parts.keys())
        .get()
    )
    fires = None if definition.archived else definition.next_fire_at
    return _joined(definition.updated_at, fires, *sums)


def _sum_of_ids(rows: QuerySet[Any], status: str) -> Subquery:
    """The sum of the ids of ``rows`` (those in ``status``, if given), as a scalar subquery
    (None: no row)."""
    if status:
        rows = rows.filter(status=status)
    # A window over every row is the plain total, on each row: take the first.
    return Subquery(rows.order_by().annotate(total=Window(Sum("id"))).values("total")[:1])


def run(shown: ProcessRun) -> str:
    """The run (as just read) changing state or asked to stop, a new event, or one of its
    attempts moving on."""
    latest_event = shown.events.aggregate(latest=Max("id"))["latest"] or 0
    attempts = _attempt_sums(shown.task_runs.all())
    stopping = int(shown.kill_requested_at is not None)
    return f"{shown.status}-{stopping}-" + _joined(latest_event, *attempts)


def _attempt_sums(attempts: QuerySet[TaskRun]) -> list[int | None]:
    sums = attempts.filter(status__in=_UNFINISHED_ATTEMPT).aggregate(
        **{s: Sum("id", filter=Q(status=s)) for s in _UNFINISHED_ATTEMPT}
    )
    return list(sums.values())


def _joined(*parts: int | datetime | None) -> str:
    return "-".join(
        f"{p.timestamp():.6f}" if isinstance(p, datetime) else str(p or 0) for p in parts
    )
