"""The written DST policy (module docstring of jobs.schedule), on both transitions of three zones.

Europe/Berlin: 2026-03-29 02:00 -> 03:00, 2026-10-25 03:00 -> 02:00.
America/New_York: 2026-03-08 02:00 -> 03:00, 2026-11-01 02:00 -> 01:00.
Australia/Lord_Howe shifts by 30 minutes, at 15:00 UTC in April (02:00 LHDT +11 -> 01:30 LHST
+10:30) and at 15:30 UTC in October (02:00 LHST -> 02:30 LHDT); the UTC dates are below.
"""

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from jobs.schedule import next_fire_after, next_fire_times

HOUR = timedelta(hours=1)

# (zone, transition day, "spring"/"autumn", the local hour that is skipped or repeated)
TRANSITIONS = [
    ("Europe/Berlin", date(2026, 3, 29), "spring", 2),
    ("Europe/Berlin", date(2026, 10, 25), "autumn", 2),
    ("America/New_York", date(2026, 3, 8), "spring", 2),
    ("America/New_York", date(2026, 11, 1), "autumn", 1),
]
IDS = [f"{zone}-{kind}" for zone, _, kind, _ in TRANSITIONS]


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fires_on(expr: str, zone: str, day: date) -> list[datetime]:
    """Fire times (UTC) whose local date is `day`."""
    tz = ZoneInfo(zone)
    start = datetime.combine(day, time(), tzinfo=tz) - timedelta(microseconds=1)
    fires = next_fire_times(expr, zone, start, 200)
    return [t for t in fires if t.astimezone(tz).date() == day]


def fires_between(expr: str, zone: str, start: datetime, end: datetime) -> list[datetime]:
    fires = next_fire_times(expr, zone, start, 500)
    assert fires[-1] > end, "ask for more fire times"
    return [t for t in fires if t <= end]


def around(zone: str, day: date) -> tuple[datetime, datetime]:
    """From the local midnight before the transition day to the local midnight after the next."""
    tz = ZoneInfo(zone)
    start = datetime.combine(day, time(), tzinfo=tz)
    return start - timedelta(microseconds=1), start + timedelta(days=2)


# Daily, fixed-time jobs: exactly once on every day, transition days included.


@pytest.mark.parametrize(("zone", "day", "kind", "hour"), TRANSITIONS, ids=IDS)
@pytest.mark.parametrize("expr", ["30 2 * * *", "0 9 * * *", "30 {hour} * * *", "0 {hour} * * *"])
def test_daily_job_runs_once_on_and_around_the_transition_day(
    zone: str, day: date, kind: str, hour: int, expr: str
) -> None:
    expr = expr.format(hour=hour)
    for d in (day - timedelta(days=1), day, day + timedelta(days=1)):
        assert len(fires_on(expr, zone, d)) == 1, d


@pytest.mark.parametrize(
    ("expr", "zone", "day", "expected"),
    [
        # Spring: 02:30 does not exist; the run is at the first instant after the gap, 03:00.
        ("30 2 * * *", "Europe/Berlin", date(2026, 3, 29), utc(2026, 3, 29, 1)),  # 03:00 CEST
        ("30 2 * * *", "America/New_York", date(2026, 3, 8), utc(2026, 3, 8, 7)),  # 03:00 EDT
        # Autumn: the wall time happens twice; the run is at the first one (summer time).
        ("30 2 * * *", "Europe/Berlin", date(2026, 10, 25), utc(2026, 10, 25, 0, 30)),  # CEST
        ("30 1 * * *", "America/New_York", date(2026, 11, 1), utc(2026, 11, 1, 5, 30)),  # EDT
        # Outside the gap/overlap nothing moves.
        ("0 9 * * *", "Europe/Berlin", date(2026, 3, 29), utc(2026, 3, 29, 7)),
        ("0 9 * * *", "America/New_York", date(2026, 11, 1), utc(2026, 11, 1, 14)),
    ],
)
def test_where_the_daily_run_lands(expr: str, zone: str, day: date, expected: datetime) -> None:
    assert fires_on(expr, zone, day) == [expected]


