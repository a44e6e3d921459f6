"""Connects the local executor of this worker process to the database.

Three threads, each with one job, so none waits for another's work:

- the executor's watcher sees processes end and hands their exits over (no database);
- the recorder writes those exits to the database and submits the local attempts that
  became ready (local continuation: no broker round trip per hand-off). An exit exists only
  here until it is recorded, so whatever fails, it is kept and recorded again;
- the supervisor, every second, writes heartbeats (also for exits not yet recorded: this
  worker still answers for them), advances runs whose time limit is due, and carries out
  stop requests that any process wrote into the database. It does a fixed amount of work
  per tick, so a fan-out of hundreds of exits never delays a heartbeat.

A worker that stops (``shutdown``) stops its processes (grace, then SIGKILL) and records
each attempt as failed with "worker stopped", so the retry policy decides; no process is
left running unsupervised.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from executors.base import ExecutorError, Launch, LogChunk, Status, Submission
from executors.local.executor import LocalExecutor
from jobs import dispatch, orchestrator
from jobs.engine import ACTIVE_ATTEMPT, AttemptStatus, RunStatus
from jobs.models import ProcessRun, TaskRun
from jobs.submission import submit_task_run

log = logging.getLogger(__name__)

TICK_S = 1.0
RETRY_RECORD_S = 1.0  # how soon exits the database refused are tried again


class LocalRuntime:
    """The local executor as the rest of Sundial sees it (the Executor protocol)."""

    kind = "local"
    runs_on_submit = True  # a spawned process is running at once: no "submitted" phase

    def __init__(self, submit_ready: Callable[[int], object]) -> None:
        self.submit_ready = submit_ready  # submits a READY attempt (jobs.submission)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        # external id -> (TaskRun id, run id): our children, and orphans we are stopping.
        self._owned: dict[str, tuple[int, int]] = {}
        self._orphans: dict[str, tuple[int, int]] = {}
        self._exits: list[orchestrator.Outcome] = []  # seen, not in the database yet
        self._recording: list[int] = []  # attempts whose exits the recorder is writing now
        self._stopping = False
        self._closed = False
        self._threads: list[threading.Thread] = []
        self.executor = LocalExecutor(settings.SUNDIAL_LOG_DIR, on_exit=self._on_exit)

    # ---- Executor protocol ----

    def submit(self, launch: Launch) -> Submission:
        with self._lock:
            if self._stopping:
                raise ExecutorError("this worker is stopping")  # transient: another takes it
            self._start_threads()
            submission = self.executor.submit(launch)
            self._owned[submission.external_id] = (launch.task_run_id, launch.run_id)
        return submission

    def find(self, launch: Launch) -> Submission | None:
        """The process an earlier submit of this launch started on this host, if it runs."""
        return self.executor.find(launch)

    def statuses(self, external_ids: Sequence[str]) -> dict[str, Status]:
        return self.executor.statuses(external_ids)

    def terminate(self, external_id: str, reason: str) -> None:
        """Stop one of this worker's processes; others are stopped by their own worker."""
        with self._lock:
            ours = external_id in self._owned
        if not ours:
            # Its owner sees the request in the database within a tick; a process whose
            # owner died is an orphan, stopped through stop_orphan by the sweep.
            raise ExecutorError("the process belongs to another worker, which stops it")
        self.executor.terminate(external_id, reason)

    def read_logs(self, log_ref: str, cursor: str | None) -> LogChunk:
        return self.executor.read_logs(log_ref, cursor)

    def log_path(self, log_ref: str) -> Path:
        return self.executor.log_path(log_ref)

    # ---- orphans and shutdown ----

    def runs_here(self, external_id: str) -> bool:
        return self.executor.runs_here(external_id)

    def stop_orphan(self, task_run_id: int, run_id: int, external_id: str, reason: str) -> None:
        """Stop a process on this host whose worker is gone; its attempt is recorded as
        ended (per its stop request) once the process is gone, never before."""
        with self._lock:
            if external_id not in self._owned:
                self._orphans[external_id] = (task_run_id, run_id)
            self._start_threads()
        self.executor.terminate(external_id, reason)

    def stop_stray(self, external_id: str) -> None:
        """Stop a process on this host whose attempt has already ended (nothing to record)."""
        self.executor.terminate(external_id, "its attempt has ended")

    def shutdown(self, reason: str = "worker stopped") -> None:
        """Stop every process of this worker and record how each ended; then stop."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            owned = dict(self._owned)
        grace = settings.SUNDIAL_SHUTDOWN_GRACE_S
        if owned:
            log.warning("stopping %d local task(s): %s", len(owned), reason)
            self._mark_stopping([task_run_id for task_run_id, _ in owned.values()], reason)
            for external_id in owned:
                self.executor.terminate(external_id, reason, grace_s=grace)
        with self._lock:
            # Exits arrive within the grace (SIGKILL follows it); then wait for the recorder.
            self._changed.wait_for(self._idle, timeout=grace + 10)
            self._closed = True
            self._changed.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)
        self.executor.close()

    def idle(self) -> bool:
        """No process of this worker is running or being stopped, and every exit is recorded."""
        with self._lock:
            return self._idle()

    def _idle(self) -> bool:  # called with the lock held
        return not (self._owned or self._orphans or self._exits or self._recording)

    def _mark_stopping(self, task_run_ids: list[int], reason: str) -> None:
        """Record why the processes stop, so each attempt ends FAILED and is retried."""
        try:
            TaskRun.objects.filter(
                pk__in=task_run_ids,
                status__in=list(ACTIVE_ATTEMPT),
                stop_requested_at__isnull=True,  # a kill asked earlier keeps its reason
            ).update(
                stop_requested_at=timezone.now(),
                stop_as=AttemptStatus.FAILED,
                stop_reason=reason,
            )
        except Exception:
            # The exits are still recorded (as failures by signal); only the reason is lost.
            log.exception("could not record why local tasks are stopping")

    # ---- threads ----

    def _start_threads(self) -> None:  # called with the lock held
        if self._threads:
            return
        for name, loop in (("recorder", self._record_loop), ("supervisor", self._supervise_loop)):
            thread = threading.Thread(target=loop, name=f"sundial-local-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _on_exit(self, ended: list[tuple[str, Status]]) -> None:
        """Called by the watcher: hand the exits to the recorder, nothing more."""
        with self._lock:
            for external_id, status in ended:
                attempt = self._owned.pop(external_id, None) or self._orphans.pop(external_id, None)
                if attempt is not None:
                    self._exits.append(
                        orchestrator.Outcome(*attempt, status.exit_code, ended_at=status.ended_at)
                    )
            self._changed.notify_all()

    def _record_loop(self) -> None:
        while True:
            with self._lock:
                self._changed.wait_for(lambda: self._exits or self._closed)
                if not self._exits:
                    return
                outcomes, self._exits = self._exits, []
                self._recording = [o.task_run_id for o in outcomes]
                continue_locally = not self._stopping
            kept = self._record(outcomes, continue_locally)
            with self._lock:
                # An exit code exists nowhere but here: whatever failed, try it again.
                self._exits = kept + self._exits
                self._recording = []
                self._changed.notify_all()
            if kept:
                time.sleep(RETRY_RECORD_S)

    def _record(
        self, outcomes: list[orchestrator.Outcome], continue_locally: bool
    ) -> list[orchestrator.Outcome]:
        """Record exits run by run; returns those not recorded (to try again)."""
        close_old_connections()  # this thread outlives any request cycle
        by_run: dict[int, list[orchestrator.Outcome]] = defaultdict(list)
        for outcome in outcomes:
            by_run[outcome.run_id].append(outcome)
        kept: list[orchestrator.Outcome] = []
        successors: list[int] = []
        for items in by_run.values():
            try:
                successors += orchestrator.record_outcomes(items, continue_locally=continue_locally)
            except Exception:
                # Recording is idempotent, so trying again after a partial failure is safe.
                log.exception("recording %d exit(s) failed; trying again", len(items))
                _drop_connection()
                kept += items
        for task_run_id in successors:
            try:
                self.submit_ready(task_run_id)
            except Exception:
                # The attempt is READY (or back to READY): the broker path retries it.
                log.exception("submitting %s here failed; handing it to the broker", task_run_id)
                dispatch.after_commit(dispatch.SUBMIT, task_run_id)
        return kept

    def _supervise_loop(self) -> None:
        last_heartbeat = 0.0
        while True:
            # A tick at least as often as a heartbeat is due, or a short interval is not kept.
            tick = min(TICK_S, settings.SUNDIAL_HEARTBEAT_INTERVAL_S)
            with self._lock:
                if self._changed.wait_for(lambda: self._closed, timeout=tick):
                    return
                # Exits not recorded yet are still this worker's to answer for.
                answering = [
                    *(task_run_id for task_run_id, _ in self._owned.values()),
                    *(outcome.task_run_id for outcome in self._exits),
                    *self._recording,
                ]
                runs = {run_id for _, run_id in self._owned.values()}
            if not answering:
                continue
            try:
                close_old_connections()
                if time.monotonic() - last_heartbeat >= settings.SUNDIAL_HEARTBEAT_INTERVAL_S:
                    _beat(answering)
                    last_heartbeat = time.monotonic()
                self._enforce_time_limits(runs)
                self._carry_out_stop_requests()
            except Exception:
                log.exception("local supervision tick failed; trying again")
                _drop_connection()

    def _enforce_time_limits(self, run_ids: set[int]) -> None:
        """Advance our runs whose wake-up is due: the engine then stops what ran too long."""
        now = timezone.now()
        for run_id in ProcessRun.objects.filter(
            pk__in=run_ids, status=RunStatus.RUNNING, wake_at__lte=now
        ).values_list("pk", flat=True):
            orchestrator.advance_run(run_id, now)

    def _carry_out_stop_requests(self) -> None:
        """Stop requests may come from any worker on any host; the owner carries them out."""
        with self._lock:
            ids = [task_run_id for task_run_id, _ in self._owned.values()]
        for external_id, reason in TaskRun.objects.filter(
            pk__in=ids, stop_requested_at__isnull=False
        ).values_list("external_id", "stop_reason"):
            try:
                self.executor.terminate(external_id, reason)
            except ExecutorError as exc:
                log.warning("could not stop %s: %s", external_id, exc.message)


def _beat(task_run_ids: list[int]) -> None:
    """Record that these attempts are alive, without waiting for any row lock.

    Rows locked by another transaction (the recorder finishing an attempt or marking its
    successors ready) are skipped: waiting for them would stall every other heartbeat
    behind one slow transaction, and two multi-row UPDATEs could deadlock. A skipped row
    gets its heartbeat on the next tick.
    """
    with transaction.atomic():
        free = (
            TaskRun.objects.filter(pk__in=task_run_ids)
            .order_by()  # the default ordering joins the runs, whose rows would be locked too
            .select_for_update(skip_locked=True, no_key=True, of=("self",))
            .values("pk")
        )
        TaskRun.objects.filter(pk__in=free).update(heartbeat_at=timezone.now())


def _drop_connection() -> None:
    """Close this thread's database connection, so a broken one is replaced on the next try."""
    try:
        connection.close()
    except Exception:
        log.debug("closing a broken connection failed", exc_info=True)


_runtime: tuple[int, LocalRuntime] | None = None
_runtime_lock = threading.Lock()


def local_runtime() -> LocalRuntime:
    """This process's runtime, created on first use (after any fork: threads do not survive one)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None or _runtime[0] != os.getpid():
            _runtime = (os.getpid(), LocalRuntime(submit_task_run))
            # Also on a cold shutdown, which skips Celery's worker_shutdown signal.
            atexit.register(shutdown_local_runtime)
        return _runtime[1]


def shutdown_local_runtime(**_signal_kwargs: object) -> None:
    """Stop this process's local tasks, if it ran any (connected to the worker's shutdown)."""
    with _runtime_lock:
        runtime = _runtime[1] if _runtime is not None and _runtime[0] == os.getpid() else None
    if runtime is not None:
        runtime.shutdown()
