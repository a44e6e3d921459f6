"""A channel that keeps what it is sent, in this process: for tests of the outbox and the
decisions, where what matters is who was told what, and how often, not the transport.

A target containing "fail" fails for now (the outbox tries again), one containing "refuse"
fails for good; ``failures`` makes the next N sends to any target fail for now.
"""

from __future__ import annotations

import threading

from django.core.exceptions import ValidationError

from notifications.base import ChannelError, Outgoing


class MemoryChannel:
    def __init__(self) -> None:
        self.sent: list[Outgoing] = []
        self.failures = 0
        self._lock = threading.Lock()

    def notify(self, outgoing: Outgoing) -> None:
        with self._lock:
            if "refuse" in outgoing.target:
                raise ChannelError(f"{outgoing.target} refused it", permanent=True)
            if "fail" in outgoing.target or self.failures > 0:
                self.failures = max(0, self.failures - 1)
                raise ChannelError(f"{outgoing.target} is unreachable for now")
            self.sent.append(outgoing)

    def reset(self) -> None:
        with self._lock:
            self.sent.clear()
            self.failures = 0


SHARED = MemoryChannel()


def channel() -> MemoryChannel:
    return SHARED


def recipients(target: str) -> list[str]:
    names = [name.strip() for name in target.split(",") if name.strip()]
    if not names:
        raise ValidationError("Name at least one recipient.")
    return names
