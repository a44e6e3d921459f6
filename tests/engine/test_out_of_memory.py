"""A retry after an out-of-memory kill asks for more memory, within the task's cap."""

import pytest

from jobs.engine import (
    Backoff,
    FinishRun,
    RetryAction,
    RetryRule,
    RunStatus,
    ScheduleRetry,
    Step,
    TaskSpec,
    next_memory,
    next_round_memory,
    step,
    waiting_reasons,
)
from tests.engine.helpers import T0, S, at, attempt, make_state, task


def batch_task(**kw) -> TaskSpec:
    """A task asking for 2048 MiB, retried after 5 s, by default up to 3 times."""
    kw.setdefault("max_attempts", 3)
    kw.setdefault("memory_mib", 2048)
    return task("load", backoff=Backoff(initial_delay_s=5, multiplier=1), **kw)


def retry_after(spec: TaskSpec, **ended) -> ScheduleRetry:
    failed = attempt("load", S.FAILED, finished_at=T0, **ended)
    (retry,) = step(make_state([spec], [failed]), T0).actions
    assert isinstance(retry, ScheduleRetry)
    return retry


def test_an_out_of_memory_retry_asks_for_the_memory_times_the_factor():
    retry = retry_after(batch_task(), out_of_memory=True, exit_code=137)
    assert retry == ScheduleRetry(
        "load",
        1,
        2,
        at(5),
        "retry 2 of 3 at 14:00:05 UTC with 4096 MiB after running out of memory",
        4096,
    )


def test_memory_grows_from_what_the_last_attempt_asked_for():
    retry = retry_after(batch_task(), number=2, memory_mib=4096, out_of_memory=True)
    assert (retry.number, retry.memory_mib) == (3, 8192)


@pytest.mark.parametrize(
    ("factor", "asked", "expected"),
    [(2.0, 2048, 4096), (1.5, 1000, 1500), (1.5, 1001, 1502), (1.0, 2048, 2048)],
)
def test_memory_is_rounded_up_to_whole_mib(factor, asked, expected):
    spec = batch_task(oom_memory_factor=factor)
    assert next_memory(spec, attempt("load", S.FAILED, memory_mib=asked, out_of_memory=True)) == (
        expected
    )


def test_memory_stops_at_the_cap_and_the_reason_says_so():
    spec = batch_task(max_attempts=4, oom_memory_max_mib=6000)
    first = retry_after(spec, out_of_memory=True)
    assert first.memory_mib == 4096
    capped = retry_after(spec, number=2, memory_mib=4096, out_of_memory=True)
    assert capped.memory_mib == 6000
    assert capped.reason == (
        "retry 3 of 4 at 14:00:05 UTC with 6000 MiB (the cap) after running out of memory"
    )
    # At the cap it is retried once more at the cap: attempts are the task's own limit.
    again = retry_after(spec, number=3, memory_mib=6000, out_of_memory=True)
    assert (again.number, again.memory_mib) == (4, 6000)


def test_a_cap_below_the_configs_memory_never_shrinks_it():
    spec = batch_task(oom_memory_max_mib=1024)
    assert retry_after(spec, out_of_memory=True).memory_mib == 2048


def test_without_attempts_left_the_task_fails():
    spec = batch_task(max_attempts=2)
    state = make_state([spec], [attempt("load", S.FAILED, number=2, out_of_memory=True)])
    assert step(state, T0).actions == (FinishRun(RunStatus.FAILED, "failed: load"),)


def test_without_memory_in_its_config_it_is_retried_as_it_was():
    retry = retry_after(batch_task(memory_mib=None), out_of_memory=True)
    assert retry.memory_mib is None
    assert retry.reason == (
        "retry 2 of 3 at 14:00:05 UTC after running out of memory"
        " (its config sets no memory_mib to raise)"
    )


def test_raised_memory_stays_raised_after_other_failures():
    retry = retry_after(batch_task(), number=2, memory_mib=4096, exit_code=1)
    assert retry.memory_mib == 4096
    assert retry.reason == "retry 3 of 3 at 14:00:05 UTC with 4096 MiB"
    assert retry_after(batch_task(), exit_code=1).memory_mib is None


def test_a_fail_rule_stops_an_out_of_memory_retry():
    spec = batch_task(retry_rules=(RetryRule(RetryAction.FAIL, exit_codes=(137,)),))
    state = make_state([spec], [attempt("load", S.FAILED, exit_code=137, out_of_memory=True)])
    assert step(state, T0).actions == (FinishRun(RunStatus.FAILED, "failed: load"),)


def test_a_permanent_failure_is_not_retried_even_out_of_memory():
    state = make_state(
        [batch_task()], [attempt("load", S.FAILED, out_of_memory=True, permanent=True)]
    )
    assert step(state, T0).actions == (FinishRun(RunStatus.FAILED, "failed: load"),)


def test_a_waiting_retry_says_what_memory_it_will_ask_for():
    spec = batch_task(oom_memory_max_mib=4096)
    state = make_state(
        [spec],
        [
            attempt("load", S.FAILED, out_of_memory=True),
            attempt("load", S.WAITING, number=2, not_before=at(5), memory_mib=4096),
        ],
    )
    assert step(state, at(1)) == Step((), at(5))
    assert waiting_reasons(state, at(1)) == {
        "load": "retry 2 of 3 at 14:00:05 UTC with 4096 MiB (the cap)"
    }


def test_a_new_round_starts_from_the_memory_the_last_round_needed():
    specs = [
        batch_task(max_attempts=2),
        task("oom", memory_mib=1000),
        task("plain", memory_mib=1000),
        task("local"),
    ]
    state = make_state(
        specs,
        [
            attempt("load", S.FAILED, number=1, out_of_memory=True),
            attempt("load", S.FAILED, number=2, memory_mib=4096, exit_code=1),
            attempt("oom", S.FAILED, out_of_memory=True),
            attempt("plain", S.FAILED, exit_code=1),
            attempt("local", S.FAILED, out_of_memory=True),
        ],
        status=RunStatus.FAILED,
    )
    # load keeps what its last attempt had; oom is raised once more; the others ask for
    # their config's memory (plain did not run out; local has none to raise).
    assert next_round_memory(state) == {"load": 4096, "oom": 2000}
