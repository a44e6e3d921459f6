"""Reading a CloudWatch Logs stream forward, a page at a time, by cursor.

The cursor is CloudWatch's own forward token, so a reader that comes back with it gets
only what was written since: the log page reads a finished log to its end, and the live
view tails a running one.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from executors.aws.errors import aws_call, error_code
from executors.base import LogChunk

EMPTY_PAGES_FOLLOWED = 5
# A cursor of Sundial's own, never a CloudWatch token: the stream's last TAIL_EVENTS events,
# then on by the forward token, so the log page starts with the newest lines.
TAIL = "tail"
TAIL_EVENTS = 200


def read_stream(logs: Any, group: str, stream: str, cursor: str | None) -> LogChunk:
    """Lines after ``cursor`` (from the start when None); an empty chunk once nothing is new.

    A stream that does not exist yet (the job has not started writing) reads as empty, with
    the cursor unchanged, so the reader simply asks again later.
    """
    tail = cursor == TAIL
    token = None if tail else cursor or None
    # CloudWatch may answer a page with no events but a new token while more lie beyond it;
    # only a token handed back unchanged means the end. A few empty pages are followed here,
    # so an empty chunk means "nothing new" to every reader.
    for _ in range(EMPTY_PAGES_FOLLOWED):
        request: dict[str, Any] = {
            "logGroupName": group,
            "logStreamName": stream,
            "startFromHead": not tail,
        }
        if tail:
            request["limit"] = TAIL_EVENTS
        if token:
            request["nextToken"] = token
        with aws_call("GetLogEvents"):
            try:
                page = logs.get_log_events(**request)
            except ClientError as exc:
                if error_code(exc) == "ResourceNotFoundException":
                    return LogChunk((), cursor or "")
                raise
        following = page.get("nextForwardToken") or token
        lines = tuple(line for event in page.get("events", []) for line in _lines(event["message"]))
        if lines or following == token or tail:
            return LogChunk(lines, following or "")
        token = following
    return LogChunk((), token or "")


def _lines(message: str) -> list[str]:
    # One event is usually one line; a multi-line event becomes several lines on the page.
    return message.rstrip("\n").split("\n")
