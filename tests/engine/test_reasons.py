"""waiting_reasons: one sentence per unfinished task."""

from datetime import datetime, timedelta, timezone

import pytest

from jobs.engine import RunStatus, waiting_reasons
from tests.engine.helpers import T0, S, at, attempt, make_state, statuses, task

TASKS = [
    task("extract"),
    task("clean"),
    task("load", requires=["extract"], after=["clean"]),
]


@pytest.mark.parametrize(
    ("extract", "clean", "expected"),
    [
        (S.RUNNING, S.RUNNING, "waiting for extract, clean"),
        (S.SUCCEEDED, S.RUNNING, "waiting for clean"),
        (S.RUNNING, S.FAILED, "waiting for extract"),
        (S.SUCCEEDED, S.FAILED, "ready: waiting for a worker"),
        (S.FAILED, S.RUNNING, "skipping: required upstream 'extract' failed"),
    ],
)
def test_waiting_lists_unsatisfied_upstreams_only(extract, clean, expected):
    state = statuses(TASKS, extract=extract, clean=clean)
    assert waiting_reasons(state, T0)["load"] == expected


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (S.READY, "ready: waiting for a worker"),
        (S.SUBMITTING, "submitting"),
        (S.SUBMITTED, "submitted: waiting to start"),
        (S.RUNNING, "running"),
    ],
)
def test_stage_texts(status, expected):
    state = statuses([task("a")], a=status)
    assert waiting_reasons(state, T0) == {"a": expected}


def test_running_with_time_limit_shows_deadline_in_utc():
    spec = task("a", time_limit_s=1800)
    state = make_state([spec], [attempt("a", S.RUNNING, started_at=T0)])
    assert waiting_reasons(state, at(60)) == {"a": "running (time limit 14:30:00 UTC)"}


def test_times_are_shown_in_utc_whatever_the_zone():
    spec = task("a", time_limit_s=60)
    paris = timezone(timedelta(hours=1))
    started = datetime(2025, 3, 1, 15, 0, tzinfo=paris)  # 14:00 UTC
    state = make_state([spec], [attempt("a", S.RUNNING, started_at=started)])
    assert waiting_reasons(state, started) == {"a": "running (time limit 14:01:00 UTC)"}


def test_retry_waiting_for_backoff():
    spec = task("a", max_attempts=3)
    state = make_state(
        [spec],
        [attempt("a", S.FAILED), attempt("a", number=2, not_before=at(310))],
    )
    assert waiting_reasons(state, T0) == {"a": "retry 2 of 3 at 14:05:10 UTC"}
    assert waiting_reasons(state, at(310)) == {"a": "ready: waiting for a worker"}


def test_stopping_shows_the_terminate_reason():
    state = make_state(
        [task("a"), task("b")],
        [
            attempt("a", S.RUNNING, stop_requested=True, stop_reason="run killed"),
            attempt("b", S.SUBMITTED, stop_requested=True),
        ],
    )
    assert waiting_reasons(state, T0) == {"a": "stopping: run killed", "b": "stopping"}


def test_final_tasks_are_left_out():
    state = statuses(TASKS, extract=S.SUCCEEDED, clean=S.SKIPPED, load=S.FAILED)
    assert waiting_reasons(state, T0) == {}


def test_killed_run_pending_tasks_are_being_cancelled():
    state = make_state([task("a")], [attempt("a")], kill=True)
    assert waiting_reasons(state, T0) == {"a": "cancelling: run killed"}


def test_queued_run():
    state = make_state([task("a")], [], status=RunStatus.QUEUED)
    assert waiting_reasons(state, T0) == {"a": "queued: the run has not started"}
