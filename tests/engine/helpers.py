"""Builders for engine states, and a simulator that plays the shell and the executor."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from jobs.engine import (
    ACTIVE_ATTEMPT,
    FINAL_ATTEMPT,
    FINAL_RUN,
    PENDING_ATTEMPT,
    Attempt,
    AttemptStatus,
    Cancel,
    FinishRun,
    MarkReady,
    MarkSkipped,
    RunState,
    RunStatus,
    ScheduleRetry,
    Step,
    TaskSpec,
    Terminate,
    attempt_outcome,
    next_round_memory,
    not_retried_because,
    rerun_tasks,
    step,
)

S = AttemptStatus
_STAGED = frozenset({S.READY, S.SUBMITTING, S.SUBMITTED})
T0 = datetime(2025, 3, 1, 14, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    """T0 plus some seconds."""
    return T0 + timedelta(seconds=seconds)


def task(name: str, requires: Sequence[str] = (), after: Sequence[str] = (), **kw: Any) -> TaskSpec:
    return TaskSpec(name, tuple(requires), tuple(after), **kw)


def attempt(task_name: str, status: AttemptStatus = S.WAITING, **kw: Any) -> Attempt:
    """An attempt; id 0 means "number me" when passed to make_state."""
    kw.setdefault("id", 0)
    kw.setdefault("round", 1)
    kw.setdefault("number", 1)
    return Attempt(task=task_name, status=status, **kw)


def make_state(
    tasks: Sequence[TaskSpec],
    attempts: Iterable[Attempt],
    status: RunStatus = RunStatus.RUNNING,
    kill: bool = False,
    run_id: int = 7,
    time_limit_s: float | None = None,
) -> RunState:
    """A RunState started at T0; attempts without an id get 101, 102, ... in the given order."""
    numbered = tuple(a if a.id else replace(a, id=100 + i) for i, a in enumerate(attempts, start=1))
    return RunState(
        run_id, status, tuple(tasks), numbered, kill, started_at=T0, time_limit_s=time_limit_s
    )


def statuses(tasks: Sequence[TaskSpec], **by_task: AttemptStatus) -> RunState:
    """A running state with one round-1 attempt per task (WAITING unless named)."""
    return make_state(tasks, [attempt(t.name, by_task.get(t.name, S.WAITING)) for t in tasks])


def attempt_id(state: RunState, task_name: str) -> int:
    """The id of the task's latest attempt."""
    mine = [a for a in state.attempts if a.task == task_name]
    return max(mine, key=lambda a: (a.round, a.number, a.id)).id


# ---- the simulator ----

Draw = Callable[[st.SearchStrategy[Any]], Any]


@dataclass(frozen=True)
class Plan:
    """How a running attempt will end, drawn when it starts."""

    ends_at: datetime
    exit_code: int | None
    reported: bool | None
    out_of_memory: bool
    permanent: bool


def _check_memory(spec: TaskSpec, last: Attempt, memory: int | None) -> None:
    """A retry asks for no less memory than the attempt before it, and more only after an
    out-of-memory kill, within the task's cap (unless its config alone asks for more)."""
    before = last.memory_mib if last.memory_mib is not None else spec.memory_mib
    if not last.out_of_memory or before is None:
        assert memory == last.memory_mib, (last, memory)
        return
    assert memory is not None and memory >= before, (last, memory)
    cap = spec.oom_memory_max_mib
    assert cap is None or memory <= max(cap, before), (spec, memory)


