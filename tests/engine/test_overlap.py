"""The overlap policy for a new run of a job that may already be active."""

import pytest

from jobs.engine import OverlapDecision, OverlapPolicy, RunStatus, decide_overlap

P, R = OverlapPolicy, RunStatus


@pytest.mark.parametrize("policy", list(OverlapPolicy))
def test_no_active_run_always_starts(policy):
    assert decide_overlap(policy, []) == OverlapDecision(R.RUNNING, (), "no other run is active")


@pytest.mark.parametrize(
    ("policy", "active", "expected"),
    [
        (P.ALLOW, [12], OverlapDecision(R.RUNNING, (), "allowed alongside run 12")),
        (P.SKIP, [12], OverlapDecision(R.SKIPPED, (), "skipped: run 12 is still active")),
        (P.QUEUE, [12], OverlapDecision(R.QUEUED, (), "queued behind run 12")),
        (
            P.REPLACE,
            [12],
            OverlapDecision(R.QUEUED, (12,), "replaces run 12; starts once it has stopped"),
        ),
        (P.SKIP, [13, 12], OverlapDecision(R.SKIPPED, (), "skipped: runs 12, 13 are still active")),
        (P.QUEUE, [13, 12, 13], OverlapDecision(R.QUEUED, (), "queued behind runs 12, 13")),
        (
            P.REPLACE,
            [13, 12],
            OverlapDecision(
                R.QUEUED, (12, 13), "replaces runs 12, 13; starts once they have stopped"
            ),
        ),
    ],
)
def test_policies(policy, active, expected):
    assert decide_overlap(policy, active) == expected


def test_accepts_the_stored_string_and_rejects_unknown_policies():
    assert decide_overlap("queue", [3]).start == R.QUEUED
    with pytest.raises(ValueError):
        decide_overlap("sometimes", [3])
