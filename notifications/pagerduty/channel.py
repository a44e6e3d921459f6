"""PagerDuty: a critical process's alerts as incidents, through the Events API v2.

An opened (or updated) alert triggers an incident under the alert's dedup key, so repeated
failures of a process update one incident; its clearing resolves it. Run reports are not
PagerDuty's to hear (the decisions never address it with them). Sends go through the
``pagerduty`` library's ``EventsApiV2Client``, one client per routing key.

The routing key is a credential: it is never written into an error, a log line or an
exception; ``masked`` stands in for it.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any

import httpx2
import pagerduty
from django.conf import settings
from django.core.exceptions import ValidationError

from jobs.engine import AttemptStatus
from notifications.base import ChannelError, Notice, Outgoing
from notifications.decide import Event
from notifications.registry import masked

ROUTING_KEY = re.compile(r"[A-Za-z0-9]{32}")
SUMMARY_LIMIT = 1024  # PagerDuty's limit on payload.summary
LOG_LINES = 10  # of each failed task's log, in the incident's details
SOURCE = "sundial"
NO_KEY = "no PagerDuty routing key: set SUNDIAL_PAGERDUTY_ROUTING_KEY or give the subscription one"
# The outbox tries a failed delivery again with a growing delay (15 s up to 15 min), so the
# library's own retries only have to ride out a blip: PagerDuty answers in well under a
# second, and a worker thread must not wait minutes on one send (the library's defaults are
# a 60 s timeout, 429 retried without limit, 5xx up to six times, three network attempts).
TIMEOUT_S = 5  # to connect, and then for each read and write
RETRY_AFTER_S = 0.5  # the library doubles it before its first retry: one second
_RETRIED = (429, 500, 502, 503, 504)
# Statuses that say "not now" rather than "never": tried again later.
_TEMPORARY = frozenset({408, 429})
_FAILED_TASK = frozenset({AttemptStatus.FAILED, AttemptStatus.TIMED_OUT})


class PagerDutyChannel:
    def __init__(self, base_url: str | None = None) -> None:
        self.base_url = base_url or None  # None: the library's, https://events.pagerduty.com
        self._clients: dict[str, pagerduty.EventsApiV2Client] = {}
        self._lock = threading.Lock()

    def notify(self, outgoing: Outgoing) -> None:
        notice = outgoing.notice
        key = outgoing.target or settings.SUNDIAL_PAGERDUTY_ROUTING_KEY
        if not key:
            raise ChannelError(NO_KEY, permanent=True)
        if notice.event is Event.ALERT:
            self._send(
                key, lambda client: client.trigger(dedup_key=notice.dedup_key, **_event(notice))
            )
        elif notice.event is Event.RESOLVED:
            self._send(key, lambda client: client.resolve(notice.dedup_key))
        elif notice.event is Event.TEST:
            # An incident of its own that closes at once: the on-call sees that the key
            # works without an open incident to clean up. A retry of a half-done test
            # triggers and resolves the same key again.
            test_key = f"sundial/{notice.process}/test"
            self._send(key, lambda client: client.trigger(dedup_key=test_key, **_event(notice)))
            self._send(key, lambda client: client.resolve(test_key))

    def _send(self, key: str, call: Callable[[pagerduty.EventsApiV2Client], object]) -> None:
        """Make one call with the key's client; PagerDuty's errors as ChannelError."""
        try:
            call(self._client(key))
        except pagerduty.UrlError:
            raise ChannelError(
                f"SUNDIAL_PAGERDUTY_EVENTS_URL must be an https URL: {self.base_url!r}",
                permanent=True,
            ) from None
        except pagerduty.Error as error:
            # ``from None``: the library's own text may quote the request or the answer.
            raise _channel_error(error, key) from None

    def _client(self, key: str) -> pagerduty.EventsApiV2Client:
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                client = pagerduty.EventsApiV2Client(key, base_url=self.base_url)
                client.timeout = TIMEOUT_S
                client.sleep_timer = RETRY_AFTER_S
                # One retry in all, whatever the status: ``max_http_attempts`` counts the
                # retries already made and stops once they exceed it. 429 must be listed:
                # unlisted, the library retries it without limit.
                client.retry = dict.fromkeys(_RETRIED, 1)
                client.max_http_attempts = 0
                # A connection error or timeout is not retried here: the outbox does, later.
                client.max_network_attempts = 0
                self._clients[key] = client
            return client


def _event(notice: Notice) -> dict[str, Any]:
    """The trigger's arguments: what the on-call reads first, then the details."""
    summary = f"{notice.title}: {notice.detail}" if notice.detail else notice.title
    if len(summary) > SUMMARY_LIMIT:
        summary = summary[: SUMMARY_LIMIT - 1] + "…"
    details: dict[str, Any] = {"process": notice.process, "url": notice.url}
    if notice.run_id is not None:
        details["run_id"] = notice.run_id
        details["status"] = notice.run_status
    if notice.detail:
        details["reason"] = notice.detail
    failed = [task for task in notice.tasks if task.status in _FAILED_TASK]
    if failed:
        details["failed_tasks"] = [
            {
                "task": task.name,
                "status": task.status,
                "attempts": task.attempts,
                "reason": task.reason,
                "log": task.log_url,
                "log_tail": "\n".join(task.log_tail[-LOG_LINES:]),
            }
            for task in failed
        ]
    what = f"Run {notice.run_id}" if notice.run_id is not None else notice.process
    return {
        "summary": summary,
        "source": SOURCE,
        "severity": "critical",
        "payload": {"timestamp": notice.at.isoformat(), "component": notice.process},
        "custom_details": details,
        "links": [{"href": notice.url, "text": f"{what} in Sundial"}],
    }


def _channel_error(error: pagerduty.Error, key: str) -> ChannelError:
    response = error.response
    if response is None:  # no answer: refused, reset, timed out, TLS not trusted
        cause = error.__cause__
        why = f"{type(cause).__name__}: {cause}" if cause is not None else str(error)
        return ChannelError(_scrub(f"PagerDuty could not be reached: {why}", key))
    status = response.status_code
    permanent = 300 <= status < 500 and status not in _TEMPORARY
    return ChannelError(
        _scrub(f"PagerDuty answered {status}: {_said(response)}", key), permanent=permanent
    )


def _said(response: httpx2.Response) -> str:
    """What PagerDuty's answer says went wrong, in its own words (short)."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    if not isinstance(body, dict):
        return str(body)[:200]
    words = [str(body.get("message") or body.get("status") or "")]
    errors = body.get("errors")
    if isinstance(errors, list):
        words += [str(item) for item in errors]
    return "; ".join(word for word in words if word)[:500] or response.reason_phrase


def _scrub(text: str, key: str) -> str:
    return text.replace(key, masked(key))


def channel() -> PagerDutyChannel:
    return PagerDutyChannel(settings.SUNDIAL_PAGERDUTY_EVENTS_URL)


def recipients(target: str) -> list[str]:
    """The one routing key a subscription names; "" is the installation's default."""
    key = target.strip()
    if key == "":
        if not settings.SUNDIAL_PAGERDUTY_ROUTING_KEY:
            raise ValidationError(
                "Give a routing key: there is no default (SUNDIAL_PAGERDUTY_ROUTING_KEY is not"
                " set)."
            )
        return [""]
    if not ROUTING_KEY.fullmatch(key):
        raise ValidationError(
            "A PagerDuty routing key is 32 letters and digits (the Integration Key of an"
            " Events API v2 integration); "
            + (f"this one has {len(key)} characters." if len(key) != 32 else "this one has others.")
        )
    return [key]
