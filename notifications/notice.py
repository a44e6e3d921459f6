"""What a delivery tells, read from the database once and handed to its channel as plain
values: the run and its tasks (a failed task with the end of its log), or the alert."""

from __future__ import annotations

from dataclasses import replace

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from jobs import logs
from jobs.describe import duration
from jobs.models import ProcessRun, RunEnding, TaskRun
from notifications.base import Notice, TaskLine
from notifications.decide import AlertKind, Event
from notifications.models import Alert, Delivery

LOG_LINES = 50  # of each failed task's log, in a report
_FAILED_ATTEMPT = ("failed", "timed_out")

ALERT_TITLES = {
    AlertKind.FAILING: "is failing",
    AlertKind.MISSED_START: "did not start on time",
    AlertKind.LONG_RUNNING: "is running long",
    AlertKind.DEADLINE: "missed its deadline",
}


def absolute(path: str) -> str:
    return f"{settings.SUNDIAL_BASE_URL}{path}"


def notice_for(delivery: Delivery) -> Notice:
    process = delivery.process
    event = Event(delivery.event)
    if event is Event.TEST:
        return Notice(
            event=event,
            process=process.name,
            title=f"Test from Sundial for {process.name}",
            detail="This subscription works: Sundial can reach it.",
            url=absolute(reverse("process", args=[process.name])),
            at=timezone.now(),
            critical=process.critical,
        )
    ending = delivery.ending
    if delivery.alert is not None:
        return _alert_notice(delivery.alert, event, ending)
    assert ending is not None, f"delivery {delivery.pk} names neither an ending nor an alert"
    return _run_notice(ending, event)


def _run_notice(ending: RunEnding, event: Event) -> Notice:
    """A run's ending as it was (a run retried in place may be running again by now)."""
    run = ending.run
    name = run.definition.name
    said = "recovered: it succeeded" if event is Event.RECOVERED else ending.status
    started = run.started_at
    took = (ending.at - started).total_seconds() if started and started <= ending.at else None
    return Notice(
        event=event,
        process=name,
        title=f"{name} run {run.pk} {said}",
        detail=ending.reason,
        url=absolute(reverse("run", args=[run.pk])),
        at=ending.at,
        run_id=run.pk,
        run_status=ending.status,
        duration_s=took,
        critical=run.definition.critical,
        tasks=task_lines(run),
    )


def _alert_notice(alert: Alert, event: Event, ending: RunEnding | None) -> Notice:
    name = alert.process.name
    kind = AlertKind(alert.kind)
    resolved = event is Event.RESOLVED
    title = f"{name} {ALERT_TITLES[kind]}"
    if resolved:
        # A failing process recovers; the other alerts clear for reasons of their own
        # (it started, it was paused, the run ended), which the detail gives.
        title = f"{name} recovered" if kind is AlertKind.FAILING else f"{title}: resolved"
    detail = alert.resolution if resolved else alert.message
    if ending is not None:  # "failing": the run that failed (or recovered) is the news
        notice = _run_notice(ending, event)
    else:
        notice = Notice(
            event=event,
            process=name,
            title=title,
            detail=detail,
            url=absolute(reverse("process", args=[name])),
            at=(alert.resolved_at if resolved else alert.opened_at) or timezone.now(),
            critical=alert.process.critical,
        )
    return replace(notice, title=title, detail=detail, dedup_key=alert.dedup_key, alert=kind)


def task_lines(run: ProcessRun) -> tuple[TaskLine, ...]:
    """Each task's latest attempt, in the order the run made them, with the end of the log
    of those that failed."""
    latest: dict[str, TaskRun] = {}
    counts: dict[str, int] = {}
    for attempt in run.task_runs.order_by("id"):
        latest[attempt.task_name] = attempt
        counts[attempt.task_name] = counts.get(attempt.task_name, 0) + 1
    lines = []
    for name, attempt in latest.items():
        took = duration(attempt)
        failed = attempt.status in _FAILED_ATTEMPT
        lines.append(
            TaskLine(
                name=name,
                status=attempt.status,
                attempts=counts[name],
                duration_s=took.total_seconds() if took is not None else None,
                reason=attempt.reason,
                log_url=absolute(reverse("task-run-log", args=[attempt.pk]))
                if attempt.log_ref
                else "",
                log_tail=_log_tail(attempt) if failed else (),
            )
        )
    return tuple(lines)


def _log_tail(attempt: TaskRun) -> tuple[str, ...]:
    page = logs.read_tail(attempt)
    if page.problem:
        return (f"({page.problem})",)
    return tuple(line.text for line in page.lines[-LOG_LINES:])