def test_several_times_in_the_gap_collapse_into_one_run() -> None:
    assert fires_on("0,30 2 * * *", "Europe/Berlin", date(2026, 3, 29)) == [utc(2026, 3, 29, 1)]


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        # 02:10 CET is the second pass of the repeated hour; 02:45 CEST (00:45 UTC) already
        # fired in the first pass. cronsim alone would answer 00:45 UTC, before `after`.
        (utc(2026, 10, 25, 1, 10), utc(2026, 10, 26, 1, 45)),
        # 02:10 CEST, the first pass: 02:45 CEST is still ahead.
        (utc(2026, 10, 25, 0, 10), utc(2026, 10, 25, 0, 45)),
    ],
)
def test_fixed_time_job_started_inside_the_repeated_hour(
    after: datetime, expected: datetime
) -> None:
    assert next_fire_after("45 2 * * *", "Europe/Berlin", after) == expected


def test_fixed_time_job_started_just_before_the_gap() -> None:
    # 01:59:59 CET; 02:30 does not exist, so 03:00 CEST.
    assert next_fire_after("30 2 * * *", "Europe/Berlin", utc(2026, 3, 29, 0, 59, 59)) == utc(
        2026, 3, 29, 1
    )


# Real-time jobs (minute or hour field starting with "*"): every real hour / quarter hour.


@pytest.mark.parametrize(("zone", "day", "kind", "hour"), TRANSITIONS, ids=IDS)
def test_hourly_job_runs_every_real_hour(zone: str, day: date, kind: str, hour: int) -> None:
    fires = fires_on("0 * * * *", zone, day)
    assert len(fires) == (23 if kind == "spring" else 25)
    start, end = around(zone, day)
    span = fires_between("0 * * * *", zone, start, end)
    assert all(b - a == HOUR for a, b in pairwise(span))


@pytest.mark.parametrize(("zone", "day", "kind", "hour"), TRANSITIONS, ids=IDS)
def test_hourly_job_around_the_skipped_or_repeated_hour(
    zone: str, day: date, kind: str, hour: int
) -> None:
    tz = ZoneInfo(zone)
    local = [t.astimezone(tz) for t in fires_on("0 * * * *", zone, day)]
    at_hour = [t for t in local if t.hour == hour]
    if kind == "spring":
        assert at_hour == []
    else:
        # Both the summer-time and the standard-time occurrence, one real hour apart.
        assert [t.fold for t in at_hour] == [0, 1]
        assert at_hour[0].utcoffset() - at_hour[1].utcoffset() == HOUR
        # Same tzinfo on both sides would subtract wall clocks (giving 0), so compare in UTC.
        assert at_hour[1].astimezone(UTC) - at_hour[0].astimezone(UTC) == HOUR


@pytest.mark.parametrize(("zone", "day", "kind", "hour"), TRANSITIONS, ids=IDS)
def test_quarter_hourly_job_runs_every_15_real_minutes(
    zone: str, day: date, kind: str, hour: int
) -> None:
    assert len(fires_on("*/15 * * * *", zone, day)) == (92 if kind == "spring" else 100)
    start, end = around(zone, day)
    span = fires_between("*/15 * * * *", zone, start, end)
    assert all(b - a == timedelta(minutes=15) for a, b in pairwise(span))


# The other consequences of the real-time rule, pinned so a change is noticed.


def test_every_two_hours_follows_the_wall_clock() -> None:
    zone, tz = "Europe/Berlin", ZoneInfo("Europe/Berlin")
    spring = [t.astimezone(tz).hour for t in fires_on("0 */2 * * *", zone, date(2026, 3, 29))]
    assert spring[:3] == [0, 4, 6]  # 02:00 never happened
    autumn = [t.astimezone(tz) for t in fires_on("0 */2 * * *", zone, date(2026, 10, 25))]
    assert [(t.hour, t.fold) for t in autumn[:4]] == [(0, 0), (2, 0), (2, 1), (4, 0)]


def test_every_five_minutes_inside_the_skipped_or_repeated_hour() -> None:
    assert fires_on("*/5 2 * * *", "Europe/Berlin", date(2026, 3, 29)) == []
    assert len(fires_on("*/5 2 * * *", "Europe/Berlin", date(2026, 10, 25))) == 24


