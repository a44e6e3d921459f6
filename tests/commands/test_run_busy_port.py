"""A second `make run` on a busy port stops before it touches anything and says what to do."""

import os
import socket
import subprocess
import sys
import time

from tests.commands.test_make_run import ROOT


def test_a_busy_port_exits_at_once_naming_the_port_and_starting_nothing(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env["SUNDIAL_VAR_DIR"] = str(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        started = time.monotonic()
        done = subprocess.run(
            [sys.executable, "manage.py", "run", "--no-demo", "--addr", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        took = time.monotonic() - started
    output = done.stdout + done.stderr
    assert done.returncode != 0, output
    assert f"port {port} on 127.0.0.1 is in use" in done.stderr
    assert f"make run ADDR=127.0.0.1:{port + 1}" in done.stderr
    assert "Sundial is running" not in output
    assert took < 15, f"took {took:.1f}s"
    assert not (tmp_path / "sundial.sqlite3").exists(), "nothing migrated"
    assert not (tmp_path / "broker").exists(), "no worker or beat prepared"


def test_make_run_passes_addr_and_keeps_the_default_without_it():
    def dry_run(*args: str) -> str:
        done = subprocess.run(
            ["make", "-n", "run", *args], cwd=ROOT, capture_output=True, text=True, check=True
        )
        [line] = [line for line in done.stdout.splitlines() if "manage.py run" in line]
        return line.split("manage.py ", 1)[1].strip()

    assert dry_run("ADDR=127.0.0.1:8123") == "run --addr 127.0.0.1:8123"
    assert dry_run() == "run"
