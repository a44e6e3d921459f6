"""Reading an attempt's log through the executor that ran it."""

from __future__ import annotations

from dataclasses import dataclass

from executors.base import ExecutorError
from jobs.executors import executor_for
from jobs.models import TaskRun

MAX_LINES = 5000  # a page, not an archive: the live log stream will page through the rest


@dataclass(frozen=True)
class LogView:
    lines: tuple[str, ...]
    truncated: bool  # more lines exist than MAX_LINES
    problem: str = ""  # why nothing could be read, for the person looking


def read_log(task_run: TaskRun) -> LogView:
    """The first MAX_LINES lines of an attempt's log, however its executor stores them."""
    max_lines = MAX_LINES
    if not task_run.log_ref:
        return LogView((), False, "this attempt has not started, so it has no log yet")
    lines: list[str] = []
    cursor = None
    try:
        executor = executor_for(task_run.executor)
        while len(lines) <= max_lines:
            chunk = executor.read_logs(task_run.log_ref, cursor)
            if not chunk.lines:
                break
            lines.extend(chunk.lines)
            cursor = chunk.next_cursor
    except ExecutorError as exc:
        return LogView(tuple(lines), False, f"cannot read the log: {exc.message}")
    return LogView(tuple(lines[:max_lines]), len(lines) > max_lines)
