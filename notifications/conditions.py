"""Which alert conditions hold for a process now: pure decisions over plain values (no ORM,
no I/O, ``now`` always a parameter), like ``decide.py`` and the engine.

Three conditions, each alerting once per occurrence (its key) and clearing by itself:

- **missed start**: a fire time of a scheduled process (cron or continuous) is more than its
  grace in the past and the scheduler has not taken it (beat or the workers are down), or
  the run made for it is still queued (the queue is stuck, or a run before it goes on).
  Key: the fire time (ISO, UTC), the same in both cases, so a fire time taken late whose run
  then waits is one occurrence. Clears once the fire time is taken and its run has started
  (or ended, or was never made: a catch-up policy may pass over it).
- **long-running**: a running run has gone on longer than the process's fixed threshold, or
  than its factor times the p95 of its last 30 successful runs (with at least 5 of them).
  Key: the run's id. A running attempt of a task, longer than the factor times the p95 of
  the last 30 successful attempts of that task in that process (at least 5). Key: "task"
  and the attempt's id. Once long either stays open until it ends, whatever later successes
  do to the p95 and whatever the thresholds become.
- **deadline**: the process has not succeeded since local midnight by its time of day, in
  its own zone. Key: the local date. Clears when a run succeeds (late that day, or any day
  after). A day that ends without a success leaves its alert open, and the next day's missed
  deadline opens one of its own: each says a day the data was late.

A paused or archived process raises no missed-start or deadline alert (people stopped it on
purpose) and those it had clear; a run that is running long is long whatever its process.

Time zones: a deadline is a wall-clock time. On a spring-forward day a deadline inside the
gap (02:30 in New York on 2026-03-08) falls when the clock jumps past it (03:00 EDT); on a
fall-back day a repeated wall time falls at its first occurrence (EDT), as cron times do in
``jobs/schedule.py``. Midnight counts the same way (some zones skip it).
"""

from __future__ import annotations

import statistics
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from jobs.durations import short
from notifications.decide import AlertKind

RECENT_SUCCESSES = 30  # the successful runs (or attempts) whose p95 a factor multiplies
MIN_SUCCESSES = 5  # fewer say too little about how long a run or a task takes


@dataclass(frozen=True)
class RunningRun:
    id: int
    started_at: datetime


@dataclass(frozen=True)
class RunningAttempt:
    id: int
    run_id: int
    task_name: str
    number: int  # its number in its round, as the run page shows it
    started_at: datetime


@dataclass(frozen=True)
class Facts:
    """A process as the conditions need it (every datetime timezone-aware)."""

    name: str
    zone: str  # IANA name: the deadline's and the messages' wall clock
    scheduled: bool  # cron or continuous: the scheduler is meant to start it
    paused: bool = False
    archived: bool = False
    created_at: datetime | None = None  # no deadline counts from before the process existed
    next_fire_at: datetime | None = None
    grace_s: int = 300
    # scheduled_for of its schedule-made runs that have not started
    queued_for: tuple[datetime, ...] = ()
    running: tuple[RunningRun, ...] = ()
    long_running_after_s: int | None = None
    long_running_factor: float | None = None
    recent_successes_s: tuple[float, ...] = ()  # durations of its last 30 successful runs
    running_attempts: tuple[RunningAttempt, ...] = ()
    # By task name, the durations of that task's last 30 successful attempts, newest first
    # (the shell may leave out tasks with no running attempt).
    task_successes_s: Mapping[str, tuple[float, ...]] = field(default_factory=dict)
    deadline: time | None = None
    # Its latest success's finished_at; the shell may leave out successes older than a few
    # days before any deadline it asks about (only "since that midnight?" is asked).
    last_success_at: datetime | None = None


@dataclass(frozen=True)
class Condition:
    """An occurrence that holds now."""

    kind: AlertKind
    key: str
    message: str


@dataclass(frozen=True)
class Cleared:
    """An open occurrence that no longer holds, and why, in words."""

    kind: AlertKind
    key: str
    why: str


@dataclass(frozen=True)
class Review:
    opened: tuple[Condition, ...]  # hold now and are not open: to open and tell
    cleared: tuple[Cleared, ...]  # open and no longer hold: to resolve and tell


KINDS = (AlertKind.MISSED_START, AlertKind.LONG_RUNNING, AlertKind.DEADLINE)


