"""Which failures are retried: permanent failures never, retry rules by exit code and reason."""

import pytest

from jobs.engine import (
    FinishRun,
    RetryAction,
    RetryRule,
    RunStatus,
    ScheduleRetry,
    not_retried_because,
    parse_retry_rules,
    step,
    waiting_reasons,
)
from tests.engine.helpers import T0, S, at, attempt, make_state, task

FAIL, RETRY = RetryAction.FAIL, RetryAction.RETRY
RULES = (
    RetryRule(RETRY, exit_codes=(75,)),
    RetryRule(FAIL, exit_codes=(2, 3)),
    RetryRule(FAIL, reason="CannotPullContainerError"),
    RetryRule(FAIL, exit_codes=(1,), reason="bad input"),
)


def decide(rules=RULES, max_attempts=3, **ended):
    """The step after one failed attempt of a task with these rules (it ended as ``ended``)."""
    spec = task("load", max_attempts=max_attempts, retry_rules=tuple(rules))
    failed = attempt("load", ended.pop("status", S.FAILED), finished_at=T0, **ended)
    return step(make_state([spec], [failed]), T0)


def retried(**ended) -> bool:
    actions = decide(**ended).actions
    assert len(actions) == 1
    return isinstance(actions[0], ScheduleRetry)


@pytest.mark.parametrize(
    ("ended", "expected"),
    [
        pytest.param({"exit_code": 4, "reason": "exit code 4"}, True, id="no rule matches"),
        pytest.param({"exit_code": 2, "reason": "exit code 2"}, False, id="fail by exit code"),
        pytest.param({"exit_code": 3, "reason": "exit code 3"}, False, id="any listed code"),
        pytest.param(
            {"exit_code": None, "reason": "could not start: CannotPullContainerError: no image"},
            False,
            id="fail by reason",
        ),
        pytest.param(
            {"exit_code": 1, "reason": "exit code 1; cannotpullcontainererror"},
            False,
            id="reason in any case",
        ),
        pytest.param(
            {"exit_code": 1, "reason": "exit code 1; Bad Input in row 3"},
            False,
            id="exit code and reason both match",
        ),
        pytest.param(
            {"exit_code": 1, "reason": "exit code 1; throttled"},
            True,
            id="exit code matches, reason does not",
        ),
        pytest.param(
            {"exit_code": None, "reason": "lost: bad input"},
            True,
            id="no exit code never matches a rule on codes",
        ),
        pytest.param({"exit_code": 75, "reason": "exit code 75"}, True, id="retry rule"),
    ],
)
def test_rules_decide_whether_a_failure_is_retried(ended, expected):
    assert retried(**ended) == expected


def test_the_first_matching_rule_wins():
    # Exit 75 with "CannotPullContainerError" in its reason: rule 1 (retry) comes first.
    assert retried(exit_code=75, reason="exit code 75; CannotPullContainerError")
    first_fail = (RetryRule(FAIL, reason="pull"), RetryRule(RETRY, exit_codes=(75,)))
    assert not retried(rules=first_fail, exit_code=75, reason="exit code 75; image pull")


def test_a_rule_with_no_condition_matches_every_failure():
    only_75 = (RetryRule(RETRY, exit_codes=(75,)), RetryRule(FAIL))
    assert retried(rules=only_75, exit_code=75, reason="exit code 75")
    assert not retried(rules=only_75, exit_code=1, reason="exit code 1")
    assert not retried(rules=only_75, exit_code=None, reason="lost: no heartbeat since 14:00")


def test_a_fail_rule_fails_the_task_now_and_skips_its_downstreams():
    specs = [
        task("load", max_attempts=3, retry_rules=RULES),
        task("report", requires=["load"]),
    ]
    failed = attempt("load", S.FAILED, exit_code=2, reason="exit code 2", finished_at=T0)
    state = make_state(specs, [failed, attempt("report")])
    skipped, finish = step(state, T0).actions
    assert skipped.reason == "required upstream 'load' failed"
    assert finish == FinishRun(RunStatus.FAILED, "failed: load; skipped: report")


