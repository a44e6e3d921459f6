"""AWS API errors as ExecutorErrors: transient (throttling, AWS's own faults, the network) or
permanent (what no retry can fix: a bad parameter, a missing resource, no permission).

A transient error puts the attempt back to READY without costing it a retry; a permanent
one fails it at once, with AWS's own message.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
)

from executors.base import ExecutorError

# Codes AWS uses for "slow down" and for its own faults, across Batch, ECS and Logs.
TRANSIENT_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
        "ServerException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalError",
        "InternalServerError",
        "RequestTimeout",
        "RequestTimeoutException",
        "LimitExceededException",  # ECS: too many concurrent RunTask calls
    }
)


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_transient(exc: ClientError) -> bool:
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
    return error_code(exc) in TRANSIENT_CODES or status == 429 or status >= 500


MESSAGE_LIMIT = 500  # AWS's own words, kept whole; anything longer is not a message


def _message(exc: ClientError) -> str:
    """AWS's message, or a plain word for an answer that has none (a proxy's or a load
    balancer's HTML error page goes on no run page)."""
    message = str(exc.response.get("Error", {}).get("Message") or "")
    if not message or message.lstrip().startswith("<"):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?")
        return f"AWS answered HTTP {status} without a message"
    return message if len(message) <= MESSAGE_LIMIT else message[:MESSAGE_LIMIT] + "…"


@contextmanager
def aws_call(action: str) -> Iterator[None]:
    """Turn what botocore raises inside the block into an ExecutorError naming ``action``."""
    try:
        yield
    except ClientError as exc:
        raise ExecutorError(
            f"{action}: {error_code(exc)}: {_message(exc)}", permanent=not is_transient(exc)
        ) from exc
    except ParamValidationError as exc:  # botocore's own check of a request: a bad config
        raise ExecutorError(f"{action}: {exc}", permanent=True) from exc
    except (NoCredentialsError, PartialCredentialsError, NoRegionError) as exc:
        # A setup problem, not the task's: said plainly, so it is fixed rather than waited on.
        raise ExecutorError(
            f"{action}: {exc} (see the AWS section of the README)", permanent=True
        ) from exc
    except (ConnectionError, HTTPClientError) as exc:
        raise ExecutorError(f"{action}: cannot reach AWS: {exc}") from exc
    except BotoCoreError as exc:
        raise ExecutorError(f"{action}: {exc}") from exc
