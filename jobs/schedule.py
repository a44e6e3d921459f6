"""Cron schedules, time zones and catch-up decisions: pure functions of their arguments.

Nothing here imports Django or reads the clock; ``now`` is always a parameter. Every datetime
going in must be timezone-aware and every datetime coming out is in UTC. Cron matching is
done by cronsim against the wall clock of the definition's time zone.

Cron syntax: exactly five fields (minute hour day month weekday) with cronsim's extensions
(``JAN``/``MON`` names, ranges, steps, ``L``, ``LW``, ``5L``, ``MON#2``). A seconds field and
``@daily``-style aliases are rejected (cronsim 2.8 has no aliases; ScheduleError says what to
write instead), and so is a one-value range with a step such as ``3-3/2``, which cronsim reads
as ``3/2``.

DST policy
----------
cronsim 2.8 follows Debian cron and sorts expressions into two kinds by their text:

* Fixed-time schedules: neither the minute nor the hour field starts with ``*``
  (``30 2 * * *``, ``0 9 * * MON-FRI``, ``0 9-17 * * *``). They are matched on the local wall
  clock, and each matching wall time fires once:

  - spring gap (Berlin 2026-03-29 02:00->03:00, New York 2026-03-08 02:00->03:00): a wall
    time that does not exist fires at the first instant after the gap, 03:00 local (not
    03:30 for ``30 2``). Several such times in one gap collapse into that single run.
  - autumn overlap (Berlin 2026-10-25 03:00->02:00, New York 2026-11-01 02:00->01:00): a wall
    time that happens twice fires once, at its first occurrence (summer time, fold=0).

  So a daily job runs exactly once on both transition days.

* Real-time schedules: the minute or the hour field starts with ``*`` (``0 * * * *``,
  ``*/15 * * * *``, ``0 */2 * * *``, ``*/5 2 * * *``). They are matched against the wall
  clock at every real instant: wall times in the spring gap never happen and do not fire;
  wall times in the repeated autumn hour happen twice and fire twice. So ``0 * * * *`` fires
  every real hour (23 times on the spring day, 25 on the autumn day, always 1 hour apart in
  UTC) and ``*/15 * * * *`` every 15 real minutes. The same rule means ``0 */2 * * *`` skips
  02:00 in spring and fires at both 02:00s in autumn, and ``*/5 2 * * *`` does not run at
  all on the spring day.

Shifts by part of an hour (today only Australia/Lord_Howe, 30 minutes; once also Kathmandu,
Caracas, Pyongyang): cronsim steps whole real hours from the top of a wall-clock hour, so after
crossing such a shift it lands part-way into each hour and misses matches (alone it answers
04:00 LHST for ``0 */2 * * *`` from 01:00 LHDT on 2025-04-06, skipping 02:00 LHST, and skips
01:30 LHST for ``30 * * * *``). ``_real_time_fires`` never lets it step across one: it checks
each real minute from the shift to the next top of the wall-clock hour against the expression
itself, then starts cronsim afresh there. Fixed-time schedules walk the naive wall clock and
need no such help.

Layered on top of cronsim (see ``_fires``): results are forced strictly after ``after`` and
strictly increasing. cronsim walks fixed-time schedules on the naive wall clock, so when
``after`` falls in the second pass of the repeated hour it would return the first pass of
that hour again (already past, already fired); those results are dropped.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from itertools import chain, islice
from zoneinfo import ZoneInfo, available_timezones

from cronsim import CronSim, CronSimError

FIELDS = "minute hour day month weekday"

# What an alias would mean, so the error can tell the person what to write instead.
_ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

# cronsim reads a one-value range with a step ("3-3/2") as "3/2", i.e. 3 to the end of the
# field (3,5,7,...), where other crons mean just 3. Make the person say which they mean.
_ONE_VALUE_STEP = re.compile(r"(?<![^\s,])([^\s,/-]+)-\1/(\d+)(?=[\s,]|$)", re.IGNORECASE)

# Any fixed instant will do: cronsim parses the expression in its constructor.
_PARSE_AT = datetime(2000, 1, 1, tzinfo=UTC)

_SECOND = timedelta(seconds=1)
_MINUTE = timedelta(minutes=1)
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)


class ScheduleError(ValueError):
    """A schedule the user wrote cannot be used; the message is meant for a person."""


class CatchUp(StrEnum):
    """What to do with fire times that came due while nobody was looking."""

    LATEST = "latest"  # run the most recent due fire time only, even if late
    NONE = "none"  # run only fire times that are still on time (within grace)
    ALL = "all"  # run every due fire time within the window, oldest first


@dataclass(frozen=True)
class DueFires:
    """The outcome of one scheduler tick for one definition."""

    run_for: tuple[datetime, ...]  # scheduled times to start runs for, oldest first, UTC
    next_fire_at: datetime  # the value to store next, UTC
    missed: int  # due fire times that get no run


def validate_cron(expr: str) -> str:
    """Return the expression with whitespace normalised, or raise ScheduleError."""
    fields = expr.split()
    if not fields:
        raise ScheduleError("cron expression is empty")
    if len(fields) == 1 and fields[0].lower() in _ALIASES:
        raise ScheduleError(
            f"cron alias '{fields[0]}' is not supported; write '{_ALIASES[fields[0].lower()]}'"
        )
    if len(fields) != 5:
        raise ScheduleError(f"cron expression must have 5 fields ({FIELDS}), got {len(fields)}")
    normalised = " ".join(fields)
    if m := _ONE_VALUE_STEP.search(normalised):
        raise ScheduleError(
            f"invalid cron expression '{normalised}': '{m[0]}' is ambiguous;"
            f" write '{m[1]}' or '{m[1]}/{m[2]}'"
        )
    try:
        CronSim(normalised, _PARSE_AT)
    except CronSimError as exc:  # cronsim names the field: "Bad minute", "Bad day-of-month"
        raise ScheduleError(f"invalid cron expression '{normalised}': {exc}") from None
    return normalised


@functools.cache
def _zone_names() -> frozenset[str]:
    # available_timezones() rescans the disk on every call. "localtime" is whatever the host
    # is set to and "Factory" is a placeholder; a schedule must mean the same on every machine.
    return frozenset(available_timezones() - {"localtime", "Factory"})


def parse_timezone(name: str) -> ZoneInfo:
    """Return the IANA time zone called `name`, or raise ScheduleError."""
    key = name.strip()
    if key not in _zone_names():
        close = difflib.get_close_matches(key, _zone_names(), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise ScheduleError(f"unknown time zone '{name}'{hint}")
    return ZoneInfo(key)


def _utc(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {value!r}")
    return value.astimezone(UTC)


def _fires(expr: str, tz: str, after: datetime) -> Iterator[datetime]:
    """Yield fire times strictly after `after`, ascending, in UTC."""
    expr = validate_cron(expr)
    zone = parse_timezone(tz)
    last = _utc("after", after)
    # cronsim matches fields against the wall clock of the datetime it starts from, so start
    # from local time. It drops microseconds and steps 1 s first, so results are > after.
    sim = CronSim(expr, last.astimezone(zone))
    if sim.fixup_tz is None:  # cronsim leaves it unset for real-time schedules
        yield from _real_time_fires(expr, zone, sim, last)
        return
    for fire in sim:
        fire = fire.astimezone(UTC)
        # Fixed-time schedules are walked on the naive wall clock: started in the second pass
        # of a repeated hour (fold=1) cronsim can answer with the first pass (fold=0), which
        # is before `after` and has already fired. Skip it; once per day stays once per day.
        if fire > last:
            last = fire
            yield fire
    # cronsim stops after 50 years without a match; valid 5-field expressions always match
    # sooner, so callers treat running out as an error rather than a normal end.


def _real_time_fires(expr: str, zone: ZoneInfo, sim: CronSim, last: datetime) -> Iterator[datetime]:
    """Yield the real instants after `last` whose wall time matches, ascending, in UTC."""
    # cronsim is exact until it steps across a part-hour shift; `clean` is where the running
    # `sim` started looking, or the last fire time it gave.
    clean = last
    while True:
        for fire in sim:
            fire = fire.astimezone(UTC)
            # Across a transition at midnight (America/Santiago) cronsim can answer with a
            # wall time inside the spring gap, which names no real instant that matches.
            if not _wall_time_matches(sim, fire.astimezone(zone)):
                continue
            if shift := _part_hour_shift(zone, clean, fire):
                break  # `fire` and what follows may have skipped matches after the shift
            if fire > last:
                clean = last = fire
                yield fire
        else:
            return
        # Real minutes from the shift to the next top of the hour are checked one by one (at
        # most 59); from there on the wall clock and cronsim's whole-hour steps agree again.
        shifted_at, top_of_hour = shift
        fire = shifted_at + timedelta(seconds=-shifted_at.astimezone(zone).second % 60)
        while fire < top_of_hour:
            if fire > last and _wall_time_matches(sim, fire.astimezone(zone)):
                last = fire
                yield fire
            fire += _MINUTE
        clean = top_of_hour
        sim = CronSim(expr, (top_of_hour - _SECOND).astimezone(zone))


def _part_hour_shift(
    zone: ZoneInfo, after: datetime, until: datetime
) -> tuple[datetime, datetime] | None:
    """Return the first part-hour shift of `zone` that ends after `after` and starts by `until`."""
    # A shift is over within the hour, so one that ends after `after` starts after after - 1 h.
    for year in range((after - _HOUR).year, until.year + 1):
        for shifted_at, top_of_hour in _part_hour_shifts(zone, year):
            if top_of_hour > after and shifted_at <= until:
                return shifted_at, top_of_hour
    return None


@functools.lru_cache(maxsize=1024)
def _part_hour_shifts(zone: ZoneInfo, year: int) -> tuple[tuple[datetime, datetime], ...]:
    """Return where `zone`'s offset changes by part of an hour in (Jan 1 `year`, Jan 1 `year + 1`].

    Each change is given as (its instant, the next top of a wall-clock hour), both UTC.
    """
    # zoneinfo does not list transitions, so probe the offset once a day and bisect to the
    # second where it changed. Probing daily misses nothing: in tzdata two offset changes of
    # one zone are never less than four days apart.
    found = []
    t, end = datetime(year, 1, 1, tzinfo=UTC), datetime(year + 1, 1, 1, tzinfo=UTC)
    offset = _offset(zone, t)
    while t < end:
        probe = min(t + _DAY, end)
        if _offset(zone, probe) == offset:
            t = probe
            continue
        while probe - t > _SECOND:
            middle = t + _SECOND * ((probe - t) // _SECOND // 2)
            if _offset(zone, middle) == offset:
                t = middle
            else:
                probe = middle
        new_offset = _offset(zone, probe)
        if (new_offset - offset) % _HOUR:
            wall = probe.astimezone(zone)
            to_top = timedelta(seconds=-(wall.minute * 60 + wall.second) % 3600)
            found.append((probe, probe + to_top))
        t, offset = probe, new_offset
    return tuple(found)


def _offset(zone: ZoneInfo, instant: datetime) -> timedelta:
    offset = instant.astimezone(zone).utcoffset()
    assert offset is not None  # a ZoneInfo always has one
    return offset


def _wall_time_matches(sim: CronSim, wall: datetime) -> bool:
    return (
        wall.minute in sim.minutes
        and wall.hour in sim.hours
        and wall.month in sim.months
        and sim.match_day(wall.date())
    )


def next_fire_times(expr: str, tz: str, after: datetime, count: int) -> list[datetime]:
    """Return the next `count` fire times strictly after `after`, in UTC."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    return list(islice(_fires(expr, tz, after), count))


