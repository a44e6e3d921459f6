"""The run engine: a pure function from one run's state and the clock to the actions that
move it on.

Nothing here imports Django, Celery or boto3. The shell (``jobs/orchestrator.py``) builds a
``RunState`` from the database, calls ``step``, and applies the returned actions in one
transaction. Every decision that can be expressed without I/O lives here, so it can be
tested with plain values.
"""

from __future__ import annotations

import heapq
import math
import random
import signal
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum


class AttemptStatus(StrEnum):
    WAITING = "waiting"  # created, upstream or backoff not yet satisfied
    READY = "ready"  # may be submitted now
    SUBMITTING = "submitting"  # claimed by a worker, executor call in flight
    SUBMITTED = "submitted"  # the executor accepted it
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    KILLED = "killed"
    SKIPPED = "skipped"


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    KILLED = "killed"
    SKIPPED = "skipped"  # never started: the overlap policy said so


ACTIVE_ATTEMPT = frozenset(
    {AttemptStatus.SUBMITTING, AttemptStatus.SUBMITTED, AttemptStatus.RUNNING}
)
PENDING_ATTEMPT = frozenset({AttemptStatus.WAITING, AttemptStatus.READY})
FINAL_ATTEMPT = frozenset(
    {
        AttemptStatus.SUCCEEDED,
        AttemptStatus.FAILED,
        AttemptStatus.TIMED_OUT,
        AttemptStatus.KILLED,
        AttemptStatus.SKIPPED,
    }
)
FINAL_RUN = frozenset({RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.KILLED, RunStatus.SKIPPED})


@dataclass(frozen=True)
class Backoff:
    """Delay before retry N (N >= 1): initial * multiplier**(N-1), +/- jitter, within the cap."""

    initial_delay_s: float = 10.0
    multiplier: float = 2.0  # 1.0 means a fixed delay
    max_delay_s: float = 600.0  # a hard cap: jitter can only shorten a capped delay
    jitter: float = 0.0  # fraction of the delay, 0..1, drawn deterministically from a seed

    def delay(self, retry_number: int, seed: str) -> float:
        """Seconds (0..max_delay_s) to wait after failed attempt ``retry_number``, by ``seed``."""
        if retry_number < 1:
            raise ValueError(f"retry number must be >= 1, got {retry_number}")
        try:
            base = self.initial_delay_s * self.multiplier ** (retry_number - 1)
        except OverflowError:  # a huge exponent: the cap applies anyway
            base = self.max_delay_s
        base = min(self.max_delay_s, base)
        spread = base * self.jitter
        low, high = base - spread, min(self.max_delay_s, base + spread)
        # A private RNG seeded with a string (hashed with SHA-512, not hash()) gives the same
        # jitter in every process, so re-running step() on the same state agrees with itself.
        share = random.Random(seed).random()
        # Uniform over the jitter range cut at the cap, rather than clamped to it: capped
        # retries of many runs keep their spread instead of bunching up at the cap. Counting
        # down from ``high`` cannot round above it.
        return max(0.0, high - (high - low) * share)


class RetryAction(StrEnum):
    RETRY = "retry"  # retry while attempts remain: what a failure no rule matches gets too
    FAIL = "fail"  # fail now: no more attempts in this round


@dataclass(frozen=True)
class RetryRule:
    """What becomes of the failed attempts it matches.

    It matches an attempt whose exit code is one of ``exit_codes`` (any, if empty) and whose
    reason contains ``reason`` in any case (any, if empty). A rule with neither matches every
    failure, so it can close a list: "fail whatever the rules above did not retry".
    """

    action: RetryAction
    exit_codes: tuple[int, ...] = ()
    reason: str = ""

    def matches(self, exit_code: int | None, reason: str) -> bool:
        if self.exit_codes and exit_code not in self.exit_codes:
            return False
        return self.reason.casefold() in reason.casefold()


_RULE_KEYS = ("exit_codes", "reason", "action")
_RULE_EXAMPLE = '[{"exit_codes": [2], "action": "fail"}]'


