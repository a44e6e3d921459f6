"""`manage.py run` (what `make run` starts): web, worker and beat on the embedded default."""

import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tests.workers import alive, group_members, kill_group

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _shell(env: dict, code: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def _start(var_dir: Path, **env: str) -> tuple[subprocess.Popen, dict, float, str]:
    """`manage.py run --no-demo` on a fresh var dir, in its own process group (as a terminal
    runs it); returns once its web server answers, with the deadline it had for that and
    the site's URL."""
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
    }
    port = _free_port()
    base = {k: v for k, v in base.items() if not k.startswith("SUNDIAL_")}
    base |= {"SUNDIAL_VAR_DIR": str(var_dir)}
    base |= env
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run", "--no-demo", "--addr", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=base,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/") as page:
                assert page.status == 200
            break
        except OSError as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                os.killpg(proc.pid, signal.SIGKILL)
                output = proc.communicate()[0]
                raise AssertionError(f"the web server did not come up:\n{output}") from exc
            time.sleep(0.3)
    return proc, base, deadline, f"http://127.0.0.1:{port}"


def _query(var_dir: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(var_dir / "sundial.sqlite3") as db:
        return db.execute(sql).fetchall()


def _children(pid: int) -> list[int]:
    children = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat[stat.rindex(b")") + 2 :].split()[1]) == pid:
                children.append(int(entry.name))
    return children


REPORT = """
import json, os, urllib.request
request = urllib.request.Request(
    os.environ["SUNDIAL_API_URL"] + f"/api/v1/task-runs/{os.environ['SUNDIAL_TASK_RUN_ID']}/report",
    data=json.dumps({"success": True}).encode(),
    headers={"Authorization": "Bearer " + os.environ["SUNDIAL_TOKEN"],
             "Content-Type": "application/json"},
)
urllib.request.urlopen(request, timeout=10).read()
"""


def test_run_starts_everything_on_sqlite_and_a_serverless_broker_and_stops_on_ctrl_c(tmp_path):
    proc, env, deadline, _ = _start(tmp_path)
    # "b" counts only if it reports its success to the API: on the port `run` was given,
    # which its tasks are told without being configured.
    report = tmp_path / "report.py"
    report.write_text(REPORT)
    try:
        assert (tmp_path / "sundial.sqlite3").exists()
        b = {"requires": ["a"], "require_explicit_success": True}
        b["config"] = {"command": [sys.executable, str(report)]}
        _shell(
            env,
            "from tests.conftest import make_process; from jobs.orchestrator import trigger_run;"
            f"trigger_run(make_process('smoke', {{'a': {{}}, 'b': {b!r}}}), 'manual')",
        )
        status = None
        while status != "succeeded":
            status = _query(tmp_path, "SELECT status FROM jobs_processrun")[0][0]
            assert time.monotonic() < deadline + 30, f"run still {status}"
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    assert "created login 'admin' with password" in output
    assert (tmp_path / "broker" / "control").is_dir(), "the broker keeps its files in var/"
    assert not (ROOT / "control").exists()
    assert proc.returncode == 0, output


def test_ctrl_c_stops_a_running_local_task_and_leaves_no_process(tmp_path):
    """Ctrl-C reaches the whole process group; a local task has its own session, so only its
    worker can stop it, and `run` must wait for that longer than the shutdown grace."""
    grace = 16  # longer than `run` waited before it waited for the grace
    up = tmp_path / "task-up"
    proc, env, deadline, _ = _start(tmp_path, SUNDIAL_SHUTDOWN_GRACE_S=str(grace))
    task = None
    try:
        stubborn = {"shell": f"trap '' TERM; touch {up}; sleep 300 & wait", "kill_grace_s": 3600}
        _shell(
            env,
            "from tests.conftest import make_process; from jobs.orchestrator import trigger_run;"
            f"trigger_run(make_process('long', {{'job': {{'config': {stubborn!r}}}}}), 'manual')",
        )
        while task is None:
            assert time.monotonic() < deadline + 30, "the task did not start"
            time.sleep(0.1)
            rows = _query(tmp_path, "SELECT external_id FROM jobs_taskrun WHERE status='running'")
            task = int(rows[0][0].split(":")[1]) if rows and up.exists() else None
        children = _children(proc.pid)
        assert len(children) == 3, "web, worker and beat"

        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        started = time.monotonic()
        output, _ = proc.communicate(timeout=grace + 30)
        took = time.monotonic() - started
        assert not alive(task) and not group_members(task), f"the task outlived `run`:\n{output}"
        assert not [pid for pid in children if alive(pid)], "web, worker and beat have exited"
        assert took < grace + 20, f"stopping took {took:.1f}s"
        [(status, reason)] = _query(tmp_path, "SELECT status, reason FROM jobs_taskrun")
        assert status == "failed" and "worker stopped" in reason, reason
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        if task is not None:
            kill_group(task)


def test_tasks_and_messages_are_pointed_at_where_the_server_listens():
    from jobs.management.commands.run import site_url

    assert site_url("8001") == "http://127.0.0.1:8001"
    assert site_url("127.0.0.1:8001") == "http://127.0.0.1:8001"
    assert site_url("0.0.0.0:8000") == "http://127.0.0.1:8000", "every interface: loopback"
    assert site_url("[::1]:8000") == "http://[::1]:8000"
