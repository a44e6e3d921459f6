"""Attacks with a real worker: a kill in the middle of a fan-out, and the worker's database
connections terminated (pg_terminate_backend, again and again) while it spawns and records."""

import threading
import time

import pytest
from django.db import connection

from jobs.engine import ACTIVE_ATTEMPT, FINAL_RUN
from jobs.models import ProcessRun, Trigger
from jobs.orchestrator import request_kill, trigger_run
from tests.conftest import make_process, purge_task_queue
from tests.orchestrator.driving import attempts, wait_for
from tests.workers import (
    Worker,
    alive,
    finish_with_safety_nets,
    group_members,
    stop_task_processes,
    task_pid,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis, pytest.mark.postgres]

LIVE = [s.value for s in ACTIVE_ATTEMPT]
HEARTBEATS = {"SUNDIAL_HEARTBEAT_INTERVAL_S": "0.5", "SUNDIAL_LOST_AFTER_S": "3"}


def _live_pids(run: ProcessRun) -> list[int]:
    pids = [task_pid(t) for t in run.task_runs.exclude(external_id="")]
    return [pid for pid in pids if alive(pid) or group_members(pid)]


def test_a_kill_in_the_middle_of_a_fan_out_stops_everything_before_the_run_ends(tmp_path):
    leaves = 80
    purge_task_queue()
    leaf = {"config": {"command": ["sleep", "30"]}, "requires": ["root"]}
    process = make_process("fan", {"root": {}, **{f"leaf{i:02}": leaf for i in range(leaves)}})
    worker = Worker(tmp_path, **HEARTBEATS)
    try:
        run = trigger_run(process, Trigger.API)
        # Killed while the worker is still spawning the fan-out (local continuation).
        wait_for(lambda: run.task_runs.filter(status="running").count() >= 5, timeout=30)
        request_kill(run.pk, reason="killed mid fan-out")
        deadline = time.monotonic() + 20
        while True:
            run.refresh_from_db()
            if run.status in FINAL_RUN:
                active = run.task_runs.filter(status__in=LIVE).count()
                assert not active, f"run {run.status} with {active} active attempts"
                assert not _live_pids(run), "processes outlived their killed run"
                break
            assert time.monotonic() < deadline, f"the run did not end: {attempts(run)[:5]}"
            time.sleep(0.01)
        assert run.status == "killed"
        statuses = set(run.task_runs.values_list("status", flat=True))
        assert statuses <= {"succeeded", "killed"}, statuses
    finally:
        worker.kill()
        stop_task_processes()


def test_terminated_database_connections_lose_no_exit_and_run_nothing_twice(tmp_path, settings):
    """For 4 s every backend of the test database but this test's is terminated every 100 ms,
    while the worker spawns a 1 -> 30 fan-out and records its exits. Then beat's safety nets
    (sweep, reconcile) run until the run ends. Each leaf's process must have run exactly once
    (its exit code was never lost, no healthy process was taken as lost)."""
    settings.SUNDIAL_LOST_AFTER_S = 3
    settings.SUNDIAL_SUBMIT_STUCK_AFTER_S = 1
    leaves = 30
    ran = tmp_path / "ran"
    ran.mkdir()
    purge_task_queue()
    leaf = {
        "config": {"shell": f'echo $$ >> {ran}/"$SUNDIAL_TASK"; sleep 1'},
        "requires": ["root"],
        # A submit cut off before its process started fails as "lost while submitting" (see
        # test_attack_submit.py); here the retries absorb that, and what counts is that no
        # process runs twice.
        "max_attempts": 3,
        "retry_initial_delay_s": 0,
        "retry_jitter": 0,
    }
    process = make_process(
        "chaos",
        {
            "root": {"config": {"command": ["sleep", "0.5"]}},
            **{f"leaf{i:02}": leaf for i in range(leaves)},
            "join": {"requires": [f"leaf{i:02}" for i in range(leaves)]},
        },
    )
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        spared = cursor.fetchone()[0]
    stop = threading.Event()
    terminated = []

    def terminate_connections():
        from django.db import connections

        try:
            with connections["default"].cursor() as cursor:
                while not stop.wait(0.1):
                    cursor.execute(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                        " WHERE datname = current_database()"
                        " AND pid NOT IN (pg_backend_pid(), %s)",
                        [spared],
                    )
                    terminated.append(sum(1 for (done,) in cursor.fetchall() if done))
        finally:
            connections["default"].close()

    worker = Worker(tmp_path, **HEARTBEATS)
    chaos = threading.Thread(target=terminate_connections)
    try:
        run = trigger_run(process, Trigger.API)
        wait_for(lambda: run.task_runs.filter(status="running").exists(), timeout=30)
        chaos.start()
        time.sleep(4)  # the fault's duration, not a synchronisation
        stop.set()
        chaos.join()
        finish_with_safety_nets(run)  # once the connections are left alone
        runs_per_leaf = {path.name: len(path.read_text().split()) for path in ran.iterdir()}
        twice = {name: n for name, n in runs_per_leaf.items() if n > 1}
        assert not twice, (
            f"ran more than once: {twice}; {sum(terminated)} connections terminated;"
            f" {list(run.task_runs.exclude(reason='').values_list('task_name', 'reason'))}"
        )
        assert run.status == "succeeded", attempts(run)
        assert sorted(runs_per_leaf) == [f"leaf{i:02}" for i in range(leaves)]
    finally:
        stop.set()
        if chaos.is_alive():
            chaos.join()
        worker.kill()
        stop_task_processes()
