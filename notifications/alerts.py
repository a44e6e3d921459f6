"""The shell around ``conditions.py``: read every process's facts, open the alerts that now
hold and resolve those that cleared, telling each through the outbox once.

``scan`` reads in a fixed number of queries however many processes there are (the open
alerts, the processes, their queued, running and recently successful runs, the running
attempts and their tasks' recently successful ones), then writes only what changed. Two
scans at once send nothing twice:

- an alert is created under its unique (process, kind, key), with its deliveries, in one
  transaction; the scan that loses the insert gets an IntegrityError and leaves it, because
  the winner told it (and an occurrence resolved before is not opened again);
- an alert is resolved with a conditional UPDATE (``outbox.resolve``); only the scan whose
  UPDATE closed it records the "resolved" deliveries, in the same transaction.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import (
    DateTimeField,
    Exists,
    ExpressionWrapper,
    F,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Window,
)
from django.db.models.functions import Now, RowNumber
from django.utils import timezone

from jobs.engine import AttemptStatus, RunStatus
from jobs.models import ProcessDefinition, ProcessRun, ScheduleKind, TaskRun, Trigger
from notifications import conditions, outbox
from notifications.decide import AlertKind
from notifications.models import Alert, ScanClock

log = logging.getLogger(__name__)

SCAN_CLOCK = 1  # the ScanClock row
# A deadline asks "a success since that day's midnight?": successes older than the oldest
# day it asks about (yesterday, or an open alert's day) are not read.
_SUCCESS_LOOKBACK = timedelta(days=3)


def scan_if_due() -> int | None:
    """Scan if no one has in the last SUNDIAL_ALERT_SCAN_EVERY_S; how many alerts changed,
    or None when another caller's scan is recent (its claim won: a decision, not an error).
    The claim reads the database's clock, not this host's: a host whose clock runs ahead
    would otherwise claim the next periods for itself (and scan none of them)."""
    every = timedelta(seconds=settings.SUNDIAL_ALERT_SCAN_EVERY_S)
    later = ExpressionWrapper(Now() + every, output_field=DateTimeField())
    if not ScanClock.objects.filter(pk=SCAN_CLOCK, due_at__lte=Now()).update(due_at=later):
        if ScanClock.objects.filter(pk=SCAN_CLOCK).exists():
            return None
        # The first scan of an installation: the row the claims are made on does not exist
        # yet. Creating it is itself the claim (its key is unique: one creator wins).
        try:
            with transaction.atomic():
                ScanClock.objects.create(pk=SCAN_CLOCK, due_at=timezone.now())
                ScanClock.objects.filter(pk=SCAN_CLOCK).update(due_at=later)
        except IntegrityError:
            return None
    return scan()


def scan(now: datetime | None = None) -> int:
    """Open the alerts that hold and resolve those that cleared; how many changed."""
    now = now or timezone.now()
    # Open alerts first, facts after: an alert is resolved only on facts read after it was
    # seen open.
    open_alerts = list(
        Alert.objects.filter(kind__in=conditions.KINDS, resolved_at__isnull=True).order_by("id")
    )
    processes = _processes()
    facts = _facts(processes, open_alerts, now)
    by_process: dict[int, dict[tuple[str, str], Alert]] = defaultdict(dict)
    for alert in open_alerts:
        by_process[alert.process_id][(alert.kind, alert.key)] = alert
    changed = 0
    for process in processes:
        found = by_process[process.pk]
        try:
            decision = conditions.review(facts[process.pk], found.keys(), now)
        except (KeyError, ValueError) as exc:  # a zone no longer known, a bad stored key
            log.error("process %s: alert conditions not checked: %r", process.name, exc)
            continue
        for condition in decision.opened:
            changed += _open(process, condition)
        for cleared in decision.cleared:
            alert = found[(cleared.kind, cleared.key)]
            alert.process = process
            changed += _resolve(alert, cleared.why)
    return changed


def _processes() -> list[ProcessDefinition]:
    """The processes any condition may hold for, and those with an alert open."""
    has_open = Alert.objects.filter(
        process=OuterRef("pk"), kind__in=conditions.KINDS, resolved_at__isnull=True
    )
    return list(
        ProcessDefinition.objects.filter(
            ~Q(schedule_kind=ScheduleKind.NONE)
            | Q(deadline__isnull=False)
            | Q(long_running_after_s__isnull=False)
            | Q(long_running_factor__isnull=False)
            | Exists(has_open)
        ).order_by("id")
    )


def _facts(
    processes: list[ProcessDefinition], open_alerts: list[Alert], now: datetime
) -> dict[int, conditions.Facts]:
    """Each process's facts, read in at most six queries whatever their number (runs and
    attempts are read by status, not by a list of processes: those queued or running are
    few)."""
    queued: dict[int, list[datetime]] = defaultdict(list)
    for definition_id, scheduled_for in ProcessRun.objects.filter(
        trigger=Trigger.SCHEDULE,
        status=RunStatus.QUEUED,
        started_at__isnull=True,
        scheduled_for__lt=now,
    ).values_list("definition_id", "scheduled_for"):
        queued[definition_id].append(scheduled_for)
    running: dict[int, list[conditions.RunningRun]] = defaultdict(list)
    for run_id, definition_id, started_at in ProcessRun.objects.filter(
        status=RunStatus.RUNNING, started_at__isnull=False
    ).values_list("id", "definition_id", "started_at"):
        running[definition_id].append(conditions.RunningRun(run_id, started_at))
    factored = [p.pk for p in processes if p.long_running_factor is not None and running[p.pk]]
    recent = _recent_successes(factored)
    attempts = _running_attempts()
    task_recent = _recent_task_successes(attempts)
    deadlined = any(process.deadline is not None for process in processes)
    last_success = _last_successes(open_alerts, now) if deadlined else {}
    return {
        process.pk: conditions.Facts(
            name=process.name,
            zone=process.timezone,
            scheduled=process.schedule_kind != ScheduleKind.NONE,
            paused=process.paused,
            archived=process.archived,
            created_at=process.created_at,
            next_fire_at=process.next_fire_at,
            grace_s=process.missed_start_grace_s,
            queued_for=tuple(queued[process.pk]),
            running=tuple(running[process.pk]),
            long_running_after_s=process.long_running_after_s,
            long_running_factor=process.long_running_factor,
            recent_successes_s=tuple(recent[process.pk]),
            running_attempts=tuple(attempts[process.pk]),
            task_successes_s={
                name: tuple(durations) for name, durations in task_recent[process.pk].items()
            },
            deadline=process.deadline,
            last_success_at=last_success.get(process.pk),
        )
        for process in processes
    }


def _recent_successes(ids: list[int]) -> dict[int, list[float]]:
    """The durations (s) of each process's last 30 successful runs, newest first: one query."""
    found: dict[int, list[float]] = defaultdict(list)
    if not ids:
        return found
    succeeded = ProcessRun.objects.filter(definition_id__in=ids, status=RunStatus.SUCCEEDED)
    for (definition_id,), took in _newest_durations(succeeded, "definition_id"):
        found[definition_id].append(took)
    return found


