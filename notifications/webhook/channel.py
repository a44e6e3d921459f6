"""Webhook: a JSON POST describing the notice to the subscription's URL, signed with its
secret.

The body (UTF-8 JSON)::

    {"event": "failed", "process": "orders-etl", "title": "orders-etl run 42 failed",
     "detail": "task load failed", "url": "https://sundial.example.com/runs/42/",
     "at": "2026-12-02T11:46:50+00:00", "critical": false,
     "run": {"id": 42, "status": "failed", "duration_s": 61.5},    (null for other alerts)
     "alert": {"kind": "failing", "dedup_key": "sundial/orders-etl/failing"},  (or null)
     "tasks": [{"name": "load", "status": "failed", "attempts": 3, "duration_s": 12.0,
                "reason": "exit code 1", "log_url": "https://…/task-runs/7/log"}]}

``event`` is one of succeeded, recovered, failed, killed, alert, resolved, test.

Headers: ``Content-Type: application/json``, ``User-Agent: Sundial`` and, when the
subscription has a secret, ``X-Sundial-Signature: t=<timestamp>,v1=<signature>``, where
``timestamp`` is the Unix time of the send in whole seconds and ``signature`` is the hex
HMAC-SHA256, keyed by the secret (its UTF-8 bytes), of ``<timestamp>.`` followed by the
exact bytes of the body (Stripe's scheme). A subscription without a secret sends the same
request without the header: the receiver cannot tell it from a forgery, so give every
webhook a secret.

To verify, a receiver:

1. reads the raw body bytes (before any JSON parsing: re-serialising changes them);
2. splits the header on ``,`` and each part on the first ``=``, taking ``t`` and every
   ``v1`` (more ``v1`` values may come one day, while a secret is being rotated);
3. computes ``hmac.new(secret, f"{t}.".encode() + body, sha256).hexdigest()`` and
   compares it with each ``v1`` in constant time (``hmac.compare_digest``);
4. rejects a timestamp more than five minutes from its own clock, so that a request
   captured on the way cannot be replayed later.

A delivery is sent at least once: one answered after the timeout (10 s), or sent by a
worker that died before recording it, is sent again later (with a new timestamp and
signature) with the same ``X-Sundial-Delivery`` header: a receiver that must act once
remembers the values it has seen, and answers 2xx quickly. 408, 429 and 5xx answers are
tried again with a growing delay; any other answer, a redirect included, fails the
delivery for good and flags the subscription.
"""

from __future__ import annotations

import hashlib
import hmac
import ssl
import time

from notifications import http
from notifications.base import Notice, Outgoing

SIGNATURE_HEADER = "X-Sundial-Signature"
DELIVERY_HEADER = "X-Sundial-Delivery"


class WebhookChannel:
    def __init__(self) -> None:
        self.timeout_s = http.TIMEOUT_S
        self.context: ssl.SSLContext | None = None  # the TLS trust; None: the system's

    def notify(self, outgoing: Outgoing) -> None:
        body = http.dumps(payload(outgoing.notice))
        headers = {DELIVERY_HEADER: outgoing.delivery_key}
        if outgoing.secret:
            headers[SIGNATURE_HEADER] = signature(outgoing.secret, body, int(time.time()))
        http.post_json(
            outgoing.target,
            body,
            headers=headers,
            timeout_s=self.timeout_s,
            context=self.context,
        )


def payload(notice: Notice) -> dict[str, object]:
    """The JSON a receiver gets: the notice without its log tails (the log_url has them)."""
    return {
        "event": str(notice.event),
        "process": notice.process,
        "title": notice.title,
        "detail": notice.detail,
        "url": notice.url,
        "at": notice.at.isoformat(),
        "critical": notice.critical,
        "run": None
        if notice.run_id is None
        else {"id": notice.run_id, "status": notice.run_status, "duration_s": notice.duration_s},
        "alert": None
        if notice.alert is None
        else {"kind": str(notice.alert), "dedup_key": notice.dedup_key},
        "tasks": [
            {
                "name": task.name,
                "status": task.status,
                "attempts": task.attempts,
                "duration_s": task.duration_s,
                "reason": task.reason,
                "log_url": task.log_url,
            }
            for task in notice.tasks
        ],
    }


def signature(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header's value for ``body`` sent at ``timestamp`` (the docstring's
    scheme)."""
    signed = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={signed.hexdigest()}"


_SHARED = WebhookChannel()


def channel() -> WebhookChannel:
    return _SHARED


def recipients(target: str) -> list[str]:
    """The one URL a webhook subscription posts to."""
    return http.one_url(
        target,
        ["http", "https"],
        "Enter the http or https URL that receives the webhook,"
        " such as https://hooks.example.com/sundial.",
    )