def parse_retry_rules(value: object, name: str = "retry_rules") -> tuple[RetryRule, ...]:
    """Retry rules from their JSON form; ValueError naming the rule (by its path from
    ``name``, e.g. ``retry_rules[0].action``) and what is wrong with it."""
    if not isinstance(value, list):
        raise ValueError(f"{name} must be a list of rules, e.g. {_RULE_EXAMPLE}")
    return tuple(_parse_retry_rule(item, f"{name}[{i}]") for i, item in enumerate(value))


def _parse_retry_rule(item: object, where: str) -> RetryRule:
    if not isinstance(item, dict):
        raise ValueError(f"{where} must be an object with an action, e.g. {_RULE_EXAMPLE}")
    unknown = [key for key in item if key not in _RULE_KEYS]
    if unknown:
        raise ValueError(
            f"{where}: unknown key {unknown[0]!r}; a rule has exit_codes, reason and action"
        )
    action = item.get("action")
    if action not in [a.value for a in RetryAction]:
        raise ValueError(f'{where}.action must be "retry" or "fail"')
    codes = item.get("exit_codes", [])
    # type() rather than isinstance(): JSON's true is a bool, which Python counts as an int.
    if not isinstance(codes, list) or any(type(code) is not int for code in codes):
        raise ValueError(f"{where}.exit_codes must be a list of whole numbers, e.g. [1, 137]")
    reason = item.get("reason", "")
    if not isinstance(reason, str):
        raise ValueError(f"{where}.reason must be text to look for in the attempt's reason")
    return RetryRule(RetryAction(action), tuple(codes), reason)


@dataclass(frozen=True)
class TaskSpec:
    name: str
    requires: tuple[str, ...] = ()  # required upstreams: each must succeed
    after: tuple[str, ...] = ()  # optional upstreams: each must reach a final outcome
    max_attempts: int = 1
    backoff: Backoff = field(default_factory=Backoff)
    time_limit_s: float | None = None  # counted from RUNNING, not from submission
    retry_on_timeout: bool = True
    require_explicit_success: bool = False
    # Failed attempts only (retry_on_timeout decides for timeouts); the first match decides.
    retry_rules: tuple[RetryRule, ...] = ()
    memory_mib: int | None = None  # what its config asks for; None: its kind has no memory
    oom_memory_factor: float = 2.0  # a retry after an out-of-memory kill asks for memory times this
    oom_memory_max_mib: int | None = None  # but never more than this (None: no cap)


@dataclass(frozen=True)
class Attempt:
    id: int
    task: str
    round: int  # 1 for the run's first try; "retry failed tasks" starts round + 1
    number: int  # attempt number within its round, from 1
    status: AttemptStatus
    not_before: datetime | None = None  # backoff: may not become READY before this
    started_at: datetime | None = None  # when it began RUNNING
    finished_at: datetime | None = None
    stop_requested: bool = False
    stop_reason: str | None = None  # the Terminate reason, shown as "stopping: ..."
    exit_code: int | None = None
    reason: str = ""  # how it ended; retry rules look for their text in it
    out_of_memory: bool = False  # its executor saw it killed for using too much memory
    permanent: bool = False  # its executor said trying again cannot help
    memory_mib: int | None = None  # what it asked for where the engine raised it; None: config's


@dataclass(frozen=True)
class RunState:
    run_id: int
    status: RunStatus
    tasks: tuple[TaskSpec, ...]
    attempts: tuple[Attempt, ...]  # every task has at least one attempt
    kill_requested: bool = False
    started_at: datetime | None = None  # began RUNNING; the run's time limit counts from here
    time_limit_s: float | None = None  # the whole run's: once exceeded it is stopped, and FAILED


# ---- actions: plain values the shell applies ----


@dataclass(frozen=True)
class MarkReady:
    attempt_id: int


@dataclass(frozen=True)
class MarkSkipped:
    attempt_id: int
    reason: str


@dataclass(frozen=True)
class Cancel:
    """A WAITING/READY attempt that never reached an executor ends as KILLED."""

    attempt_id: int
    reason: str