def next_fire_after(expr: str, tz: str, after: datetime) -> datetime:
    """Return the first fire time strictly after `after`, in UTC."""
    for fire in _fires(expr, tz, after):
        return fire
    raise ScheduleError(f"cron expression '{expr}' never fires again")


def due_fires(
    expr: str,
    tz: str,
    next_fire_at: datetime,
    now: datetime,
    policy: CatchUp,
    window: timedelta,
    grace: timedelta,
    limit: int = 100,
) -> DueFires:
    """Decide which due fire times to run and what the next stored fire time is."""
    policy = CatchUp(policy)  # also accepts the stored string value
    if window < timedelta(0) or grace < timedelta(0) or limit < 1:
        raise ValueError("window and grace must be >= 0 and limit >= 1")
    stored, now = _utc("next_fire_at", next_fire_at), _utc("now", now)
    if stored > now:
        return DueFires((), stored, 0)

    # Which due fire times may run: LATEST keeps only the last one whatever its age; NONE only
    # those still on time; ALL those within the window, and never fewer than NONE would run.
    horizon: timedelta | None = None
    keep: deque[datetime] = deque(maxlen=1)
    if policy is not CatchUp.LATEST:
        horizon = grace if policy is CatchUp.NONE else max(window, grace)
        keep = deque(maxlen=limit)  # when full, appending drops the oldest

    # The stored time is due even if the expression was edited since it was computed. All
    # arithmetic is on UTC instants: subtracting two times in the same ZoneInfo would give
    # the wall-clock difference, which is an hour off across a transition.
    for due, fire in enumerate(chain([stored], _fires(expr, tz, stored))):
        if fire > now:  # `due` fire times came before this one
            return DueFires(tuple(keep), fire, due - len(keep))
        if horizon is None or now - fire <= horizon:
            keep.append(fire)
    raise ScheduleError(f"cron expression '{expr}' never fires again")


def next_continuous(
    last_finished_at: datetime | None, min_gap: timedelta, now: datetime
) -> datetime:
    """Return when a continuous schedule runs next: min_gap after the last run ended, else now."""
    if min_gap < timedelta(0):
        raise ValueError(f"min_gap must be >= 0, got {min_gap}")
    now = _utc("now", now)
    if last_finished_at is None:
        return now
    # Add in UTC: adding to a zoned datetime moves the wall clock, which is wrong across DST.
    return _utc("last_finished_at", last_finished_at) + min_gap
