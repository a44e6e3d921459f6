"""Whole runs of random DAGs, driven by a simulated shell and executor."""

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.engine import (
    FINAL_ATTEMPT,
    Backoff,
    RetryAction,
    RetryRule,
    RunStatus,
    Step,
    TaskSpec,
    not_retried_because,
    rerun_tasks,
    step,
    waiting_reasons,
)
from tests.engine.helpers import S, Simulator

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

backoffs = st.builds(
    Backoff,
    initial_delay_s=st.integers(0, 20),
    multiplier=st.sampled_from([1.0, 2.0]),
    max_delay_s=st.integers(0, 60),
    jitter=st.sampled_from([0.0, 0.5, 1.0]),
)
# Some runs have a time limit, from "stopped at once" to "rarely reached" (tasks run 0-90 s).
run_limits = st.none() | st.integers(0, 300)
# On the simulator's exit codes (0, 1, 2, 137, -9, none) and reasons ("exit code 2", ...).
retry_rules = st.lists(
    st.builds(
        RetryRule,
        action=st.sampled_from(RetryAction),
        exit_codes=st.sampled_from([(), (1,), (2, 137)]),
        reason=st.sampled_from(["", "exit code", "signal", "no exit code"]),
    ),
    max_size=3,
).map(tuple)


@st.composite
def dags(draw) -> tuple[TaskSpec, ...]:
    """1-8 tasks, edges only from lower to higher index, in a shuffled task order."""
    n = draw(st.integers(1, 8))
    specs = []
    for i in range(n):
        edges = [draw(st.sampled_from(["", "", "required", "optional"])) for _ in range(i)]
        specs.append(
            TaskSpec(
                name=f"t{i}",
                requires=tuple(f"t{j}" for j, e in enumerate(edges) if e == "required"),
                after=tuple(f"t{j}" for j, e in enumerate(edges) if e == "optional"),
                max_attempts=draw(st.integers(1, 3)),
                backoff=draw(backoffs),
                time_limit_s=draw(st.none() | st.integers(5, 60)),
                retry_on_timeout=draw(st.booleans()),
                require_explicit_success=draw(st.booleans()),
                retry_rules=draw(retry_rules),
                memory_mib=draw(st.sampled_from([None, 1000, 2048])),
                oom_memory_factor=draw(st.sampled_from([1.0, 1.5, 2.0])),
                oom_memory_max_mib=draw(st.sampled_from([None, 1500, 4096])),
            )
        )
    return tuple(draw(st.permutations(specs)))


def check_finished(sim: Simulator) -> None:
    """What must hold of every finished run."""
    latest = {t.name: sim.latest(t.name) for t in sim.tasks}
    assert all(a.status in FINAL_ATTEMPT for a in latest.values())
    all_succeeded = all(a.status == S.SUCCEEDED for a in latest.values())
    deadline = sim.deadline()
    if sim.kill:
        assert (sim.status, sim.finish_reason) == (RunStatus.KILLED, "killed")
    elif deadline is not None and deadline <= sim.now:
        reason = f"run time limit of {sim.time_limit_s:g}s exceeded"
        assert (sim.status, sim.finish_reason) == (RunStatus.FAILED, reason)
    else:
        assert (sim.status == RunStatus.SUCCEEDED) == all_succeeded, (sim.status, latest)
        assert sim.status in (RunStatus.SUCCEEDED, RunStatus.FAILED)
        for t in sim.tasks:  # a failure with attempts left stays unretried only for a reason
            a = latest[t.name]
            if a.status == S.FAILED and a.number < t.max_attempts:
                assert not_retried_because(t, a) is not None, a
    for t in sim.tasks:
        for round_ in range(1, sim.round + 1):
            tries = [a for a in sim.attempts.values() if a.task == t.name and a.round == round_]
            assert len(tries) <= t.max_attempts, (t, tries)
    assert step(sim.state(), sim.now) == Step((), None)
    assert waiting_reasons(sim.state(), sim.now) == {}


@SETTINGS
@given(tasks=dags(), run_limit=run_limits, data=st.data())
def test_every_run_finishes_with_the_right_status(tasks, run_limit, data):
    sim = Simulator(tasks, time_limit_s=run_limit)
    sim.run(data.draw)
    check_finished(sim)


@SETTINGS
@given(tasks=dags(), kill_after=st.integers(0, 40), run_limit=run_limits, data=st.data())
def test_killed_runs_finish_too(tasks, kill_after, run_limit, data):
    sim = Simulator(tasks, time_limit_s=run_limit)
    sim.run(data.draw, kill_after=kill_after)
    check_finished(sim)


@SETTINGS
@given(
    tasks=dags(), kill_after=st.none() | st.integers(0, 40), run_limit=run_limits, data=st.data()
)
def test_retry_failed_tasks_reruns_only_what_it_must(tasks, kill_after, run_limit, data):
    sim = Simulator(tasks, time_limit_s=run_limit)
    sim.run(data.draw, kill_after=kill_after)
    before = {t.name: sim.latest(t.name) for t in tasks}
    names = sim.rerun()
    # Not rerun means it succeeded and nothing upstream of it is rerun.
    for t in tasks:
        if t.name not in names:
            assert before[t.name].status == S.SUCCEEDED
            assert not set(t.requires + t.after) & set(names), (t, names)
    assert (names == []) == all(a.status == S.SUCCEEDED for a in before.values())
    sim.run(data.draw)
    check_finished(sim)
    for t in tasks:  # tasks not rerun keep their first-round success
        if t.name not in names:
            assert sim.latest(t.name) == before[t.name]


@SETTINGS
@given(tasks=dags(), run_limit=run_limits, data=st.data())
def test_waiting_reasons_cover_exactly_the_unfinished_tasks(tasks, run_limit, data):
    sim = Simulator(tasks, time_limit_s=run_limit)
    original_apply = sim.apply

    def apply_and_check(s):
        original_apply(s)
        state = sim.state()
        unfinished = {t.name for t in tasks if sim.latest(t.name).status not in FINAL_ATTEMPT}
        reasons = waiting_reasons(state, sim.now)
        assert set(reasons) == unfinished
        assert all(reasons.values())

    sim.apply = apply_and_check
    sim.run(data.draw)


@SETTINGS
@given(tasks=dags())
def test_rerun_of_a_run_where_everything_failed_is_everything(tasks):
    sim = Simulator(tasks)
    for a in list(sim.attempts.values()):
        sim.attempts[a.id] = replace(a, status=S.FAILED)
    assert rerun_tasks(sim.state()) == [t.name for t in tasks]