@dataclass(frozen=True)
class Terminate:
    """Ask the executor to stop an active attempt; it ends as ``outcome`` when it exits."""

    attempt_id: int
    reason: str
    outcome: AttemptStatus  # TIMED_OUT or KILLED


@dataclass(frozen=True)
class ScheduleRetry:
    task: str
    round: int
    number: int
    not_before: datetime
    reason: str
    memory_mib: int | None = None  # what the retry asks for; None: its config's memory


@dataclass(frozen=True)
class FinishRun:
    status: RunStatus
    reason: str


Action = MarkReady | MarkSkipped | Cancel | Terminate | ScheduleRetry | FinishRun


@dataclass(frozen=True)
class Step:
    actions: tuple[Action, ...]
    wake_at: datetime | None  # earliest time at which the clock alone changes the outcome


# ---- the step ----

# A task's outcome as its downstreams see it.
_SUCCEEDED = "succeeded"
_FAILED = "final-failure"  # failed for good: no retry is coming
_PENDING = "pending"

_UPSTREAM_FAILED = {
    AttemptStatus.FAILED: "failed",
    AttemptStatus.TIMED_OUT: "timed out",
    AttemptStatus.KILLED: "was killed",
    AttemptStatus.SKIPPED: "was skipped",
}


def step(state: RunState, now: datetime) -> Step:
    """Decide every action that moves one run on at ``now``, and when to look again."""
    if state.status in FINAL_RUN or state.status == RunStatus.QUEUED:
        return Step((), None)
    _, latest = _index(state)
    stop = _stop(state, now)
    if stop is not None:
        return _step_stopped(state, latest, *stop)

    actions: dict[str, Action] = {}
    run_deadline = _run_deadline(state)
    wakes: list[datetime] = [] if run_deadline is None else [run_deadline]
    status: dict[str, AttemptStatus] = {}  # each task's status once this step's actions apply
    outcome: dict[str, str] = {}
    # Upstreams first, so a skip (or an optional upstream becoming final) propagates down a
    # whole chain in one step instead of needing one shell round trip per level.
    for spec in _topological(state.tasks):
        a = latest[spec.name]
        st = a.status
        if st == AttemptStatus.WAITING:
            failed = next((u for u in spec.requires if outcome[u] == _FAILED), None)
            if failed is not None:
                reason = f"required upstream {failed!r} {_UPSTREAM_FAILED[status[failed]]}"
                actions[spec.name] = MarkSkipped(a.id, reason)
                st = AttemptStatus.SKIPPED
            elif _upstreams_met(spec, outcome):
                if a.not_before is None or a.not_before <= now:
                    actions[spec.name] = MarkReady(a.id)
                    st = AttemptStatus.READY
                else:
                    wakes.append(a.not_before)
        elif st == AttemptStatus.RUNNING:
            deadline = _deadline(spec, a)
            if deadline is not None and not a.stop_requested:
                if deadline <= now:
                    actions[spec.name] = Terminate(
                        a.id,
                        f"time limit of {spec.time_limit_s:g}s exceeded",
                        AttemptStatus.TIMED_OUT,
                    )
                else:
                    wakes.append(deadline)
        elif _retry_coming(spec, a):
            retry = _schedule_retry(state.run_id, spec, a, now)
            actions[spec.name] = retry
            # The shell creates the retry as WAITING; waking at not_before lets the next step
            # mark it READY even if nothing else happens in the meantime.
            wakes.append(retry.not_before)
        status[spec.name] = st
        outcome[spec.name] = _outcome(spec, a, st)

    ordered = [actions[t.name] for t in state.tasks if t.name in actions]
    if all(o != _PENDING for o in outcome.values()):
        ordered.append(_finish(state.tasks, status))
        return Step(tuple(ordered), None)
    return Step(tuple(ordered), min(wakes, default=None))


