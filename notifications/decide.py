"""Who hears about what: pure decisions over plain values, no ORM, no I/O (like the engine).

Two streams of news reach the channels:
- **run reports**: a run finished. Each subscription's policy says whether its channel is
  told (email, webhook and Slack subscribe to these).
- **alerts**: a condition about a process opened or cleared (failing, a missed start, a run
  running long, a deadline passed). Incident channels (PagerDuty) hear only these: an
  opened alert triggers an incident under one stable key, a cleared one resolves it. Report
  channels hear of the alerts a run report does not already tell (all but "failing").

A killed run is a person's decision, not a fault: it is reported (it ends red) but it
neither pages nor resolves an incident.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from jobs.engine import RunStatus


class Policy(StrEnum):
    """When a subscription's channel is told about a finished run."""

    ALWAYS = "always"
    ON_FAILURE = "on_failure"  # every failed run
    ON_STATE_CHANGE = "on_state_change"  # green to red, red to green
    ON_STATE_CHANGE_AND_FAILURES = "on_state_change_and_failures"
    NEVER = "never"


POLICY_LABELS = {
    Policy.ALWAYS: "every finished run",
    Policy.ON_FAILURE: "every failed run",
    Policy.ON_STATE_CHANGE: "when it turns red or green again",
    Policy.ON_STATE_CHANGE_AND_FAILURES: "every failure, and when it turns green again",
    Policy.NEVER: "never (paused)",
}


class Event(StrEnum):
    """What one delivery tells."""

    SUCCEEDED = "succeeded"
    RECOVERED = "recovered"  # succeeded after a failed or killed run
    FAILED = "failed"
    KILLED = "killed"
    ALERT = "alert"  # an alert opened (or, for "failing", another failed run while open)
    RESOLVED = "resolved"  # an alert cleared
    TEST = "test"  # "send a test" from the admin


class AlertKind(StrEnum):
    FAILING = "failing"  # the latest runs failed (N in a row): what pages the on-call
    MISSED_START = "missed_start"  # a scheduled run did not start within its grace
    LONG_RUNNING = "long_running"  # a run or a task goes on longer than its threshold
    DEADLINE = "deadline"  # no success by the process's time of day


class AlertChange(StrEnum):
    OPEN = "open"
    UPDATE = "update"  # the open "failing" alert gets another failed run
    RESOLVE = "resolve"


_BAD = frozenset({RunStatus.FAILED, RunStatus.KILLED})


@dataclass(frozen=True)
class Subscriber:
    """A subscription as the decisions need it."""

    key: str  # names it in the result (the shell's subscription id, or "default")
    policy: Policy
    incidents: bool  # an incident channel (PagerDuty): alerts only, for critical processes


@dataclass(frozen=True)
class RunDecision:
    tell: tuple[tuple[str, Event], ...]  # (subscriber key, event), in subscriber order
    failing: AlertChange | None  # what becomes of the process's "failing" alert


def run_event(status: RunStatus, previous: RunStatus | None) -> Event | None:
    """What a finished run is news of, given the process's finished run before it (None: its
    first). A run that never ran (skipped) or is not over is news of nothing."""
    match status:
        case RunStatus.SUCCEEDED:
            return Event.RECOVERED if previous in _BAD else Event.SUCCEEDED
        case RunStatus.FAILED:
            return Event.FAILED
        case RunStatus.KILLED:
            return Event.KILLED
    return None


def tells(policy: Policy, event: Event, previous: RunStatus | None) -> bool:
    """Whether a subscription with ``policy`` hears of a run report. A process with no
    finished run before counts as green: its first failure is a change, its first success
    is not."""
    failure = event is Event.FAILED
    changed = event is Event.RECOVERED or (
        event in (Event.FAILED, Event.KILLED) and previous not in _BAD
    )
    match policy:
        case Policy.ALWAYS:
            return True
        case Policy.ON_FAILURE:
            return failure
        case Policy.ON_STATE_CHANGE:
            return changed
        case Policy.ON_STATE_CHANGE_AND_FAILURES:
            return failure or changed
    return False


def failing_change(
    status: RunStatus, failures_in_a_row: int, page_after: int, open_now: bool
) -> AlertChange | None:
    """What a finished run does to the process's "failing" alert: a failure opens it once
    ``page_after`` runs in a row have failed (``failures_in_a_row`` counts this one) and
    updates it while open; a success resolves it; a kill or a skip leaves it as it is."""
    if status is RunStatus.FAILED and failures_in_a_row >= page_after:
        return AlertChange.UPDATE if open_now else AlertChange.OPEN
    if status is RunStatus.SUCCEEDED and open_now:
        return AlertChange.RESOLVE
    return None


def decide_run(
    subscribers: list[Subscriber],
    status: RunStatus,
    previous: RunStatus | None,
    *,
    failures_in_a_row: int,
    page_after: int,
    failing_open: bool,
    critical: bool,
    latest: bool = True,
) -> RunDecision:
    """Everything one finished run causes: the run reports each subscriber's policy lets
    through, the change to the "failing" alert, and the incident channels' share of it
    (its opening or a new failure; its resolve goes where its triggers went: see
    ``alert_audience``).
    A run that is not the process's latest finished one (its news came late) is reported
    but changes no alert: a newer run has said more recently how the process is."""
    event = run_event(status, previous)
    if event is None:
        return RunDecision((), None)
    change = failing_change(status, failures_in_a_row, page_after, failing_open) if latest else None
    pages = critical and change in (AlertChange.OPEN, AlertChange.UPDATE)
    told: list[tuple[str, Event]] = []
    for subscriber in subscribers:
        if subscriber.policy is Policy.NEVER:
            continue  # paused, whatever the channel
        if subscriber.incidents:
            if pages:
                told.append((subscriber.key, Event.ALERT))
        elif tells(subscriber.policy, event, previous):
            told.append((subscriber.key, event))
    return RunDecision(tuple(told), change)


def alert_audience(
    subscribers: list[Subscriber], kind: AlertKind, *, critical: bool
) -> tuple[tuple[str, Event], ...]:
    """Who hears that an alert other than a run's own opened: incident channels of a
    critical process, and every report channel (a "failing" alert is told to report
    channels by the run reports themselves); none set to "never".

    Its clearing is told to exactly those that were told of its opening, whatever has
    changed since (the process made non-critical, renamed, a subscription paused): an
    incident opened at PagerDuty is always resolved, and no one hears "resolved" of an
    alert they never heard of. That depends on what was sent, so the shell decides it
    (``outbox.tell_resolved``)."""
    told = []
    for subscriber in subscribers:
        if subscriber.policy is Policy.NEVER:
            hears = False  # paused, whatever the channel
        elif subscriber.incidents:
            hears = critical
        else:
            hears = kind is not AlertKind.FAILING
        if hears:
            told.append((subscriber.key, Event.ALERT))
    return tuple(told)
