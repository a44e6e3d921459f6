"""What the run page says of an attempt beyond its status: what it asked for, where it ran,
why a remote job still waits (and for how long), and what it probably cost."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Protocol

from django.conf import settings
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince

from jobs.costs import Estimate, attempt_cost, total
from jobs.durations import short as short  # its callers import it from here too
from jobs.models import ProcessDefinition, TaskRun
from jobs.schedule import ScheduleError, parse_timezone


def resources(attempt: TaskRun) -> str:
    """ "2 vCPU · 8192 MiB · FARGATE, on Fargate; out of memory" — what the job asked for as
    its executor reported it, where it ran, and the engine's memory raise or an OOM kill."""
    asked = attempt.resources or {}
    parts = []
    if "vcpu" in asked:
        parts.append(f"{asked['vcpu']:g} vCPU")
    memory = attempt.memory_mib if attempt.memory_mib is not None else asked.get("memory_mib")
    if memory is not None:
        raised = " (raised)" if attempt.memory_mib is not None else ""
        parts.append(f"{memory} MiB{raised}")
    if asked.get("gpu"):
        parts.append(f"{asked['gpu']} GPU")
    if asked.get("disk_gib"):
        parts.append(f"{asked['disk_gib']} GiB disk")
    if "platform" in asked:
        parts.append(str(asked["platform"]))
    text = " · ".join(parts)
    # Where it ran, when that says more than the platform it asked for ("EC2, on EC2").
    if attempt.placement and attempt.placement.lower() != str(asked.get("platform", "")).lower():
        text = f"{text}, on {attempt.placement}" if text else f"on {attempt.placement}"
    if attempt.out_of_memory:
        text = f"{text}; out of memory" if text else "out of memory"
    return text


def waiting(attempt: TaskRun, now: datetime) -> str | None:
    """ "waiting for capacity (RUNNABLE) for 4 minutes", for a remote job its executor says
    is waiting; None when it says nothing."""
    if not attempt.executor_state or attempt.executor_state_since is None:
        return None
    return f"{attempt.executor_state} for {timesince(attempt.executor_state_since, now)}"


def cost(attempt: TaskRun) -> float | None:
    return attempt_cost(
        attempt.resources or {}, attempt.started_at, attempt.finished_at, settings.SUNDIAL_PRICES
    )


def run_cost(attempts: Iterable[TaskRun]) -> Estimate:
    return total(cost(attempt) for attempt in attempts)


def usd(amount: float | None) -> str:
    """ "$0.0123"; small amounts keep their digits, so a short job is not "$0.00"."""
    if amount is None:
        return ""
    if 0 < amount < 0.0001:
        return "< $0.0001"
    return f"${amount:.4f}" if amount < 1 else f"${amount:,.2f}"


class Timed(Protocol):
    """A run, an attempt, or a run's row on the dashboard: anything that starts and ends."""

    @property
    def started_at(self) -> datetime | None: ...
    @property
    def finished_at(self) -> datetime | None: ...


def duration(timed: Timed, now: datetime | None = None) -> timedelta | None:
    """How long it took, or (with ``now``) has taken so far; None if it never started."""
    end = timed.finished_at or now
    if timed.started_at is None or end is None:
        return None
    return end - timed.started_at


def process_zone(process: ProcessDefinition) -> tzinfo:
    """The process's IANA zone; UTC for a name the admin would refuse (a row written
    elsewhere), so the pages still show every instant."""
    try:
        return parse_timezone(process.timezone)
    except ScheduleError:
        return UTC


def wall_clock(when: datetime, zone: tzinfo) -> SafeString:
    """``when`` on a process's wall clock in the site's one date format, UTC on hover:
    ``<time datetime="…" title="2026-11-24 17:00:00 UTC">2026-11-24 09:00:00 PST</time>``."""
    utc = when.astimezone(UTC)
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        utc.isoformat(),
        date_format(utc, "DATETIME_FORMAT"),
        date_format(when.astimezone(zone), "DATETIME_FORMAT"),
    )