def _stop(state: RunState, now: datetime) -> tuple[str, FinishRun] | None:
    """Why a running run is being stopped at ``now`` and how it will finish, or None."""
    # A person's kill wins: the run page should say who stopped it, not that time ran out.
    if state.kill_requested:
        return "run killed", FinishRun(RunStatus.KILLED, "killed")
    deadline = _run_deadline(state)
    if deadline is not None and deadline <= now:
        reason = f"run time limit of {state.time_limit_s:g}s exceeded"
        # FAILED, not KILLED: nobody chose to stop it, so it must alert like any failure.
        return reason, FinishRun(RunStatus.FAILED, reason)
    return None


def _run_deadline(state: RunState) -> datetime | None:
    """When the run exceeds its own time limit, counted from its start."""
    if state.time_limit_s is None or state.started_at is None:
        return None
    return state.started_at + timedelta(seconds=state.time_limit_s)


def _step_stopped(
    state: RunState, latest: Mapping[str, Attempt], reason: str, finish: FinishRun
) -> Step:
    """Cancel what has not started, terminate what is active, finish once nothing is."""
    actions: list[Action] = []
    active = False
    for spec in state.tasks:
        a = latest[spec.name]
        if a.status in PENDING_ATTEMPT:
            actions.append(Cancel(a.id, reason))
        elif a.status in ACTIVE_ATTEMPT:
            active = True
            if not a.stop_requested:
                actions.append(Terminate(a.id, reason, AttemptStatus.KILLED))
    if not active:  # cancelled attempts end at once, so they do not hold the run open
        actions.append(finish)
    return Step(tuple(actions), None)


def _index(state: RunState) -> tuple[dict[str, TaskSpec], dict[str, Attempt]]:
    """Specs by name and each task's latest attempt; ValueError if the state is malformed."""
    specs: dict[str, TaskSpec] = {}
    for spec in state.tasks:
        if spec.name in specs:
            raise ValueError(f"duplicate task {spec.name!r}")
        specs[spec.name] = spec
    for spec in state.tasks:
        for up in (*spec.requires, *spec.after):
            if up not in specs:
                raise ValueError(f"task {spec.name!r} depends on unknown task {up!r}")
    latest: dict[str, Attempt] = {}
    for a in state.attempts:
        if a.task not in specs:
            raise ValueError(f"attempt {a.id} belongs to unknown task {a.task!r}")
        cur = latest.get(a.task)
        if cur is None or (a.round, a.number, a.id) > (cur.round, cur.number, cur.id):
            latest[a.task] = a
    missing = [name for name in specs if name not in latest]
    if missing:
        raise ValueError(f"task(s) without an attempt: {', '.join(missing)}")
    return specs, latest


def _topological(tasks: Sequence[TaskSpec]) -> list[TaskSpec]:
    """Tasks with every upstream before its downstreams (Kahn's algorithm, linear time).

    Among tasks free to go, the one given first goes first, so the order is deterministic.
    """
    position = {t.name: i for i, t in enumerate(tasks)}
    blockers = {t.name: len({*t.requires, *t.after}) for t in tasks}
    downstream: dict[str, list[str]] = {t.name: [] for t in tasks}
    for t in tasks:
        for up in {*t.requires, *t.after}:
            downstream[up].append(t.name)
    free = [position[t.name] for t in tasks if blockers[t.name] == 0]
    heapq.heapify(free)
    order: list[TaskSpec] = []
    while free:
        task = tasks[heapq.heappop(free)]
        order.append(task)
        for name in downstream[task.name]:
            blockers[name] -= 1
            if blockers[name] == 0:
                heapq.heappush(free, position[name])
    if len(order) < len(tasks):
        placed = {t.name for t in order}
        rest = {t.name: (*t.requires, *t.after) for t in tasks if t.name not in placed}
        raise ValueError("dependency cycle: " + " → ".join(task_graph_cycle(rest) or []))
    return order


def _retry_coming(spec: TaskSpec, a: Attempt) -> bool:
    """Whether an attempt that ended so will be followed by another one in its round."""
    if a.number >= spec.max_attempts:
        return False
    if a.status == AttemptStatus.TIMED_OUT:
        return spec.retry_on_timeout
    return a.status == AttemptStatus.FAILED and not_retried_because(spec, a) is None


