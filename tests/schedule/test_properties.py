"""Hypothesis properties of next_fire_times against an independent, brute-force cron model.

Expressions are built from explicit value sets, so the model knows what each field means
without parsing. The model states the DST policy of jobs.schedule directly:
real-time schedules (minute or hour field starts with "*") fire at every real minute whose
local wall time matches; fixed-time schedules fire once per matching wall time, at its first
occurrence if repeated, at the first instant after the gap if skipped.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobs.schedule import next_fire_times

MINUTE = timedelta(minutes=1)
MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]

# Ordinary zones, a 30-minute DST shift, midnight transitions, negative DST, no DST.
ZONES = [
    "Europe/Berlin",
    "America/New_York",
    "Australia/Sydney",
    "Australia/Lord_Howe",
    "America/Santiago",
    "America/Havana",
    "Europe/Dublin",
    "Asia/Kolkata",
    "UTC",
]


@dataclass(frozen=True)
class Cron:
    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_and: bool
    real_time: bool

    def matches(self, wall: datetime) -> bool:
        dom, dow = wall.day in self.days, wall.isoweekday() % 7 in self.weekdays
        day = (dom and dow) if self.day_and else (dom or dow)
        return (
            day
            and wall.minute in self.minutes
            and wall.hour in self.hours
            and wall.month in self.months
        )


@st.composite
def field(draw, lo: int, hi: int, names: list[str] | None = None, top: int | None = None):
    """One cron field as (text, values); names (if any) are used for some single values.

    `top` caps explicitly listed values below `hi` (days: only 1-28 exist in every month).
    """
    every = range(lo, hi + 1)
    full = range(lo, (top or hi) + 1)

    def show(v: int) -> str:
        return names[v - lo] if names and draw(st.booleans()) else str(v)

    kind = draw(st.sampled_from(["star", "step", "one", "range", "list", "range-step"]))
    if kind == "star":
        return "*", set(every)
    if kind == "step":
        n = draw(st.integers(1, hi - lo + 1))
        return f"*/{n}", set(every[::n])
    if kind == "one":
        v = draw(st.sampled_from(full))
        return show(v), {v}
    if kind == "list":
        vs = sorted(draw(st.sets(st.sampled_from(full), min_size=2, max_size=4)))
        return ",".join(show(v) for v in vs), set(vs)
    # Distinct ends: "a-a/n" is rejected (see test_cron_validation).
    a, b = sorted(draw(st.lists(st.sampled_from(full), min_size=2, max_size=2, unique=True)))
    if kind == "range":
        return f"{show(a)}-{show(b)}", set(range(a, b + 1))
    n = draw(st.integers(1, 10))
    return f"{a}-{b}/{n}", set(range(a, b + 1, n))


@st.composite
def crons(draw) -> Cron:
    minute, hour = draw(field(0, 59)), draw(field(0, 23))
    day = draw(field(1, 31, top=28))  # every listed day exists in every month
    month, weekday = draw(field(1, 12, MONTHS)), draw(field(0, 6, DAYS))
    texts = [minute[0], hour[0], day[0], month[0], weekday[0]]
    return Cron(
        text=" ".join(texts),
        minutes=frozenset(minute[1]),
        hours=frozenset(hour[1]),
        days=frozenset(day[1]),
        months=frozenset(month[1]),
        weekdays=frozenset(weekday[1]),
        day_and=day[0].startswith("*") or weekday[0].startswith("*"),
        real_time=minute[0].startswith("*") or hour[0].startswith("*"),
    )


def is_gap(naive: datetime, zone: ZoneInfo) -> bool:
    aware = naive.replace(tzinfo=zone)
    return aware.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != naive


def transitions(zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """UTC instants in [start, end) at which the zone's offset changes (to the minute)."""
    found, t = [], start
    while t < end:
        nxt = t + timedelta(hours=1)
        if t.astimezone(zone).utcoffset() != nxt.astimezone(zone).utcoffset():
            lo, hi = t, nxt
            while hi - lo > MINUTE:
                mid = lo + (hi - lo) / 2
                mid = mid.replace(second=0, microsecond=0)
                if mid.astimezone(zone).utcoffset() == lo.astimezone(zone).utcoffset():
                    lo = mid if mid > lo else lo + MINUTE
                else:
                    hi = mid
            found.append(hi)
        t = nxt
    return found


