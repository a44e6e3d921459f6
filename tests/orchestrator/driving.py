"""Drive runs in tests the way a worker would, without a broker: submit what is ready, wait."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connection

from jobs.engine import FINAL_RUN, AttemptStatus
from jobs.models import ProcessRun, TaskRun
from jobs.orchestrator import settle_definition
from jobs.submission import submit_task_run
from jobs.supervision import advance_due_runs


def wait_for(predicate, timeout: float = 15.0, interval: float = 0.02):
    """Poll until predicate() is truthy; fail the test with a clear message on timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {predicate.__doc__ or predicate}")


def drive(run: ProcessRun, timeout: float = 20.0) -> ProcessRun:
    """Submit every due READY attempt and fire due wake-ups until the run is final."""

    def finished():
        """the run to finish"""
        # What a worker does with the message a run's end sends: a queued run starts.
        settle_definition(run.definition_id)
        advance_due_runs()
        for pk in TaskRun.objects.filter(run=run, status=AttemptStatus.READY).values_list(
            "pk", flat=True
        ):
            submit_task_run(pk)
        run.refresh_from_db()
        return run.status in FINAL_RUN

    wait_for(finished, timeout)
    settle_definition(run.definition_id)
    return run


def attempts(run: ProcessRun) -> list[tuple[str, int, str]]:
    """(task, attempt, status) of every attempt, in creation order."""
    return list(run.task_runs.order_by("id").values_list("task_name", "number", "status"))


def race(*calls: Callable[[], Any]) -> list[tuple[Any, Exception | None]]:
    """Run the calls in threads released at the same instant; (result, exception) of each.

    Each thread closes its own database connection, as a worker thread's would be.
    """
    barrier = threading.Barrier(len(calls))
    outcomes: list[tuple[Any, Exception | None]] = [(None, None)] * len(calls)

    def run(i: int, call: Callable[[], Any]) -> None:
        barrier.wait()
        try:
            outcomes[i] = (call(), None)
        except Exception as exc:  # the caller decides what it means
            outcomes[i] = (None, exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes
