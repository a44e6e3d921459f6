"""One randomized sequence: its state, the operations it is made of, and how each is settled.

An operation looks at the harness, chooses with the sequence's seeded generator (always in
the main thread, so a seed replays the same choices) and returns a ``Step``: a label for the
operation log and the call that does it through Sundial's own functions. ``perform`` runs
the step — or, for a race, two steps in threads released by one barrier — and settles what
it raised the way production would: a submit Celery retries goes back on the network, a
worker that died may or may not have its message redelivered, an error the faults explain
is noted, anything else is a violation.
"""

from __future__ import annotations

import random
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from django.db import DatabaseError, connection
from django.db.utils import InterfaceError
from django.db.utils import OperationalError as DatabaseOperationalError
from kombu.exceptions import OperationalError as BrokerError

from executors.base import ExecutorError, State
from executors.memory import KIND, MemoryExecutor, SimulatedCrash
from jobs import dispatch, orchestrator, supervision
from jobs.engine import FINAL_RUN, OverlapPolicy, RunStatus
from jobs.models import ProcessDefinition, ProcessRun, TaskRun, Trigger
from jobs.orchestrator import TriggerError
from jobs.submission import SubmitLater
from tests.conftest import make_process
from tests.faults.conftest import Message, Network, deliver
from tests.faults.invariants import ALWAYS, Violation, live_attempts, stops_reach_the_executor
from tests.orchestrator import driving

MAX_RUNS = 3  # triggers per sequence
QUIESCE_ROUNDS = 100  # a safety net: a round that changes nothing ends the quiescing
DELIVERIES_PER_ROUND = 300


@dataclass
class Step:
    label: str
    call: Callable[[], object]
    message: Message | None = None  # the message this step took off the network
    expected: tuple[type[BaseException], ...] = ()  # a legitimate answer, e.g. TriggerError
    connection_cut: bool = False  # the database connection was killed just before
    racing: tuple[Step, ...] = ()  # run these in threads at once instead of ``call``
    delay: float = 0.0  # in a race: seconds to wait after the barrier, to vary who goes first


@dataclass
class Harness:
    seed: int
    executor: MemoryExecutor
    network: Network
    threads: bool  # PostgreSQL: races in threads and killed connections
    rng: random.Random = field(init=False)
    process: ProcessDefinition = field(init=False)
    triggers: int = 0
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def note(self, line: str) -> None:
        self.log.append(f"{len(self.log) + 1:3}. {line}")

    def run_ids(self, statuses: frozenset[str] | None = None) -> list[int]:
        runs = ProcessRun.objects.filter(definition=self.process).order_by("pk")
        if statuses is not None:
            runs = runs.filter(status__in=statuses)
        return list(runs.values_list("pk", flat=True))

    def check(self) -> None:
        """The always-invariants, against one look at the live attempts."""
        live = live_attempts(self)
        for invariant in ALWAYS:
            invariant(self, live)


# ---- the process ----


def random_process(h: Harness) -> ProcessDefinition:
    """1-5 tasks on the memory executor, random required/optional edges, 1-3 attempts."""
    names = [f"t{i}" for i in range(1, h.rng.randint(1, 5) + 1)]
    tasks: dict[str, dict[str, Any]] = {}
    for i, name in enumerate(names):
        requires, after = [], []
        for upstream in names[:i]:
            draw = h.rng.random()
            if draw < 0.35:
                requires.append(upstream)
            elif draw < 0.5:
                after.append(upstream)
        tasks[name] = {
            "requires": requires,
            "after": after,
            "executor": KIND,
            "config": {"label": name},
            "max_attempts": h.rng.randint(1, 3),
            "retry_initial_delay_s": 0,  # retries fall due at once
            "retry_jitter": 0,
        }
    overlap = h.rng.choice(list(OverlapPolicy))
    process = make_process(f"faults-{h.seed}", tasks, overlap=overlap)
    shape = "; ".join(
        f"{name} (x{spec['max_attempts']}"
        + "".join(f", requires {u}" for u in spec["requires"])
        + "".join(f", after {u}" for u in spec["after"])
        + ")"
        for name, spec in tasks.items()
    )
    h.note(f"process: {shape}; overlap {overlap}")
    return process