# Lord Howe: the same rules when the clock moves by half an hour. Times are UTC, on the UTC
# date of the shift; the comments give the local time.
LORD_HOWE = "Australia/Lord_Howe"
LORD_HOWE_SHIFTS = {  # (UTC date of the April shift, UTC date of the October shift)
    2025: (date(2025, 4, 5), date(2025, 10, 4)),
    2026: (date(2026, 4, 4), date(2026, 10, 3)),
}
AUTUMN = [  # 15:00 UTC: 02:00 LHDT -> 01:30 LHST, so 01:30-01:59 happens twice
    # 00:30, 01:30 LHDT, 01:30 LHST, 02:30, 03:30
    ("30 * * * *", "13:30 14:30 15:00 16:00 17:00"),
    # 00:45, 01:45 LHDT, 01:45 LHST, 02:45
    ("45 * * * *", "13:45 14:45 15:15 16:15"),
    # 00:00 LHDT, 02:00 LHST (there is no 02:00 LHDT)
    ("0 */2 * * *", "13:00 15:30"),
    # every 20 minutes of wall time; 01:40 LHDT and 01:40 LHST are half an hour apart
    (
        "*/20 * * * *",
        "13:00 13:20 13:40 14:00 14:20 14:40 15:10 15:30 15:50 16:10 16:30 16:50",
    ),
    # fixed time: 02:30 happens once, in standard time
    ("30 2 * * *", "16:00"),
]
SPRING = [  # 15:30 UTC: 02:00 LHST -> 02:30 LHDT, so 02:00-02:29 never happens
    # 23:30 (the day before), 00:30, 01:30 LHST, 02:30, 03:30 LHDT
    ("30 * * * *", "13:00 14:00 15:00 15:30 16:30"),
    # 23:45, 00:45, 01:45 LHST, 02:45, 03:45 LHDT
    ("45 * * * *", "13:15 14:15 15:15 15:45 16:45"),
    # 00:00 LHST, 04:00 LHDT: 02:00 is in the gap
    ("0 */2 * * *", "13:30 17:00"),
    # 01:40 LHST is followed by 02:40 LHDT, half an hour later
    (
        "*/20 * * * *",
        "13:10 13:30 13:50 14:10 14:30 14:50 15:10 15:40 16:00 16:20 16:40 17:00",
    ),
    # fixed time: 02:30 LHDT is the first instant after the gap
    ("30 2 * * *", "15:30"),
]


LORD_HOWE_CASES = [
    pytest.param(expr, day, times, id=f"{day}-{expr}")
    for shifts in LORD_HOWE_SHIFTS.values()
    for day, table in zip(shifts, (AUTUMN, SPRING), strict=True)
    for expr, times in table
]


@pytest.mark.parametrize(("expr", "day", "times"), LORD_HOWE_CASES)
def test_half_hour_shift_fires_at_every_matching_real_instant(
    expr: str, day: date, times: str
) -> None:
    start = datetime.combine(day, time(13), tzinfo=UTC) - timedelta(seconds=1)
    end = datetime.combine(day, time(17), tzinfo=UTC)
    expected = [datetime.combine(day, time.fromisoformat(t), tzinfo=UTC) for t in times.split()]
    assert fires_between(expr, LORD_HOWE, start, end) == expected


def test_half_hour_dst_shift_with_a_restricted_hour() -> None:
    # 2025-04-06 02:00 LHDT (+11) -> 01:30 LHST (+10:30). From 01:00 LHDT, "every two hours"
    # next fires at 02:00 LHST (15:30 UTC); cronsim, stepping whole real hours, says 04:00.
    after = utc(2025, 4, 5, 14)
    assert next_fire_after("0 */2 * * *", LORD_HOWE, after) == utc(2025, 4, 5, 15, 30)


@pytest.mark.parametrize(
    ("expr", "after", "expected"),
    [
        # 01:40 LHST, the second pass of 01:30-01:59: 02:00 LHST is next.
        ("0 */2 * * *", utc(2025, 4, 5, 15, 10), utc(2025, 4, 5, 15, 30)),
        # 02:40 LHDT, ten minutes after the gap: 03:00 LHDT is next, then 03:20.
        ("*/20 3 * * *", utc(2025, 10, 4, 15, 40), utc(2025, 10, 4, 16)),
        ("*/20 3 * * *", utc(2025, 10, 4, 16), utc(2025, 10, 4, 16, 20)),
    ],
)
def test_started_in_the_half_hour_after_the_shift(
    expr: str, after: datetime, expected: datetime
) -> None:
    assert next_fire_after(expr, LORD_HOWE, after) == expected


def test_a_real_time_job_does_not_fire_in_a_gap_at_midnight() -> None:
    # Santiago skips 00:00-01:00 on Sunday 2025-09-07 (-04 -> -03). "Even hours on Sundays"
    # first fires at 02:00 local; the nonexistent 00:00 (cronsim's answer) is no real instant.
    fires = next_fire_times(
        "* */2 * * 0", "America/Santiago", datetime(2025, 9, 7, 3, 0, tzinfo=UTC), 2
    )
    assert fires == [datetime(2025, 9, 7, 5, 0, tzinfo=UTC), datetime(2025, 9, 7, 5, 1, tzinfo=UTC)]
