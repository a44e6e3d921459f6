"""The local runtime: heartbeats, kill requests from other processes, attempts that cannot start."""

from __future__ import annotations

import pytest
from django.utils import timezone

from jobs.models import ProcessRun, TaskDefinition, TaskRun, Trigger
from jobs.orchestrator import request_kill, trigger_run
from jobs.submission import submit_task_run
from tests.conftest import make_process
from tests.orchestrator.driving import attempts, drive, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def _alive(task_run: TaskRun) -> bool:
    """The attempt's process is running (a zombie counts as gone)."""
    _, pid, _ = task_run.external_id.split(":")
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read()
    except FileNotFoundError:
        return False
    return fields[fields.rindex(b")") + 2 :][:1] not in (b"Z", b"X")


@pytest.fixture
def started(transactional_db):
    """Starts a one-task run on the local executor; kills whatever is still running at the end."""
    runs: list[ProcessRun] = []

    def start(name: str, config: dict) -> TaskRun:
        run = trigger_run(make_process(name, {"work": {"config": config}}), Trigger.MANUAL)
        runs.append(run)
        task_run = run.task_runs.get()
        assert submit_task_run(task_run.pk)
        task_run.refresh_from_db()
        assert task_run.status == "running" and _alive(task_run)
        return task_run

    yield start
    for run in runs:  # after a failed assertion, too: no test leaves a process behind
        if request_kill(run.pk, reason="test teardown"):
            drive(run)


def test_a_running_attempt_keeps_writing_heartbeats(started, settings):
    settings.SUNDIAL_HEARTBEAT_INTERVAL_S = 0.2  # read by the runtime at every tick
    task_run = started("beating", {"command": ["sleep", "30"], "kill_grace_s": 1})
    seen = [task_run.heartbeat_at]

    def beat():
        """a new heartbeat"""
        now = TaskRun.objects.values_list("heartbeat_at", flat=True).get(pk=task_run.pk)
        if now != seen[-1]:
            seen.append(now)
            return True
        return False

    wait_for(beat, timeout=10)
    wait_for(beat, timeout=10)
    assert seen[0] < seen[1] < seen[2] <= timezone.now()

    assert request_kill(task_run.run_id, reason="test done")
    run = drive(task_run.run)
    assert run.status == "killed"
    assert attempts(run) == [("work", 1, "killed")]
    assert not _alive(task_run)


def test_a_kill_request_written_by_another_process_is_carried_out_by_the_owner(started):
    task_run = started("remote-kill", {"command": ["sleep", "60"], "kill_grace_s": 1})
    # What a worker on another host does: it cannot signal the process, so it only writes
    # the request; this process's runtime must see it on its next tick.
    TaskRun.objects.filter(pk=task_run.pk).update(
        stop_requested_at=timezone.now(),
        stop_as="killed",
        reason="killed from another host",
    )
    run = drive(task_run.run)

    task_run.refresh_from_db()
    assert task_run.status == "killed"
    assert task_run.finished_at is not None
    assert not _alive(task_run)
    # Only the attempt was stopped, not the run: a killed task fails its run.
    assert run.status == "failed" and "work" in run.reason


def test_a_program_that_cannot_be_started_fails_the_attempt_and_the_run():
    process = make_process("no-binary", {"work": {"config": {"command": ["/nonexistent/binary"]}}})
    run = drive(trigger_run(process, Trigger.MANUAL))

    assert run.status == "failed"
    task_run = run.task_runs.get()
    assert task_run.status == "failed"
    assert task_run.reason.startswith("could not start:")
    assert "/nonexistent/binary" in task_run.reason
    assert task_run.exit_code is None


@pytest.mark.parametrize(
    ("config", "path"),
    [
        ({"command": "not-a-list"}, "command: "),
        ({"command": ["true"], "env": {"1BAD": "x"}}, "env.1BAD: "),
    ],
)
def test_a_stored_config_that_breaks_the_schema_fails_the_attempt(config, path):
    process = make_process("bad-config", {"ok": {}})
    # Saved directly, as a data migration or a script would, never checked by the admin.
    TaskDefinition.objects.create(process=process, name="work", config=config)
    run = drive(trigger_run(process, Trigger.MANUAL))

    work = run.task_runs.get(task_name="work")
    assert work.status == "failed"
    assert work.reason.startswith("invalid executor config: ")
    assert path in work.reason
    assert work.external_id == "", "nothing was started"
    assert run.status == "failed"
    assert run.task_runs.get(task_name="ok").status == "succeeded"


def test_an_executor_this_installation_cannot_run_fails_the_attempt_instead_of_hanging():
    process = make_process(
        "on-batch",
        {"work": {"executor": "batch", "config": {"image": "busybox", "job_queue": "q"}}},
    )
    run = drive(trigger_run(process, Trigger.MANUAL))

    task_run = run.task_runs.get()
    assert task_run.status == "failed"
    assert task_run.reason == (
        "could not start: AWS Batch is unavailable: no AWS region: set AWS_REGION"
        " (or SUNDIAL_AWS_REGION)"
    )
    assert run.status == "failed"