# ---- operations: each returns a Step, or None when it has nothing to act on ----


def trigger(h: Harness) -> Step | None:
    if h.triggers >= MAX_RUNS:
        return None
    h.triggers += 1

    def call() -> str:
        run = orchestrator.trigger_run(h.process, Trigger.MANUAL)
        return f"run {run.pk} {run.status}"

    return Step("trigger a run", call)


def _take_message(h: Harness, task: str | None = None) -> Message | None:
    choices = [i for i, m in enumerate(h.network.pending) if task is None or m.task == task]
    return h.network.take(h.rng.choice(choices)) if choices else None


def _delivery(message: Message, label: str = "deliver") -> Step:
    return Step(f"{label} {message}", lambda: deliver(message), message, (SubmitLater,))


def deliver_message(h: Harness) -> Step | None:
    """Any pending message, not necessarily the oldest: workers race each other."""
    message = _take_message(h)
    return _delivery(message) if message else None


def deliver_twice(h: Harness) -> Step | None:
    """Deliver a message and leave a copy to be delivered again later."""
    message = _take_message(h)
    if message is None:
        return None
    h.network.put_back(message)
    return _delivery(message, "deliver (a copy stays queued)")


def drop_message(h: Harness) -> Step | None:
    message = _take_message(h)
    return Step(f"lose {message}", lambda: None) if message else None


def refuse_sends(h: Harness) -> Step:
    sends = h.rng.randint(1, 3)
    return Step(f"broker refuses the next {sends} sends", lambda: h.network.refuse_next(sends))


def job_starts(h: Harness) -> Step | None:
    pending = [job for job in h.executor.live() if job.state == State.PENDING]
    if not pending:
        return None
    job = h.rng.choice(pending)
    return Step(
        f"job {job.external_id} (attempt {job.launch.task_run_id}) starts",
        lambda: h.executor.start(job.external_id),
    )


def job_exits(h: Harness) -> Step | None:
    """A live job ends: one asked to terminate ends as terminated, others with any code."""
    live = h.executor.live()
    if not live:
        return None
    job = h.rng.choice(live)
    if job.stop_reason is not None:
        code, reason = 143, f"terminated: {job.stop_reason}"
    else:
        code, reason = h.rng.choice((0, 0, 0, 1, 1, 137)), ""
    return Step(
        f"job {job.external_id} (attempt {job.launch.task_run_id}) exits {code}",
        lambda: h.executor.finish(job.external_id, code, reason),
    )


def poll(h: Harness) -> Step:
    return Step("poll", supervision.poll_running)


def sweep(h: Harness) -> Step:
    return Step("sweep", supervision.sweep)


def reconcile(h: Harness) -> Step:
    """Also recovers submissions left by a crashed worker (SUNDIAL_SUBMIT_STUCK_AFTER_S=0)."""
    return Step("reconcile", supervision.reconcile)


def _kill(run_id: int) -> Step:
    return Step(f"kill run {run_id}", lambda: orchestrator.request_kill(run_id))


def kill(h: Harness) -> Step | None:
    runs = h.run_ids(frozenset({RunStatus.QUEUED, RunStatus.RUNNING})) or h.run_ids()
    return _kill(h.rng.choice(runs)) if runs else None


def retry_failed(h: Harness) -> Step | None:
    """Mostly a failed or killed run; sometimes any run (TriggerError is the answer then)."""
    retryable = h.run_ids(frozenset({RunStatus.FAILED, RunStatus.KILLED}))
    runs = retryable if retryable and h.rng.random() < 0.8 else h.run_ids()
    if not runs:
        return None
    run_id = h.rng.choice(runs)
    return Step(
        f"retry failed tasks of run {run_id}",
        lambda: orchestrator.retry_failed_tasks(run_id),
        expected=(TriggerError,),
    )


