"""Triggering runs: frozen snapshots and the overlap policy, the same for every trigger source."""

import pytest

from jobs.models import ProcessDefinition, ProcessRun, TaskDefinition, Trigger
from jobs.orchestrator import (
    TriggerError,
    request_kill,
    retry_failed_tasks,
    settle_definition,
    trigger_run,
)
from jobs.submission import submit_task_run
from tests.conftest import make_process
from tests.orchestrator.driving import attempts, drive

pytestmark = pytest.mark.django_db(transaction=True)

SLEEPER = {"sleepy": {"config": {"command": ["sleep", "30"], "kill_grace_s": 0}}}


def test_a_run_keeps_the_definition_it_started_with():
    process = make_process("frozen", {"a": {}, "b": {"requires": ["a"]}})
    run = trigger_run(process, Trigger.MANUAL)
    TaskDefinition.objects.filter(process=process, name="b").delete()
    TaskDefinition.objects.create(process=process, name="c", config={"command": ["true"]})
    run = drive(run)
    assert [t for t, _, _ in attempts(run)] == ["a", "b"]
    assert [t["name"] for t in run.snapshot["tasks"]] == ["a", "b"]


@pytest.mark.parametrize("trigger", [Trigger.MANUAL, Trigger.API, Trigger.SCHEDULE])
def test_skip_policy_records_a_skipped_run_for_every_trigger_source(trigger):
    process = make_process("skipper", SLEEPER, overlap="skip")
    first = trigger_run(process, Trigger.MANUAL)
    second = trigger_run(process, trigger)
    assert second.status == "skipped"
    assert second.reason == f"skipped: run {first.pk} is still active"
    assert not second.task_runs.exists()


def test_queue_policy_starts_the_next_run_when_the_active_one_ends(admin_user):
    process = make_process("queuer", SLEEPER, overlap="queue")
    first = trigger_run(process, Trigger.MANUAL)
    second = trigger_run(process, Trigger.API)
    assert second.status == "queued"
    assert settle_definition(process.pk) is None, "nothing starts while the first runs"
    request_kill(first.pk, user=admin_user)
    drive(first)  # delivers the message the first run's end sends, as a worker would
    second.refresh_from_db()
    assert second.status == "running"
    assert second.events.filter(kind="started").exists()


def test_replace_policy_kills_the_active_run():
    process = make_process("replacer", SLEEPER, overlap="replace")
    first = trigger_run(process, Trigger.MANUAL)
    second = trigger_run(process, Trigger.MANUAL)
    assert second.status == "running"
    first = drive(first)
    assert first.status == "killed"
    assert first.events.filter(
        kind="kill_requested", message=f"replaced by run {second.pk}"
    ).exists()


def test_replace_waits_until_the_replaced_process_has_stopped(tmp_path):
    """A replaced task in its kill grace still runs: its successor must not start beside it."""
    stopped = tmp_path / "stopped"
    stubborn = {
        "config": {
            "shell": f"trap 'sleep 1; touch {stopped}; exit 0' TERM; sleep 60 & wait",
            "kill_grace_s": 5,
        }
    }
    process = make_process("replace-grace", {"work": stubborn}, overlap="replace")
    first = trigger_run(process, Trigger.MANUAL)
    assert submit_task_run(first.task_runs.get().pk)
    second = trigger_run(process, Trigger.MANUAL)
    assert second.status == "queued"
    assert second.reason == f"replaces run {first.pk}; starts once it has stopped"
    assert not second.task_runs.exists(), "nothing of the new run exists before the old stops"
    first = drive(first)
    assert stopped.exists(), "the old task finished its grace"
    second.refresh_from_db()
    assert second.status == "running"
    assert first.finished_at <= second.started_at
    request_kill(second.pk)
    drive(second)


def test_allow_policy_runs_side_by_side():
    process = make_process("parallel", overlap="allow")
    runs = [trigger_run(process, Trigger.API) for _ in range(3)]
    assert {drive(run).status for run in runs} == {"succeeded"}


