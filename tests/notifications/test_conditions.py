"""Which alert conditions hold: missed starts, long runs and tasks, and deadlines, over plain
values."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from notifications.conditions import (
    Cleared,
    Facts,
    RunningAttempt,
    RunningRun,
    deadlines_missed,
    long_runs,
    long_tasks,
    missed_starts,
    p95,
    review,
    typical_duration_s,
    wall_instant,
)
from notifications.decide import AlertKind

MISSED, LONG, DEADLINE = AlertKind.MISSED_START, AlertKind.LONG_RUNNING, AlertKind.DEADLINE
NOON = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
NY = ZoneInfo("America/New_York")
CRON = Facts(name="orders", zone="UTC", scheduled=True, grace_s=300)


def s(seconds: float) -> timedelta:
    return timedelta(seconds=seconds)


def keys(found) -> list[str]:
    return [c.key for c in found]


# Missed start ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (CRON, []),  # no fire time: nothing is due
        (replace(CRON, next_fire_at=NOON + s(60)), []),  # due later
        (replace(CRON, next_fire_at=NOON - s(299)), []),  # within the grace
        (replace(CRON, next_fire_at=NOON - s(300)), []),  # exactly the grace: not yet
        (replace(CRON, next_fire_at=NOON - s(301)), ["2026-11-24T11:54:59+00:00"]),
        (replace(CRON, next_fire_at=NOON - s(3600), grace_s=7200), []),  # a long grace
        (replace(CRON, next_fire_at=NOON - s(86400), paused=True), []),
        (replace(CRON, next_fire_at=NOON - s(86400), archived=True), []),
        (replace(CRON, next_fire_at=NOON - s(86400), scheduled=False), []),  # manual only
    ],
)
def test_a_fire_time_the_scheduler_has_not_taken(facts, expected):
    assert keys(missed_starts(facts, NOON)) == expected


@pytest.mark.parametrize(
    ("queued", "expected"),
    [
        ((), []),
        ((NOON - s(300),), []),  # waiting exactly the grace
        ((NOON - s(301),), ["2026-11-24T11:54:59+00:00"]),
        ((NOON - s(3600), NOON - s(60)), ["2026-11-24T11:00:00+00:00"]),  # only the late one
        (
            (NOON - s(60), NOON - s(7200), NOON - s(3600)),
            [
                "2026-11-24T10:00:00+00:00",
                "2026-11-24T11:00:00+00:00",
            ],
        ),
    ],
)
def test_a_schedule_made_run_still_queued(queued, expected):
    assert keys(missed_starts(replace(CRON, queued_for=queued), NOON)) == expected


def test_a_fire_time_taken_late_whose_run_waits_is_one_occurrence():
    due = NOON - s(3600)
    unclaimed = missed_starts(replace(CRON, next_fire_at=due), NOON)
    claimed_but_queued = missed_starts(
        replace(CRON, next_fire_at=NOON + s(3600), queued_for=(due,)), NOON
    )
    assert keys(unclaimed) == keys(claimed_but_queued) == ["2026-11-24T11:00:00+00:00"]


def test_keys_are_utc_however_the_fire_time_was_read():
    due = (NOON - s(3600)).astimezone(NY)
    assert keys(missed_starts(replace(CRON, next_fire_at=due), NOON)) == [
        "2026-11-24T11:00:00+00:00"
    ]


def test_a_missed_start_says_when_it_was_due_on_the_process_clock_and_how_late():
    facts = replace(CRON, zone="Europe/Berlin", next_fire_at=NOON - s(3600 + 420))
    (found,) = missed_starts(facts, NOON)
    assert found.message == (
        "orders was due to start at 2026-11-24 11:53 CET and 1h 07m later the scheduler has"
        " still not started it (grace: 5m 00s). Are celery beat and the workers running?"
    )


def test_a_paused_process_waits_for_no_queued_run():
    facts = replace(CRON, paused=True, queued_for=(NOON - s(3600),))
    assert missed_starts(facts, NOON) == []


# Long-running ---------------------------------------------------------------------------

RUN = RunningRun(42, NOON - s(3600))  # running for an hour at NOON
TEN_MINUTES = (600.0,) * 10


@pytest.mark.parametrize(
    ("thresholds", "successes", "expected"),
    [
        ({}, TEN_MINUTES, []),  # no threshold: never long
        ({"long_running_after_s": 3600}, (), []),  # exactly the limit: not yet
        ({"long_running_after_s": 3599}, (), ["42"]),
        ({"long_running_factor": 2.0}, TEN_MINUTES, ["42"]),  # 60 min > 2 times 10 min
        ({"long_running_factor": 6.0}, TEN_MINUTES, []),  # 60 min == 6 times 10 min
        ({"long_running_factor": 2.0}, (600.0,) * 4, []),  # fewer than 5 successes
        ({"long_running_factor": 2.0}, (600.0,) * 5, ["42"]),  # 5 are enough
        ({"long_running_factor": 2.0}, (), []),  # never succeeded
        ({"long_running_after_s": 7200, "long_running_factor": 2.0}, TEN_MINUTES, ["42"]),
        ({"long_running_after_s": 60, "long_running_factor": 9.0}, TEN_MINUTES, ["42"]),
    ],
)
def test_a_running_run_past_a_threshold(thresholds, successes, expected):
    facts = replace(CRON, running=(RUN,), recent_successes_s=successes, **thresholds)
    assert keys(long_runs(facts, NOON)) == expected


def test_the_message_names_the_threshold_and_both_durations():
    facts = replace(CRON, running=(RUN,), long_running_factor=2.0, recent_successes_s=TEN_MINUTES)
    (found,) = long_runs(facts, NOON)
    assert found.message == (
        "orders run 42 has been running for 1h 00m, longer than 2 times the p95 of its last 10"
        " successful runs (10m 00s), that is 20m 00s."
    )
    both = replace(facts, long_running_after_s=1800)
    (found,) = long_runs(both, NOON)
    assert "longer than its limit of 30m 00s and longer than 2 times" in found.message


def test_once_long_a_run_stays_long_until_it_ends():
    facts = replace(CRON, running=(RUN,), long_running_after_s=3000)
    (found,) = long_runs(facts, NOON)
    # The threshold was raised meanwhile; the open alert holds while the run goes on.
    raised = replace(facts, long_running_after_s=None)
    assert long_runs(raised, NOON) == []
    assert keys(long_runs(raised, NOON, open_runs={"42"})) == ["42"]
    ended = replace(raised, running=())
    decision = review(ended, {(LONG, "42")}, NOON)
    assert decision.cleared == (Cleared(LONG, "42", "run 42 ended"),)
    assert found.key == "42"


def test_a_paused_processs_run_can_still_run_long():
    facts = replace(CRON, paused=True, running=(RUN,), long_running_after_s=60)
    assert keys(long_runs(facts, NOON)) == ["42"]


EXTRACT = RunningAttempt(7, 42, "extract", 2, NOON - s(3600))  # an hour at NOON
TASKS = replace(CRON, long_running_factor=2.0, running_attempts=(EXTRACT,))


@pytest.mark.parametrize(
    ("facts", "successes", "expected"),
    [
        (TASKS, {"extract": TEN_MINUTES}, ["task7"]),  # 60 min > 2 times 10 min
        (TASKS, {"extract": (1800.0,) * 10}, []),  # 60 min == 2 times 30 min
        (TASKS, {"extract": (600.0,) * 4}, []),  # fewer than 5 successes
        (TASKS, {"extract": (600.0,) * 5}, ["task7"]),  # 5 are enough
        (TASKS, {}, []),  # never succeeded
        (TASKS, {"load": TEN_MINUTES}, []),  # another task's successes say nothing of it
        (replace(TASKS, long_running_factor=None), {"extract": TEN_MINUTES}, []),
        # The fixed limit is the run's: its run is long (and says so), not the task.
        (replace(TASKS, long_running_factor=None, long_running_after_s=60), {}, []),
    ],
)
def test_a_running_task_past_its_factor_times_its_own_p95(facts, successes, expected):
    assert keys(long_tasks(replace(facts, task_successes_s=successes), NOON)) == expected


def test_tasks_are_judged_by_their_own_successes_not_each_others():
    load = RunningAttempt(8, 42, "load", 1, NOON - s(3600))
    facts = replace(
        TASKS,
        running_attempts=(EXTRACT, load),
        task_successes_s={"extract": TEN_MINUTES, "load": (3000.0,) * 10},
    )
    assert keys(long_tasks(facts, NOON)) == ["task7"]  # load usually takes 50 minutes


def test_a_long_task_names_its_task_its_run_and_both_durations():
    facts = replace(TASKS, task_successes_s={"extract": TEN_MINUTES})
    (found,) = long_tasks(facts, NOON)
    assert found.message == (
        "orders task extract (run 42, attempt 2) has been running for 1h 00m, longer than 2"
        " times the p95 of its last 10 successful attempts (10m 00s), that is 20m 00s."
    )


def test_once_long_a_task_stays_long_until_its_attempt_ends():
    facts = replace(TASKS, task_successes_s={"extract": TEN_MINUTES})
    assert [(c.kind, c.key) for c in review(facts, set(), NOON).opened] == [(LONG, "task7")]
    # Slower successes since (or a factor raised) leave the open alert open.
    slower = replace(facts, task_successes_s={"extract": (3600.0,) * 10})
    assert long_tasks(slower, NOON) == []
    assert review(slower, {(LONG, "task7")}, NOON) == review(facts, {(LONG, "task7")}, NOON)
    assert review(slower, {(LONG, "task7")}, NOON).cleared == ()
    ended = replace(slower, running_attempts=())
    assert review(ended, {(LONG, "task7")}, NOON).cleared == (
        Cleared(LONG, "task7", "the task's attempt ended"),
    )


def test_a_long_run_and_its_long_task_are_two_occurrences():
    facts = replace(
        TASKS,
        running=(RUN,),
        recent_successes_s=TEN_MINUTES,
        task_successes_s={"extract": TEN_MINUTES},
    )
    opened = review(facts, set(), NOON).opened
    assert sorted(c.key for c in opened) == ["42", "task7"]
    ended = replace(facts, running=(), running_attempts=())
    assert [c.why for c in review(ended, {(LONG, "42"), (LONG, "task7")}, NOON).cleared] == [
        "run 42 ended",
        "the task's attempt ended",
    ]


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([1.0, 2.0], 1.95),
        ([10.0] * 5, 10.0),
        ([float(v) for v in range(1, 21)], 19.05),
        ([float(v) for v in range(101)], 95.0),
        ([5.0, 1.0, 3.0, 2.0, 4.0], 4.8),  # order does not matter
    ],
)
def test_p95(values, expected):
    assert p95(values) == pytest.approx(expected)


def test_only_the_last_30_successes_count():
    old_and_slow = (60.0,) * 30 + (10_000.0,) * 10
    assert typical_duration_s(old_and_slow) == 60.0
    assert typical_duration_s((60.0,) * 4) is None


# Deadline -------------------------------------------------------------------------------

NINE_NY = Facts(name="report", zone="America/New_York", scheduled=False, deadline=time(9, 0))


def ny(day: date, hour: int, minute: int = 0, fold: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NY, fold=fold)


NOV24 = date(2026, 11, 24)


@pytest.mark.parametrize(
    ("now", "last_success", "expected"),
    [
        (ny(NOV24, 8, 59), None, ["2026-11-23"]),  # before today's: yesterday's had passed
        (ny(NOV24, 8, 59), ny(NOV24, 8, 0), []),  # succeeded today: nothing since
        (ny(NOV24, 8, 59), ny(date(2026, 11, 23), 8, 0), []),  # yesterday was on time
        (ny(NOV24, 9, 0), ny(date(2026, 11, 23), 8, 0), ["2026-11-24"]),
        (ny(NOV24, 9, 0), ny(NOV24, 0, 0), []),  # midnight exactly counts as today
        (ny(NOV24, 9, 0), ny(NOV24, 0, 0) - s(1), ["2026-11-24"]),
        (ny(NOV24, 23, 59), ny(NOV24, 10, 0), []),  # late, but it succeeded
        # 02:30 New York is 07:30 UTC: the UTC date is not the local date.
        (ny(NOV24, 23, 30), ny(date(2026, 11, 23), 8, 0), ["2026-11-24"]),
    ],
)
def test_no_success_by_the_deadline(now, last_success, expected):
    facts = replace(NINE_NY, last_success_at=last_success)
    assert keys(deadlines_missed(facts, now)) == expected


def test_the_local_day_is_the_key_not_the_utc_one():
    facts = replace(NINE_NY, deadline=time(21, 0))
    now = ny(NOV24, 21, 30)  # 02:30 UTC on the 25th
    assert keys(deadlines_missed(facts, now)) == ["2026-11-24"]


def test_a_day_left_without_a_success_stays_open_and_the_next_opens_its_own():
    now = ny(date(2026, 11, 25), 9, 30)
    found = deadlines_missed(NINE_NY, now, open_days={NOV24})
    assert keys(found) == ["2026-11-24", "2026-11-25"]
    recovered = replace(NINE_NY, last_success_at=ny(date(2026, 11, 25), 9, 45))
    later = ny(date(2026, 11, 25), 9, 50)
    decision = review(recovered, {(DEADLINE, "2026-11-24"), (DEADLINE, "2026-11-25")}, later)
    assert [c.key for c in decision.cleared] == ["2026-11-24", "2026-11-25"]
    assert decision.cleared[0].why == "a run succeeded at 2026-11-25 09:45 EST"


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (replace(NINE_NY, deadline=None), []),
        (replace(NINE_NY, paused=True), []),
        (replace(NINE_NY, archived=True), []),
        (replace(NINE_NY, created_at=ny(NOV24, 9, 30)), []),  # did not exist at 09:00
        (replace(NINE_NY, created_at=ny(NOV24, 8, 30)), ["2026-11-24"]),
    ],
)
def test_no_deadline_alert(facts, expected):
    assert keys(deadlines_missed(facts, ny(NOV24, 10, 0))) == expected


SPRING = date(2026, 3, 8)  # New York: 02:00 EST -> 03:00 EDT
AUTUMN = date(2026, 11, 1)  # New York: 02:00 EDT -> 01:00 EST


@pytest.mark.parametrize(
    ("day", "at", "expected_utc"),
    [
        (date(2026, 3, 7), time(9, 0), datetime(2026, 3, 7, 14, 0, tzinfo=UTC)),  # EST
        (SPRING, time(0, 0), datetime(2026, 3, 8, 5, 0, tzinfo=UTC)),  # midnight, EST
        (SPRING, time(1, 59), datetime(2026, 3, 8, 6, 59, tzinfo=UTC)),
        (SPRING, time(2, 0), datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),  # skipped: the jump
        (SPRING, time(2, 30), datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),  # skipped: the jump
        (SPRING, time(3, 0), datetime(2026, 3, 8, 7, 0, tzinfo=UTC)),  # first EDT instant
        (SPRING, time(9, 0), datetime(2026, 3, 8, 13, 0, tzinfo=UTC)),  # EDT
        (AUTUMN, time(0, 0), datetime(2026, 11, 1, 4, 0, tzinfo=UTC)),  # EDT
        (AUTUMN, time(1, 30), datetime(2026, 11, 1, 5, 30, tzinfo=UTC)),  # first 01:30, EDT
        (AUTUMN, time(2, 0), datetime(2026, 11, 1, 7, 0, tzinfo=UTC)),  # EST
        (AUTUMN, time(9, 0), datetime(2026, 11, 1, 14, 0, tzinfo=UTC)),
    ],
)
def test_a_wall_time_on_dst_days(day, at, expected_utc):
    assert wall_instant(day, at, NY) == expected_utc


def test_a_zone_that_skips_midnight():
    # Santiago springs forward at 24:00 -> 01:00 (2026-09-06): that day begins at 01:00.
    zone = ZoneInfo("America/Santiago")
    assert wall_instant(date(2026, 9, 6), time(0, 0), zone) == datetime(
        2026, 9, 6, 4, 0, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("deadline", "now", "last_success", "expected"),
    [
        # A 02:30 deadline on the spring day falls at 03:00 EDT, when the clock jumps past.
        (time(2, 30), ny(SPRING, 1, 59), None, ["2026-03-07"]),
        (time(2, 30), ny(SPRING, 3, 0), ny(date(2026, 3, 7), 23, 0), ["2026-03-08"]),
        # (a second before the jump: 01:59:59 EST; wall-clock arithmetic would skip the gap)
        (time(2, 30), datetime(2026, 3, 8, 6, 59, 59, tzinfo=UTC), ny(SPRING, 0, 0) - s(1), []),
        # A 01:30 deadline on the autumn day falls at the first 01:30 (EDT) ...
        (time(1, 30), ny(AUTUMN, 1, 30), ny(date(2026, 10, 31), 23, 0), ["2026-11-01"]),
        (time(1, 29), ny(AUTUMN, 1, 29), ny(date(2026, 10, 31), 23, 0), ["2026-11-01"]),
        # ... and a success in the repeated hour, after the first 01:30, is late but counts.
        (time(1, 30), ny(AUTUMN, 1, 45, fold=1), ny(AUTUMN, 1, 10, fold=1), []),
        # The autumn day is 25 hours long: 23:30 is still that day, 9:00 the next one's.
        (time(9, 0), ny(AUTUMN, 23, 30), ny(AUTUMN, 8, 0), []),
        (time(9, 0), ny(date(2026, 11, 2), 9, 0), ny(AUTUMN, 8, 0), ["2026-11-02"]),
        # Midnight of the spring day is before the jump: a success at 00:30 EST counts.
        (time(9, 0), ny(SPRING, 9, 0), ny(SPRING, 0, 30), []),
        (time(9, 0), ny(SPRING, 9, 0), ny(date(2026, 3, 7), 23, 59), ["2026-03-08"]),
    ],
)
def test_deadlines_around_dst_in_new_york(deadline, now, last_success, expected):
    facts = replace(NINE_NY, deadline=deadline, last_success_at=last_success)
    assert keys(deadlines_missed(facts, now)) == expected


def test_the_deadline_message_says_the_day_the_time_and_the_last_success():
    facts = replace(NINE_NY, last_success_at=ny(date(2026, 11, 23), 8, 12))
    (found,) = deadlines_missed(facts, ny(NOV24, 9, 5))
    assert found.message == (
        "report has not succeeded on 2026-11-24 by its deadline of 09:00 America/New_York"
        " (2026-11-24 09:00 EST); its last success ended at 2026-11-23 08:12 EST."
    )


# Review: what opens, what clears, why ----------------------------------------------------


def test_review_opens_what_is_not_open_yet_and_clears_what_no_longer_holds():
    facts = replace(
        CRON,
        next_fire_at=NOON - s(3600),
        running=(RUN,),
        long_running_after_s=60,
        deadline=time(9, 0),
    )
    first = review(facts, set(), NOON)
    assert sorted((c.kind.value, c.key) for c in first.opened) == [
        ("deadline", "2026-11-24"),
        ("long_running", "42"),
        ("missed_start", "2026-11-24T11:00:00+00:00"),
    ]
    everything = {(c.kind, c.key) for c in first.opened}
    assert review(facts, everything, NOON) == review(facts, everything, NOON + s(1))
    assert review(facts, everything, NOON).opened == ()
    assert review(facts, everything, NOON).cleared == ()
    moved_on = replace(facts, next_fire_at=NOON + s(3600), running=(), last_success_at=NOON - s(10))
    assert review(moved_on, everything, NOON).cleared == (
        Cleared(DEADLINE, "2026-11-24", "a run succeeded at 2026-11-24 11:59 UTC"),
        Cleared(LONG, "42", "run 42 ended"),
        Cleared(
            MISSED,
            "2026-11-24T11:00:00+00:00",
            "the start due at 2026-11-24 11:00 UTC was made (or passed over by the catch-up"
            " policy)",
        ),
    )


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"paused": True}, "orders was paused"),
        ({"archived": True}, "orders was archived"),
        ({"scheduled": False}, "orders is no longer scheduled"),
    ],
)
def test_a_missed_start_clears_when_the_process_is_stopped(change, why):
    facts = replace(CRON, next_fire_at=NOON - s(3600))
    open_keys = {(MISSED, "2026-11-24T11:00:00+00:00")}
    assert review(facts, open_keys, NOON).cleared == ()
    (cleared,) = review(replace(facts, **change), open_keys, NOON).cleared
    assert cleared.why == why


def test_open_keys_read_from_the_database_are_plain_strings():
    facts = replace(CRON, next_fire_at=NOON - s(3600))
    stored = {("missed_start", "2026-11-24T11:00:00+00:00")}
    assert review(facts, stored, NOON).opened == ()
    assert review(facts, stored, NOON).cleared == ()