def not_retried_because(spec: TaskSpec, a: Attempt) -> str | None:
    """Why a failed attempt is not retried though attempts are left; None if it is retried
    (or is no failure with attempts left).

    A permanent failure is never retried, whatever the rules say: trying again cannot help.
    Otherwise the first retry rule that matches decides; without one, it is retried.
    """
    if a.status != AttemptStatus.FAILED or a.number >= spec.max_attempts:
        return None
    if a.permanent:
        return "not retried: trying again cannot help"
    for number, rule in enumerate(spec.retry_rules, start=1):
        if rule.matches(a.exit_code, a.reason):
            if rule.action == RetryAction.FAIL:
                return f"not retried: retry rule {number} says fail"
            return None
    return None


def _outcome(spec: TaskSpec, a: Attempt, status: AttemptStatus) -> str:
    """The task's outcome for downstreams, given its latest attempt and that attempt's
    status once this step's actions apply."""
    if status == AttemptStatus.SUCCEEDED:
        return _SUCCEEDED
    if status in (AttemptStatus.SKIPPED, AttemptStatus.KILLED):
        return _FAILED
    if status in (AttemptStatus.FAILED, AttemptStatus.TIMED_OUT):
        return _PENDING if _retry_coming(spec, a) else _FAILED
    return _PENDING


def _upstreams_met(spec: TaskSpec, outcome: Mapping[str, str]) -> bool:
    """Required upstreams all succeeded and optional ones all reached a final outcome."""
    return all(outcome[u] == _SUCCEEDED for u in spec.requires) and all(
        outcome[u] != _PENDING for u in spec.after
    )


def _deadline(spec: TaskSpec, a: Attempt) -> datetime | None:
    """When a running attempt exceeds its time limit, counted from RUNNING."""
    if spec.time_limit_s is None or a.started_at is None:
        return None
    return a.started_at + timedelta(seconds=spec.time_limit_s)


def _schedule_retry(run_id: int, spec: TaskSpec, failed: Attempt, now: datetime) -> ScheduleRetry:
    """The next attempt after ``failed``, delayed by the task's backoff, with more memory if
    ``failed`` ran out of it."""
    # repr() of the tuple keeps fields apart even if a task name contains a separator.
    seed = repr((run_id, failed.task, failed.round, failed.number))
    delay = spec.backoff.delay(failed.number, seed)
    when = (failed.finished_at or now) + timedelta(seconds=delay)
    number = failed.number + 1
    memory = next_memory(spec, failed)
    reason = f"retry {number} of {spec.max_attempts} at {_clock(when)}{_with_memory(spec, memory)}"
    if failed.out_of_memory:
        reason += " after running out of memory"
        if memory is None:
            reason += " (its config sets no memory_mib to raise)"
    return ScheduleRetry(failed.task, failed.round, number, when, reason, memory)


def next_memory(spec: TaskSpec, last: Attempt) -> int | None:
    """The memory the attempt after ``last`` asks for (None: its config's).

    After an out-of-memory kill: what ``last`` asked for times the task's factor, rounded up,
    within its cap (at the cap it stays there). Otherwise what ``last`` asked for: memory
    once raised stays raised, or the task would run out of it again.
    """
    if not last.out_of_memory:
        return last.memory_mib
    asked = last.memory_mib if last.memory_mib is not None else spec.memory_mib
    if asked is None:
        return None
    wanted = asked * spec.oom_memory_factor
    if spec.oom_memory_max_mib is not None:
        wanted = min(wanted, spec.oom_memory_max_mib)
    # Never less than before: a cap below the config's own memory does not shrink it.
    return max(asked, math.ceil(wanted))


def _with_memory(spec: TaskSpec, memory: int | None) -> str:
    """What a reason says of an attempt's memory: " with 4096 MiB" where the engine raised it."""
    if memory is None:
        return ""
    return f" with {memory} MiB" + (" (the cap)" if memory == spec.oom_memory_max_mib else "")