def test_archived_or_empty_processes_cannot_be_triggered():
    archived = make_process("old", archived=True)
    with pytest.raises(TriggerError, match="'old' is archived"):
        trigger_run(archived, Trigger.MANUAL)
    empty = make_process("empty", {})
    with pytest.raises(TriggerError, match="'empty' has no tasks"):
        trigger_run(empty, Trigger.MANUAL)
    assert not ProcessRun.objects.exists()


def test_retry_failed_tasks_keeps_successes_and_reruns_the_failure_and_its_downstream(tmp_path):
    fixed = tmp_path / "fixed"
    process = make_process(
        "repair",
        {
            "extract": {},
            "transform": {"config": {"shell": f"test -e {fixed}"}, "requires": ["extract"]},
            "load": {"requires": ["transform"]},
        },
    )
    run = drive(trigger_run(process, Trigger.MANUAL))
    assert run.status == "failed"
    fixed.touch()
    assert retry_failed_tasks(run.pk) == ["transform", "load"]
    run = drive(run)
    assert run.status == "succeeded"
    assert attempts(run) == [
        ("extract", 1, "succeeded"),
        ("transform", 1, "failed"),
        ("load", 1, "skipped"),
        ("transform", 1, "succeeded"),
        ("load", 1, "succeeded"),
    ]
    assert list(run.task_runs.values_list("round", flat=True)) == [1, 1, 1, 2, 2]
    with pytest.raises(TriggerError, match="only failed or killed runs"):
        retry_failed_tasks(run.pk)


@pytest.mark.parametrize(
    ("policy", "after_retry"),
    [("skip", None), ("queue", "queued"), ("replace", "queued"), ("allow", "running")],
)
def test_retrying_a_run_obeys_the_overlap_policy(policy, after_retry):
    process = make_process(f"retry-{policy}", SLEEPER, overlap="allow")
    killed = trigger_run(process, Trigger.MANUAL)
    request_kill(killed.pk)
    drive(killed)
    active = trigger_run(process, Trigger.MANUAL)
    assert submit_task_run(active.task_runs.get().pk), "a process runs, so it takes time to stop"
    ProcessDefinition.objects.filter(pk=process.pk).update(overlap=policy)
    if after_retry is None:
        with pytest.raises(TriggerError, match=f"cannot be retried now: .*run {active.pk}"):
            retry_failed_tasks(killed.pk)
    else:
        assert retry_failed_tasks(killed.pk) == ["sleepy"]
        killed.refresh_from_db()
        assert killed.status == after_retry, "replace, too, waits until the other has stopped"
        active.refresh_from_db()
        assert (active.kill_requested_at is not None) == (policy == "replace")
    for run in (killed, active):
        request_kill(run.pk)
        drive(run)


def test_a_run_killed_while_queued_can_be_retried_and_says_what_it_cancelled():
    process = make_process("queued-kill", SLEEPER, overlap="queue")
    first = trigger_run(process, Trigger.MANUAL)
    assert submit_task_run(first.task_runs.get().pk)
    queued = trigger_run(process, Trigger.MANUAL)
    request_kill(queued.pk, reason="not needed")
    queued.refresh_from_db()
    assert (queued.status, queued.reason) == ("killed", "not needed")
    assert list(queued.events.values_list("kind", "message")) == [
        ("triggered", f"manual; queued behind run {first.pk}"),
        ("kill_requested", "not needed"),
        ("finished", "killed: not needed"),
    ]
    request_kill(first.pk)
    drive(first)
    assert retry_failed_tasks(queued.pk) == ["sleepy"], "it never started: all of it runs"
    queued.refresh_from_db()
    assert queued.status == "running"
    assert attempts(queued) == [("sleepy", 1, "ready")]
    request_kill(queued.pk)
    drive(queued)
