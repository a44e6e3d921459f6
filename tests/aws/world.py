"""The parts of the tests' AWS that every service shares: moto's account and region, a
client of the test's own, CloudWatch Logs, and faults at the HTTP boundary of Sundial's own
clients."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse

from jobs import aws_runtime

ACCOUNT = "123456789012"  # moto's
REGION = "us-east-1"
FOREVER = {"progression": "manual", "times": 10**9}  # moto's state never moves on by itself


class SimulatedCrash(Exception):
    """The worker died right after AWS answered (deliberately not an AWS error)."""


class HeldCall:
    """The next call of a moto backend method (SubmitJob, RunTask), as AWS might take it.

    ``accept_first``: AWS does the work (the job exists) before it holds or fails the
    answer — a worker killed now dies between the call and saving the id; otherwise AWS
    holds the request itself. ``hold``: AWS answers only once the test releases it (or 30 s
    have passed). ``fail_with``: AWS answers with this error instead (a 500 after the job
    was accepted: the answer is lost, not the job). Later calls go through untouched.
    """

    def __init__(
        self,
        monkeypatch: Any,
        owner: type,
        method: str,
        *,
        accept_first: bool,
        hold: bool = True,
        fail_with: Exception | None = None,
    ) -> None:
        self.arrived, self.released = threading.Event(), threading.Event()
        if not hold:
            self.released.set()
        self._taken = threading.Lock()  # acquired by the first call, never released
        original = getattr(owner, method)

        def held(backend: Any, *args: Any, **kwargs: Any) -> Any:
            first = self._taken.acquire(blocking=False)
            if first and not accept_first:
                self._hold()
            answer = original(backend, *args, **kwargs)
            if first and accept_first:
                self._hold()
            if first and fail_with is not None:
                raise fail_with
            return answer

        monkeypatch.setattr(owner, method, held)

    def _hold(self) -> None:
        self.arrived.set()
        self.released.wait(timeout=30)

    def wait(self) -> None:
        assert self.arrived.wait(timeout=30), "the worker never made the call"


@dataclass
class World:
    endpoint: str

    def client(self, service: str) -> Any:
        """A plain boto3 client of the test's own, for setting up and looking."""
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint)

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
        body = {"__type": "ThrottlingException", "message": "Rate exceeded"}
        headers = {"x-amzn-ErrorType": "ThrottlingException"}
        return self.answer_instead(service, operation, times, 400, body, headers)

    def answer_instead(
        self,
        service: str,
        operation: str,
        times: int,
        status: int,
        body: dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> list[int]:
        """The next ``times`` requests for ``operation`` get this JSON answer without reaching
        moto; returns the list the count of answered requests goes in."""
        answered: list[int] = []

        def answer(request: Any, **_: object) -> AWSResponse | None:
            if len(answered) >= times:
                return None
            answered.append(1)
            all_headers = {"Content-Type": "application/json", **(headers or {})}
            return AWSResponse(request.url, status, all_headers, _Raw(json.dumps(body).encode()))

        client = aws_runtime.clients().client(service)
        client.meta.events.register_first(f"before-send.{service}.{operation}", answer)
        return answered

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