def throttle_submits(h: Harness) -> Step:
    times = h.rng.randint(1, 2)
    error = ExecutorError("Rate exceeded")
    return Step(
        f"executor throttles the next {times} submits",
        lambda: h.executor.fail_next("submit", error, times),
    )


def refuse_a_submit(h: Harness) -> Step:
    error = ExecutorError("job queue 'default' does not exist", permanent=True)
    return Step(
        "executor refuses the next submit for good", lambda: h.executor.fail_next("submit", error)
    )


def fail_a_call(h: Harness) -> Step:
    call = h.rng.choice(("statuses", "terminate", "find"))
    error = ExecutorError("Rate exceeded")
    return Step(f"executor throttles the next {call}", lambda: h.executor.fail_next(call, error))


def crash_a_submit(h: Harness) -> Step:
    accept = h.rng.random() < 0.8
    when = "after accepting its job" if accept else "before the executor call"
    return Step(
        f"the next submitting worker dies {when}",
        lambda: h.executor.crash_next_submit(accept=accept),
    )


def _terminate_connection() -> None:
    """Kill this thread's database connection from another one, as a failover or admin does."""
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid

    def terminate() -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
                # It only signals the backend: wait until it is gone, so the next statement
                # on the killed connection fails for certain.
                for _ in range(200):
                    cursor.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid])
                    if cursor.fetchone() is None:
                        break
                    time.sleep(0.005)
        finally:
            connection.close()

    killer = threading.Thread(target=terminate)
    killer.start()
    killer.join()


def cut_connection(h: Harness) -> Step | None:
    """pg_terminate_backend between two operations: the next one meets a dead connection."""
    then = _pick(h, DATABASE_OPERATIONS)

    def call() -> object:
        _terminate_connection()
        return then.call()

    return Step(
        f"database connection killed, then {then.label}",
        call,
        then.message,
        then.expected,
        connection_cut=True,
    )


RACE_DELAYS = (0.0, 0.0, 0.0, 0.001, 0.002, 0.004, 0.008)


def _race(h: Harness, first: Step, second: Step) -> Step:
    # Released together, the side whose first statement is shortest nearly always wins; a
    # small head start for one side or the other reaches the interleavings in between.
    for part in (first, second):
        part.delay = h.rng.choice(RACE_DELAYS)
    return Step(f"race [{first.label} | {second.label}]", lambda: None, racing=(first, second))


def kill_during_submit(h: Harness) -> Step | None:
    message = _take_message(h, dispatch.SUBMIT)
    if message is None:
        return None
    run_id = TaskRun.objects.filter(pk=message.args[0]).values_list("run_id", flat=True).get()
    return _race(h, _delivery(message), _kill(run_id))


def same_message_twice(h: Harness) -> Step | None:
    message = _take_message(h)
    return _race(h, _delivery(message), _delivery(message)) if message else None


def two_at_once(h: Harness) -> Step | None:
    first = _pick(h, DATABASE_OPERATIONS)
    second = _pick(h, DATABASE_OPERATIONS)
    return _race(h, first, second)


RACES = (kill_during_submit, same_message_twice, two_at_once, two_at_once)


def race(h: Harness) -> Step | None:
    """Two operations in two threads released by one barrier (PostgreSQL only)."""
    return h.rng.choice(RACES)(h)


# Operations that raced or run after a killed connection may be: each starts with a
# database statement and never waits for another. (Reconcile is left out: with stuck
# submissions recovered at once, it would "recover" a submit that is merely in flight.)
DATABASE_OPERATIONS: tuple[Callable[[Harness], Step | None], ...] = (
    deliver_message,
    deliver_message,
    poll,
    kill,
    retry_failed,
    trigger,
    sweep,
)

