"""Stopping attempts: killing a run, time limits counted from RUNNING, kill then retry."""

import time

import pytest

from jobs.models import TaskRun, Trigger
from jobs.orchestrator import request_kill, trigger_run
from jobs.submission import submit_task_run
from tests.conftest import make_process
from tests.orchestrator.driving import attempts, drive

pytestmark = pytest.mark.django_db(transaction=True)


def _pid_alive(task_run: TaskRun) -> bool:
    _, pid, _ = task_run.external_id.split(":")
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_kill_stops_the_process_group_and_cancels_what_has_not_started(admin_user):
    process = make_process(
        "long",
        {
            "sleepy": {"config": {"shell": "sleep 60 & wait", "kill_grace_s": 1}},
            "after": {"requires": ["sleepy"]},
        },
    )
    run = trigger_run(process, Trigger.MANUAL)
    sleepy = run.task_runs.get(task_name="sleepy")
    submit_task_run(sleepy.pk)
    sleepy.refresh_from_db()
    assert sleepy.status == "running" and _pid_alive(sleepy)

    assert request_kill(run.pk, user=admin_user, reason="operator asked")
    assert not request_kill(run.pk, user=admin_user), "a second kill is not a new request"
    run = drive(run)

    assert run.status == "killed"
    assert attempts(run) == [("sleepy", 1, "killed"), ("after", 1, "killed")]
    assert [a.reason for a in run.task_runs.order_by("id")] == ["run killed", "run killed"]
    sleepy.refresh_from_db()
    assert not _pid_alive(sleepy)
    assert run.kill_requested_by == admin_user
    assert run.events.filter(kind="kill_requested", actor=admin_user).exists()


@pytest.mark.parametrize(
    ("retry_on_timeout", "expected"),
    [
        (True, [("slow", 1, "timed_out"), ("slow", 2, "timed_out")]),
        (False, [("slow", 1, "timed_out")]),
    ],
)
def test_time_limit_kills_then_retries_only_if_the_task_says_so(retry_on_timeout, expected):
    slow = {
        "config": {"command": ["sleep", "30"], "kill_grace_s": 0.5},
        "time_limit_s": 1,
        "max_attempts": 2,
        "retry_initial_delay_s": 0,
        "retry_jitter": 0,
        "retry_on_timeout": retry_on_timeout,
    }
    started = time.monotonic()
    run = drive(trigger_run(make_process("slow", {"slow": slow}), Trigger.MANUAL), timeout=30)
    assert run.status == "failed"
    assert attempts(run) == expected
    first = run.task_runs.get(number=1)
    assert first.reason == "time limit of 1s exceeded"
    assert (first.finished_at - first.started_at).total_seconds() >= 1
    assert time.monotonic() - started < 20


def test_a_ready_attempt_killed_before_its_submit_message_never_starts(admin_user):
    process = make_process("racy", {"sleepy": {"config": {"command": ["sleep", "60"]}}})
    run = trigger_run(process, Trigger.MANUAL)
    sleepy = run.task_runs.get()
    assert sleepy.status == "ready"
    request_kill(run.pk, user=admin_user)
    sleepy.refresh_from_db()
    assert sleepy.status == "killed"
    assert not submit_task_run(sleepy.pk), "the late submit message finds nothing to claim"


def test_kill_arriving_while_submitting_is_carried_out_once_submitted(admin_user):
    process = make_process("racy2", {"sleepy": {"config": {"command": ["sleep", "60"]}}})
    run = trigger_run(process, Trigger.MANUAL)
    sleepy = run.task_runs.get()
    # The worker has claimed the attempt and is inside the executor call when the kill lands.
    TaskRun.objects.filter(pk=sleepy.pk).update(status="submitting")
    request_kill(run.pk, user=admin_user)
    sleepy.refresh_from_db()
    assert sleepy.status == "submitting" and sleepy.stop_requested_at is not None
    # Replay the claim the worker made, so this test runs the rest of that worker's submit.
    TaskRun.objects.filter(pk=sleepy.pk).update(status="ready")
    assert submit_task_run(sleepy.pk)
    run = drive(run)
    assert attempts(run) == [("sleepy", 1, "killed")]


def test_killing_a_finished_run_is_refused():
    process = make_process("done")
    run = drive(trigger_run(process, Trigger.MANUAL))
    assert run.status == "succeeded"
    assert not request_kill(run.pk)
    run.refresh_from_db()
    assert run.status == "succeeded" and run.kill_requested_at is None