TRANSITIONS = [
    (name, t)
    for name in ZONES
    for t in transitions(
        ZoneInfo(name), datetime(2025, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    )
]


def model(cron: Cron, zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """Every fire time in (start, end], by trying every minute."""
    fires: set[datetime] = set()
    if cron.real_time:
        t = start.replace(second=0, microsecond=0) + MINUTE
        while t <= end:
            if cron.matches(t.astimezone(zone)):
                fires.add(t)
            t += MINUTE
    else:
        wall = start.astimezone(zone).replace(tzinfo=None, second=0, microsecond=0)
        last = end.astimezone(zone).replace(tzinfo=None)
        while wall <= last:
            if cron.matches(wall):
                fire = wall
                while is_gap(fire, zone):  # skipped wall time: first instant after the gap
                    fire += MINUTE
                # fold=0: a repeated wall time fires at its first occurrence.
                fires.add(fire.replace(tzinfo=zone, fold=0).astimezone(UTC))
            wall += MINUTE
    return sorted(t for t in fires if start < t <= end)


@settings(max_examples=300, deadline=None)
@given(
    cron=crons(),
    where=st.sampled_from(TRANSITIONS),
    # Minutes from the transition to the start of a 48 h window; often start just after it,
    # inside a repeated hour, where cronsim alone would return a fire time that already passed.
    shift=st.one_of(st.integers(-2880, 0), st.integers(0, 65)),
)
def test_matches_the_model_around_dst_transitions(
    cron: Cron, where: tuple[str, datetime], shift: int
) -> None:
    name, transition = where
    assert_matches_the_model(cron, name, transition + timedelta(minutes=shift, seconds=-1))


def assert_matches_the_model(cron: Cron, name: str, start: datetime) -> None:
    end = start + timedelta(hours=48)
    expected = model(cron, ZoneInfo(name), start, end)
    got = next_fire_times(cron.text, name, start, len(expected) + 1)
    assert [t for t in got if t <= end] == expected


def every_day(text: str, minutes: range | set[int], hours: range | set[int]) -> Cron:
    """A Cron with "*" for day, month and weekday."""
    minute, hour = text.split()[:2]
    return Cron(
        text=text,
        minutes=frozenset(minutes),
        hours=frozenset(hours),
        days=frozenset(range(1, 32)),
        months=frozenset(range(1, 13)),
        weekdays=frozenset(range(7)),
        day_and=True,
        real_time=minute.startswith("*") or hour.startswith("*"),
    )


# Australia/Lord_Howe shifts by 30 minutes, so cronsim's whole-hour steps miss matches after
# each shift unless jobs.schedule steps in; these are the schedules that showed it.
HALF_HOUR_SHIFT_CRONS = [
    every_day("30 * * * *", {30}, range(24)),
    every_day("45 * * * *", {45}, range(24)),
    every_day("0 */2 * * *", {0}, range(0, 24, 2)),
    every_day("*/20 * * * *", {0, 20, 40}, range(24)),
    every_day("30 2 * * *", {30}, {2}),
]
LORD_HOWE_SHIFTS = [t for name, t in TRANSITIONS if name == "Australia/Lord_Howe"]


@pytest.mark.parametrize("cron", HALF_HOUR_SHIFT_CRONS, ids=lambda c: c.text)
@pytest.mark.parametrize("transition", LORD_HOWE_SHIFTS, ids=lambda t: f"{t:%Y-%m-%dT%H:%M}")
# A day before; an hour before (the hour steps cross the shift); inside the half hour after.
@pytest.mark.parametrize("shift", [-1440, -60, 0, 10, 29, 30])
def test_half_hour_shift_matches_the_model(cron: Cron, transition: datetime, shift: int) -> None:
    assert_matches_the_model(
        cron, "Australia/Lord_Howe", transition + timedelta(minutes=shift, seconds=-1)
    )


@settings(max_examples=300, deadline=None)
@given(
    cron=crons(),
    name=st.sampled_from(ZONES),
    after=st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2060, 1, 1)),
    tz_of_after=st.sampled_from(ZONES),
)
def test_strictly_increasing_after_and_matching_local_time(
    cron: Cron, name: str, after: datetime, tz_of_after: str
) -> None:
    zone = ZoneInfo(name)
    after = after.replace(tzinfo=ZoneInfo(tz_of_after))
    fires = next_fire_times(cron.text, name, after, 5)
    assert len(fires) == 5
    assert all(t.tzinfo is UTC for t in fires)
    assert fires[0] > after
    assert all(a < b for a, b in pairwise(fires))
    for t in fires:
        local = t.astimezone(zone)
        if cron.matches(local):
            continue
        # The documented shift: a fixed-time schedule whose wall time fell in a spring gap
        # fires at the first instant after it. Some skipped wall time must have matched.
        assert not cron.real_time
        before = (t - MINUTE).astimezone(zone)
        assert local.utcoffset() > before.utcoffset()
        skipped = before.replace(tzinfo=None) + MINUTE
        gap = []
        while skipped < local.replace(tzinfo=None):
            gap.append(skipped)
            skipped += MINUTE
        assert any(cron.matches(w) for w in gap)
