"""Backoff delays and ScheduleRetry."""

import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs.engine import (
    Backoff,
    FinishRun,
    MarkReady,
    RunStatus,
    ScheduleRetry,
    Step,
    step,
)
from tests.engine.helpers import T0, S, at, attempt, make_state, statuses, task


@pytest.mark.parametrize(
    ("backoff", "delays"),
    [
        (Backoff(initial_delay_s=10, multiplier=1), [10, 10, 10, 10]),
        (Backoff(initial_delay_s=10, multiplier=2), [10, 20, 40, 80]),
        (Backoff(initial_delay_s=10, multiplier=3, max_delay_s=50), [10, 30, 50, 50]),
        (Backoff(initial_delay_s=0, multiplier=2), [0, 0, 0, 0]),
    ],
)
def test_delay_without_jitter(backoff, delays):
    assert [backoff.delay(n, "seed") for n in (1, 2, 3, 4)] == delays


def test_delay_cap_survives_huge_retry_numbers():
    assert Backoff(initial_delay_s=1, multiplier=10, max_delay_s=60).delay(5000, "s") == 60


def test_delay_rejects_retry_number_zero():
    with pytest.raises(ValueError, match="retry number"):
        Backoff().delay(0, "s")


@given(
    retry=st.integers(1, 12),
    jitter=st.floats(0, 1),
    seed=st.text(max_size=20),
)
def test_jitter_stays_within_bounds_and_is_deterministic(retry, jitter, seed):
    backoff = Backoff(initial_delay_s=5, multiplier=2, max_delay_s=300, jitter=jitter)
    base = min(300, 5 * 2 ** (retry - 1))
    delay = backoff.delay(retry, seed)
    assert base * (1 - jitter) - 1e-9 <= delay <= min(300, base * (1 + jitter) + 1e-9)
    assert delay == backoff.delay(retry, seed)


@pytest.mark.parametrize(
    ("backoff", "retry", "low", "high"),
    [
        # The case: a 60 s cap with jitter 0.5 waited 88 s.
        (Backoff(initial_delay_s=60, multiplier=1, max_delay_s=60, jitter=0.5), 1, 30, 60),
        (Backoff(initial_delay_s=10, multiplier=2, max_delay_s=60, jitter=0.5), 1, 5, 15),
        # 40 s +/- 20 s: the part above the cap is cut off, not piled up at the cap.
        (Backoff(initial_delay_s=10, multiplier=2, max_delay_s=60, jitter=0.5), 3, 20, 60),
        (Backoff(initial_delay_s=10, multiplier=2, max_delay_s=60, jitter=0.5), 4, 30, 60),
        (Backoff(initial_delay_s=10, multiplier=2, max_delay_s=60, jitter=0.5), 400, 30, 60),
        (Backoff(initial_delay_s=10, multiplier=2, max_delay_s=60, jitter=1), 9, 0, 60),
    ],
)
def test_jitter_stays_within_the_cap(backoff, retry, low, high):
    delays = [backoff.delay(retry, f"seed-{i}") for i in range(200)]
    assert low <= min(delays) and max(delays) <= high
    # Spread over the whole range: a capped delay is jittered down, not clamped to the cap.
    assert min(delays) < low + (high - low) / 10 and max(delays) > high - (high - low) / 10
    assert delays.count(high) <= 1


@given(
    initial=st.floats(0, 1e9),
    multiplier=st.floats(0, 1e3),
    cap=st.floats(0, 1e9),
    jitter=st.floats(0, 5),
    retry=st.integers(1, 10_000),
    seed=st.text(max_size=10),
)
def test_delay_never_exceeds_the_cap(initial, multiplier, cap, jitter, retry, seed):
    backoff = Backoff(initial, multiplier, cap, jitter)
    assert 0 <= backoff.delay(retry, seed) <= cap


@given(jitter=st.floats(0, 5), seed=st.text(max_size=10))
def test_delay_is_never_negative(jitter, seed):
    assert Backoff(initial_delay_s=10, jitter=jitter).delay(1, seed) >= 0


