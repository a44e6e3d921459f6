"""Reading a CloudWatch Logs stream by cursor: forward a page at a time, the tail, and pages
backwards from the tail.

The cursor is CloudWatch's own forward token, so a reader that comes back with it gets
only what was written since: the log page reads a finished log to its end, and the live
view tails a running one. Two cursors are Sundial's own: TAIL, and EARLIER + a backward
token, the page of events before that token, which a chunk hands out as its ``earlier``.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from executors.aws.errors import aws_call, error_code
from executors.base import ExecutorError, LogChunk

EMPTY_PAGES_FOLLOWED = 5
# A cursor of Sundial's own, never a CloudWatch token: the stream's last TAIL_EVENTS events,
# then on by the forward token, so the log page starts with the newest lines.
TAIL = "tail"
TAIL_EVENTS = 200
# Also Sundial's own: "earlier:<backward token>" reads the page of events before the token.
EARLIER = "earlier:"
# Of messages in an earlier page, as the log page's own bound (jobs/logs.PAGE_BYTES): a
# backward token can only be had for a whole answer, so a page of huge events is asked
# again for fewer of them, rather than cut on Sundial's side and its first events lost.
EARLIER_BYTES = 256 * 1024


def read_stream(logs: Any, group: str, stream: str, cursor: str | None) -> LogChunk:
    """Lines after ``cursor`` (from the start when None); an empty chunk once nothing is new.

    The TAIL cursor gives the last events and an EARLIER cursor the page before its token;
    either chunk's ``earlier`` is the cursor of the page before it, None at the start.
    A stream that does not exist yet (the job has not started writing) reads as empty, with
    the cursor unchanged, so the reader simply asks again later.
    """
    if cursor and cursor.startswith(EARLIER):
        return _read_earlier(logs, group, stream, cursor.removeprefix(EARLIER))
    tail = cursor == TAIL
    token = None if tail else cursor or None
    # CloudWatch may answer a page with no events but a new token while more lie beyond it;
    # only a token handed back unchanged means the end. A few empty pages are followed here,
    # so an empty chunk means "nothing new" to every reader.
    for _ in range(EMPTY_PAGES_FOLLOWED):
        request: dict[str, Any] = {"startFromHead": not tail}
        if tail:
            request["limit"] = TAIL_EVENTS
        if token:
            request["nextToken"] = token
        page = _get_log_events(logs, group, stream, **request)
        if page is None:
            return LogChunk((), cursor or "")
        following = page.get("nextForwardToken") or token
        lines = _lines_of(page.get("events", []))
        if tail:
            earlier = _earlier(logs, group, stream, page.get("nextBackwardToken"))
            return LogChunk(lines, following or "", earlier=earlier)
        if lines or following == token:
            return LogChunk(lines, following or "")
        token = following
    return LogChunk((), token or "")


def _read_earlier(logs: Any, group: str, stream: str, before: str) -> LogChunk:
    """The last TAIL_EVENTS events before the backward token ``before``, at most about
    EARLIER_BYTES of them (at least one event), with the cursor of the page before them."""
    events, forward, backward = _events_before(logs, group, stream, before, TAIL_EVENTS)
    kept, size = 0, 0
    for event in reversed(events):
        size += len(event["message"].encode())
        if kept and size > EARLIER_BYTES:
            break
        kept += 1
    if kept < len(events):
        events, forward, backward = _events_before(logs, group, stream, before, kept)
    earlier = None if backward is None else _earlier(logs, group, stream, backward)
    return LogChunk(_lines_of(events), forward or "", earlier=earlier)


def _earlier(logs: Any, group: str, stream: str, backward: str | None) -> str | None:
    """The EARLIER cursor for ``backward``, if any event lies before it: one event is asked
    for, so the page after it never offers a button that reads nothing."""
    if not backward:
        return None
    events, _, beyond = _events_before(logs, group, stream, backward, 1)
    # Empty pages followed to no end: something may still lie before them.
    return EARLIER + backward if events or beyond is not None else None


def _events_before(
    logs: Any, group: str, stream: str, token: str, limit: int
) -> tuple[list[dict[str, Any]], str | None, str | None]:
    """The last ``limit`` events before the backward ``token``, the forward token after them
    and the backward token before them: None once CloudWatch hands ``token`` back unchanged,
    which is the start of the stream. Empty pages are followed, as forward."""
    forward = None
    for _ in range(EMPTY_PAGES_FOLLOWED):
        page = _get_log_events(
            logs, group, stream, startFromHead=False, limit=limit, nextToken=token
        )
        if page is None:
            raise ExecutorError(f"the log stream {stream} is gone", permanent=True)
        events = page.get("events", [])
        backward = page.get("nextBackwardToken") or token
        forward = page.get("nextForwardToken")
        if events:
            return events, forward, backward
        if backward == token:
            return [], forward, None
        token = backward
    return [], forward, token


def _get_log_events(logs: Any, group: str, stream: str, **request: Any) -> dict[str, Any] | None:
    """CloudWatch's answer, None when the stream does not exist."""
    with aws_call("GetLogEvents"):
        try:
            page: dict[str, Any] = logs.get_log_events(
                logGroupName=group, logStreamName=stream, **request
            )
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return None
            raise
    return page


def _lines_of(events: list[dict[str, Any]]) -> tuple[str, ...]:
    return tuple(line for event in events for line in _lines(event["message"]))


def _lines(message: str) -> list[str]:
    # One event is usually one line; a multi-line event becomes several lines on the page.
    return message.rstrip("\n").split("\n")