# (operation, weight, needs threads)
OPERATIONS: tuple[tuple[Callable[[Harness], Step | None], float, bool], ...] = (
    (trigger, 1.0, False),
    (deliver_message, 8.0, False),
    (deliver_twice, 1.0, False),
    (drop_message, 1.0, False),
    (refuse_sends, 0.7, False),
    (job_starts, 2.0, False),
    (job_exits, 3.0, False),
    (poll, 3.0, False),
    (sweep, 0.7, False),
    (reconcile, 1.0, False),
    (kill, 1.0, False),
    (retry_failed, 1.0, False),
    (throttle_submits, 0.5, False),
    (refuse_a_submit, 0.3, False),
    (fail_a_call, 0.5, False),
    (crash_a_submit, 0.7, False),
    (cut_connection, 0.7, True),
    (race, 2.0, True),
)


def _pick(h: Harness, operations: tuple[Callable[[Harness], Step | None], ...]) -> Step:
    """One step from the operations, uniformly; poll when none has anything to act on."""
    for _ in range(10):
        step = h.rng.choice(operations)(h)
        if step is not None:
            return step
    return poll(h)


def next_step(h: Harness) -> Step:
    usable = [(op, weight) for op, weight, threads in OPERATIONS if h.threads or not threads]
    for _ in range(20):
        op = h.rng.choices([op for op, _ in usable], [w for _, w in usable])[0]
        step = op(h)
        if step is not None:
            return step
    return poll(h)


# ---- running and settling ----


def _in_threads(steps: tuple[Step, ...]) -> list[tuple[object, Exception | None]]:
    """Run the steps in threads released at the same instant (each after its head start's
    delay); (result, exception) each, settled in the main thread."""

    def delayed(step: Step) -> Callable[[], object]:
        def call() -> object:
            time.sleep(step.delay)
            return step.call()

        return call

    return driving.race(*(delayed(step) for step in steps))


def _alone(step: Step) -> list[tuple[object, Exception | None]]:
    try:
        return [(step.call(), None)]
    except Exception as exc:  # settled by the caller
        return [(None, exc)]


def perform(h: Harness, step: Step) -> None:
    """Do the step (a race: its parts at once), log what happened, settle what was raised."""
    parts = step.racing or (step,)
    refused_before = len(h.network.refused)
    results = _in_threads(parts) if step.racing else _alone(step)
    unexpected: list[str] = []
    outcomes = [
        f"{part.label}{f' (after {part.delay * 1000:g} ms)' if part.delay else ''} -> "
        + settle(h, part, result, exc, unexpected)
        for part, (result, exc) in zip(parts, results, strict=True)
    ]
    line = ("race: " if step.racing else "") + " | ".join(outcomes)
    refused = h.network.refused[refused_before:]
    if refused:  # the sender may have swallowed the error: say what never left
        line += f" [broker refused {', '.join(map(str, refused))}]"
    h.note(line)
    if unexpected:
        raise Violation("operations fail only through the injected faults", "\n".join(unexpected))


def settle(
    h: Harness, step: Step, result: object, exc: Exception | None, unexpected: list[str]
) -> str:
    """What the world does after a step; its outcome for the log. Unexpected errors are
    appended to ``unexpected`` with their traceback."""
    if exc is None:
        return repr(result)
    if isinstance(exc, SubmitLater) and step.message:
        h.network.put_back(step.message)  # Celery's autoretry sends it again
        return f"SubmitLater ({exc}), retried"
    if isinstance(exc, SimulatedCrash):
        # Redis redelivers an unacknowledged message; the file-system broker loses it.
        if step.message and h.rng.random() < 0.5:
            h.network.put_back(step.message)
            return "worker died, message redelivered"
        return "worker died, message lost"
    if isinstance(exc, BrokerError):
        return f"broker error: {exc}"
    if step.connection_cut and isinstance(exc, DatabaseOperationalError | InterfaceError):
        connection.close()  # the task failed and was acknowledged: its message is gone
        return f"database error: {_first_line(exc)}"
    if isinstance(exc, step.expected):
        return f"{type(exc).__name__}: {exc}"
    if isinstance(exc, DatabaseError):
        connection.close()
    trace = "".join(traceback.format_exception(exc)).rstrip()
    unexpected.append(f"{step.label} raised:\n{trace}")
    return f"RAISED {type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [""])[0]


# ---- a whole sequence ----


