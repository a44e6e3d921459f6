"""The embedded broker never hands a consumer a file that is still being written.

Web, worker and beat are separate processes sharing one folder; so are these writers.
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kombu import Connection, Exchange, Queue

from sundial_site import broker

ROOT = Path(__file__).resolve().parents[2]


def _folders(tmp_path: Path) -> dict:
    folder = tmp_path / "broker"
    folder.mkdir()
    return {
        "data_folder_in": str(folder),
        "data_folder_out": str(folder),
        "control_folder": str(folder / "control"),
        "polling_interval": 0.01,
    }


def _race(tmp_path: Path, transport: str, writers: int = 3, count: int = 600) -> list[int]:
    """Writers start together with a reader; returns what the reader received."""
    options = _folders(tmp_path)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.site.broker_writer",
                transport,
                json.dumps(options),
                str(k),
                str(writers),
                str(count),
            ],
            cwd=ROOT,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(writers)
    ]
    received: list[int] = []
    queue = Queue("jobs", Exchange("jobs", type="direct"), routing_key="jobs")
    deadline = time.monotonic() + 30
    with Connection("filesystem://", transport_options=options) as conn:
        simple = conn.SimpleQueue(queue)
        while len(received) < count and time.monotonic() < deadline:
            try:
                message = simple.get(timeout=0.5)
            except simple.Empty:
                if all(p.poll() is not None for p in procs):
                    break
                continue
            received.append(message.payload["n"])
            message.ack()
        simple.close()
    for proc in procs:
        proc.wait(timeout=30)
        assert proc.returncode == 0, proc.stderr.read()
    return received


def test_filesystem_urls_get_the_safe_transport(tmp_path):
    with Connection("filesystem://", transport_options=_folders(tmp_path)) as conn:
        assert isinstance(conn.default_channel, broker.Channel)


@pytest.mark.parametrize("attempt", range(3))
def test_writers_in_other_processes_lose_nothing_and_tear_nothing(tmp_path, attempt):
    assert sorted(_race(tmp_path, "safe")) == list(range(600))