def _running_attempts() -> dict[int, list[conditions.RunningAttempt]]:
    """The running attempts of each process with a factor (the only threshold a task has),
    by process: one query."""
    found: dict[int, list[conditions.RunningAttempt]] = defaultdict(list)
    rows = (
        TaskRun.objects.filter(
            status=AttemptStatus.RUNNING,
            started_at__isnull=False,
            run__definition__long_running_factor__isnull=False,
        )
        .order_by("id")
        .values_list("run__definition_id", "id", "run_id", "task_name", "number", "started_at")
    )
    for definition_id, attempt_id, run_id, task_name, number, started_at in rows:
        found[definition_id].append(
            conditions.RunningAttempt(attempt_id, run_id, task_name, number, started_at)
        )
    return found


def _recent_task_successes(
    running: dict[int, list[conditions.RunningAttempt]],
) -> dict[int, dict[str, list[float]]]:
    """By process and task name, the durations (s) of the task's last 30 successful attempts,
    newest first, for the tasks with a running attempt: one query."""
    found: dict[int, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    if not running:
        return found
    # Every running task's name: a name running in one process and not in another reads a
    # few rows more, and keeps the query one whatever the pairs.
    names = sorted({a.task_name for attempts in running.values() for a in attempts})
    succeeded = TaskRun.objects.filter(
        run__definition_id__in=sorted(running),
        task_name__in=names,
        status=AttemptStatus.SUCCEEDED,
    )
    for (definition_id, task_name), took in _newest_durations(
        succeeded, "run__definition_id", "task_name"
    ):
        found[definition_id][task_name].append(took)
    return found


def _newest_durations(finished: QuerySet[Any], *by: str) -> Iterator[tuple[tuple[Any, ...], float]]:
    """The group (the values of ``by``) and duration (s) of the newest 30 rows of ``finished``
    in each group, newest first, in one query (a row number per group, in the database)."""
    rows = (
        finished.filter(started_at__isnull=False, finished_at__isnull=False)
        .annotate(
            newest=Window(
                RowNumber(),
                partition_by=[F(name) for name in by],
                order_by=[F("finished_at").desc(), F("id").desc()],
            )
        )
        .filter(newest__lte=conditions.RECENT_SUCCESSES)
        .order_by(*by, "newest")
        .values_list(*by, "started_at", "finished_at")
    )
    for *group, started_at, finished_at in rows:
        yield tuple(group), (finished_at - started_at).total_seconds()


def _last_successes(open_alerts: list[Alert], now: datetime) -> dict[int, datetime]:
    """The latest success of each process with a deadline, since a few days before any day
    in question (the index on finished_at keeps this short however long the history)."""
    opened = [alert.opened_at for alert in open_alerts if alert.kind == AlertKind.DEADLINE]
    oldest = min([now, *opened])
    rows = (
        ProcessRun.objects.filter(
            definition__deadline__isnull=False,
            status=RunStatus.SUCCEEDED,
            finished_at__gte=oldest - _SUCCESS_LOOKBACK,
        )
        .values("definition_id")
        .annotate(last=Max("finished_at"))
        .values_list("definition_id", "last")
    )
    return dict(rows)


def _open(process: ProcessDefinition, condition: conditions.Condition) -> int:
    """Open one occurrence and record who is told of it; 0 if another scan opened it (or
    it was opened and resolved before: an occurrence alerts once)."""
    try:
        with transaction.atomic():
            alert = Alert.objects.create(
                process=process, kind=condition.kind, key=condition.key, message=condition.message
            )
            outbox.tell_alert(alert)
    except IntegrityError:  # the unique (process, kind, key): whoever created it told it
        log.debug("alert %s %s of %s exists already", condition.kind, condition.key, process)
        return 0
    log.info("alert opened: %s", condition.message)
    return 1


def _resolve(alert: Alert, why: str) -> int:
    """Resolve one open alert and record who is told; 0 if another scan resolved it."""
    with transaction.atomic():
        if not outbox.resolve(alert, why):
            log.debug("alert %s was resolved by another scan", alert)
            return 0
        outbox.tell_resolved(alert)
    log.info("alert resolved: %s: %s", alert, why)
    return 1