def review(facts: Facts, open_keys: Collection[tuple[str, str]], now: datetime) -> Review:
    """What to open and what to resolve for one process, given its open alerts of these
    kinds as (kind, key) pairs."""
    open_deadlines = [
        date.fromisoformat(key) for kind, key in open_keys if kind == AlertKind.DEADLINE
    ]
    open_long = {key for kind, key in open_keys if kind == AlertKind.LONG_RUNNING}
    holding = [
        *missed_starts(facts, now),
        *long_runs(facts, now, open_long),
        *long_tasks(facts, now, open_long),
        *deadlines_missed(facts, now, open_deadlines),
    ]
    held = {(c.kind, c.key) for c in holding}
    opened = tuple(c for c in holding if (c.kind, c.key) not in open_keys)
    cleared = tuple(
        Cleared(AlertKind(kind), key, why_cleared(facts, AlertKind(kind), key))
        for kind, key in sorted(open_keys)
        if (kind, key) not in held
    )
    return Review(opened, cleared)


def missed_starts(facts: Facts, now: datetime) -> list[Condition]:
    """Fire times the scheduler has not taken, and schedule-made runs that have not
    started, more than the grace after their time."""
    if facts.paused or facts.archived:
        return []
    grace = timedelta(seconds=facts.grace_s)
    found: dict[str, Condition] = {}
    if facts.scheduled and facts.next_fire_at is not None and facts.next_fire_at < now - grace:
        late = now - facts.next_fire_at
        found[instant_key(facts.next_fire_at)] = Condition(
            AlertKind.MISSED_START,
            instant_key(facts.next_fire_at),
            f"{facts.name} was due to start at {local(facts.next_fire_at, facts.zone)} and"
            f" {short(late)} later the scheduler has still not started it (grace:"
            f" {short(grace)}). Are celery beat and the workers running?",
        )
    for due in sorted(facts.queued_for):
        key = instant_key(due)
        if due < now - grace and key not in found:
            found[key] = Condition(
                AlertKind.MISSED_START,
                key,
                f"{facts.name}'s run due at {local(due, facts.zone)} has waited"
                f" {short(now - due)} without starting (grace: {short(grace)}). Are the"
                " workers running, or is a run before it still going?",
            )
    return list(found.values())


def long_runs(facts: Facts, now: datetime, open_runs: Collection[str] = ()) -> list[Condition]:
    """Running runs past a threshold, and those already alerted on (open until they end)."""
    found = []
    for run in facts.running:
        took = now - run.started_at
        crossed = crossed_thresholds(facts, took)
        if crossed or str(run.id) in open_runs:
            over = " and ".join(crossed) or "longer than its threshold"
            found.append(
                Condition(
                    AlertKind.LONG_RUNNING,
                    str(run.id),
                    f"{facts.name} run {run.id} has been running for {short(took)}, {over}.",
                )
            )
    return found


def crossed_thresholds(facts: Facts, took: timedelta) -> list[str]:
    """The thresholds a run that has gone on for ``took`` is past, each in words."""
    crossed = []
    fixed = facts.long_running_after_s
    if fixed is not None and took > timedelta(seconds=fixed):
        crossed.append(f"longer than its limit of {short(timedelta(seconds=fixed))}")
    usual = past_usual(facts.long_running_factor, facts.recent_successes_s, took, "runs")
    if usual is not None:
        crossed.append(usual)
    return crossed


def long_tasks(facts: Facts, now: datetime, open_tasks: Collection[str] = ()) -> list[Condition]:
    """Running attempts longer than the factor times the p95 of their task's last successful
    attempts, and those already alerted on (open until they end). The fixed threshold is the
    run's alone: an attempt over it makes its run over it too, which says so already."""
    found = []
    for attempt in facts.running_attempts:
        key = f"task{attempt.id}"
        took = now - attempt.started_at
        successes = facts.task_successes_s.get(attempt.task_name, ())
        over = past_usual(facts.long_running_factor, successes, took, "attempts")
        if over is not None or key in open_tasks:
            found.append(
                Condition(
                    AlertKind.LONG_RUNNING,
                    key,
                    f"{facts.name} task {attempt.task_name} (run {attempt.run_id}, attempt"
                    f" {attempt.number}) has been running for {short(took)},"
                    f" {over or 'longer than its threshold'}.",
                )
            )
    return found


def past_usual(
    factor: float | None, successes_s: Sequence[float], took: timedelta, of: str
) -> str | None:
    """How ``took`` is longer than ``factor`` times the p95 of the last successful ``of``
    ("runs", "attempts"), in words; None when it is not, or there is too little to judge."""
    usual = typical_duration_s(successes_s)
    if factor is None or usual is None or took <= timedelta(seconds=factor * usual):
        return None
    counted = min(len(successes_s), RECENT_SUCCESSES)
    return (
        f"longer than {factor:g} times the p95 of its last {counted} successful {of}"
        f" ({short(timedelta(seconds=usual))}), that is {short(timedelta(seconds=factor * usual))}"
    )


