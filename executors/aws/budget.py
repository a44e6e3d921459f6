"""A client-side rate budget per API family, so a burst of submits or a big poll stays under
AWS's own limits (Batch allows about 50 calls a second per account) instead of being
throttled into retries.

A token bucket: ``rate`` tokens a second, holding at most one second's worth. Every HTTP
request a client sends takes a token first (retries too: they count against AWS's limit
alike), waiting when none is left. The budget is per process: N workers share AWS's limit,
so their rates should add up below it; botocore's standard retry mode absorbs the rest.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping

# Calls a second each service's budget allows one process, below AWS's account limits
# (Batch: about 50/s; ECS Describe*/RunTask: 20/s sustained; Logs GetLogEvents: 25/s).
DEFAULT_RATES: Mapping[str, float] = {"batch": 40.0, "ecs": 20.0, "logs": 20.0}


class RateBudget:
    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, got {rate}")
        self.rate = rate
        self._capacity = max(1.0, rate)
        self._tokens = self._capacity
        self._clock = clock
        self._sleep = sleep
        self._stamp = clock()
        self._lock = threading.Lock()
        self.waited_s = 0.0  # total time callers spent waiting: a sign the budget is too low

    def take(self) -> None:
        """Take one token, waiting until one is there."""
        with self._lock:
            now = self._clock()
            self._tokens = min(self._capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= 1
            # A negative balance is a queue: this caller waits until its token has refilled,
            # and the next caller behind it waits one token longer.
            wait = -self._tokens / self.rate if self._tokens < 0 else 0.0
            self.waited_s += wait
        if wait:
            self._sleep(wait)
