"""validate_cron and parse_timezone: what is accepted, and errors a person can act on."""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.schedule import ScheduleError, next_fire_times, parse_timezone, validate_cron


@pytest.mark.parametrize(
    "expr",
    [
        "* * * * *",
        "0 9 * * MON-FRI",
        "0 9 * * mon-fri",
        "0 0 1 JAN,JUL *",
        "*/15 9-17 * * 1-5",
        "5-55/25 * * * *",
        "0 0 L * *",
        "0 0 LW * *",
        "0 0 * * 5L",
        "0 0 * * MON#2",
        "0 0 29 2 *",
        "0 0 * * 7",  # Sunday, as in Debian cron
        "0 0 31 1,2 *",  # possible in January, so accepted
        "0 3-4/2,13-13 * * *",  # a real range with a step, and a one-value range without
        "10-15/20 * * * *",  # one value, but not written as a one-value range
    ],
)
def test_valid_expressions_are_returned(expr: str) -> None:
    assert validate_cron(expr) == expr


def test_whitespace_is_normalised_and_case_kept() -> None:
    assert validate_cron("  0   9 * *\tmon ") == "0 9 * * mon"


def test_schedule_error_is_a_value_error() -> None:
    assert issubclass(ScheduleError, ValueError)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("", "cron expression is empty"),
        ("   ", "cron expression is empty"),
        (
            "* * *",
            "cron expression must have 5 fields (minute hour day month weekday), got 3",
        ),
        (
            "0 0 9 * * *",  # a seconds field, which cronsim would accept
            "cron expression must have 5 fields (minute hour day month weekday), got 6",
        ),
        ("@daily", "cron alias '@daily' is not supported; write '0 0 * * *'"),
        ("@HOURLY", "cron alias '@HOURLY' is not supported; write '0 * * * *'"),
        ("@weekly", "cron alias '@weekly' is not supported; write '0 0 * * 0'"),
        (
            "@reboot",
            "cron expression must have 5 fields (minute hour day month weekday), got 1",
        ),
        ("61 * * * *", "invalid cron expression '61 * * * *': Bad minute"),
        ("0 24 * * *", "invalid cron expression '0 24 * * *': Bad hour"),
        ("0 0 0 * *", "invalid cron expression '0 0 0 * *': Bad day-of-month"),
        # Impossible dates: cronsim rejects a day no listed month has.
        ("0 0 31 2 *", "invalid cron expression '0 0 31 2 *': Bad day-of-month"),
        ("0 0 30 2 *", "invalid cron expression '0 0 30 2 *': Bad day-of-month"),
        ("0 0 31 4,6 *", "invalid cron expression '0 0 31 4,6 *': Bad day-of-month"),
        ("0 0 * 13 *", "invalid cron expression '0 0 * 13 *': Bad month"),
        ("0 0 * * 8", "invalid cron expression '0 0 * * 8': Bad day-of-week"),
        ("0 0 * * FOO", "invalid cron expression '0 0 * * FOO': Bad day-of-week"),
        ("*/0 * * * *", "invalid cron expression '*/0 * * * *': Bad minute"),
        ("0 3-3/ * * *", "invalid cron expression '0 3-3/ * * *': Bad hour"),
        ("5-1 * * * *", "invalid cron expression '5-1 * * * *': Bad minute"),
        ("0 0 ? * *", "invalid cron expression '0 0 ? * *': Bad day-of-month"),
        # cronsim would read "3-3/2" as "3/2" (3,5,7,...,23).
        (
            "0 3-3/2 * * *",
            "invalid cron expression '0 3-3/2 * * *': '3-3/2' is ambiguous; write '3' or '3/2'",
        ),
        (
            "0 0 * * 1,mon-MON/3",
            "invalid cron expression '0 0 * * 1,mon-MON/3':"
            " 'mon-MON/3' is ambiguous; write 'mon' or 'mon/3'",
        ),
    ],
)
def test_malformed_expressions_are_named(expr: str, message: str) -> None:
    with pytest.raises(ScheduleError) as info:
        validate_cron(expr)
    assert str(info.value) == message


def test_schedule_functions_validate_too() -> None:
    after = datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(ScheduleError, match="Bad minute"):
        next_fire_times("61 * * * *", "UTC", after, 1)
    with pytest.raises(ScheduleError, match="unknown time zone"):
        next_fire_times("0 * * * *", "Mars/Olympus", after, 1)


_CRON_CHARS = "0123456789*/,-#LW? @abcdefghijklmnopqrstuvwxyzMONTUEDFRISA\t"


@given(
    st.one_of(
        st.text(),
        st.text(alphabet=_CRON_CHARS),
        st.lists(st.text(alphabet=_CRON_CHARS, min_size=1), min_size=5, max_size=5).map(" ".join),
    )
)
def test_any_text_is_accepted_or_gets_a_schedule_error(expr: str) -> None:
    try:
        normalised = validate_cron(expr)
    except ScheduleError as exc:
        assert str(exc)
    else:
        assert len(normalised.split(" ")) == 5


@pytest.mark.parametrize("name", ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"])
def test_known_time_zones(name: str) -> None:
    assert parse_timezone(name).key == name


def test_time_zone_name_is_stripped() -> None:
    assert parse_timezone(" Europe/Berlin ").key == "Europe/Berlin"


def test_unknown_time_zone_suggests_the_close_one() -> None:
    with pytest.raises(ScheduleError) as info:
        parse_timezone("Europe/Berln")
    assert str(info.value) == "unknown time zone 'Europe/Berln' (did you mean 'Europe/Berlin'?)"


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Not/AZone",
        "europe/berlin",  # keys are case-sensitive
        "Europe",  # a directory
        "../etc/passwd",
        "/etc/localtime",
        "zone.tab",  # a data file next to the zones
        "localtime",  # the host's setting: would make the schedule machine-dependent
    ],
)
def test_unknown_time_zones_are_rejected(name: str) -> None:
    with pytest.raises(ScheduleError, match=r"^unknown time zone '"):
        parse_timezone(name)
