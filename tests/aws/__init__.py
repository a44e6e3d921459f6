"""AWS for the tests: moto in server mode, a real HTTP endpoint that boto3 talks to.

The server runs in the test process (``ThreadedMotoServer``), one per test session, so a
test can also reach moto's backends directly. It does so only through ``AwsWorld``'s
methods whose names say what AWS would have done (``run_batch_job``, ``stop_ecs_task``, …):
moto records jobs and tasks but does not run them here (it would need Docker), so those
methods set the states a real Batch or ECS would reach on its own. Everything Sundial does
goes through boto3 and HTTP, like in production; faults are injected at that boundary
(``throttle``, ``crash_after``), never by mocking Sundial's own code. moto itself is
patched only where it does what AWS would not (each patch says how AWS does it).

One module per service (``batch.py``, ``ecs.py``) on a shared base (``world.py``).
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator

import pytest
from moto.server import ThreadedMotoServer

from jobs import aws_runtime
from tests.aws.batch import BatchWorld, jobs_wait_for_the_test
from tests.aws.ecs import EcsWorld, tasks_wait_for_the_test
from tests.aws.world import REGION, SimulatedCrash

__all__ = ["REGION", "AwsWorld", "SimulatedCrash", "aws", "aws_environment", "moto_endpoint"]

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


class AwsWorld(BatchWorld, EcsWorld):
    """The tests' AWS, all services in one."""


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # a line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def aws_environment(endpoint: str) -> dict[str, str]:
    """What a process needs to talk to the moto server (a worker subprocess, say)."""
    return {"AWS_ENDPOINT_URL": endpoint, "SUNDIAL_AWS_REGION": REGION, **CREDENTIALS}


@pytest.fixture
def aws(moto_endpoint, monkeypatch, settings) -> Iterator[AwsWorld]:
    """A fresh, empty AWS (moto), which this process's executors are pointed at."""
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/reset", b"", {}))
    for name, value in aws_environment(moto_endpoint).items():
        monkeypatch.setenv(name, value)
    settings.SUNDIAL_AWS_REGION = REGION
    aws_runtime.forget()
    with jobs_wait_for_the_test(monkeypatch, moto_endpoint), tasks_wait_for_the_test(monkeypatch):
        yield AwsWorld(moto_endpoint)
    aws_runtime.forget()
