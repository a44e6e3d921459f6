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


def test_run_starts_everything_on_sqlite_and_a_serverless_broker_and_stops_on_ctrl_c(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
    }
    port = _free_port()
    env |= {"SUNDIAL_VAR_DIR": str(tmp_path), "SUNDIAL_API_URL": f"http://127.0.0.1:{port}"}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "run", "--no-demo", "--addr", f"127.0.0.1:{port}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/") as page:
                    assert page.status == 200
                break
            except OSError:
                assert proc.poll() is None, "run exited early"
                assert time.monotonic() < deadline, "the web server did not come up"
                time.sleep(0.3)
        assert (tmp_path / "sundial.sqlite3").exists()
        _shell(
            env,
            "from tests.conftest import make_process; from jobs.orchestrator import trigger_run;"
            "trigger_run(make_process('smoke', {'a': {}, 'b': {'requires': ['a']}}), 'manual')",
        )
        status = None
        with sqlite3.connect(tmp_path / "sundial.sqlite3") as db:
            while status != "succeeded":
                status = db.execute("SELECT status FROM jobs_processrun").fetchone()[0]
                assert time.monotonic() < deadline + 30, f"run still {status}"
                time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
    assert "created login 'admin' with password" in output
    assert (tmp_path / "broker" / "control").is_dir(), "the broker keeps its files in var/"
    assert not (ROOT / "control").exists()
    assert proc.returncode == 0, output
