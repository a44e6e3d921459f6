"""Reading an attempt's log through the executor that ran it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from executors.base import ExecutorError
from executors.registry import executor_for
from jobs.models import TaskRun

# A page, not an archive: the live log stream will page through the rest. Both caps hold,
# because executors return a long line in pieces (64 KiB each for the local one), so a line
# cap alone let one 300 MiB line through. 1 MiB is some 10,000 ordinary lines, more than the
# line cap lets through, so the byte cap only bites on long lines; a browser renders 1 MiB at
# once, and a request holds a few MiB (HTML escaping can make the page larger than the text).
MAX_LINES = 5000
MAX_BYTES = 1 << 20  # of UTF-8 text, counting the newline after each line


@dataclass(frozen=True)
class LogView:
    lines: tuple[str, ...]
    truncated: bool  # the log goes on beyond MAX_LINES lines or MAX_BYTES bytes
    size: int = 0  # UTF-8 bytes of the lines shown, with their newlines
    problem: str = ""  # why nothing could be read, for the person looking


@dataclass
class _Page:
    lines: list[str] = field(default_factory=list)
    size: int = 0

    def add(self, line: str) -> bool:
        """Add the line, or as much of it as fits; False once the log goes on beyond the page."""
        if len(self.lines) == MAX_LINES or self.size == MAX_BYTES:
            return False
        encoded = line.encode() + b"\n"
        room = MAX_BYTES - self.size
        if len(encoded) > room:
            # Cut the line rather than drop it, so a line longer than the page still shows
            # its start; "ignore" drops a character the cut splits.
            if kept := encoded[: room - 1].decode(errors="ignore"):
                self.lines.append(kept)
                self.size += len(kept.encode()) + 1
            return False
        self.lines.append(line)
        self.size += len(encoded)
        return True

    def view(self, truncated: bool, problem: str = "") -> LogView:
        return LogView(tuple(self.lines), truncated, self.size, problem)


def _log_lines(task_run: TaskRun) -> Iterator[str]:
    """Every line of the attempt's log, read from its executor a chunk at a time."""
    executor = executor_for(task_run.executor)
    cursor = None
    while True:
        chunk = executor.read_logs(task_run.log_ref, cursor)
        if not chunk.lines:
            return
        yield from chunk.lines
        cursor = chunk.next_cursor


def read_log(task_run: TaskRun) -> LogView:
    """The start of an attempt's log: at most MAX_LINES lines and MAX_BYTES bytes of text."""
    if not task_run.log_ref:
        return LogView((), False, problem="this attempt has not started, so it has no log yet")
    page = _Page()
    try:
        for line in _log_lines(task_run):
            if not page.add(line):
                return page.view(truncated=True)
    except ExecutorError as exc:
        return page.view(truncated=False, problem=f"cannot read the log: {exc.message}")
    return page.view(truncated=False)
