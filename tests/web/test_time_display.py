"""Fire times read in the process's wall clock, with UTC beside them."""

from datetime import UTC, datetime

from jobs.views import local_and_utc

WINTER = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def test_local_time_first_then_utc():
    assert local_and_utc(WINTER, "Europe/Berlin") == "2026-11-24 09:00 CET (08:00 UTC)"


def test_summer_time_has_its_own_abbreviation():
    summer = datetime(2026, 7, 1, 7, 0, tzinfo=UTC)
    assert local_and_utc(summer, "Europe/Berlin") == "2026-07-01 09:00 CEST (07:00 UTC)"


def test_the_utc_date_is_shown_when_it_differs():
    late = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)
    assert local_and_utc(late, "Europe/Berlin") == "2026-11-25 00:30 CET (2026-11-24 23:30 UTC)"


def test_utc_processes_are_not_shown_twice():
    assert local_and_utc(WINTER, "UTC") == "2026-11-24 08:00 UTC"