def _finish(tasks: Sequence[TaskSpec], status: Mapping[str, AttemptStatus]) -> FinishRun:
    """The run's end once every task's outcome is final."""
    failed = [t.name for t in tasks if status[t.name] in _UPSTREAM_FAILED]
    if not failed:
        return FinishRun(RunStatus.SUCCEEDED, "all tasks succeeded")
    broken = [n for n in failed if status[n] != AttemptStatus.SKIPPED]
    skipped = [n for n in failed if status[n] == AttemptStatus.SKIPPED]
    parts = [f"failed: {', '.join(broken)}"] if broken else []
    parts += [f"skipped: {', '.join(skipped)}"] if skipped else []
    return FinishRun(RunStatus.FAILED, "; ".join(parts))


def _clock(t: datetime) -> str:
    """HH:MM:SS UTC; naive datetimes are taken to be UTC already."""
    if t.tzinfo is not None:
        t = t.astimezone(UTC)
    return t.strftime("%H:%M:%S UTC")


# ---- how an attempt ended ----


def attempt_outcome(
    spec: TaskSpec,
    exit_code: int | None,
    reported_success: bool | None,
    terminated_as: AttemptStatus | None,
    stop_reason: str = "",
) -> tuple[AttemptStatus, str]:
    """Map how an attempt ended to its final status and a human reason.

    ``terminated_as`` is what a stop we asked for makes of the attempt: TIMED_OUT, KILLED,
    or FAILED for a stop that counts as a failure and is retried per policy (its process
    was lost, its worker stopped). ``stop_reason`` is why the stop was asked ("run killed",
    "replaced by run 12", "worker stopped"), kept as the attempt's reason so the run page
    says who or what stopped it.
    """
    if terminated_as == AttemptStatus.FAILED:
        # Our own stop (lost, worker stopped), not the task's fault: a task that still ends
        # well within its grace succeeded; otherwise the stop is why it failed.
        if exit_code is None:
            if reported_success is True:
                # An orphan's exit code dies with its worker; its own word is what is left.
                return (
                    AttemptStatus.SUCCEEDED,
                    f"success reported; exit code unknown ({stop_reason or 'stopped'})",
                )
            return AttemptStatus.FAILED, stop_reason or "stopped"
        status, how = attempt_outcome(spec, exit_code, reported_success, None)
        if status == AttemptStatus.SUCCEEDED:
            return status, how
        return AttemptStatus.FAILED, f"{stop_reason or 'stopped'} ({how})"
    if terminated_as is not None:
        # We asked it to stop, so its exit code (usually a signal) says nothing new.
        if terminated_as == AttemptStatus.TIMED_OUT:
            limit = f" of {spec.time_limit_s:g}s" if spec.time_limit_s is not None else ""
            return AttemptStatus.TIMED_OUT, f"time limit{limit} exceeded"
        if terminated_as == AttemptStatus.KILLED:
            return AttemptStatus.KILLED, stop_reason or "killed"
        raise ValueError(
            f"terminated_as must be TIMED_OUT, KILLED or FAILED, not {terminated_as!r}"
        )
    if exit_code is None:
        return AttemptStatus.FAILED, "no exit code"
    if exit_code < 0:
        try:
            name = f" ({signal.Signals(-exit_code).name})"
        except ValueError:
            name = ""
        return AttemptStatus.FAILED, f"killed by signal {-exit_code}{name}"
    if exit_code > 0:
        return AttemptStatus.FAILED, f"exit code {exit_code}"
    if reported_success is False:
        return AttemptStatus.FAILED, "exited 0 but reported failure"
    if spec.require_explicit_success and reported_success is not True:
        return AttemptStatus.FAILED, "exited 0 without reporting success"
    return AttemptStatus.SUCCEEDED, "exit code 0" + (
        ", success reported" if reported_success else ""
    )


# ---- what the UI shows ----


