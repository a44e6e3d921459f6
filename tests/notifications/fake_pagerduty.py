"""A local HTTPS server standing in for PagerDuty's Events API v2 (``POST /v2/enqueue``).

It runs in a thread of the test process, with a certificate from a ``trustme`` CA that the
client trusts through ``SSL_CERT_FILE`` (the library refuses plain http). It records every
request and what it answered, and answers as scripted (``script(500, 429, SLOW)``) before it
accepts events again; a routing key in ``refused`` is answered 400, as PagerDuty answers an
unknown one (and, unlike PagerDuty, quotes it back: the channel must not repeat it).
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import trustme

SLOW = "slow"  # answer 504, but only after ``slow_s``: past the client's timeout


@dataclass(frozen=True)
class Received:
    """One request and the status it was answered with."""

    event: dict[str, Any]
    status: int

    @property
    def action(self) -> str:
        return str(self.event.get("event_action"))

    @property
    def dedup_key(self) -> str:
        return str(self.event.get("dedup_key"))


class FakePagerDuty:
    def __init__(self, ca: trustme.CA, *, slow_s: float = 1.5) -> None:
        self.slow_s = slow_s
        self.received: list[Received] = []
        self.refused: set[str] = set()
        self._answers: deque[int | str] = deque()
        self._lock = threading.Lock()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
        self._server = _QuietServer(("127.0.0.1", 0), _handler(self))
        # The handshake happens in the request's own thread, not in the accept loop.
        self._server.socket = context.wrap_socket(
            self._server.socket, server_side=True, do_handshake_on_connect=False
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakePagerDuty:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def script(self, *answers: int | str) -> None:
        """Answer the next requests so (a status, or SLOW), then accept events again."""
        with self._lock:
            self._answers.extend(answers)

    def accepted(self) -> list[dict[str, Any]]:
        """The events PagerDuty took (answered 202), in the order they came."""
        with self._lock:
            return [r.event for r in self.received if r.status == 202]

    def actions(self) -> list[tuple[str, str]]:
        """(event_action, dedup_key) of each accepted event."""
        return [(e["event_action"], e.get("dedup_key", "")) for e in self.accepted()]

    def statuses(self) -> list[int]:
        with self._lock:
            return [r.status for r in self.received]

    def wait_for(self, count: int, timeout: float = 30.0) -> None:
        """Wait until ``count`` events have been accepted."""
        deadline = time.monotonic() + timeout
        while len(self.accepted()) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"PagerDuty accepted {len(self.accepted())} events, not {count}, within"
                    f" {timeout}s: {self.statuses()}"
                )
            time.sleep(0.05)

    def _answer(self, event: dict[str, Any]) -> tuple[int, str | None, dict[str, Any]]:
        """(status, SLOW or None, body) for one request, recorded before it is answered."""
        key = str(event.get("routing_key", ""))
        with self._lock:
            scripted = self._answers.popleft() if self._answers else None
            if scripted == SLOW:
                status, body = 504, {"status": "error", "message": "gateway timeout"}
            elif isinstance(scripted, int):
                status, body = scripted, {"status": "error", "message": f"scripted {scripted}"}
            elif key in self.refused or len(key) != 32:
                status = 400
                body = {
                    "status": "invalid event",
                    "message": "Event object is invalid",
                    "errors": [f"Invalid routing key {key}"],
                }
            else:
                status = 202
                body = {
                    "status": "success",
                    "message": "Event processed",
                    "dedup_key": event.get("dedup_key") or f"generated-{len(self.received)}",
                }
            self.received.append(Received(event, status))
        return status, SLOW if scripted == SLOW else None, body


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up, or failed the handshake on purpose: not news


def _handler(fake: FakePagerDuty) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            event = json.loads(self.rfile.read(length) or b"{}")
            if self.path != "/v2/enqueue":
                self._reply(404, {"status": "error", "message": f"no {self.path}"})
                return
            status, slow, body = fake._answer(event)
            if slow:
                time.sleep(fake.slow_s)
            self._reply(status, body)

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:
                pass  # the client gave up waiting (a SLOW answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


def write_ca(ca: trustme.CA, directory: Path) -> Path:
    """The CA's certificate as a PEM file, for ``SSL_CERT_FILE``."""
    path = directory / "pagerduty-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path
