"""Connects the local executor of this worker process to the database.

The executor's watcher thread reports exits in batches; this module turns them into
finished attempts (and advances their runs), writes heartbeats for live processes, and
carries out kill requests that another process wrote into the database.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence

from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.utils import timezone

from executors.base import ExecutorError, Launch, LogChunk, Status, Submission
from executors.local import LocalExecutor
from jobs import dispatch, orchestrator
from jobs.models import TaskRun
from jobs.submission import submit_task_run

log = logging.getLogger(__name__)


class LocalRuntime:
    """The local executor as the rest of Sundial sees it (the Executor protocol)."""

    kind = "local"
    runs_on_submit = True  # a spawned process is running at once: no "submitted" phase

    def __init__(self) -> None:
        # Held across spawn + registration, so an exit can never be reported for a
        # process whose attempt id this runtime does not know yet.
        self._lock = threading.Lock()
        self._attempts: dict[str, tuple[int, int]] = {}  # external id -> (TaskRun id, run id)
        self._last_heartbeat = 0.0
        self._unrecorded: list[orchestrator.Outcome] = []  # exits the database did not take yet
        self.executor = LocalExecutor(
            settings.SUNDIAL_LOG_DIR, on_exit=self._on_exit, on_tick=self._on_tick
        )

    def submit(self, launch: Launch) -> Submission:
        with self._lock:
            submission = self.executor.submit(launch)
            self._attempts[submission.external_id] = (launch.task_run_id, launch.run_id)
        return submission

    def find(self, idempotency_key: str) -> Submission | None:
        """Always None: a process this runtime did not spawn cannot be supervised.

        No exit code would ever reach us, so an orphan of a crashed submit is stopped and
        its attempt counts as lost (and is retried per the task's policy).
        """
        orphan = self.executor.find(idempotency_key)
        if orphan is not None:
            self.executor.terminate(orphan.external_id, "orphaned by a crashed submit")
        return None

    def statuses(self, external_ids: Sequence[str]) -> dict[str, Status]:
        return self.executor.statuses(external_ids)

    def terminate(self, external_id: str, reason: str) -> None:
        self.executor.terminate(external_id, reason)

    def read_logs(self, log_ref: str, cursor: str | None) -> LogChunk:
        return self.executor.read_logs(log_ref, cursor)

    def _on_exit(self, exits: list[tuple[str, Status]]) -> None:
        with self._lock:
            self._unrecorded += [
                orchestrator.Outcome(
                    *self._attempts.pop(external_id), status.exit_code, ended_at=status.ended_at
                )
                for external_id, status in exits
                if external_id in self._attempts
            ]
        self._record()

    def _record(self) -> None:
        """Record the exits seen so far; if the database fails, keep them for the next tick."""
        with self._lock:
            outcomes, self._unrecorded = self._unrecorded, []
        if not outcomes:
            return
        try:
            with dispatch.continue_locally() as successors:
                orchestrator.record_outcomes(outcomes)
        except DatabaseError:
            # An exit code exists nowhere but here: never drop it. Recording is idempotent,
            # so retrying outcomes that did commit (one run of several) changes nothing.
            log.exception("recording %d exits failed; retrying on the next tick", len(outcomes))
            close_old_connections()  # a broken connection is replaced on the next try
            with self._lock:
                self._unrecorded = outcomes + self._unrecorded
            return
        for task_run_id in successors:
            try:
                submit_task_run(task_run_id)
            except Exception:
                # The attempt is READY (or back to READY): the broker path retries it.
                log.exception("submitting %s here failed; handing it to the broker", task_run_id)
                dispatch.after_commit(dispatch.SUBMIT, task_run_id)

    def _on_tick(self, live_ids: list[str]) -> None:
        with self._lock:
            attempt_ids = [self._attempts[e][0] for e in live_ids if e in self._attempts]
            if not attempt_ids and not self._unrecorded:
                return  # nothing to do: leave the database alone
        close_old_connections()  # this thread outlives any request cycle
        self._record()
        if not attempt_ids:
            return
        live = TaskRun.objects.filter(pk__in=attempt_ids)
        if time.monotonic() - self._last_heartbeat >= settings.SUNDIAL_HEARTBEAT_INTERVAL_S:
            live.update(heartbeat_at=timezone.now())
            self._last_heartbeat = time.monotonic()
        # Kill requests may come from any worker on any host; the owner carries them out.
        for external_id, reason in live.filter(terminate_requested_at__isnull=False).values_list(
            "external_id", "reason"
        ):
            try:
                self.executor.terminate(external_id, reason)
            except ExecutorError as exc:
                log.warning("could not stop %s: %s", external_id, exc.message)


_runtime: tuple[int, LocalRuntime] | None = None
_runtime_lock = threading.Lock()


def local_runtime() -> LocalRuntime:
    """This process's runtime, created on first use (after any fork: threads do not survive one)."""
    global _runtime
    with _runtime_lock:
        if _runtime is None or _runtime[0] != os.getpid():
            _runtime = (os.getpid(), LocalRuntime())
        return _runtime[1]
