"""Reading an attempt's log through the executor that ran it, a bounded page at a time.

The log page shows the tail first and then asks with its cursor for what is new; every
answer is bounded (PAGE_BYTES of text, LINE_BYTES per line, READS executor calls), so a
100 MB log or a single 50 MB line never holds up the server or the browser. The tail comes
with the position the log goes on before it, and each earlier page with the position before
that: a byte offset in a log kept in a file (local), a cursor of the executor's own for a log
it reads by pages backwards too (CloudWatch). The whole log is downloaded separately.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from executors.base import ExecutorError
from executors.registry import executor_for
from jobs.models import TaskRun

PAGE_BYTES = 256 * 1024  # of text per answer; one executor chunk may go beyond it
PAGE_LINES = 200  # lines of the tail, and of each earlier page
LINE_BYTES = 64 * 1024  # a longer line is cut, with a note
READS = 256  # executor calls per answer: skipping a huge line stops here and goes on later
ALARM = re.compile(r"ERROR|Traceback|Exception|FATAL")


@dataclass(frozen=True)
class Line:
    text: str
    cut: bool = False  # the line goes on beyond LINE_BYTES; only the download has it all
    alarm: bool = False  # an error: shown highlighted


@dataclass
class Page:
    lines: list[Line] = field(default_factory=list)
    cursor: str | None = None  # where the next read forward starts
    earlier: str | None = None  # where the log goes on before these lines; None at its start
    problem: str = ""  # why nothing could be read, for the person looking
    size: int = 0  # UTF-8 bytes of the text shown

    def add(self, text: str, cut: bool = False) -> None:
        encoded = text.encode()
        if len(encoded) > LINE_BYTES:
            text, cut = encoded[:LINE_BYTES].decode(errors="ignore"), True
        self.lines.append(Line(text, cut, bool(ALARM.search(text))))
        self.size += len(text.encode()) + 1


def log_file(task_run: TaskRun) -> Path | None:
    """The file an attempt's log is kept in, when its executor keeps one (local)."""
    if not task_run.log_ref:
        return None
    log_path = getattr(executor_for(task_run.executor), "log_path", None)
    return None if log_path is None else log_path(task_run.log_ref)


def read_after(task_run: TaskRun, cursor: str | None) -> Page:
    """The lines after ``cursor`` (from the start when None), at most about PAGE_BYTES.

    ExecutorError when the executor cannot read from the cursor (permanent: a bad cursor).
    """
    executor = executor_for(task_run.executor)
    page = Page(cursor=cursor)
    skipping = False  # inside a line already cut: its further pieces are not shown
    for read in range(READS):
        if page.size >= PAGE_BYTES:
            break
        chunk = executor.read_logs(task_run.log_ref, page.cursor)
        if read == 0:
            page.earlier = chunk.earlier  # the tail's (CloudWatch), before its first line
        if not chunk.lines:
            page.cursor = chunk.next_cursor  # CloudWatch may move on past empty pages
            break
        page.cursor = chunk.next_cursor
        last = len(chunk.lines) - 1
        for i, text in enumerate(chunk.lines):
            goes_on = chunk.partial and i == last
            if not skipping:
                page.add(text, cut=goes_on)
            skipping = goes_on
    return page


def read_before(path: Path, end: int) -> Page:
    """The PAGE_LINES lines (at most PAGE_BYTES) of a log file that end at byte ``end``.

    At the end of the file, an unfinished last line is left to the reads forward from the
    page's cursor. The first line of a page may be the end of a line longer than a page.
    """
    with open(path, "rb") as f:
        size = f.seek(0, 2)
        end = min(end, size)
        start = max(0, end - PAGE_BYTES)
        f.seek(start)
        data = f.read(end - start)
    complete = data.rfind(b"\n") + 1
    if end == size and (complete or start == 0):
        # A running job's unfinished last line is left to the reads forward.
        data, end = data[:complete], start + complete
    begin = _start_of_last_lines(data, PAGE_LINES, whole=start == 0)
    page = Page(cursor=str(end), earlier=str(start + begin) if start + begin else None)
    shown = data[begin:].removesuffix(b"\n")
    for raw in shown.split(b"\n") if shown or data.endswith(b"\n") else ():
        page.add(raw.removesuffix(b"\r").decode("utf-8", errors="replace"))
    return page


