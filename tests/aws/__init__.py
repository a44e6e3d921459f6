"""AWS for the tests: moto in server mode, a real HTTP endpoint that boto3 talks to.

The server runs in the test process (``ThreadedMotoServer``), one per test session, so a
test can also reach moto's backends directly. It does so only through ``AwsWorld``'s
methods whose names say what AWS would have done (``run_batch_job``, ``finish_batch_job``,
…): moto records jobs but does not run them here (it would need Docker), so those methods
set the states a real Batch would reach on its own. Everything Sundial does goes through
boto3 and HTTP, like in production; faults are injected at that boundary (``throttle``,
``crash_after``), never by mocking Sundial's own code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse
from moto.batch import models as moto_batch
from moto.moto_api import state_manager
from moto.server import ThreadedMotoServer

from jobs import aws_runtime

ACCOUNT = "123456789012"  # moto's
REGION = "us-east-1"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
FOREVER = {"progression": "manual", "times": 10**9}  # moto's state never moves on by itself


class SimulatedCrash(Exception):
    """The worker died right after AWS answered (deliberately not an AWS error)."""


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
    # Batch jobs wait for the test (below), whatever an earlier test told moto (aws_sandbox).
    docker = json.dumps({"batch": {"use_docker": True}}).encode()
    urllib.request.urlopen(urllib.request.Request(f"{moto_endpoint}/moto-api/config", docker, {}))
    for name, value in aws_environment(moto_endpoint).items():
        monkeypatch.setenv(name, value)
    settings.SUNDIAL_AWS_REGION = REGION
    # moto would run a Batch job in Docker; here a job waits until the test moves it on.
    monkeypatch.setattr(moto_batch.Job, "run", lambda job: None)
    state_manager.set_transition("batch::job", FOREVER)
    aws_runtime.forget()
    yield AwsWorld(moto_endpoint)
    aws_runtime.forget()
    state_manager.unset_transition("batch::job")


@dataclass
class AwsWorld:
    endpoint: str

    def client(self, service: str) -> Any:
        """A plain boto3 client of the test's own, for setting up and looking."""
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint)

    # ---- Batch: setting up ----

    def batch_queue(self, name: str = "sundial") -> str:
        """A job queue on an unmanaged compute environment; returns its name."""
        iam = self.client("iam")
        role = iam.create_role(RoleName=f"{name}-batch", AssumeRolePolicyDocument="{}")
        batch = self.client("batch")
        environment = batch.create_compute_environment(
            computeEnvironmentName=f"{name}-env",
            type="UNMANAGED",
            state="ENABLED",
            serviceRole=role["Role"]["Arn"],
        )
        batch.create_job_queue(
            jobQueueName=name,
            state="ENABLED",
            priority=1,
            computeEnvironmentOrder=[
                {"order": 1, "computeEnvironment": environment["computeEnvironmentArn"]}
            ],
        )
        return name

    def batch_jobs(self, queue: str = "sundial") -> list[dict[str, Any]]:
        """Every job AWS holds in the queue, in every status."""
        batch = self.client("batch")
        statuses = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED")
        jobs = []
        for status in (*statuses, "FAILED"):
            jobs += batch.list_jobs(jobQueue=queue, jobStatus=status)["jobSummaryList"]
        return jobs

    def describe_batch_job(self, arn: str) -> dict[str, Any]:
        return self.client("batch").describe_jobs(jobs=[arn.rsplit("/", 1)[-1]])["jobs"][0]

    # ---- Batch: what AWS would do on its own ----

    def _job(self, arn: str) -> Any:
        return moto_batch.batch_backends[ACCOUNT][REGION]._jobs[arn.rsplit("/", 1)[-1]]

    def wait_for_capacity(self, arn: str) -> None:
        """The scheduler took the job; no instance has room for it yet."""
        self._job(arn).status = "RUNNABLE"

    def run_batch_job(self, arn: str, *log_lines: str) -> None:
        """The job started on an instance and wrote ``log_lines`` to CloudWatch."""
        job = self._job(arn)
        job.job_started_at = datetime.now()
        job.log_stream_name = job._stream_name
        job._start_attempt()
        job.status = "RUNNING"
        if log_lines:
            self.write_log("/aws/batch/job", job._stream_name, *log_lines)

    def finish_batch_job(
        self,
        arn: str,
        exit_code: int | None,
        *,
        status_reason: str = "",
        container_reason: str = "",
    ) -> None:
        """The job ended: SUCCEEDED for exit 0, FAILED otherwise, with AWS's reasons."""
        job = self._job(arn)
        if not job.attempts:
            job._start_attempt()
        job.exit_code = exit_code
        job.job_stopped_reason = status_reason or job.job_stopped_reason
        container = job.latest_attempt["container"]
        if exit_code is not None:
            container["exitCode"] = exit_code
        if container_reason:
            container["reason"] = container_reason
        job._mark_stopped(success=exit_code == 0)

    def carry_out_terminations(self) -> int:
        """Jobs asked to terminate end FAILED with the reason given, as Batch does."""
        stopped = 0
        for job in list(moto_batch.batch_backends[ACCOUNT][REGION]._jobs.values()):
            if job.stop and not job.job_stopped:
                self.finish_batch_job(job.arn, None, status_reason=job.job_stopped_reason or "")
                stopped += 1
        return stopped

    def forget_batch_job(self, arn: str) -> None:
        """The job expired from Batch's history: AWS no longer returns it."""
        backend = moto_batch.batch_backends[ACCOUNT][REGION]
        job = backend._jobs.pop(arn.rsplit("/", 1)[-1])
        job.job_queue.jobs.remove(job)

    # ---- CloudWatch Logs ----

    def write_log(self, group: str, stream: str, *lines: str) -> None:
        logs = self.client("logs")
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_group(logGroupName=group)
        with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
            logs.create_log_stream(logGroupName=group, logStreamName=stream)
        now = int(datetime.now().timestamp() * 1000)
        events = [{"timestamp": now + i, "message": line} for i, line in enumerate(lines)]
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=events)

    # ---- faults, at the HTTP boundary of Sundial's own clients ----

    def throttle(self, service: str, operation: str, times: int) -> list[int]:
        """The next ``times`` requests for ``operation`` are answered 400 ThrottlingException
        without reaching moto; returns the list the count of refused requests goes in."""
        refused: list[int] = []

        def answer(request: Any, **_: object) -> AWSResponse | None:
            if len(refused) >= times:
                return None
            refused.append(1)
            body = json.dumps({"__type": "ThrottlingException", "message": "Rate exceeded"})
            headers = {
                "Content-Type": "application/json",
                "x-amzn-ErrorType": "ThrottlingException",
            }
            return AWSResponse(request.url, 400, headers, _Raw(body.encode()))

        client = aws_runtime.clients().client(service)
        client.meta.events.register_first(f"before-send.{service}.{operation}", answer)
        return refused

    def crash_after(self, service: str, operation: str) -> None:
        """Sundial's next ``operation`` call reaches AWS, then its caller dies (once)."""
        armed = [True]

        def crash(**_: object) -> None:
            if armed:
                armed.clear()
                raise SimulatedCrash(f"worker died right after {operation}")

        aws_runtime.clients().client(service).meta.events.register(
            f"after-call.{service}.{operation}", crash
        )


class _Raw:
    """The body of an answer made up at the HTTP boundary, as botocore reads one."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    def stream(self, **_: object) -> Iterator[bytes]:
        yield self._body

    def read(self, *_: object) -> bytes:
        return self._body
