"""The invariants catch what they promise to: a clean run passes, each planted defect fails."""

from __future__ import annotations

import pytest

from jobs.models import ProcessRun, TaskEvent, TaskRun, Trigger
from jobs.orchestrator import trigger_run
from jobs.supervision import poll_running
from tests.conftest import make_process
from tests.faults.conftest import deliver
from tests.faults.harness import Harness
from tests.faults.invariants import EVENTUALLY, Violation, live_attempts

pytestmark = pytest.mark.django_db(transaction=True)

RETRYING = {"executor": "memory", "config": {}, "max_attempts": 2, "retry_initial_delay_s": 0}


@pytest.fixture
def h(memory_executor, network) -> Harness:
    h = Harness(0, memory_executor, network, threads=False)
    h.process = make_process(
        "planted", {"extract": RETRYING, "load": {**RETRYING, "requires": ["extract"]}}
    )
    return h


def deliver_all(h: Harness) -> None:
    while h.network.pending:
        deliver(h.network.take(0))


def extract_running(h: Harness) -> ProcessRun:
    run = trigger_run(h.process, Trigger.MANUAL)
    deliver_all(h)
    h.executor.start("mem-1")
    return run


def finished(h: Harness) -> ProcessRun:
    run = extract_running(h)
    h.executor.finish("mem-1", 0)
    poll_running()
    deliver_all(h)
    h.executor.finish("mem-2", 0)
    poll_running()
    run.refresh_from_db()
    assert run.status == "succeeded"
    return run


def check_all(h: Harness) -> None:
    h.check()
    for invariant in EVENTUALLY:
        invariant(h)


def test_a_clean_run_keeps_every_promise(h):
    finished(h)
    check_all(h)
    assert live_attempts(h) == []


def second_live_attempt(h: Harness) -> None:
    run = extract_running(h)
    TaskRun.objects.create(run=run, task_name="extract", number=2, executor="memory")
    TaskRun.objects.filter(run=run, number=2).update(status="running")


def final_run_with_a_live_job(h: Harness) -> None:
    run = extract_running(h)
    ProcessRun.objects.filter(pk=run.pk).update(status="killed")


def exit_code_lost(h: Harness) -> None:
    finished(h)
    TaskRun.objects.filter(task_name="load").update(exit_code=None)


def exit_code_invented(h: Harness) -> None:
    run = finished(h)
    TaskRun.objects.create(
        run=run, task_name="load", round=2, executor="memory", status="failed", exit_code=1
    )


def event_missing(h: Harness) -> None:
    finished(h)
    TaskEvent.objects.filter(kind="succeeded", task_run__task_name="load").delete()


def attempts_exceeded(h: Harness) -> None:
    run = finished(h)
    TaskRun.objects.create(run=run, task_name="extract", number=3, executor="memory")


def run_left_running(h: Harness) -> None:
    run = finished(h)
    ProcessRun.objects.filter(pk=run.pk).update(status="running")


@pytest.mark.parametrize(
    ("plant", "promise"),
    [
        (second_live_attempt, "at most one live attempt per task"),
        (final_run_with_a_live_job, "a final run has no live attempt"),
        (exit_code_lost, "no exit code lost"),
        (exit_code_invented, "no exit code invented"),
        (event_missing, "every decision is written as an event"),
        (attempts_exceeded, "no task exceeds its attempts within a round"),
        (run_left_running, "every run reaches a final state once the faults stop"),
    ],
)
def test_a_planted_defect_breaks_its_promise(h, plant, promise):
    plant(h)
    with pytest.raises(Violation) as broken:
        check_all(h)
    assert broken.value.invariant == promise
