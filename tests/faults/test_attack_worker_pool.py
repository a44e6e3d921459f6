"""Attack on defect 9: a worker started without ``--pool threads`` (Celery's default, prefork).

The README says to start workers with ``--pool threads``, but nothing makes it the default:
``celery -A sundial_site worker`` runs the prefork pool, where local tasks belong to pool
child processes. Those get no ``worker_shutdown`` signal and leave through ``os._exit``
(no atexit), so a warm shutdown leaves every running local task behind, unsupervised.
Setting ``CELERY_WORKER_POOL = "threads"`` would make the documented pool the default.
"""

import signal

import pytest

from jobs.models import Trigger
from jobs.orchestrator import trigger_run
from tests.conftest import make_process, purge_task_queue
from tests.orchestrator.driving import wait_for
from tests.workers import Worker, alive, group_members, stop_task_processes, task_pid

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.redis]


def test_a_worker_started_with_the_default_pool_leaves_no_task_when_it_stops(tmp_path):
    purge_task_queue()
    process = make_process("plain", {"job": {"config": {"command": ["sleep", "60"]}}})
    worker = Worker(tmp_path, pool=None, concurrency=1, SUNDIAL_SHUTDOWN_GRACE_S="2")
    try:
        run = trigger_run(process, Trigger.API)
        job = wait_for(lambda: run.task_runs.filter(status="running").first(), timeout=30)
        worker.signal(signal.SIGTERM)
        worker.wait(timeout=25)
        pid = task_pid(job)
        job.refresh_from_db()
        assert not alive(pid) and not group_members(pid), (
            f"the task outlived its worker (attempt {job.status})"
        )
    finally:
        worker.kill()
        stop_task_processes()
