"""What every channel is given and may raise: the plug-in interface (like executors/base.py).

A channel turns one ``Outgoing`` (one recipient, one notice) into one send, and raises
``ChannelError`` when it could not: ``permanent`` when trying again cannot help (an address
refused, a routing key unknown, a 4xx answer), otherwise the delivery is tried again later.
The notice is built once from the database by the shell; channels never read the ORM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from notifications.decide import AlertKind, Event


class ChannelError(Exception):
    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.permanent = permanent


@dataclass(frozen=True)
class TaskLine:
    """One task of a reported run: its latest attempt, and how many it took."""

    name: str
    status: str
    attempts: int
    duration_s: float | None
    reason: str
    log_url: str  # absolute, or "" when no attempt ran
    log_tail: tuple[str, ...] = ()  # the last lines of a failed task's log


@dataclass(frozen=True)
class Notice:
    """What a delivery tells, whatever the channel: built by the shell, read by channels."""

    event: Event
    process: str
    title: str  # one line: "orders-etl run 42 failed"
    detail: str  # the why, in words: a run's reason or an alert's message
    url: str  # absolute link to the run page (run reports) or the process page (alerts)
    at: datetime  # when it happened
    dedup_key: str = ""  # one stable key per process and condition (incident channels)
    alert: AlertKind | None = None
    run_id: int | None = None
    run_status: str = ""
    duration_s: float | None = None
    critical: bool = False
    tasks: tuple[TaskLine, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Outgoing:
    """One delivery as its channel sends it."""

    target: str  # one recipient: an address, a routing key, a URL ("" = the channel's default)
    notice: Notice
    secret: str = ""  # the subscription's signing secret (webhooks)
    # The delivery's own key: the same on every try of it, so a receiver that got it once
    # (sends are at least once) can tell a repeat.
    delivery_key: str = ""


class Channel(Protocol):
    def notify(self, outgoing: Outgoing) -> None:
        """Send it, or raise ChannelError."""