def waiting_reasons(state: RunState, now: datetime) -> dict[str, str]:
    """One short sentence per task whose latest attempt is not final, saying what it waits for."""
    if state.status == RunStatus.QUEUED:  # attempts may not exist yet
        return {t.name: "queued: the run has not started" for t in state.tasks}
    specs, latest = _index(state)
    outcome = {n: _outcome(specs[n], a, a.status) for n, a in latest.items()}
    status = {n: a.status for n, a in latest.items()}
    stop = _stop(state, now)
    reasons: dict[str, str] = {}
    for spec in state.tasks:
        a = latest[spec.name]
        if a.status in FINAL_ATTEMPT:
            continue
        if a.status in ACTIVE_ATTEMPT and a.stop_requested:
            reason = a.stop_reason
            reasons[spec.name] = f"stopping: {reason}" if reason else "stopping"
        elif a.status in PENDING_ATTEMPT and stop is not None:
            reasons[spec.name] = f"cancelling: {stop[0]}"
        elif a.status == AttemptStatus.WAITING:
            reasons[spec.name] = _waiting_reason(spec, a, outcome, status, now)
        elif a.status == AttemptStatus.RUNNING:
            deadline = _deadline(spec, a)
            limit = f" (time limit {_clock(deadline)})" if deadline is not None else ""
            reasons[spec.name] = "running" + limit
        else:
            reasons[spec.name] = {
                AttemptStatus.READY: "ready: waiting for a worker",
                AttemptStatus.SUBMITTING: "submitting",
                AttemptStatus.SUBMITTED: "submitted: waiting to start",
            }[a.status]
    return reasons


def _waiting_reason(
    spec: TaskSpec,
    a: Attempt,
    outcome: Mapping[str, str],
    status: Mapping[str, AttemptStatus],
    now: datetime,
) -> str:
    """Why a WAITING attempt is not READY yet."""
    failed = next((u for u in spec.requires if outcome[u] == _FAILED), None)
    if failed is not None:
        return f"skipping: required upstream {failed!r} {_UPSTREAM_FAILED[status[failed]]}"
    unmet = [u for u in spec.requires if outcome[u] != _SUCCEEDED]
    unmet += [u for u in spec.after if outcome[u] == _PENDING and u not in unmet]
    if unmet:
        return f"waiting for {', '.join(unmet)}"
    if a.not_before is not None and a.not_before > now:
        if a.number > 1:
            memory = _with_memory(spec, a.memory_mib)
            return f"retry {a.number} of {spec.max_attempts} at {_clock(a.not_before)}{memory}"
        return f"waiting until {_clock(a.not_before)}"
    return "ready: waiting for a worker"


# ---- "retry failed tasks" ----


def rerun_tasks(state: RunState) -> list[str]:
    """Tasks to run again: those not SUCCEEDED plus everything downstream of them."""
    _, latest = _index(state)
    downstream: dict[str, list[str]] = {t.name: [] for t in state.tasks}
    for t in state.tasks:
        for up in (*t.requires, *t.after):
            downstream[up].append(t.name)
    chosen = {n for n, a in latest.items() if a.status != AttemptStatus.SUCCEEDED}
    todo = list(chosen)
    while todo:
        for down in downstream[todo.pop()]:
            if down not in chosen:
                chosen.add(down)
                todo.append(down)
    return [t.name for t in state.tasks if t.name in chosen]


def next_round_memory(state: RunState) -> dict[str, int]:
    """The memory each task's next round starts with, for tasks whose memory the engine
    raised: what its last attempt asked for, raised again if that one ran out of memory."""
    specs, latest = _index(state)
    memory = {name: next_memory(specs[name], a) for name, a in latest.items()}
    return {name: mib for name, mib in memory.items() if mib is not None}


# ---- running a subset of tasks ----


