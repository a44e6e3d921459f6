"""The in-memory executor: jobs that exist only in this object, moved on by the test.

For tests of the orchestrator, polling and recovery (Django's locmem mail backend is the
model): it records what it was asked — ``submitted`` (every submit call, in order),
``terminations``, ``status_calls`` — and a job changes state only when the test says so
(``start``, ``finish``). Like AWS Batch it is polled (``runs_on_submit = False``), a second
submit with the same idempotency key returns the job the first one started, and a job asked
to terminate keeps running until the test finishes it: a test can hold a job inside its
grace period.

What else a poll hears, as from AWS: ``wait`` gives a pending job the executor's own word for
why it waits (Batch's ``RUNNABLE``, ``STARTING``; a status carries it only while the job is
pending), ``start(..., placement=...)`` says where it runs, and ``forget`` drops a job from
``statuses`` and ``find``, as AWS drops jobs from its history after a while.

Faults on demand: ``fail_next`` makes the next call(s) of one method raise an
``ExecutorError`` (throttling, a permanent error); ``crash_next_submit`` makes a submit die
with an exception that is not an ``ExecutorError``, after the job was accepted (a worker
killed between SubmitJob and saving the job id) or before.

Thread-safe: one lock guards every job and record. No Django: the shell registers it.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .base import ExecutorError, Launch, LogChunk, State, Status, Submission

KIND = "memory"
CALLS = ("submit", "find", "statuses", "terminate", "read_logs")
FINISHED = (State.SUCCEEDED, State.FAILED)


class MemoryConfig(BaseModel):
    """A memory job needs nothing; ``label`` only tells jobs apart in a test's assertions, and
    ``memory_mib`` stands in for Batch's, so a test can follow memory raised after an
    out-of-memory kill (its maximum is small, so a test can reach it)."""

    model_config = ConfigDict(extra="forbid")

    label: str = ""
    memory_mib: int | None = Field(None, ge=1, le=65536)


class SimulatedCrash(Exception):
    """The worker died in the middle of a submit (deliberately not an ExecutorError)."""


@dataclass(frozen=True)
class Job:
    """One job as the executor holds it; the executor replaces it on every change."""

    external_id: str
    launch: Launch
    state: State = State.PENDING
    exit_code: int | None = None
    reason: str = ""
    started_at: datetime | None = None
    ended_at: datetime | None = None
    stop_reason: str | None = None  # set by the first terminate(); the job runs on
    log: tuple[str, ...] = ()
    detail: str = ""  # why it waits, in the executor's words (reported while pending)
    placement: str = ""  # where it runs, once started
    forgotten: bool = False  # gone from the executor's history: statuses() and find() omit it
    out_of_memory: bool = False
    permanent: bool = False

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    def status(self) -> Status:
        return Status(
            self.state,
            self.exit_code,
            self.reason,
            self.started_at,
            self.ended_at,
            detail=self.detail if self.state == State.PENDING else "",
            placement=self.placement,
            out_of_memory=self.out_of_memory,
            permanent=self.permanent,
        )


class MemoryExecutor:
    kind = KIND
    runs_on_submit = False  # polled, like AWS: statuses() is how exits are learnt

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._jobs: dict[str, Job] = {}  # external id -> job, in submission order
        self._by_key: dict[str, str] = {}  # idempotency key -> external id
        self._failures: dict[str, deque[ExecutorError]] = defaultdict(deque)
        self._crashes: deque[bool] = deque()  # per armed crash: accept the job first?
        self.submitted: list[Launch] = []
        self.terminations: list[tuple[str, str]] = []
        self.status_calls: list[list[str]] = []

    # ---- the Executor interface ----

    def submit(self, launch: Launch) -> Submission:
        with self._lock:
            self.submitted.append(launch)
            self._raise_armed_failure("submit")
            crash = self._crashes.popleft() if self._crashes else None
            if crash is False:
                raise SimulatedCrash(f"worker died before submitting {launch.idempotency_key}")
            try:
                MemoryConfig.model_validate(dict(launch.config))
            except ValidationError as exc:
                raise ExecutorError(f"invalid memory config: {exc}", permanent=True) from None
            external_id = self._by_key.get(launch.idempotency_key)
            if external_id is None:  # a repeated key is the same attempt: one job
                external_id = f"mem-{len(self._jobs) + 1}"
                self._jobs[external_id] = Job(external_id, launch)
                self._by_key[launch.idempotency_key] = external_id
            if crash:
                raise SimulatedCrash(f"worker died after submitting {external_id}")
            return _submission(external_id)

    def find(self, launch: Launch) -> Submission | None:
        with self._lock:
            self._raise_armed_failure("find")
            external_id = self._by_key.get(launch.idempotency_key)
            if external_id is None or self._jobs[external_id].forgotten:
                return None
            return _submission(external_id)

    def statuses(self, external_ids: Sequence[str]) -> dict[str, Status]:
        """Unknown ids are left out, as AWS leaves out jobs it does not know."""
        with self._lock:
            self.status_calls.append(list(external_ids))
            self._raise_armed_failure("statuses")
            known = {i: self._jobs[i] for i in external_ids if i in self._jobs}
            return {i: job.status() for i, job in known.items() if not job.forgotten}

    def terminate(self, external_id: str, reason: str) -> None:
        """Note the request; the job ends only when the test finishes it."""
        with self._lock:
            self.terminations.append((external_id, reason))
            self._raise_armed_failure("terminate")
            job = self._get(external_id)
            if not job.finished and job.stop_reason is None:
                self._jobs[external_id] = replace(job, stop_reason=reason)

    def read_logs(self, log_ref: str, cursor: str | None) -> LogChunk:
        with self._lock:
            self._raise_armed_failure("read_logs")
            lines = self._get(log_ref.removeprefix("memory:")).log
            if cursor and not (cursor.isascii() and cursor.isdigit()):
                raise ExecutorError(f"invalid log cursor {cursor!r}", permanent=True)
            start = int(cursor or 0)
            return LogChunk(lines[start:], str(len(lines)))

    # ---- what a test does ----

    def start(self, external_id: str, *, placement: str = "") -> None:
        """A pending job begins running (on ``placement``, e.g. "EC2 m5.large (spot)")."""
        with self._lock:
            job = self._get(external_id)
            if job.state != State.PENDING:
                raise ValueError(f"{external_id} is {job.state}, not pending")
            self._jobs[external_id] = replace(
                job, state=State.RUNNING, started_at=_now(), placement=placement
            )

    def wait(self, external_id: str, detail: str) -> None:
        """A pending job says why it waits, in the executor's words (e.g. "RUNNABLE")."""
        with self._lock:
            job = self._get(external_id)
            if job.state != State.PENDING:
                raise ValueError(f"{external_id} is {job.state}, not pending")
            self._jobs[external_id] = replace(job, detail=detail)

    def forget(self, external_id: str) -> None:
        """The job expired from the executor's history: statuses() and find() omit it."""
        with self._lock:
            self._jobs[external_id] = replace(self._get(external_id), forgotten=True)

    def finish(
        self,
        external_id: str,
        exit_code: int,
        reason: str = "",
        *,
        out_of_memory: bool = False,
        permanent: bool = False,
    ) -> None:
        """A pending or running job ends with this exit code (0 succeeds, others fail), and as
        its status classifies it: killed for using too much memory, or failed for good."""
        with self._lock:
            job = self._get(external_id)
            if job.finished:
                raise ValueError(f"{external_id} has already finished")
            self._jobs[external_id] = replace(
                job,
                state=State.SUCCEEDED if exit_code == 0 else State.FAILED,
                exit_code=exit_code,
                reason=reason,
                ended_at=_now(),
                out_of_memory=out_of_memory,
                permanent=permanent,
            )

    def write_log(self, external_id: str, *lines: str) -> None:
        with self._lock:
            job = self._get(external_id)
            self._jobs[external_id] = replace(job, log=job.log + lines)

    def fail_next(self, call: str, error: ExecutorError, times: int = 1) -> None:
        """The next ``times`` calls of ``call`` (one of ``CALLS``) raise ``error``."""
        if call not in CALLS:
            raise ValueError(f"unknown call {call!r}; one of {', '.join(CALLS)}")
        with self._lock:
            self._failures[call].extend([error] * times)

    def crash_next_submit(self, *, accept: bool = True) -> None:
        """The next submit raises ``SimulatedCrash``, after accepting its job unless told not to."""
        with self._lock:
            self._crashes.append(accept)

    def heal(self) -> None:
        """Forget every armed failure and crash: from now on every call works."""
        with self._lock:
            self._failures.clear()
            self._crashes.clear()

    # ---- what a test asks ----

    def job(self, external_id: str) -> Job:
        with self._lock:
            return self._get(external_id)

    def jobs(self) -> list[Job]:
        """Every job ever accepted, in submission order."""
        with self._lock:
            return list(self._jobs.values())

    def live(self) -> list[Job]:
        """Jobs that have not finished (pending or running, terminating or not)."""
        return [job for job in self.jobs() if not job.finished]

    def _get(self, external_id: str) -> Job:
        try:
            return self._jobs[external_id]
        except KeyError:
            raise ExecutorError(f"no job {external_id!r}", permanent=True) from None

    def _raise_armed_failure(self, call: str) -> None:
        if self._failures[call]:
            raise self._failures[call].popleft()


def _submission(external_id: str) -> Submission:
    return Submission(external_id, f"memory:{external_id}")


def _now() -> datetime:
    return datetime.now(UTC)


_shared = MemoryExecutor()


def shared() -> MemoryExecutor:
    """This process's memory executor, as the registry hands it out (tests may swap it)."""
    return _shared