class Simulator:
    """Applies Step actions the way the shell does and moves attempts the way an executor does.

    Every action is checked against the state it applies to: in the simulator nothing races
    with the engine, so an action the shell's conditional update would drop is an engine bug.
    """

    def __init__(
        self, tasks: Sequence[TaskSpec], run_id: int = 1, time_limit_s: float | None = None
    ) -> None:
        self.tasks = tuple(tasks)
        self.specs = {t.name: t for t in tasks}
        self.run_id = run_id
        self.now = T0
        self.status = RunStatus.RUNNING
        self.kill = False
        self.started_at = T0
        self.time_limit_s = time_limit_s
        self.round = 1
        self.attempts: dict[int, Attempt] = {}
        self.plans: dict[int, Plan] = {}
        self.stop_as: dict[int, AttemptStatus] = {}
        self.seq = 0  # one per transaction (a step's actions, or one executor event)
        self.last_change: dict[str, int] = {}
        self.readied: list[tuple[str, int]] = []  # (task, seq) of each MarkReady
        self.finish_reason = ""
        for t in self.tasks:
            self._create(t.name, 1, 1, None)

    # -- state --

    def state(self) -> RunState:
        return RunState(
            self.run_id,
            self.status,
            self.tasks,
            tuple(self.attempts.values()),
            self.kill,
            self.started_at,
            self.time_limit_s,
        )

    def deadline(self) -> datetime | None:
        """When the run exceeds its time limit, if it has one."""
        if self.time_limit_s is None:
            return None
        return self.started_at + timedelta(seconds=self.time_limit_s)

    def stop_reason(self) -> str | None:
        """Why the run is being stopped now (a kill wins over its time limit), or None."""
        if self.kill:
            return "run killed"
        deadline = self.deadline()
        if deadline is not None and deadline <= self.now:
            return f"run time limit of {self.time_limit_s:g}s exceeded"
        return None

    def latest(self, name: str) -> Attempt:
        mine = [a for a in self.attempts.values() if a.task == name]
        return max(mine, key=lambda a: (a.round, a.number))

    def _create(
        self,
        name: str,
        round_: int,
        number: int,
        not_before: datetime | None,
        memory_mib: int | None = None,
    ) -> None:
        aid = len(self.attempts) + 1
        self.attempts[aid] = Attempt(
            aid, name, round_, number, S.WAITING, not_before, memory_mib=memory_mib
        )
        self.last_change[name] = self.seq

    def _set(self, a: Attempt, **changes: Any) -> None:
        self.attempts[a.id] = replace(a, **changes)
        self.last_change[a.task] = self.seq

    # -- the shell --

    def apply(self, s: Step) -> None:
        """Apply one step's actions as one transaction, asserting each is applicable."""
        self.seq += 1
        for action in s.actions:
            assert self.status not in FINAL_RUN, f"{action} after the run finished"
            match action:
                case MarkReady(attempt_id=aid):
                    a = self.attempts[aid]
                    assert a.status == S.WAITING, f"MarkReady on {a}"
                    assert a.not_before is None or a.not_before <= self.now, f"early: {a}"
                    assert self.stop_reason() is None
                    self._set(a, status=S.READY)
                    self.readied.append((a.task, self.seq))
                case MarkSkipped(attempt_id=aid):
                    a = self.attempts[aid]
                    assert a.status == S.WAITING, f"MarkSkipped on {a}"
                    self._set(a, status=S.SKIPPED, finished_at=self.now)
                case Cancel(attempt_id=aid, reason=reason):
                    a = self.attempts[aid]
                    assert a.status in PENDING_ATTEMPT, f"Cancel on {a}"
                    assert reason == self.stop_reason(), action
                    self._set(a, status=S.KILLED, finished_at=self.now)
                case Terminate(attempt_id=aid, outcome=outcome, reason=reason):
                    a = self.attempts[aid]
                    assert a.status in ACTIVE_ATTEMPT and not a.stop_requested, a
                    if outcome == S.KILLED:
                        assert reason == self.stop_reason(), action
                    else:
                        assert outcome == S.TIMED_OUT and a.status == S.RUNNING
                        limit = self.specs[a.task].time_limit_s
                        assert limit is not None and a.started_at is not None
                        assert a.started_at + timedelta(seconds=limit) <= self.now
                    self.stop_as[aid] = outcome
                    self._set(a, stop_requested=True, stop_reason=reason)
                case ScheduleRetry(
                    task=name, round=round_, number=number, not_before=nb, memory_mib=memory
                ):
                    spec, last = self.specs[name], self.latest(name)
                    assert self.stop_reason() is None
                    assert (round_, number) == (last.round, last.number + 1), action
                    assert number <= spec.max_attempts, action
                    assert (
                        last.status == S.FAILED and not_retried_because(spec, last) is None
                    ) or (last.status == S.TIMED_OUT and spec.retry_on_timeout), (action, last)
                    _check_memory(spec, last, memory)
                    self._create(name, round_, number, nb, memory)
                case FinishRun(status=run_status, reason=reason):
                    latest = [self.latest(t.name) for t in self.tasks]
                    assert all(a.status in FINAL_ATTEMPT for a in latest), latest
                    assert (run_status == RunStatus.KILLED) == self.kill, action
                    stop = self.stop_reason()
                    if stop is not None and not self.kill:
                        assert (run_status, reason) == (RunStatus.FAILED, stop), action
                    self.status, self.finish_reason = run_status, reason
        for name, seq in self.readied:
            if seq == self.seq:  # once the whole transaction applied
                for up in self.specs[name].requires:
                    assert self.latest(up).status == S.SUCCEEDED, (name, up)
                for up in self.specs[name].after:
                    assert self.latest(up).status in FINAL_ATTEMPT, (name, up)

    # -- the executor --

    def events(self) -> list[tuple[datetime, int]]:
        """(when, attempt id) of every executor move that is possible from here on."""
        out = []
        for a in self.attempts.values():
            # A stop request, or a READY/SUBMITTING/SUBMITTED attempt, can move right away.
            if (a.stop_requested and a.status in ACTIVE_ATTEMPT) or a.status in _STAGED:
                out.append((self.now, a.id))
            elif a.status == S.RUNNING:
                out.append((self.plans[a.id].ends_at, a.id))
        return sorted(out)

    def move(self, aid: int, draw: Draw) -> None:
        """Advance one attempt by one stage, as the executor and the workers would."""
        self.seq += 1
        a = self.attempts[aid]
        spec = self.specs[a.task]
        if a.stop_requested:
            status, _ = attempt_outcome(spec, -15, None, self.stop_as[aid])
            self._set(a, status=status, finished_at=self.now)
        elif a.status == S.READY:
            self._set(a, status=S.SUBMITTING)
        elif a.status == S.SUBMITTING:
            self._set(a, status=S.SUBMITTED)
        elif a.status == S.SUBMITTED:
            duration = draw(st.integers(0, 90))
            exit_code = draw(st.sampled_from([0, 0, 0, 1, 2, 137, -9, None]))
            self.plans[aid] = Plan(
                self.now + timedelta(seconds=duration),
                exit_code,
                reported=draw(st.sampled_from([None, True, True, False])),
                # As an executor classifies them: out of memory is a kill, 137 or SIGKILL.
                out_of_memory=exit_code in (137, -9) and draw(st.booleans()),
                permanent=exit_code != 0 and draw(st.sampled_from([False, False, True])),
            )
            self._set(a, status=S.RUNNING, started_at=self.now)
        else:
            plan = self.plans[aid]
            status, reason = attempt_outcome(spec, plan.exit_code, plan.reported, None)
            self._set(
                a,
                status=status,
                finished_at=self.now,
                exit_code=plan.exit_code,
                reason=reason,
                out_of_memory=plan.out_of_memory,
                permanent=plan.permanent,
            )

    # -- the loop --

    def run(self, draw: Draw, kill_after: int | None = None, limit: int = 1000) -> None:
        """Step, apply, and move the executor on until the run finishes."""
        self.readied = []
        for i in range(limit):
            s = step(self.state(), self.now)
            assert s == step(self.state(), self.now), "step is not deterministic"
            self.apply(s)
            if self.status in FINAL_RUN:
                assert step(self.state(), self.now) == Step((), None)
                self._check_readiness()
                return
            if kill_after is not None and i >= kill_after and not self.kill:
                self.kill = True  # the shell steps right after a kill request
                continue
            due = [e for e in self.events() if e[0] <= self.now]
            if not due:
                later = [when for when, _ in self.events()]
                later += [s.wake_at] if s.wake_at is not None else []
                assert later, "deadlock: nothing to do, nothing active and no wake_at"
                before, self.now = self.now, max(self.now, min(later))
                self._check_deadlines(before)
                due = [e for e in self.events() if e[0] <= self.now]
                if not due:
                    continue  # the clock alone changed something: step again
            _, aid = draw(st.sampled_from(due))
            self.move(aid, draw)
        raise AssertionError(f"run did not finish within {limit} iterations")

    def _check_deadlines(self, before: datetime) -> None:
        """The clock never passes a time limit unnoticed: wake_at must have stopped it."""
        for a in self.attempts.values():
            limit = self.specs[a.task].time_limit_s
            if a.status == S.RUNNING and limit is not None and not a.stop_requested:
                assert a.started_at is not None
                assert self.now <= a.started_at + timedelta(seconds=limit), f"overran: {a}"
        deadline = self.deadline()
        if deadline is not None and before < deadline:
            assert self.now <= deadline, f"the run overran its time limit: {self.now}"

    def _check_readiness(self) -> None:
        """Nothing an attempt waited for changed after it became READY."""
        for name, seq in self.readied:
            spec = self.specs[name]
            for up in (*spec.requires, *spec.after):
                assert self.last_change[up] <= seq, f"{up} changed after {name} became ready"

    def rerun(self) -> list[str]:
        """Start "retry failed tasks": a new round for rerun_tasks() of the finished run."""
        names = rerun_tasks(self.state())
        memory = next_round_memory(self.state())
        self.round += 1
        self.seq += 1
        for name in names:
            self._create(name, self.round, 1, None, memory.get(name))
        # The shell restarts the run's clock with each round, so its time limit does too.
        self.status, self.kill, self.started_at = RunStatus.RUNNING, False, self.now
        return names
