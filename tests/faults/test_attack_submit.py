"""Attacks on the submit path with real processes and real PostgreSQL, in this process.

Here this test process is the worker: its local runtime spawns, watches and records the
processes, and threads play the worker's pool threads; the messages a worker would receive
(advance, terminate) are delivered by calling their functions.
"""

import contextlib
import threading
import time
from datetime import timedelta

import pytest
from django.db import DatabaseError, connection
from django.utils import timezone

from jobs import orchestrator, submission
from jobs.engine import ACTIVE_ATTEMPT, FINAL_RUN
from jobs.models import ProcessRun, TaskRun, Trigger
from jobs.orchestrator import advance_run, request_kill, trigger_run
from jobs.submission import submit_task_run, terminate_task_run
from jobs.supervision import reconcile
from tests.conftest import make_process, purge_task_queue
from tests.orchestrator.driving import attempts, wait_for
from tests.workers import (
    alive,
    group_members,
    stop_task_processes,
    task_pid,
    wait_until_this_process_recorded_its_exits,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

RETRYING = {"max_attempts": 2, "retry_initial_delay_s": 0, "retry_jitter": 0}
LIVE = [s.value for s in ACTIVE_ATTEMPT]


class _InThread(threading.Thread):
    """Runs a call the way a worker's pool thread does: its own connection, errors kept."""

    def __init__(
        self, call, *args, barrier: threading.Barrier | None = None, delay: float = 0.0
    ) -> None:
        super().__init__()
        self.call, self.args, self.barrier, self.delay = call, args, barrier, delay
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            if self.barrier is not None:
                self.barrier.wait(timeout=10)
            time.sleep(self.delay)
            self.call(*self.args)
        except BaseException as exc:
            self.error = exc
        finally:
            connection.close()


@pytest.fixture(autouse=True)
def _no_process_left():
    purge_task_queue()
    yield
    stop_task_processes()
    wait_until_this_process_recorded_its_exits()
    purge_task_queue()


def _running_pids(run: ProcessRun) -> dict[int, int]:
    """attempt number -> pid, for every attempt whose process is alive now."""
    return {
        t.number: task_pid(t)
        for t in run.task_runs.exclude(external_id="")
        if alive(task_pid(t)) or group_members(task_pid(t))
    }


@pytest.mark.parametrize(
    "job",
    [
        {"command": ["sleep", "5"]},
        # The late copy must not run at all: a stray that traps SIGTERM gets no grace.
        {"shell": "trap '' TERM; sleep 5", "kill_grace_s": 60},
    ],
    ids=["plain", "trapping SIGTERM"],
)
def test_a_submit_resuming_after_its_recovery_does_not_run_beside_the_retry(
    job, settings, monkeypatch
):
    """A worker freezes (VM pause, swap storm) between claiming an attempt and spawning it.

    After SUNDIAL_SUBMIT_STUCK_AFTER_S the reconciler finds no process under the attempt's
    key and fails it ("lost while submitting"); the retry starts. Then the worker wakes up
    and spawns attempt 1 after all. At cde7794 record_submission kept the attempt's FAILED
    status and reported no stop request, so the process ran beside the retry. Since 88acb6b
    the late copy is stopped — but with its task's grace, so one that traps SIGTERM still
    runs beside the retry for up to kill_grace_s; it should never have started.
    """
    settings.SUNDIAL_SUBMIT_STUCK_AFTER_S = 1
    process = make_process("frozen", {"job": {"config": job, **RETRYING}})
    run = trigger_run(process, Trigger.API)
    first = run.task_runs.get()
    frozen, wake = threading.Event(), threading.Event()
    validate = submission.validate_config

    def freezes_after_the_claim(kind, config):
        if not frozen.is_set():  # the first submit: attempt 1's
            frozen.set()
            wake.wait(timeout=30)
        return validate(kind, config)

    monkeypatch.setattr(submission, "validate_config", freezes_after_the_claim)
    submitter = _InThread(submit_task_run, first.pk)
    submitter.start()
    try:
        assert frozen.wait(timeout=10)
        wait_for(
            lambda: reconcile() >= 0 and TaskRun.objects.get(pk=first.pk).status == "failed",
            timeout=10,
        )
        advance_run(run.pk)  # the retry's wake-up message
        second = run.task_runs.get(number=2)
        assert submit_task_run(second.pk)
        wake.set()
        submitter.join(timeout=10)
        assert submitter.error is None, submitter.error

        def second_alone():
            """attempt 1's late process to be stopped while attempt 2 runs"""
            return set(_running_pids(run)) == {2}

        wait_for(second_alone, timeout=3)
    finally:
        wake.set()
        submitter.join(timeout=10)
    assert attempts(run)[:2] == [("job", 1, "failed"), ("job", 2, "running")]


def test_a_submit_whose_record_was_cut_off_is_adopted_not_killed_as_lost(settings, monkeypatch):
    """The worker spawned the process, then its connection was terminated (a database restart,
    pg_terminate_backend) before the submission was recorded: the attempt stays SUBMITTING
    while the worker supervises the process and writes its heartbeats.

    After SUNDIAL_SUBMIT_STUCK_AFTER_S the reconciler finds the process by its key and records
    it as running. At cde7794 it did so with ``heartbeat_at = submitting_at``, overwriting the
    owner's fresh heartbeat, and the lost-attempt check in the same call took it as lost
    (with the defaults, 60 s stuck = 60 s lost, always): a healthy process was killed.
    """
    settings.SUNDIAL_HEARTBEAT_INTERVAL_S = 0.5
    settings.SUNDIAL_SUBMIT_STUCK_AFTER_S = settings.SUNDIAL_LOST_AFTER_S = 2
    process = make_process("cutoff", {"job": {"config": {"command": ["sleep", "4"]}}})
    run = trigger_run(process, Trigger.API)
    job = run.task_runs.get()

    def connection_terminated(*args, **kwargs):
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")

    monkeypatch.setattr(orchestrator, "record_submission", connection_terminated)
    submitter = _InThread(submit_task_run, job.pk)
    submitter.start()
    submitter.join(timeout=10)
    assert isinstance(submitter.error, DatabaseError), submitter.error
    monkeypatch.undo()
    job.refresh_from_db()
    assert job.status == "submitting"

    def stuck():
        """the submit to count as stuck (its worker supervises the process meanwhile)"""
        age = timezone.now() - job.submitting_at
        return age > timedelta(seconds=settings.SUNDIAL_SUBMIT_STUCK_AFTER_S + 0.2)

    wait_for(stuck)
    beat = TaskRun.objects.get(pk=job.pk).heartbeat_at
    assert beat is not None and timezone.now() - beat < timedelta(seconds=1.5), "it is alive"
    reconcile()
    job.refresh_from_db()
    assert job.stop_requested_at is None and job.status in LIVE, (
        f"a supervised process with a fresh heartbeat was stopped: {job.status} {job.reason}"
    )

    def finished():
        """the process to end and its owner to record it (beat's safety nets running)"""
        reconcile()
        run.refresh_from_db()
        return run.status in FINAL_RUN

    wait_for(finished, timeout=15, interval=0.3)
    assert attempts(run) == [("job", 1, "succeeded")], run.task_runs.get().reason


def test_a_connection_lost_right_after_the_claim_does_not_fail_the_task(settings):
    """The claim (READY -> SUBMITTING) commits, then the submitter's connection is terminated
    before anything started. submit_task_run lets the error escape and leaves the attempt
    SUBMITTING; its worker is alive and nothing runs, yet the reconciler fails it "lost while
    submitting (its worker stopped)" — with the default max_attempts of 1 a database restart
    fails the run. The submitter knows nothing started: the attempt should be READY again.
    """
    settings.SUNDIAL_SUBMIT_STUCK_AFTER_S = 1
    process = make_process("blip", {"job": {"config": {"command": ["true"]}}})
    run = trigger_run(process, Trigger.API)
    job = run.task_runs.get()

    def cut_after_the_claim(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.startswith('UPDATE "jobs_taskrun"') and "submitting" in str(params):
            # The claim has committed (autocommit); the next statement finds the link dead.
            with contextlib.suppress(Exception):
                context["connection"].connection.execute(
                    "SELECT pg_terminate_backend(pg_backend_pid())"
                )
        return result

    def submit_with_a_blip():
        with connection.execute_wrapper(cut_after_the_claim):
            submit_task_run(job.pk)

    submitter = _InThread(submit_with_a_blip)
    submitter.start()
    submitter.join(timeout=10)
    # Nothing started: the claim is given back and the submit asked to be tried later.
    assert isinstance(submitter.error, submission.SubmitLater), submitter.error

    def settled():
        """the attempt to be settled by the safety nets and the run to finish"""
        reconcile()  # re-sends READY attempts, recovers stuck submits, as beat asks
        for pk in run.task_runs.filter(status="ready").values_list("pk", flat=True):
            submit_task_run(pk)  # the submit message a worker receives
        run.refresh_from_db()
        return run.status in FINAL_RUN

    wait_for(settled, timeout=10, interval=0.2)
    assert (run.status, attempts(run)) == ("succeeded", [("job", 1, "succeeded")]), (
        run.task_runs.get().reason
    )


ITERATIONS = 120


def test_a_kill_released_with_a_submit_never_leaves_a_live_process(settings):
    """request_kill and submit_task_run released by one barrier, ITERATIONS times (defect 1).

    Whoever wins, the run ends KILLED, its attempt is not active once the run is final, and
    no process of it is alive then.
    """
    process = make_process(
        "racing", {"job": {"config": {"command": ["sleep", "30"]}}}, overlap="allow"
    )
    outcomes: dict[str, int] = {}
    for i in range(ITERATIONS):
        run = trigger_run(process, Trigger.API)
        job = run.task_runs.get()
        barrier = threading.Barrier(2)
        racers = [
            # The kill lands at a different point of the submit each time (0 to 9 ms late).
            _InThread(request_kill, run.pk, barrier=barrier, delay=(i % 10) / 1000),
            _InThread(submit_task_run, job.pk, barrier=barrier),
        ]
        for racer in racers:
            racer.start()
        for racer in racers:
            racer.join(timeout=20)
            assert racer.error is None, f"iteration {i}: {racer.error!r}"
        deadline = time.monotonic() + 10
        while True:
            run.refresh_from_db()
            if run.status in FINAL_RUN:
                # Read first: a process alive after the run was seen final was alive then.
                active = list(run.task_runs.filter(status__in=LIVE).values_list("status"))
                assert not active, f"iteration {i}: run {run.status} with attempt {active}"
                assert not _running_pids(run), f"iteration {i}: a process outlived its run"
                break
            assert time.monotonic() < deadline, f"iteration {i}: {attempts(run)}"
            for pk in run.task_runs.filter(
                status__in=LIVE, stop_requested_at__isnull=False
            ).values_list("pk", flat=True):
                terminate_task_run(pk)  # the terminate message a worker would receive
            advance_run(run.pk)  # the advance message
            time.sleep(0.01)
        assert run.status == "killed", f"iteration {i}: {run.status} {attempts(run)}"
        job = run.task_runs.get()
        outcome = f"{job.status}, {'after it started' if job.external_id else 'before'}"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print(f"attempt outcomes over {ITERATIONS} races: {outcomes}")
