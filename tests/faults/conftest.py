"""Fixtures for fault tests: the in-memory executor, and a network in place of the broker.

The network replaces only the broker: ``jobs/dispatch.py`` hands Celery a task name and
its arguments after commit, the network keeps that message, and a test delivers it by
calling the very task ``jobs/tasks.py`` registered under that name — or delivers it twice,
drops it, or makes the send itself fail as an unreachable broker does.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import pytest
from celery import current_app
from kombu.exceptions import OperationalError

import jobs.tasks  # noqa: F401  (registers the tasks the network delivers to)
import notifications.tasks  # noqa: F401  (a run's end sends notice_run)
from executors.memory import MemoryExecutor
from tests.conftest import serve_memory


def serve(monkeypatch: pytest.MonkeyPatch, executor: MemoryExecutor) -> MemoryExecutor:
    """Make ``executor`` the one that runs every task whose executor kind is ``memory``."""
    return serve_memory(monkeypatch, executor)


@pytest.fixture
def memory_executor(monkeypatch) -> MemoryExecutor:
    return serve(monkeypatch, MemoryExecutor())


@dataclass(frozen=True)
class Message:
    task: str  # the Celery task name, e.g. "jobs.tasks.submit_task_run"
    args: tuple[Any, ...]

    def __str__(self) -> str:
        return f"{self.task.rsplit('.', 1)[-1]}({', '.join(map(str, self.args))})"


class Network:
    """What was sent and not yet delivered; sends can be made to fail. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pending: list[Message] = []
        self.sent: list[Message] = []
        self.refused: list[Message] = []
        self._refusals = 0

    def send_task(self, name: str, args: Any = None, kwargs: Any = None, **options: Any) -> None:
        """Stands in for ``Celery.send_task`` (countdowns are ignored: every delay is 0 here)."""
        assert not kwargs, "dispatch sends positional arguments only"
        message = Message(name, tuple(args or ()))
        with self._lock:
            if self._refusals:
                self._refusals -= 1
                self.refused.append(message)
                raise OperationalError(f"Error 111 connecting to the broker (sending {name})")
            self.sent.append(message)
            self.pending.append(message)

    def refuse_next(self, sends: int) -> None:
        """The next ``sends`` sends raise kombu's OperationalError, as when Redis is down."""
        with self._lock:
            self._refusals += sends

    def heal(self) -> None:
        with self._lock:
            self._refusals = 0

    def take(self, index: int) -> Message:
        """Remove one pending message (the broker hands it to a worker)."""
        with self._lock:
            return self.pending.pop(index)

    def put_back(self, message: Message) -> None:
        """Redelivery: Celery retrying a task, or a worker lost with the message unacked."""
        with self._lock:
            self.pending.append(message)


def intercept(monkeypatch: pytest.MonkeyPatch, network: Network) -> Network:
    """Send every Celery task into ``network`` instead of the broker."""
    monkeypatch.setattr(current_app._get_current_object(), "send_task", network.send_task)
    return network


def deliver(message: Message) -> object:
    """Run the task the message names, as a worker would (no broker involved)."""
    return current_app.tasks[message.task].run(*message.args)


@pytest.fixture
def network(monkeypatch) -> Network:
    return intercept(monkeypatch, Network())
