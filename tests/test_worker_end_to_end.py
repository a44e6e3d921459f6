"""A run driven only by Celery messages through a real worker and broker (Redis in CI)."""

import time

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connections

from jobs.models import Trigger
from jobs.orchestrator import trigger_run
from jobs.supervision import sweep
from sundial_site.celery import app
from tests.conftest import make_process, purge_task_queue
from tests.orchestrator.driving import attempts, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def worker():
    purge_task_queue()
    with start_worker(
        app, pool="threads", concurrency=4, perform_ping_check=False, loglevel="WARNING"
    ):
        yield
    connections.close_all()


def test_a_run_with_a_retry_finishes_through_the_worker(worker, tmp_path):
    marker = tmp_path / "once"
    process = make_process(
        "e2e",
        {
            "extract": {},
            "transform": {
                "config": {"shell": f"test -e {marker} || {{ touch {marker}; exit 1; }}"},
                "requires": ["extract"],
                "max_attempts": 2,
                "retry_initial_delay_s": 0.3,
                "retry_jitter": 0,
            },
            "load": {"requires": ["transform"]},
        },
    )
    run = trigger_run(process, Trigger.API)

    def finished():
        """the run to finish through the worker"""
        run.refresh_from_db()
        return run.finished_at is not None

    started = time.monotonic()
    wait_for(finished, timeout=30)
    assert run.status == "succeeded"
    assert attempts(run) == [
        ("extract", 1, "succeeded"),
        ("transform", 1, "failed"),
        ("load", 1, "succeeded"),  # every task's first attempt is created when the run starts
        ("transform", 2, "succeeded"),
    ]
    assert time.monotonic() - started < 10, "the retry was woken by its own message, not a sweep"
    assert sweep() == 0, "nothing was left for the safety net"


def test_a_successor_the_exiting_thread_cannot_submit_goes_through_the_broker(worker, monkeypatch):
    from jobs import local_runtime, submission

    refused = []

    def refuse_once(task_run_id):
        if not refused:
            refused.append(task_run_id)
            raise submission.SubmitLater("fork failed: resource temporarily unavailable")
        return submission.submit_task_run(task_run_id)

    monkeypatch.setattr(local_runtime.local_runtime(), "submit_ready", refuse_once)
    process = make_process("handover", {"a": {}, "b": {"requires": ["a"]}})
    run = trigger_run(process, Trigger.API)

    def finished():
        """the run to finish after the hand-over"""
        run.refresh_from_db()
        return run.finished_at is not None

    wait_for(finished, timeout=30)
    assert run.status == "succeeded"
    assert refused == [run.task_runs.get(task_name="b").pk]