class UnknownPosition(Exception):
    """A position to read before that no page of this log gave out."""


def read_earlier(task_run: TaskRun, before: str) -> Page:
    """The page of lines that ends at ``before``, a position a page gave out as its
    ``earlier``; the page's own ``earlier`` is where the log goes on before it.

    UnknownPosition when ``before`` cannot be one; ExecutorError when the log cannot be read
    there (permanent: CloudWatch no longer knows the position, say).
    """
    if not task_run.log_ref:
        raise UnknownPosition("this attempt has not started, so it has no log yet")
    path = log_file(task_run)
    if path is not None:
        if not (before.isascii() and before.isdigit()):
            raise UnknownPosition(f"invalid offset {before!r}: a number of bytes")
        try:
            return read_before(path, int(before))
        except OSError as exc:
            raise ExecutorError(f"cannot read log {task_run.log_ref}: {exc}") from exc
    executor = executor_for(task_run.executor)
    # Only an executor with a tail reads by pages backwards: its positions are cursors.
    if getattr(executor, "tail_cursor", None) is None:
        raise UnknownPosition("this log is read forward only")
    if not before:
        raise UnknownPosition("no position to read before")
    chunk = executor.read_logs(task_run.log_ref, before)
    page = Page(cursor=chunk.next_cursor, earlier=chunk.earlier)
    for text in chunk.lines:
        page.add(text)
    return page


def _start_of_last_lines(data: bytes, count: int, whole: bool) -> int:
    """Where the last ``count`` lines of ``data`` start; ``data`` is the whole log from its
    start when ``whole``, else its first line may be a piece, dropped if anything follows."""
    pos = len(data) - 1 if data.endswith(b"\n") else len(data)
    for _ in range(count):
        newline = data.rfind(b"\n", 0, pos)
        if newline < 0:
            break
        pos = newline
    else:
        return pos + 1
    if whole:
        return 0
    first = data.find(b"\n")
    # Inside one line longer than the window: show its end, from a character boundary.
    if first < 0 or first == len(data) - 1:
        return next((i for i, b in enumerate(data[:4]) if b & 0xC0 != 0x80), 0)
    return first + 1


def read_tail(task_run: TaskRun) -> Page:
    """What the log page shows first: the tail of a log file, or of a log whose executor
    has a tail cursor (CloudWatch: its last events), else the start of the log."""
    if not task_run.log_ref:
        return Page(problem="this attempt has not started, so it has no log yet")
    try:
        path = log_file(task_run)
        if path is None:
            tail = getattr(executor_for(task_run.executor), "tail_cursor", None)
            return read_after(task_run, tail)
        try:
            return read_before(path, path.stat().st_size)
        except FileNotFoundError:
            return Page(cursor="0")
        except OSError as exc:
            raise ExecutorError(f"cannot read log {task_run.log_ref}: {exc}") from exc
    except ExecutorError as exc:
        return Page(problem=f"cannot read the log: {exc.message}")


def log_lines(task_run: TaskRun) -> Iterator[str]:
    """Every line of the attempt's log, read from its executor a chunk at a time."""
    executor = executor_for(task_run.executor)
    cursor = None
    while True:
        chunk = executor.read_logs(task_run.log_ref, cursor)
        if not chunk.lines:
            return
        # The pieces of a long line are joined again: a download holds the log as written.
        yield from (
            line + ("" if chunk.partial and i == len(chunk.lines) - 1 else "\n")
            for i, line in enumerate(chunk.lines)
        )
        cursor = chunk.next_cursor
