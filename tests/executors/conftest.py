"""Helpers for the executor tests: real processes, bounded polling waits, no leftovers."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from executors.base import Launch, Status
from executors.local.executor import LocalExecutor


def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.005)


def is_alive(pid: int) -> bool:
    """Running (a zombie counts as dead: in a container nobody may reap it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat[stat.rindex(b")") + 2 :][:1] not in (b"Z", b"X")


def pid_of(external_id: str) -> int:
    return int(external_id.split(":")[1])


def make_launch(
    key: str | None = None, launch_env: dict[str, str] | None = None, **config
) -> Launch:
    return Launch(
        task_run_id=1,
        run_id=1,
        idempotency_key=key or f"att-{uuid.uuid4().hex}",
        config=config,
        env=launch_env or {},
    )


class Exits:
    """An on_exit callback that records every batch."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, Status]]] = []
        self._lock = threading.Lock()

    def __call__(self, batch: list[tuple[str, Status]]) -> None:
        with self._lock:
            self.batches.append(list(batch))

    def statuses(self) -> dict[str, Status]:
        with self._lock:
            return {eid: status for batch in self.batches for eid, status in batch}

    def wait_for(self, external_id: str, timeout: float = 5.0) -> Status:
        wait_until(lambda: external_id in self.statuses(), timeout)
        return self.statuses()[external_id]


@pytest.fixture
def exits() -> Exits:
    return Exits()


@pytest.fixture
def make_executor(tmp_path: Path) -> Iterator[Callable[..., LocalExecutor]]:
    made: list[LocalExecutor] = []

    def make(on_exit: Callable | None = None, **kwargs) -> LocalExecutor:
        executor = LocalExecutor(tmp_path / "logs", on_exit or (lambda batch: None), **kwargs)
        made.append(executor)
        return executor

    yield make
    for executor in made:  # no test leaves a process behind
        for external_id in executor.live_ids():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid_of(external_id), signal.SIGKILL)
        if executor._thread is not None:
            wait_until(lambda e=executor: not e.live_ids())
        executor.close()


@pytest.fixture
def executor(make_executor, exits) -> LocalExecutor:
    return make_executor(exits)


def read_all(executor: LocalExecutor, log_ref: str) -> list[str]:
    lines: list[str] = []
    cursor = None
    while True:
        chunk = executor.read_logs(log_ref, cursor)
        lines.extend(chunk.lines)
        if chunk.next_cursor == cursor or not chunk.lines:
            return lines
        cursor = chunk.next_cursor
