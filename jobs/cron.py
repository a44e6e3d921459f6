"""The shell around ``jobs/schedule.py``: claims due definitions and starts their runs.

Beat sends ``schedule_tick`` every second. A definition is claimed with a conditional
UPDATE on ``(id, next_fire_at)``, and runs are created under the unique
``(definition, scheduled_for)`` key, so duplicate ticks or two beats start nothing twice.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from jobs.engine import RunStatus
from jobs.models import ProcessDefinition, ScheduleKind, Trigger
from jobs.orchestrator import AlreadyScheduled, TriggerError, continuous_next_fire, trigger_run
from jobs.schedule import CatchUp, ScheduleError, due_fires, next_fire_after

log = logging.getLogger(__name__)


def schedule_tick(now: datetime | None = None) -> int:
    """Start runs for every definition whose fire time has come; returns how many started."""
    now = now or timezone.now()
    due = ProcessDefinition.objects.filter(
        paused=False, archived=False, next_fire_at__lte=now
    ).exclude(schedule_kind=ScheduleKind.NONE)
    return sum(_fire(definition, now) for definition in due)


def _fire(definition: ProcessDefinition, now: datetime) -> int:
    try:
        run_for, next_at = _due(definition, now)
    except ScheduleError as exc:
        log.error("process %s has a bad schedule, not running it: %s", definition.name, exc)
        run_for, next_at = (), None
    with transaction.atomic():
        claimed = ProcessDefinition.objects.filter(
            pk=definition.pk, next_fire_at=definition.next_fire_at
        ).update(next_fire_at=next_at)
        if not claimed:
            return 0  # another tick or beat took this fire time
        started = 0
        for scheduled_for in run_for:
            try:
                run = trigger_run(definition, Trigger.SCHEDULE, scheduled_for=scheduled_for)
            except AlreadyScheduled:
                continue
            except TriggerError as exc:
                log.error("process %s not started at %s: %s", definition.name, scheduled_for, exc)
                continue
            started += run.status != RunStatus.SKIPPED
    return started


def _due(
    definition: ProcessDefinition, now: datetime
) -> tuple[tuple[datetime, ...], datetime | None]:
    assert definition.next_fire_at is not None
    if definition.schedule_kind == ScheduleKind.CONTINUOUS:
        # One run now; the next fire time is set once it has finished (settle_definition).
        return (definition.next_fire_at,), None
    fires = due_fires(
        definition.cron,
        definition.timezone,
        definition.next_fire_at,
        now,
        CatchUp(definition.catch_up),
        timedelta(seconds=definition.catch_up_window_seconds),
        timedelta(seconds=settings.SUNDIAL_MISFIRE_GRACE_S),
    )
    if fires.missed:
        log.warning(
            "process %s missed %d fire time(s) (catch-up: %s)",
            definition.name,
            fires.missed,
            definition.catch_up,
        )
    return fires.run_for, fires.next_fire_at


def first_fire_at(definition: ProcessDefinition, now: datetime) -> datetime | None:
    """The next fire time from ``now`` for a saved definition just created, edited or resumed."""
    if definition.paused or definition.archived:
        return None
    if definition.schedule_kind == ScheduleKind.CRON:
        return next_fire_after(definition.cron, definition.timezone, now)
    if definition.schedule_kind == ScheduleKind.CONTINUOUS:
        return continuous_next_fire(definition, now)
    return None


def reschedule(definition: ProcessDefinition, now: datetime | None = None) -> None:
    """Store the definition's next fire time after an edit, pause or resume."""
    definition.next_fire_at = first_fire_at(definition, now or timezone.now())
    ProcessDefinition.objects.filter(pk=definition.pk).update(next_fire_at=definition.next_fire_at)
