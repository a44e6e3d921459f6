"""next_continuous: the next run of a continuous schedule."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jobs.schedule import next_continuous

BERLIN = ZoneInfo("Europe/Berlin")
NOW = datetime(2026, 5, 4, 12, tzinfo=UTC)


def test_never_ran_means_now_in_utc() -> None:
    result = next_continuous(None, timedelta(minutes=5), NOW.astimezone(BERLIN))
    assert result == NOW
    assert result.tzinfo is UTC


def test_min_gap_after_the_last_run_ended() -> None:
    ended = NOW - timedelta(minutes=2)
    assert next_continuous(ended, timedelta(minutes=5), NOW) == NOW + timedelta(minutes=3)


def test_past_result_is_returned_as_is_so_the_caller_sees_it_due() -> None:
    ended = NOW - timedelta(hours=1)
    assert next_continuous(ended, timedelta(minutes=5), NOW) == ended + timedelta(minutes=5)


def test_zero_gap() -> None:
    assert next_continuous(NOW, timedelta(0), NOW) == NOW


def test_gap_is_real_time_across_the_spring_transition() -> None:
    # Ended 01:30 CET on 2026-03-29. One real hour later is 03:30 CEST (01:30 UTC); adding on
    # the Berlin wall clock would give the non-existent 02:30.
    ended = datetime(2026, 3, 29, 1, 30, tzinfo=BERLIN)
    result = next_continuous(ended, timedelta(hours=1), ended)
    assert result == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    assert result.astimezone(BERLIN).strftime("%H:%M %Z") == "03:30 CEST"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="min_gap"):
        next_continuous(None, timedelta(seconds=-1), NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        next_continuous(datetime(2026, 5, 4), timedelta(0), NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        next_continuous(None, timedelta(0), datetime(2026, 5, 4))
