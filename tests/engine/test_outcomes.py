"""attempt_outcome: how an attempt ended, as a status and a reason."""

import pytest

from jobs.engine import Backoff, ScheduleRetry, attempt_outcome, step
from tests.engine.helpers import T0, S, at, attempt, make_state, task

PLAIN = task("a", time_limit_s=30)
EXPLICIT = task("a", require_explicit_success=True)


@pytest.mark.parametrize(
    ("spec", "exit_code", "reported", "terminated", "expected"),
    [
        (PLAIN, 0, None, None, (S.SUCCEEDED, "exit code 0")),
        (PLAIN, 0, True, None, (S.SUCCEEDED, "exit code 0, success reported")),
        (PLAIN, 0, False, None, (S.FAILED, "exited 0 but reported failure")),
        (PLAIN, 3, None, None, (S.FAILED, "exit code 3")),
        (PLAIN, 3, True, None, (S.FAILED, "exit code 3")),
        (PLAIN, -9, None, None, (S.FAILED, "killed by signal 9 (SIGKILL)")),
        (PLAIN, -15, None, None, (S.FAILED, "killed by signal 15 (SIGTERM)")),
        (PLAIN, -200, None, None, (S.FAILED, "killed by signal 200")),
        (PLAIN, None, True, None, (S.FAILED, "no exit code")),
        (EXPLICIT, 0, True, None, (S.SUCCEEDED, "exit code 0, success reported")),
        (EXPLICIT, 0, None, None, (S.FAILED, "exited 0 without reporting success")),
        (EXPLICIT, 0, False, None, (S.FAILED, "exited 0 but reported failure")),
        # A termination we asked for wins over whatever the process said on its way out.
        (PLAIN, 0, True, S.TIMED_OUT, (S.TIMED_OUT, "time limit of 30s exceeded")),
        (PLAIN, -15, None, S.KILLED, (S.KILLED, "killed")),
        # Our own stop (lost, worker stopped): a task that still ends well succeeded.
        (PLAIN, -15, None, S.FAILED, (S.FAILED, "stopped (killed by signal 15 (SIGTERM))")),
        (PLAIN, None, None, S.FAILED, (S.FAILED, "stopped")),
        (PLAIN, None, False, S.FAILED, (S.FAILED, "stopped")),
        # A lost process's exit code is unknowable; a success it reported still counts.
        (
            PLAIN,
            None,
            True,
            S.FAILED,
            (S.SUCCEEDED, "success reported; exit code unknown (stopped)"),
        ),
        (PLAIN, 0, None, S.FAILED, (S.SUCCEEDED, "exit code 0")),
        (EXPLICIT, 0, True, S.FAILED, (S.SUCCEEDED, "exit code 0, success reported")),
        (EXPLICIT, 0, None, S.FAILED, (S.FAILED, "stopped (exited 0 without reporting success)")),
        (EXPLICIT, None, None, S.TIMED_OUT, (S.TIMED_OUT, "time limit exceeded")),
    ],
)
def test_attempt_outcome(spec, exit_code, reported, terminated, expected):
    assert attempt_outcome(spec, exit_code, reported, terminated) == expected


def test_a_killed_attempt_keeps_why_it_was_stopped():
    assert attempt_outcome(PLAIN, -15, None, S.KILLED, "replaced by run 12") == (
        S.KILLED,
        "replaced by run 12",
    )


@pytest.mark.parametrize(
    "why", ["lost: no heartbeat since 14:05:00 UTC (its worker stopped)", "worker stopped"]
)
def test_a_stop_that_counts_as_a_failure_keeps_why(why):
    assert attempt_outcome(PLAIN, None, None, S.FAILED, why) == (S.FAILED, why)
    assert attempt_outcome(PLAIN, 143, None, S.FAILED, why) == (S.FAILED, f"{why} (exit code 143)")


def test_a_stop_that_counts_as_a_failure_is_retried_per_policy():
    spec = task("a", max_attempts=2, backoff=Backoff(initial_delay_s=5))
    status, _ = attempt_outcome(spec, None, None, S.FAILED, "worker stopped")
    state = make_state([spec], [attempt("a", status, finished_at=T0)])
    assert step(state, T0).actions == (
        ScheduleRetry("a", 1, 2, at(5), "retry 2 of 2 at 14:00:05 UTC"),
    )


@pytest.mark.parametrize("terminated", [S.SUCCEEDED, S.SKIPPED, S.RUNNING, S.WAITING])
def test_terminated_as_must_be_a_termination(terminated):
    with pytest.raises(ValueError, match="TIMED_OUT, KILLED or FAILED"):
        attempt_outcome(PLAIN, 0, None, terminated)