def play(h: Harness, operations: int) -> None:
    """The faulty part: random operations, the always-invariants checked after each."""
    h.process = random_process(h)
    perform(h, trigger(h) or poll(h))
    h.check()
    for _ in range(operations):
        perform(h, next_step(h))
        h.check()


def quiesce(h: Harness) -> None:
    """Stop the faults, then deliver, reconcile, sweep, poll and end every job until still.

    A round that changes nothing while a run is not final means nothing ever will.
    """
    h.network.heal()
    h.executor.heal()
    h.note("--- faults stop ---")
    before = None
    for round_ in range(QUIESCE_ROUNDS):
        for step in (reconcile(h), sweep(h), poll(h)):
            _deliver_everything(h)
            perform(h, step)
            h.check()
        _deliver_everything(h)
        if round_ == 0:
            stops_reach_the_executor(h)
        _end_live_jobs(h)
        perform(h, poll(h))
        h.check()
        _deliver_everything(h)
        now = _fingerprint(h)
        if not h.executor.live() and all(status in FINAL_RUN for status in now[0]):
            return
        if now == before:
            break
        before = now
    raise Violation(
        "every run reaches a final state once the faults stop",
        f"nothing moves any more after {round_ + 1} rounds of delivering, reconciling, "
        "polling and ending jobs",
    )


def _deliver_everything(h: Harness) -> None:
    for _ in range(DELIVERIES_PER_ROUND):
        if not h.network.pending:
            return
        perform(h, _delivery(h.network.take(0)))
        h.check()
    raise Violation(
        "every run reaches a final state once the faults stop",
        f"messages keep coming after {DELIVERIES_PER_ROUND} deliveries",
    )


def _end_live_jobs(h: Harness) -> None:
    """Every job still live ends: a terminated one as terminated, any other successfully."""
    for job in h.executor.live():
        code = 143 if job.stop_reason is not None else 0
        perform(
            h,
            Step(
                f"job {job.external_id} (attempt {job.launch.task_run_id}) exits {code}",
                partial(h.executor.finish, job.external_id, code),
            ),
        )
    h.check()


def _fingerprint(h: Harness) -> tuple[list[str], list[tuple[int, str]], int]:
    """Run statuses, attempt statuses and the number of jobs: what a round may change."""
    runs = list(
        ProcessRun.objects.filter(definition=h.process)
        .order_by("pk")
        .values_list("status", flat=True)
    )
    attempts = list(
        TaskRun.objects.filter(run__definition=h.process).order_by("pk").values_list("pk", "status")
    )
    return runs, attempts, len(h.executor.jobs())


def forget(h: Harness) -> None:
    """Delete the sequence's process and runs, so the next seed starts from an empty world."""
    ProcessRun.objects.filter(definition=h.process).delete()
    h.process.delete()


def describe(h: Harness) -> list[str]:
    """The runs, attempts, jobs and pending messages as they stand, for a failure report."""
    lines = ["runs:"]
    for run in ProcessRun.objects.filter(definition=h.process).order_by("pk"):
        kill = ", kill requested" if run.kill_requested_at else ""
        lines.append(f"  run {run.pk}: {run.status}{kill} {run.reason!r}")
    lines.append("attempts:")
    for a in TaskRun.objects.filter(run__definition=h.process).order_by("pk"):
        stop = f", stop asked ({a.stop_as})" if a.stop_requested_at else ""
        lines.append(
            f"  attempt {a.pk}: run {a.run_id} {a.task_name} round {a.round} #{a.number} "
            f"{a.status}, job {a.external_id or '-'}, exit {a.exit_code}{stop} {a.reason!r}"
        )
    lines.append("jobs:")
    for job in h.executor.jobs():
        stop = f", asked to terminate ({job.stop_reason})" if job.stop_reason else ""
        lines.append(
            f"  {job.external_id}: attempt {job.launch.task_run_id} {job.state}, "
            f"exit {job.exit_code}{stop}"
        )
    lines.append(f"pending messages: {', '.join(map(str, h.network.pending)) or 'none'}")
    return lines
