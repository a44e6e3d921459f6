"""Random interleavings of triggers, submits, exits, kills, retries, crashes and faults.

Each seed builds a small random process on the in-memory executor and plays a random
sequence of operations and faults against the real database — lost, repeated and refused
messages, throttled and crashing submits, and on PostgreSQL killed connections and pairs
of operations raced in two threads — checking after every operation that no task has two
live attempts and no final run has a live one. Then the faults stop, everything is
delivered, polled and finished, and every run must be final with its attempts, exit codes
and events in order.

CI plays a fixed list of seeds. ``SUNDIAL_FAULT_ITERATIONS=500`` plays more;
``SUNDIAL_FAULT_SEED=17`` replays one seed ten times (a failure prints its seed and
operation log; with races in threads a replay repeats the choices, not always the winner).

The seeds share one test, so the database is emptied once, not once per seed (on
PostgreSQL that flush costs more than a whole sequence); each seed deletes its own runs.
"""

from __future__ import annotations

import logging
import os
import traceback

import pytest
from django.db import connection

from executors.memory import MemoryExecutor
from tests.faults.conftest import Network, intercept, serve
from tests.faults.harness import Harness, describe, forget, play, quiesce
from tests.faults.invariants import EVENTUALLY, Violation

pytestmark = pytest.mark.django_db(transaction=True)

SEED = os.environ.get("SUNDIAL_FAULT_SEED")
ITERATIONS = int(os.environ.get("SUNDIAL_FAULT_ITERATIONS", "10" if SEED else "40"))
# A seed makes the same choices every time, but who wins a race in threads varies: one
# seed is replayed ITERATIONS times.
SEEDS = [int(SEED)] * ITERATIONS if SEED else list(range(ITERATIONS))


@pytest.fixture(autouse=True)
def _recover_stuck_submissions_at_once(settings):
    # A submit only stays SUBMITTING here when its worker "died", never while in flight
    # (reconcile is never raced against a submit).
    settings.SUNDIAL_SUBMIT_STUCK_AFTER_S = 0


def test_random_interleavings_keep_the_promises(monkeypatch, caplog):
    # The operation log tells the story; thousands of INFO lines and the tracebacks of
    # sends the broker refused on purpose would bury it.
    caplog.set_level(logging.WARNING, logger="jobs")
    caplog.set_level(logging.CRITICAL, logger="django.db.backends.base")
    broken: list[tuple[int, str]] = []  # (seed, promise)
    reports: dict[int, str] = {}  # the first failure of each seed
    for seed in SEEDS:
        executor = serve(monkeypatch, MemoryExecutor())
        network = intercept(monkeypatch, Network())
        h = Harness(seed, executor, network, threads=connection.vendor == "postgresql")
        violation = first_violation(h, operations=h.rng.randint(10, 40))
        if violation is not None:
            broken.append((seed, violation.invariant))
            reports.setdefault(seed, report(h, violation))
        forget(h)
    if broken:
        summary = [f"{len(broken)} of {len(SEEDS)} sequences broke a promise:"]
        summary += [f"  seed {seed}: {promise}" for seed, promise in broken]
        pytest.fail("\n\n".join(["\n".join(summary), *reports.values()]), pytrace=False)


def first_violation(h: Harness, operations: int) -> Violation | None:
    """Play the faulty sequence, stop the faults, settle; the first broken promise, if any."""
    try:
        play(h, operations)
        quiesce(h)
        for invariant in EVENTUALLY:
            invariant(h)
    except Violation as violation:
        return violation
    except Exception as exc:  # a harness bug, or an error outside any operation: show the seed
        trace = "".join(traceback.format_exception(exc)).rstrip()
        return Violation("the sequence runs to its end", trace)
    return None


def report(h: Harness, violation: Violation) -> str:
    return "\n".join(
        [
            f"seed {h.seed}: {violation.invariant}",
            f"  {violation.detail}",
            f"replay: SUNDIAL_FAULT_SEED={h.seed} pytest tests/faults/test_interleavings.py",
            "operation log:",
            *h.log,
            *describe(h),
        ]
    )