def test_a_permanent_failure_is_never_retried_whatever_the_rules_say():
    assert not retried(rules=(), permanent=True, reason="could not start: unknown queue")
    assert not retried(rules=(RetryRule(RETRY),), permanent=True, exit_code=75)
    assert decide(rules=(), permanent=True).actions == (
        FinishRun(RunStatus.FAILED, "failed: load"),
    )


def test_a_retry_rule_never_grants_more_attempts():
    assert not retried(rules=(RetryRule(RETRY),), max_attempts=1, exit_code=75)


def test_rules_are_for_failures_timeouts_follow_retry_on_timeout():
    assert retried(rules=(RetryRule(FAIL),), status=S.TIMED_OUT, reason="time limit exceeded")


@pytest.mark.parametrize(
    ("ended", "why"),
    [
        pytest.param({"exit_code": 4}, None, id="retried"),
        pytest.param({"permanent": True}, "not retried: trying again cannot help", id="permanent"),
        pytest.param(
            {"exit_code": 3}, "not retried: retry rule 2 says fail", id="rule numbered from 1"
        ),
        pytest.param({"exit_code": 2, "number": 3}, None, id="no attempts left anyway"),
        pytest.param({"status": S.TIMED_OUT, "permanent": True}, None, id="not a failure"),
    ],
)
def test_why_a_failure_is_not_retried(ended, why):
    spec = task("load", max_attempts=3, retry_rules=RULES)
    status = ended.pop("status", S.FAILED)
    assert not_retried_because(spec, attempt("load", status, **ended)) == why


def test_a_failure_not_retried_is_final_for_the_ui():
    specs = [task("load", max_attempts=3, retry_rules=RULES), task("report", requires=["load"])]
    state = make_state(
        specs, [attempt("load", S.FAILED, exit_code=2), attempt("report", S.WAITING)]
    )
    assert waiting_reasons(state, at(1)) == {"report": "skipping: required upstream 'load' failed"}


# ---- the rules' JSON form ----


def test_rules_from_json():
    assert parse_retry_rules(
        [
            {"exit_codes": [75], "action": "retry"},
            {"exit_codes": [2, 3], "reason": "", "action": "fail"},
            {"reason": "CannotPullContainerError", "action": "fail"},
            {"action": "fail"},
        ]
    ) == (
        RetryRule(RETRY, exit_codes=(75,)),
        RetryRule(FAIL, exit_codes=(2, 3)),
        RetryRule(FAIL, reason="CannotPullContainerError"),
        RetryRule(FAIL),
    )
    assert parse_retry_rules([]) == ()


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"action": "fail"}, 'retry_rules must be a list of rules, e.g. [{"exit_codes": [2], '),
        (["fail"], "retry_rules[0] must be an object with an action"),
        ([{"action": "fail"}, {"exit_code": [2], "action": "fail"}], "retry_rules[1]: unknown key"),
        ([{"exit_codes": [2]}], 'retry_rules[0].action must be "retry" or "fail"'),
        ([{"action": "FAIL"}], 'retry_rules[0].action must be "retry" or "fail"'),
        ([{"action": ["fail"]}], 'retry_rules[0].action must be "retry" or "fail"'),
        ([{"exit_codes": 2, "action": "fail"}], "retry_rules[0].exit_codes must be a list of"),
        ([{"exit_codes": [2.5], "action": "fail"}], "retry_rules[0].exit_codes must be a list"),
        ([{"exit_codes": [True], "action": "fail"}], "retry_rules[0].exit_codes must be a list"),
        ([{"reason": 137, "action": "fail"}], "retry_rules[0].reason must be text"),
    ],
)
def test_invalid_rules_are_named_by_their_path(value, error):
    with pytest.raises(ValueError) as raised:
        parse_retry_rules(value)
    assert str(raised.value).startswith(error)


def test_the_path_starts_with_the_given_name():
    with pytest.raises(ValueError, match=r"^task 'load': retry_rules\[0\]\.action "):
        parse_retry_rules([{}], "task 'load': retry_rules")
