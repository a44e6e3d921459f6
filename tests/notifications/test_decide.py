"""Who hears what, as pure decisions over plain values."""

from __future__ import annotations

import pytest

from jobs.engine import RunStatus
from notifications.decide import (
    AlertChange,
    AlertKind,
    Event,
    Policy,
    Subscriber,
    alert_audience,
    decide_run,
    failing_change,
    run_event,
    tells,
)

F, S, K, SKIP = RunStatus.FAILED, RunStatus.SUCCEEDED, RunStatus.KILLED, RunStatus.SKIPPED


def told_over(policy: Policy, statuses: list[RunStatus]) -> list[str]:
    """The run reports a subscription with ``policy`` gets over a sequence of runs."""
    told, previous = [], None
    for status in statuses:
        event = run_event(status, previous)
        if event is not None and tells(policy, event, previous):
            told.append(event.value)
        if event is not None:
            previous = status
    return told


@pytest.mark.parametrize(
    ("policy", "expected"),
    [
        (Policy.ALWAYS, ["succeeded", "failed", "failed", "recovered", "succeeded", "killed"]),
        (Policy.ON_FAILURE, ["failed", "failed"]),
        (Policy.ON_STATE_CHANGE, ["failed", "recovered", "killed"]),
        (Policy.ON_STATE_CHANGE_AND_FAILURES, ["failed", "failed", "recovered", "killed"]),
        (Policy.NEVER, []),
    ],
)
def test_each_policy_over_a_sequence_of_runs(policy, expected):
    assert told_over(policy, [S, F, SKIP, F, S, S, K]) == expected


def test_a_first_run_counts_as_coming_from_green():
    assert told_over(Policy.ON_STATE_CHANGE, [S]) == []
    assert told_over(Policy.ON_STATE_CHANGE, [F]) == ["failed"]


def test_a_success_after_a_kill_is_a_recovery():
    assert run_event(S, K) is Event.RECOVERED
    assert run_event(SKIP, F) is None and run_event(RunStatus.RUNNING, F) is None


@pytest.mark.parametrize(
    ("status", "in_a_row", "page_after", "open_now", "expected"),
    [
        (F, 1, 1, False, AlertChange.OPEN),
        (F, 2, 1, True, AlertChange.UPDATE),
        (F, 2, 3, False, None),
        (F, 3, 3, False, AlertChange.OPEN),
        (S, 0, 1, True, AlertChange.RESOLVE),
        (S, 0, 1, False, None),
        (K, 0, 1, True, None),  # a person's kill neither pages nor resolves
        (K, 0, 1, False, None),
    ],
)
def test_the_failing_alert(status, in_a_row, page_after, open_now, expected):
    assert failing_change(status, in_a_row, page_after, open_now) is expected


PAGER = Subscriber("pd", Policy.ALWAYS, incidents=True)
MAIL = Subscriber("mail", Policy.ON_FAILURE, incidents=False)


def test_incident_channels_hear_alerts_of_critical_processes_only():
    failed = dict(failures_in_a_row=1, page_after=1, failing_open=False)
    critical = decide_run([PAGER, MAIL], F, S, critical=True, **failed)
    assert critical.tell == (("pd", Event.ALERT), ("mail", Event.FAILED))
    assert critical.failing is AlertChange.OPEN
    calm = decide_run([PAGER, MAIL], F, S, critical=False, **failed)
    assert calm.tell == (("mail", Event.FAILED),) and calm.failing is AlertChange.OPEN
    resolved = decide_run(
        [PAGER, MAIL], S, F, critical=True, failures_in_a_row=0, page_after=1, failing_open=True
    )
    # The resolve goes where the triggers went (the shell knows where): not decided here.
    assert resolved.tell == () and resolved.failing is AlertChange.RESOLVE


def test_late_news_of_an_older_run_changes_no_alert():
    late = decide_run(
        [PAGER],
        F,
        S,
        critical=True,
        failures_in_a_row=1,
        page_after=1,
        failing_open=False,
        latest=False,
    )
    assert late.tell == () and late.failing is None


def test_an_opened_alert_reaches_report_channels_unless_never_and_pagers_if_critical():
    quiet = Subscriber("quiet", Policy.NEVER, incidents=False)
    everyone = [PAGER, MAIL, quiet]
    opened = alert_audience(everyone, AlertKind.MISSED_START, critical=True)
    assert opened == (("pd", Event.ALERT), ("mail", Event.ALERT))
    calm = alert_audience(everyone, AlertKind.DEADLINE, critical=False)
    assert calm == (("mail", Event.ALERT),)
    # Report channels hear of a failing process through its run reports, not twice.
    assert alert_audience(everyone, AlertKind.FAILING, critical=True) == (("pd", Event.ALERT),)
