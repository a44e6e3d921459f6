"""A notice as an email: the subject, and the plain-text and HTML parts rendered from one
context (templates/notifications/email.txt and email.html), so the two never disagree."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.template.loader import render_to_string
from django.utils import timezone

from jobs.describe import short
from notifications.base import Notice, TaskLine
from notifications.decide import AlertKind, Event

SUBJECT_PREFIX = "[Sundial] "

RED, AMBER, GREEN, BLUE = "#b42318", "#b54708", "#067647", "#175cd3"
GREY = "#475467"

# What the band at the top says, and its colour.
EVENTS = {
    Event.FAILED: ("Failed", RED),
    Event.KILLED: ("Killed", RED),
    Event.SUCCEEDED: ("Succeeded", GREEN),
    Event.RECOVERED: ("Recovered", GREEN),
    Event.ALERT: ("Alert", AMBER),
    Event.RESOLVED: ("Resolved", GREEN),
    Event.TEST: ("Test", BLUE),
}
ALERTS = {
    AlertKind.FAILING: "failing",
    AlertKind.MISSED_START: "missed start",
    AlertKind.LONG_RUNNING: "running long",
    AlertKind.DEADLINE: "deadline missed",
}
_STATUS_COLOURS = {"failed": RED, "timed_out": RED, "killed": RED, "succeeded": GREEN}


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class _Task:
    """A task line as the templates show it."""

    name: str
    status: str
    colour: str
    attempts: int
    took: str
    reason: str
    log_url: str
    log_tail: tuple[str, ...]


def render(notice: Notice) -> Rendered:
    """The subject and both parts of the message that tells ``notice``."""
    context = _context(notice)
    return Rendered(
        subject=context["subject"],
        text=render_to_string("notifications/email.txt", context),
        html=render_to_string("notifications/email.html", context),
    )


def _context(notice: Notice) -> dict[str, Any]:
    badge, colour = EVENTS.get(notice.event, (str(notice.event).title(), GREY))
    if notice.alert is AlertKind.FAILING and notice.event is Event.ALERT:
        colour = RED
    tasks = [_task(line) for line in notice.tasks]
    return {
        # One line: a header cannot hold a newline (Django refuses it, rightly).
        "subject": SUBJECT_PREFIX + " ".join(notice.title.split()),
        "notice": notice,
        "badge": badge,
        "colour": colour,
        "facts": _facts(notice),
        "link_label": f"Open run {notice.run_id}"
        if notice.run_id is not None
        else f"Open {notice.process}",
        "tasks": tasks,
        "failed": [task for task in tasks if task.log_tail],
    }


def _facts(notice: Notice) -> list[tuple[str, str]]:
    facts = [("Process", notice.process)]
    if notice.alert is not None:
        facts.append(("Alert", ALERTS.get(notice.alert, str(notice.alert))))
    if notice.run_id is not None:
        facts.append(("Run", f"#{notice.run_id}"))
        facts.append(("Status", notice.run_status.replace("_", " ")))
        facts.append(("Duration", _took(notice.duration_s)))
    when = timezone.localtime(notice.at).strftime("%Y-%m-%d %H:%M:%S %Z")
    facts.append(("Finished" if notice.run_id is not None else "At", when))
    return facts


def _task(line: TaskLine) -> _Task:
    return _Task(
        name=line.name,
        status=line.status.replace("_", " "),
        colour=_STATUS_COLOURS.get(line.status, GREY),
        attempts=line.attempts,
        took=_took(line.duration_s),
        reason=line.reason,
        log_url=line.log_url,
        log_tail=line.log_tail,
    )


def _took(seconds: float | None) -> str:
    return short(timedelta(seconds=seconds) if seconds is not None else None)
