"""A real worker process is SIGKILLed while its task runs: the attempt is lost, then retried."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from jobs.models import TaskRun, Trigger
from jobs.orchestrator import trigger_run
from jobs.supervision import sweep
from tests.conftest import make_process, purge_task_queue
from tests.orchestrator.driving import attempts, wait_for

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


def _start_worker(tmp_path: Path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "sundial_site.settings",
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
        "SUNDIAL_VAR_DIR": str(tmp_path),
        "SUNDIAL_HEARTBEAT_INTERVAL_S": "0.3",
        "SUNDIAL_LOST_AFTER_S": "1",
    }
    queue = django_settings.CELERY_TASK_DEFAULT_QUEUE
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "sundial_site", "worker", "--pool", "threads",
         "-c", "2", "-Q", queue, "-l", "warning", "--without-gossip", "--without-mingle"],
        cwd=ROOT, env=env,
    )  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(") ", 1)[1][0] != "Z"
    except FileNotFoundError:
        return False


def test_a_task_whose_worker_was_killed_is_failed_stopped_and_retried(tmp_path, settings):
    settings.SUNDIAL_LOST_AFTER_S = 1
    purge_task_queue()
    marker = tmp_path / "second-time"
    process = make_process(
        "survivor",
        {
            "job": {
                "config": {"shell": f"test -e {marker} && exit 0; touch {marker}; sleep 60"},
                "max_attempts": 2,
                "retry_initial_delay_s": 0,
                "retry_jitter": 0,
            }
        },
    )
    worker = _start_worker(tmp_path)
    try:
        run = trigger_run(process, Trigger.API)
        first = wait_for(
            lambda: TaskRun.objects.filter(run=run, status="running", attempt=1).first(),
            timeout=30,
        )
        orphan = int(first.external_id.split(":")[1])
        worker.send_signal(signal.SIGKILL)
        worker.wait()
        assert _alive(orphan), "the task outlives its worker: it runs in its own session"

        wait_for(lambda: sweep() > 0, timeout=15)
        # The attempt ends only once its orphan is gone, so the retry never runs beside it.
        first = wait_for(
            lambda: TaskRun.objects.filter(pk=first.pk, status="failed").first(), timeout=15
        )
        assert not _alive(orphan)
        assert first.reason.startswith("lost: no heartbeat")

        worker = _start_worker(tmp_path)  # the broker still holds the retry's messages

        def finished():
            """the retry to succeed on the new worker"""
            sweep()
            run.refresh_from_db()
            return run.finished_at is not None

        wait_for(finished, timeout=30)
        assert run.status == "succeeded"
        assert attempts(run) == [("job", 1, "failed"), ("job", 2, "succeeded")]
    finally:
        worker.kill()
        worker.wait()
