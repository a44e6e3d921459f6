"""Instants read on the process's wall clock, in the site's one date format, UTC on hover."""

from datetime import UTC, datetime

import pytest

from jobs.describe import process_zone, wall_clock
from jobs.models import ProcessDefinition

WINTER = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def zone(name: str):
    return process_zone(ProcessDefinition(timezone=name))


def test_local_time_shown_and_utc_on_hover():
    assert wall_clock(WINTER, zone("Europe/Berlin")) == (
        '<time datetime="2026-11-24T08:00:00+00:00" title="2026-11-24 08:00:00 UTC">'
        "2026-11-24 09:00:00 CET</time>"
    )


@pytest.mark.parametrize(
    ("when", "name", "shown"),
    [
        (datetime(2026, 7, 1, 7, 0, tzinfo=UTC), "Europe/Berlin", "2026-07-01 09:00:00 CEST"),
        (datetime(2026, 11, 24, 23, 30, tzinfo=UTC), "Europe/Berlin", "2026-11-25 00:30:00 CET"),
        (WINTER, "UTC", "2026-11-24 08:00:00 UTC"),
        # A zone name the admin would refuse (a row written elsewhere): still the instant.
        (WINTER, "Mars/Olympus", "2026-11-24 08:00:00 UTC"),
    ],
)
def test_each_zone_has_its_own_clock_and_abbreviation(when, name, shown):
    assert f">{shown}</time>" in wall_clock(when, zone(name))