def test_jitter_actually_varies_with_the_seed():
    backoff = Backoff(initial_delay_s=100, multiplier=1, jitter=0.5)
    delays = {backoff.delay(1, f"seed-{i}") for i in range(20)}
    assert len(delays) > 10
    assert min(delays) < 100 < max(delays)


def test_jitter_does_not_depend_on_the_hash_seed():
    code = "from jobs.engine import Backoff; print(Backoff(jitter=1).delay(3, 'run 1 load'))"
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for hash_seed in ("1", "2", "3")
    }
    assert len(outputs) == 1


def test_jitter_does_not_touch_the_global_rng():
    import random

    random.seed(1234)
    expected = random.random()
    random.seed(1234)
    Backoff(jitter=1).delay(2, "x")
    assert random.random() == expected


def test_failed_attempt_schedules_a_retry_after_its_finish():
    spec = task("load", max_attempts=3, backoff=Backoff(initial_delay_s=10, multiplier=2))
    state = make_state([spec], [attempt("load", S.FAILED, number=2, finished_at=at(5))])
    retry = ScheduleRetry("load", 1, 3, at(25), "retry 3 of 3 at 14:00:25 UTC")
    assert step(state, at(7)) == Step((retry,), at(25))


def test_retry_counts_from_now_when_finish_time_is_unknown():
    spec = task("load", max_attempts=2, backoff=Backoff(initial_delay_s=30))
    state = make_state([spec], [attempt("load", S.FAILED)])
    (retry,) = step(state, at(100)).actions
    assert retry.not_before == at(130)


def test_retry_stays_in_its_round():
    spec = task("load", max_attempts=2, backoff=Backoff(initial_delay_s=1))
    state = make_state(
        [spec],
        [
            attempt("load", S.FAILED, round=1, number=1),
            attempt("load", S.FAILED, round=1, number=2),
            attempt("load", S.FAILED, round=2, number=1, finished_at=T0),
        ],
    )
    (retry,) = step(state, T0).actions
    assert (retry.round, retry.number) == (2, 2)


def test_no_retry_after_max_attempts():
    spec = task("load", max_attempts=2)
    state = make_state([spec], [attempt("load", S.FAILED, number=2)])
    assert step(state, T0).actions == (FinishRun(RunStatus.FAILED, "failed: load"),)


@pytest.mark.parametrize(
    ("retry_on_timeout", "retried"),
    [(True, True), (False, False)],
)
def test_timeout_retries_only_when_asked(retry_on_timeout, retried):
    spec = task("load", max_attempts=3, retry_on_timeout=retry_on_timeout)
    (action,) = step(statuses([spec], load=S.TIMED_OUT), T0).actions
    assert isinstance(action, ScheduleRetry) == retried
    if not retried:
        assert action == FinishRun(RunStatus.FAILED, "failed: load")


def test_retry_attempt_becomes_ready_when_due():
    spec = task("load", max_attempts=3)
    state = make_state(
        [spec],
        [
            attempt("load", S.FAILED, number=1),
            attempt("load", S.WAITING, number=2, not_before=at(20)),
        ],
    )
    assert step(state, at(19)) == Step((), at(20))
    assert step(state, at(20)) == Step((MarkReady(102),), None)


def test_jittered_retry_is_deterministic_and_bounded_per_attempt():
    spec = task("load", max_attempts=2, backoff=Backoff(initial_delay_s=100, jitter=0.5))
    attempts = [attempt("load", S.FAILED, finished_at=T0)]
    times = set()
    for run_id in range(1, 30):
        state = make_state([spec], attempts, run_id=run_id)
        (retry,) = step(state, T0).actions
        assert retry == step(state, T0).actions[0]
        assert at(50) <= retry.not_before <= at(150)
        times.add(retry.not_before)
    assert len(times) > 15  # the seed includes the run, so runs don't retry in lockstep
