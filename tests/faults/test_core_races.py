"""Issue 5's races and faults in the core, each made to happen (barriers, not sleeps).

Each test failed on the code before the fix; the comment above it says how.
"""

from __future__ import annotations

import os
import threading

import pytest
from django.db import connection
from kombu.exceptions import OperationalError as BrokerDown

from jobs import engine
from jobs.models import ProcessRun, TaskRun, Trigger
from jobs.orchestrator import record_outcomes, request_kill, trigger_run
from jobs.submission import submit_task_run
from sundial_site.celery import app as celery_app
from tests.conftest import make_process
from tests.orchestrator.driving import attempts, drive, wait_for
from tests.workers import alive, task_pid

pytestmark = pytest.mark.django_db(transaction=True)


def _alive(task_run: TaskRun) -> bool:
    return alive(task_pid(task_run))


class PauseAfterDecision:
    """Holds the first engine step taken in a given thread until released.

    The step is pure, so pausing right after it leaves the caller exactly between reading
    the run's attempts and applying the decision: where a concurrent change makes the
    decision stale. Every other call goes through untouched.
    """

    def __init__(self, monkeypatch: pytest.MonkeyPatch, thread_name: str) -> None:
        self.decided = threading.Event()
        self.release = threading.Event()
        self._thread_name = thread_name
        real = engine.step

        def step(state, now):
            result = real(state, now)
            if threading.current_thread().name == thread_name and not self.decided.is_set():
                self.decided.set()
                assert self.release.wait(20), "the test never released the paused step"
            return result

        monkeypatch.setattr(engine, "step", step)


def _in_thread(name: str, call) -> tuple[threading.Thread, list]:
    outcome: list = []

    def run():
        try:
            outcome.append(call())
        except BaseException as exc:  # the test asserts on it
            outcome.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread, outcome


@pytest.mark.postgres  # SQLite serialises writers: a claim cannot commit inside a kill's step
# Before: the kill's Cancel of the READY attempt changed 0 rows unnoticed and FinishRun was
# applied anyway: a killed run whose task ran to the end, recorded "succeeded".
def test_a_kill_that_decided_on_a_ready_attempt_stops_it_when_a_submit_claims_it_first(
    monkeypatch,
):
    process = make_process("kill-vs-submit", {"work": {"config": {"command": ["sleep", "30"]}}})
    run = trigger_run(process, Trigger.MANUAL)
    attempt = run.task_runs.get()
    assert attempt.status == "ready"
    pause = PauseAfterDecision(monkeypatch, "killer")

    killer, killed = _in_thread("killer", lambda: request_kill(run.pk, reason="stop it"))
    assert pause.decided.wait(10), "the kill decided to cancel the READY attempt"
    assert submit_task_run(attempt.pk), "the submit claims it meanwhile (no run lock needed)"
    attempt.refresh_from_db()
    assert attempt.status == "running" and _alive(attempt)
    pause.release.set()
    killer.join(20)
    assert killed == [True]

    run.refresh_from_db()
    assert run.status == "running", "never final while one of its attempts is active"
    attempt.refresh_from_db()
    assert attempt.stop_requested_at is not None, "the claimed attempt is being stopped"
    run = drive(run)  # the owner (this process's runtime) carries the stop out
    assert run.status == "killed"
    assert attempts(run) == [("work", 1, "killed")]
    assert not _alive(attempt)


# Before: recording a batch committed run by run and an after-commit send raising kombu's
# OperationalError escaped, so every later exit of the batch was lost and ran again as "lost".
def test_exits_are_recorded_while_the_broker_is_down(monkeypatch):
    runs = [
        trigger_run(make_process(f"blip{i}", {"a": {}, "b": {"requires": ["a"]}}), Trigger.MANUAL)
        for i in range(3)
    ]
    for run in runs:
        TaskRun.objects.filter(run=run, task_name="a").update(status="running")

    def broker_down(*args, **kwargs):
        raise BrokerDown("Error 111 connecting to the broker")

    monkeypatch.setattr(celery_app, "send_task", broker_down)
    record_outcomes(
        [
            # The local runtime hands exits over in batches like this one, across runs.
            *(
                orchestrator_outcome(run, "a", exit_code)
                for run, exit_code in zip(runs, (0, 3, 0), strict=True)
            ),
        ]
    )
    assert [dict(run.task_runs.values_list("task_name", "status")) for run in runs] == [
        {"a": "succeeded", "b": "ready"},
        {"a": "failed", "b": "skipped"},
        {"a": "succeeded", "b": "ready"},
    ]
    assert run_exit_codes(runs) == [0, 3, 0]


def orchestrator_outcome(run: ProcessRun, task: str, exit_code: int):
    from jobs.orchestrator import Outcome

    attempt = run.task_runs.get(task_name=task)
    return Outcome(attempt.pk, run.pk, exit_code)


def run_exit_codes(runs: list[ProcessRun]) -> list[int | None]:
    return [run.task_runs.get(task_name="a").exit_code for run in runs]


@pytest.mark.postgres
# Before: finishing a continuous run locked the run, then the definition; a trigger with
# overlap "replace" locks the definition, then the run: PostgreSQL aborted one of them.
def test_a_run_ending_and_a_replacing_trigger_do_not_deadlock(monkeypatch):
    process = make_process(
        "loop", {"work": {}}, schedule_kind="continuous", min_gap_seconds=5, overlap="replace"
    )
    run = trigger_run(process, Trigger.SCHEDULE)
    attempt = run.task_runs.get()
    TaskRun.objects.filter(pk=attempt.pk).update(status="running")
    pause = PauseAfterDecision(monkeypatch, "finisher")

    finisher, finished = _in_thread(
        "finisher", lambda: record_outcomes([orchestrator_outcome(run, "work", 0)])
    )
    assert pause.decided.wait(10), "the finisher holds the run's lock, about to finish it"
    trigger, triggered = _in_thread("trigger", lambda: trigger_run(process, Trigger.MANUAL))
    wait_for(lambda: _waiting_on_a_lock() >= 1, timeout=10)  # the trigger waits for the run
    pause.release.set()
    finisher.join(20)
    trigger.join(20)
    assert len(finished) == 1 and not isinstance(finished[0], BaseException), finished
    assert len(triggered) == 1 and isinstance(triggered[0], ProcessRun), triggered
    run.refresh_from_db()
    assert run.status == "succeeded"


def _waiting_on_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@pytest.mark.parametrize("limit", [0, 1])
# Before: a local time limit waited for the sweep (up to 2 s late), and a limit of 0 was no
# limit to the shell at all.
def test_the_owning_worker_enforces_a_local_time_limit_without_the_sweep(limit):
    process = make_process(
        f"limited{limit}",
        {
            "work": {
                "config": {"command": ["sleep", "30"], "kill_grace_s": 0},
                "time_limit_s": limit,
            }
        },
    )
    run = trigger_run(process, Trigger.MANUAL)
    attempt = run.task_runs.get()
    assert submit_task_run(attempt.pk)
    # No sweep, no broker message consumed: only this process's runtime is at work.
    attempt = wait_for(
        lambda: TaskRun.objects.filter(pk=attempt.pk, status="timed_out").first(), timeout=5
    )
    assert attempt.reason == f"time limit of {limit}s exceeded"
    assert (attempt.finished_at - attempt.started_at).total_seconds() < limit + 2.5
    assert not _alive(attempt)
    assert os.path.exists(attempt.log_ref)
