"""Real Celery worker processes for tests, and the questions tests ask about processes.

A worker started here runs ``tests.settings`` against the test database and the test
process's broker and queue, so the messages it sends (a retry's wake-up, a submit it hands
back) reach a worker too, as in production. Its output goes to a file, so a test can wait
for what it prints (``Worker.wait_for_output``).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from django.conf import settings
from django.db import connection

from executors.local.executor import stat_fields
from jobs.models import ProcessRun, TaskRun
from jobs.supervision import reconcile, sweep
from tests.orchestrator.driving import wait_for

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    """The URL of the database this test runs on (the test database, not the configured one)."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


class Worker:
    """A ``celery worker`` subprocess (threads pool); always ``stop()`` it in a ``finally``."""

    def __init__(
        self, var_dir: Path, *, concurrency: int = 2, pool: str | None = "threads", **env: str
    ) -> None:
        var_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = var_dir / f"worker-{time.monotonic_ns()}.log"
        full_env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database_url(),
            "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
            "SUNDIAL_VAR_DIR": str(var_dir),
            **env,
        }
        command = [
            *(sys.executable, "-m", "celery", "-A", "sundial_site", "worker", "-l", "warning"),
            *("-c", str(concurrency), "-Q", settings.CELERY_TASK_DEFAULT_QUEUE),
            *("--without-gossip", "--without-mingle", "--without-heartbeat"),
        ]
        if pool is not None:  # None: whatever the configuration makes the default
            command += ["--pool", pool]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                command, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait_for_output(self, text: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise AssertionError(f"the worker did not print {text!r}:\n{self.output()}")
            time.sleep(0.02)

    def wait(self, timeout: float) -> int:
        """Its exit code, once it has exited; fails the test if it takes longer."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the worker did not exit within {timeout}s:\n{self.output()[-3000:]}"
            ) from None

    def kill(self) -> None:
        """SIGKILL it (if it still runs) and reap it."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


# ---- processes ----


def alive(pid: int) -> bool:
    """Whether the process runs (a zombie has ended: it only waits to be reaped)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in "ZX"


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group (a task's group outlives its leader's children)."""
    members = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            fields = stat_fields(int(entry.name))
            if fields is not None and fields[0] not in "ZX" and int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


def task_pid(task_run: TaskRun) -> int:
    """The pid of a local attempt's process (the leader of its process group)."""
    return int(task_run.external_id.split(":")[1])


def stop_task_processes() -> None:
    """SIGKILL the process group of every local attempt this test database knows of.

    For ``finally`` blocks: a test must leave no process behind, even when it fails. Only
    groups whose leader is the very process the attempt names (or is gone) are signalled.
    """
    for external_id in (
        TaskRun.objects.filter(executor="local")
        .exclude(external_id="")
        .values_list("external_id", flat=True)
    ):
        _, pid, starttime = external_id.split(":")
        fields = stat_fields(int(pid))
        if fields is not None and fields[19] != starttime:
            continue  # the pid was reused: not ours
        kill_group(int(pid))


def kill_group(pgid: int) -> None:
    """SIGKILL every live process of a process group (for ``finally`` blocks)."""
    for member in group_members(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(member, signal.SIGKILL)


def wait_until_this_process_recorded_its_exits(timeout: float = 15.0) -> None:
    """Wait until this process's local runtime has no process left to watch or exit to record.

    For tests in which this process spawns local tasks: a database flush racing the
    recording of an exit deadlocks.
    """
    from jobs.local_runtime import local_runtime

    runtime = local_runtime()
    deadline = time.monotonic() + timeout
    while not runtime.idle():
        if time.monotonic() > deadline:
            raise AssertionError(f"this process's local runtime still busy after {timeout}s")
        time.sleep(0.02)


def finish_with_safety_nets(run: ProcessRun, timeout: float = 40) -> None:
    """Run beat's safety nets (sweep, reconcile) until the run has finished, once a fault ends."""

    def finished():
        """the run to finish once beat's safety nets run again"""
        sweep()
        reconcile()
        run.refresh_from_db()
        return run.finished_at is not None

    wait_for(finished, timeout=timeout, interval=0.5)