def select_tasks(
    tasks: Sequence[TaskSpec], names: Iterable[str]
) -> tuple[tuple[TaskSpec, ...], tuple[str, ...]]:
    """The named tasks cut loose from the rest of the process, and the upstreams cut off.

    Edges to tasks outside the selection are removed, so those upstreams count as satisfied;
    the second value names them, in the process's order, so the run can say what it assumed.
    Both keep the process's order whatever the order of ``names``. Raises ValueError, worded
    for the person who chose, for an empty choice, an unknown task or a task named twice.
    """
    chosen = list(names)
    if not chosen:
        raise ValueError("choose at least one task to run")
    known = dict.fromkeys(t.name for t in tasks)  # ordered like the process, quick to look up
    unknown = [n for n in dict.fromkeys(chosen) if n not in known]
    if unknown:
        raise ValueError(
            f"unknown task(s): {', '.join(unknown)}; this process has: {', '.join(known)}"
        )
    twice = [n for n, count in Counter(chosen).items() if count > 1]
    if twice:
        raise ValueError(f"task(s) named more than once: {', '.join(twice)}")
    subset = set(chosen)
    selected = tuple(
        replace(
            t,
            requires=tuple(u for u in t.requires if u in subset),
            after=tuple(u for u in t.after if u in subset),
        )
        for t in tasks
        if t.name in subset
    )
    cut = {u for t in tasks if t.name in subset for u in (*t.requires, *t.after)} - subset
    return selected, tuple(n for n in known if n in cut)


# ---- overlapping runs of one job ----


class OverlapPolicy(StrEnum):
    ALLOW = "allow"
    SKIP = "skip"
    QUEUE = "queue"
    REPLACE = "replace"


@dataclass(frozen=True)
class OverlapDecision:
    start: RunStatus  # RUNNING, QUEUED or SKIPPED
    replace: tuple[int, ...]  # active runs to kill (REPLACE only); the new run waits for them
    reason: str


def decide_overlap(policy: OverlapPolicy, active_run_ids: Sequence[int]) -> OverlapDecision:
    """How a new run of a job starts, given the job's queued or running runs."""
    policy = OverlapPolicy(policy)  # also accepts the stored string; rejects unknown ones
    ids = tuple(sorted(set(active_run_ids)))
    if not ids:
        return OverlapDecision(RunStatus.RUNNING, (), "no other run is active")
    runs = f"run {ids[0]}" if len(ids) == 1 else "runs " + ", ".join(map(str, ids))
    match policy:
        case OverlapPolicy.ALLOW:
            return OverlapDecision(RunStatus.RUNNING, (), f"allowed alongside {runs}")
        case OverlapPolicy.SKIP:
            verb = "is" if len(ids) == 1 else "are"
            return OverlapDecision(RunStatus.SKIPPED, (), f"skipped: {runs} {verb} still active")
        case OverlapPolicy.QUEUE:
            return OverlapDecision(RunStatus.QUEUED, (), f"queued behind {runs}")
        case OverlapPolicy.REPLACE:
            # Queued until the replaced runs have stopped: their tasks may still be in their
            # kill grace, and two copies of one task must never write the same output.
            it = "it has" if len(ids) == 1 else "they have"
            return OverlapDecision(
                RunStatus.QUEUED, ids, f"replaces {runs}; starts once {it} stopped"
            )


# ---- the admin's cycle check ----


def task_graph_cycle(edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One cycle as a closed path (["a", "b", "a"]) following ``edges``, or None if acyclic."""
    graph = {node: sorted(set(targets)) for node, targets in edges.items()}
    done: set[str] = set()
    for root in sorted(graph):
        if root in done:
            continue
        # Iterative depth-first search: ``path`` is the current chain, ``stack`` its
        # unexplored edges, so a target already on ``path`` closes a cycle.
        path, stack = [root], [iter(graph[root])]
        while stack:
            target = next(stack[-1], None)
            if target is None:
                done.add(path.pop())
                stack.pop()
            elif target in path:
                loop = path[path.index(target) :]
                # Start at the smallest name, so one cycle always reads the same way.
                first = loop.index(min(loop))
                return [*loop[first:], *loop[:first], loop[first]]
            elif target not in done:
                path.append(target)
                stack.append(iter(graph.get(target, ())))
    return None
