"""What Batch and ECS share: AWS's errors classified, and the client-side rate budget."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoRegionError,
    ParamValidationError,
)

from executors.aws.budget import RateBudget
from executors.aws.errors import aws_call
from executors.base import ExecutorError


def client_error(code: str, message: str, status: int) -> ClientError:
    """What botocore raises for an AWS error answer."""
    answer = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(answer, "SubmitJob")


def raised(error: Exception) -> ExecutorError:
    with pytest.raises(ExecutorError) as caught, aws_call("SubmitJob"):
        raise error
    return caught.value


@pytest.mark.parametrize(
    ("error", "permanent", "message"),
    [
        (client_error("ThrottlingException", "Rate exceeded", 400), False, "Rate exceeded"),
        (client_error("TooManyRequestsException", "Slow down", 429), False, "Slow down"),
        (client_error("ServerException", "Internal", 500), False, "Internal"),
        (
            client_error("ClientException", "Job queue q does not exist", 400),
            True,
            "SubmitJob: ClientException: Job queue q does not exist",
        ),
        (client_error("AccessDeniedException", "not authorized", 403), True, "not authorized"),
        (
            client_error("500", "<!doctype html><title>500 Internal Server Error</title>", 500),
            False,
            "SubmitJob: 500: AWS answered HTTP 500 without a message",
        ),
        (ParamValidationError(report="Invalid type for parameter vcpus"), True, "vcpus"),
        (NoRegionError(), True, "see the AWS section of the README"),
        (EndpointConnectionError(endpoint_url="https://batch"), False, "cannot reach AWS"),
    ],
)
def test_aws_errors_are_transient_or_permanent_in_awss_words(error, permanent, message):
    caught = raised(error)
    assert caught.permanent is permanent
    assert message in caught.message


def test_a_long_message_is_cut():
    caught = raised(client_error("ClientException", "x" * 2000, 400))
    assert len(caught.message) < 600 and caught.message.endswith("…")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_budget_allows_a_seconds_worth_at_once_then_paces_the_rest():
    clock = Clock()
    budget = RateBudget(2.0, clock=lambda: clock.now, sleep=clock.sleep)
    for _ in range(4):
        budget.take()
    assert clock.slept == [0.5, 0.5], "two at once (the burst), then one every half second"
    clock.now += 10  # a quiet spell refills the bucket, but never beyond one second's worth
    for _ in range(3):
        budget.take()
    assert clock.slept == [0.5, 0.5, 0.5]
    assert budget.waited_s == pytest.approx(1.5)


def test_a_budget_needs_a_positive_rate():
    with pytest.raises(ValueError, match="rate must be positive"):
        RateBudget(0)