def typical_duration_s(durations_s: Sequence[float]) -> float | None:
    """The p95 of the last successful runs' (or attempts') durations; None with fewer than 5
    of them."""
    recent = list(durations_s)[:RECENT_SUCCESSES]
    if len(recent) < MIN_SUCCESSES:
        return None
    return p95(recent)


def p95(values: Sequence[float]) -> float:
    """The 95th percentile, interpolated between the closest ranks (at least two values)."""
    return statistics.quantiles(values, n=20, method="inclusive")[-1]


def deadlines_missed(
    facts: Facts, now: datetime, open_days: Collection[date] = ()
) -> list[Condition]:
    """The local days whose deadline has passed with no success since their midnight: the
    latest day whose deadline has passed, and the days already alerted on."""
    if facts.deadline is None or facts.paused or facts.archived:
        return []
    zone = ZoneInfo(facts.zone)
    today = now.astimezone(zone).date()
    latest = today if wall_instant(today, facts.deadline, zone) <= now else today - timedelta(1)
    found = []
    for day in sorted({latest, *open_days}):
        due = wall_instant(day, facts.deadline, zone)
        if due > now or succeeded_since(facts, wall_instant(day, time(0), zone)):
            continue
        if day not in open_days and facts.created_at is not None and facts.created_at > due:
            continue  # the process did not exist yet at that deadline
        found.append(
            Condition(
                AlertKind.DEADLINE,
                day.isoformat(),
                f"{facts.name} has not succeeded on {day.isoformat()} by its deadline of"
                f" {facts.deadline:%H:%M} {facts.zone} ({local(due, facts.zone)})"
                f"{_since_then(facts)}.",
            )
        )
    return found


def _since_then(facts: Facts) -> str:
    if facts.last_success_at is None:
        return ""
    return f"; its last success ended at {local(facts.last_success_at, facts.zone)}"


def succeeded_since(facts: Facts, instant: datetime) -> bool:
    return facts.last_success_at is not None and facts.last_success_at >= instant


def why_cleared(facts: Facts, kind: AlertKind, key: str) -> str:
    """Why an open occurrence no longer holds, in words."""
    if kind is not AlertKind.LONG_RUNNING and (facts.paused or facts.archived):
        return f"{facts.name} was {'archived' if facts.archived else 'paused'}"
    match kind:
        case AlertKind.MISSED_START if not facts.scheduled:
            return f"{facts.name} is no longer scheduled"
        case AlertKind.MISSED_START:
            due = local(datetime.fromisoformat(key), facts.zone)
            return f"the start due at {due} was made (or passed over by the catch-up policy)"
        case AlertKind.LONG_RUNNING if key.startswith("task"):
            return "the task's attempt ended"
        case AlertKind.LONG_RUNNING:
            return f"run {key} ended"
        case AlertKind.DEADLINE if facts.deadline is None:
            return f"{facts.name} no longer has a deadline"
        case AlertKind.DEADLINE if facts.last_success_at is not None:
            return f"a run succeeded at {local(facts.last_success_at, facts.zone)}"
        case AlertKind.DEADLINE:
            return f"its deadline is now {facts.deadline:%H:%M}, later than it was"
    return "the condition no longer holds"


def wall_instant(day: date, at: time, zone: ZoneInfo) -> datetime:
    """The first instant (UTC) at which the wall clock in ``zone`` shows ``at`` on ``day``
    or later: a repeated wall time's first occurrence, and for a wall time the clock skips
    (spring forward), the instant the clock jumps past it."""
    wall = datetime.combine(day, at)
    first = wall.replace(tzinfo=zone).astimezone(UTC)  # fold=0: the offset before a change
    if first.astimezone(zone).replace(tzinfo=None) == wall:
        return first
    # Skipped: fold=0 lands after the jump, fold=1 before it; the jump is between, on a
    # whole second (zone changes always are).
    before = int(wall.replace(tzinfo=zone, fold=1).timestamp())
    after = int(first.timestamp())
    while after - before > 1:
        middle = (before + after) // 2
        if datetime.fromtimestamp(middle, zone).replace(tzinfo=None) >= wall:
            after = middle
        else:
            before = middle
    return datetime.fromtimestamp(after, UTC)


def instant_key(instant: datetime) -> str:
    """A fire time as an alert's key: ISO 8601 in UTC, the same however it was read."""
    return instant.astimezone(UTC).isoformat()


def local(instant: datetime, zone: str) -> str:
    """ "2026-03-08 03:00 EDT": an instant on the process's wall clock."""
    return f"{instant.astimezone(ZoneInfo(zone)):%Y-%m-%d %H:%M %Z}"
