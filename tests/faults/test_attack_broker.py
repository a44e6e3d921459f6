"""Attack on defect 3 with a real broker going away: a Redis of this test's own (the shared
one is never touched) is stopped for 3 s while exits are recorded, a successor is spawned and
a retry is scheduled, then started again empty (its messages are gone, as after a crash).

The database is the source of truth: once beat's safety nets run again, the run succeeds,
every task ran as often as its outcome says, and nothing was taken as lost.
"""

import socket
import subprocess
import time

import pytest
from celery import current_app

from jobs.models import Trigger
from jobs.orchestrator import trigger_run
from tests.conftest import make_process
from tests.orchestrator.driving import attempts, wait_for
from tests.workers import Worker, finish_with_safety_nets, stop_task_processes

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _redis(port: int, var_dir) -> subprocess.Popen:
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", str(var_dir), "--logfile", str(var_dir / "redis.log")],
    )  # fmt: skip

    def answers():
        """the test's own Redis to accept connections"""
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            return False
        return True

    wait_for(answers, timeout=10)
    return server


def test_a_broker_outage_loses_no_exit_and_runs_nothing_twice(tmp_path, settings, monkeypatch):
    settings.SUNDIAL_LOST_AFTER_S = 3
    port = _free_port()
    broker = f"redis://127.0.0.1:{port}/0"
    app = current_app._get_current_object()
    send = app.send_task

    def to_our_redis(name, args=None, kwargs=None, **options):
        with app.connection_for_write(broker) as conn:
            return send(name, args=args, kwargs=kwargs, connection=conn, **options)

    monkeypatch.setattr(app, "send_task", to_our_redis)
    ran, go, once = tmp_path / "ran", tmp_path / "go", tmp_path / "once"
    ran.mkdir()
    note = f'echo $SUNDIAL_ATTEMPT >> {ran}/"$SUNDIAL_TASK"'
    retrying = {"max_attempts": 2, "retry_initial_delay_s": 0, "retry_jitter": 0}
    process = make_process(
        "outage",
        {
            # Ends once the broker is down; its successor is spawned without the broker.
            "first": {"config": {"shell": f"{note}; while ! test -e {go}; do sleep 0.05; done"}},
            "then": {"config": {"shell": f"{note}; sleep 1"}, "requires": ["first"]},
            # Fails then, so its retry's wake-up message is sent into the outage.
            "flaky": {
                "config": {
                    "shell": f"{note}; test -e {once} && exit 0; touch {once};"
                    f" while ! test -e {go}; do sleep 0.05; done; exit 1"
                },
                **retrying,
            },
        },
    )
    server = _redis(port, tmp_path)
    worker = Worker(
        tmp_path,
        CELERY_BROKER_URL=broker,
        SUNDIAL_HEARTBEAT_INTERVAL_S="0.5",
        SUNDIAL_LOST_AFTER_S="3",
    )
    try:
        run = trigger_run(process, Trigger.API)
        wait_for(lambda: run.task_runs.filter(status="running").count() == 2, timeout=30)
        server.terminate()
        server.wait(timeout=10)
        go.touch()
        wait_for(lambda: run.task_runs.filter(task_name="then", status="running").exists())
        time.sleep(3)  # the outage's length, not a synchronisation
        server = _redis(port, tmp_path)
        finish_with_safety_nets(run)
        runs = {path.name: path.read_text().split() for path in ran.iterdir()}
        assert runs == {"first": ["1"], "then": ["1"], "flaky": ["1", "2"]}, attempts(run)
        assert run.status == "succeeded", attempts(run)
        assert not run.task_runs.filter(reason__startswith="lost").exists(), attempts(run)
    finally:
        worker.kill()
        server.kill()
        server.wait()
        stop_task_processes()
