"""next_fire_times / next_fire_after outside DST transitions: fields, strictness, UTC output."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jobs.schedule import next_fire_after, next_fire_times

BERLIN = ZoneInfo("Europe/Berlin")
TOKYO = ZoneInfo("Asia/Tokyo")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_strictly_after_a_fire_time() -> None:
    assert next_fire_times("0 9 * * *", "UTC", utc(2026, 1, 5, 9), 2) == [
        utc(2026, 1, 6, 9),
        utc(2026, 1, 7, 9),
    ]


def test_just_before_and_just_after_a_fire_time() -> None:
    at = utc(2026, 1, 5, 9)
    assert next_fire_after("0 9 * * *", "UTC", at - timedelta(microseconds=1)) == at
    # cronsim drops microseconds internally; the result must still be strictly later.
    assert next_fire_after("0 9 * * *", "UTC", at + timedelta(microseconds=1)) == utc(2026, 1, 6, 9)


def test_output_is_utc_whatever_zone_after_is_in() -> None:
    after_utc = utc(2026, 1, 5, 12)
    from_tokyo = next_fire_times("0 9 * * *", "Europe/Berlin", after_utc.astimezone(TOKYO), 3)
    assert from_tokyo == next_fire_times("0 9 * * *", "Europe/Berlin", after_utc, 3)
    assert all(t.tzinfo is UTC for t in from_tokyo)
    # 09:00 in Berlin in winter is 08:00 UTC.
    assert from_tokyo == [utc(2026, 1, 6, 8), utc(2026, 1, 7, 8), utc(2026, 1, 8, 8)]


def test_local_view_for_the_admin() -> None:
    fires = next_fire_times("30 8 * * MON-FRI", "Europe/Berlin", utc(2026, 6, 5, 12), 5)
    local = [t.astimezone(BERLIN) for t in fires]
    assert [t.strftime("%a %H:%M") for t in local] == [
        "Mon 08:30",
        "Tue 08:30",
        "Wed 08:30",
        "Thu 08:30",
        "Fri 08:30",
    ]
    assert fires[0] == utc(2026, 6, 8, 6, 30)  # CEST is UTC+2


def test_weekday_and_month_names() -> None:
    fires = next_fire_times("0 12 * jan,jul SAT", "UTC", utc(2026, 1, 25), 3)
    assert fires == [utc(2026, 1, 31, 12), utc(2026, 7, 4, 12), utc(2026, 7, 11, 12)]


def test_ranges_steps_and_lists() -> None:
    assert next_fire_times("5-55/25 * * * *", "UTC", utc(2026, 1, 1), 4) == [
        utc(2026, 1, 1, 0, 5),
        utc(2026, 1, 1, 0, 30),
        utc(2026, 1, 1, 0, 55),
        utc(2026, 1, 1, 1, 5),
    ]
    assert next_fire_times("0 8-10,22 * * *", "UTC", utc(2026, 1, 1, 9), 3) == [
        utc(2026, 1, 1, 10),
        utc(2026, 1, 1, 22),
        utc(2026, 1, 2, 8),
    ]


def test_day_of_month_or_day_of_week() -> None:
    # Debian rule: when both day fields are restricted, either may match.
    fires = next_fire_times("0 0 13 * FRI", "UTC", utc(2026, 2, 1), 4)
    assert fires == [utc(2026, 2, 6), utc(2026, 2, 13), utc(2026, 2, 20), utc(2026, 2, 27)]


def test_february_29_fires_in_leap_years_only() -> None:
    assert next_fire_times("0 12 29 2 *", "UTC", utc(2026, 1, 1), 3) == [
        utc(2028, 2, 29, 12),
        utc(2032, 2, 29, 12),
        utc(2036, 2, 29, 12),
    ]
    # 2100 is not a leap year.
    assert next_fire_after("0 12 29 2 *", "UTC", utc(2097, 1, 1)) == utc(2104, 2, 29, 12)


def test_last_day_of_month() -> None:
    assert next_fire_times("0 0 L 2 *", "UTC", utc(2026, 1, 1), 3) == [
        utc(2026, 2, 28),
        utc(2027, 2, 28),
        utc(2028, 2, 29),
    ]


def test_count_zero_and_errors() -> None:
    assert next_fire_times("* * * * *", "UTC", utc(2026, 1, 1), 0) == []
    with pytest.raises(ValueError, match="count"):
        next_fire_times("* * * * *", "UTC", utc(2026, 1, 1), -1)
    with pytest.raises(ValueError, match="timezone-aware"):
        next_fire_times("* * * * *", "UTC", datetime(2026, 1, 1), 1)


def test_next_fire_after_is_the_first_of_next_fire_times() -> None:
    after = utc(2026, 3, 1, 17, 42, 13)
    assert (
        next_fire_after("*/7 * * * *", "Asia/Kolkata", after)
        == next_fire_times("*/7 * * * *", "Asia/Kolkata", after, 1)[0]
    )
