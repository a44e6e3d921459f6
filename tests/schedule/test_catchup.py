"""due_fires: what a scheduler tick runs after a normal tick, a late tick and downtime."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from jobs.schedule import CatchUp, DueFires, due_fires

HOURLY = "0 * * * *"
GRACE = timedelta(seconds=60)
WINDOW = timedelta(hours=3)
BERLIN = ZoneInfo("Europe/Berlin")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def tick(
    next_fire_at: datetime,
    now: datetime,
    policy: CatchUp,
    *,
    expr: str = HOURLY,
    tz: str = "UTC",
    window: timedelta = WINDOW,
    grace: timedelta = GRACE,
    limit: int = 100,
) -> DueFires:
    return due_fires(expr, tz, next_fire_at, now, policy, window, grace, limit)


def hours(*hs: int) -> tuple[datetime, ...]:
    return tuple(utc(2026, 5, 4, h) for h in hs)


@pytest.mark.parametrize("policy", list(CatchUp))
def test_not_due_returns_next_fire_at_unchanged(policy: CatchUp) -> None:
    stored = datetime(2026, 5, 4, 12, tzinfo=BERLIN)
    result = tick(stored, stored - timedelta(seconds=1), policy)
    assert result == DueFires((), utc(2026, 5, 4, 10), 0)
    assert result.next_fire_at.tzinfo is UTC


@pytest.mark.parametrize("policy", list(CatchUp))
def test_due_exactly_now(policy: CatchUp) -> None:
    assert tick(utc(2026, 5, 4, 10), utc(2026, 5, 4, 10), policy) == DueFires(
        hours(10), utc(2026, 5, 4, 11), 0
    )


@pytest.mark.parametrize("policy", list(CatchUp))
def test_normal_tick_a_second_late_runs_for_every_policy(policy: CatchUp) -> None:
    assert tick(utc(2026, 5, 4, 10), utc(2026, 5, 4, 10, 0, 1), policy) == DueFires(
        hours(10), utc(2026, 5, 4, 11), 0
    )


# Downtime: due at 10:00, back at 15:00:30, so 10, 11, 12, 13, 14 and 15 o'clock are due.
STORED, BACK = utc(2026, 5, 4, 10), utc(2026, 5, 4, 15, 0, 30)


def test_latest_runs_only_the_most_recent() -> None:
    assert tick(STORED, BACK, CatchUp.LATEST) == DueFires(hours(15), utc(2026, 5, 4, 16), 5)


def test_latest_runs_even_when_late() -> None:
    now = utc(2026, 5, 4, 15, 40)
    assert tick(STORED, now, CatchUp.LATEST) == DueFires(hours(15), utc(2026, 5, 4, 16), 5)


def test_none_runs_what_is_still_on_time() -> None:
    assert tick(STORED, BACK, CatchUp.NONE) == DueFires(hours(15), utc(2026, 5, 4, 16), 5)


def test_none_runs_nothing_after_downtime() -> None:
    now = utc(2026, 5, 4, 15, 40)
    assert tick(STORED, now, CatchUp.NONE) == DueFires((), utc(2026, 5, 4, 16), 6)


def test_none_runs_every_on_time_fire_when_grace_spans_several() -> None:
    result = tick(utc(2026, 5, 4, 10), utc(2026, 5, 4, 10, 3), CatchUp.NONE, expr="* * * * *")
    assert result.run_for == (utc(2026, 5, 4, 10, 2), utc(2026, 5, 4, 10, 3))
    assert result.missed == 2


@pytest.mark.parametrize(
    ("late", "runs"),
    [(GRACE, True), (GRACE + timedelta(microseconds=1), False)],
    ids=["exactly-grace", "just-over"],
)
def test_grace_boundary(late: timedelta, runs: bool) -> None:
    result = tick(STORED, STORED + late, CatchUp.NONE)
    assert result.run_for == ((STORED,) if runs else ())
    assert result.missed == (0 if runs else 1)


def test_all_runs_the_window_oldest_first() -> None:
    # 15:00:30 - 3 h = 12:00:30, so 12:00 is just outside.
    assert tick(STORED, BACK, CatchUp.ALL) == DueFires(hours(13, 14, 15), utc(2026, 5, 4, 16), 3)


def test_all_window_boundary_is_inclusive() -> None:
    result = tick(STORED, utc(2026, 5, 4, 15), CatchUp.ALL)
    assert result.run_for == hours(12, 13, 14, 15)
    assert result.missed == 2


def test_all_keeps_the_latest_limit() -> None:
    assert tick(STORED, BACK, CatchUp.ALL, limit=2) == DueFires(
        hours(14, 15), utc(2026, 5, 4, 16), 4
    )


def test_all_never_runs_less_than_none() -> None:
    # A window shorter than grace still runs the on-time fire.
    result = tick(STORED, STORED + timedelta(seconds=1), CatchUp.ALL, window=timedelta(0))
    assert result.run_for == (STORED,)


def test_all_across_the_autumn_transition_is_every_real_hour() -> None:
    # Down from 00:00 CEST to 05:00 CET on 2026-10-25: seven real hours, two of them 02:00.
    stored, now = utc(2026, 10, 24, 22), utc(2026, 10, 25, 4)
    result = tick(stored, now, CatchUp.ALL, tz="Europe/Berlin", window=timedelta(days=1))
    assert result.run_for == tuple(stored + timedelta(hours=h) for h in range(7))
    assert result.next_fire_at == utc(2026, 10, 25, 5)
    assert [t.astimezone(BERLIN).hour for t in result.run_for] == [0, 1, 2, 2, 3, 4, 5]


def test_daily_job_after_days_of_downtime() -> None:
    # 09:00 Berlin = 07:00 UTC in summer. Down since Monday's run, back Thursday 10:00.
    result = tick(
        utc(2026, 5, 4, 7), utc(2026, 5, 7, 8), CatchUp.LATEST, expr="0 9 * * *", tz="Europe/Berlin"
    )
    assert result == DueFires((utc(2026, 5, 7, 7),), utc(2026, 5, 8, 7), 3)


def test_new_next_fire_at_is_strictly_after_now() -> None:
    result = tick(STORED, utc(2026, 5, 4, 15), CatchUp.LATEST)
    assert result.next_fire_at == utc(2026, 5, 4, 16)


def test_stored_time_off_the_schedule_still_counts() -> None:
    # The expression was edited after next_fire_at was stored; the stored time was promised.
    result = tick(utc(2026, 5, 4, 10, 17), utc(2026, 5, 4, 10, 17, 5), CatchUp.NONE)
    assert result == DueFires((utc(2026, 5, 4, 10, 17),), utc(2026, 5, 4, 11), 0)


def test_policy_may_be_the_stored_string() -> None:
    assert tick(STORED, BACK, "all") == tick(STORED, BACK, CatchUp.ALL)  # type: ignore[arg-type]


def test_output_is_utc_for_zoned_input() -> None:
    result = tick(STORED.astimezone(BERLIN), BACK.astimezone(BERLIN), CatchUp.ALL)
    assert all(t.tzinfo is UTC for t in (*result.run_for, result.next_fire_at))
    assert result == tick(STORED, BACK, CatchUp.ALL)


@pytest.mark.parametrize(
    "kwargs",
    [{"limit": 0}, {"window": timedelta(seconds=-1)}, {"grace": timedelta(seconds=-1)}],
)
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        tick(STORED, BACK, CatchUp.ALL, **kwargs)


def test_naive_now_is_rejected() -> None:
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        tick(STORED, datetime(2026, 5, 4, 15), CatchUp.LATEST)
