"""boto3 clients for Batch, ECS and CloudWatch Logs, one per service and region, shared by
the threads of this process (boto3 clients are thread-safe; sessions are not).

Credentials and the default region come from the default AWS chain (environment, config
files, instance or task role). ``AWS_ENDPOINT_URL`` (honoured by botocore itself) points
every client at moto server or LocalStack. Each client retries in botocore's ``standard``
mode (throttling and AWS's own faults, with backoff) and takes a token from its service's
rate budget before every HTTP request it sends.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.config import Config

from executors.aws.budget import DEFAULT_RATES, RateBudget


@dataclass(frozen=True)
class AwsOptions:
    region: str | None = None  # None: the default chain's (AWS_REGION, ~/.aws/config)
    max_attempts: int = 5  # per call, by botocore's standard retry mode
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 30.0
    rates: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_RATES))


class AwsClients:
    def __init__(self, options: AwsOptions) -> None:
        self.options = options
        self._session = boto3.session.Session()
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str], Any] = {}
        self._budgets = {name: RateBudget(rate) for name, rate in options.rates.items()}
        self._config = Config(
            # Tries in all, the first included ("max_attempts" would count retries only).
            retries={"mode": "standard", "total_max_attempts": options.max_attempts},
            connect_timeout=options.connect_timeout_s,
            read_timeout=options.read_timeout_s,
            max_pool_connections=20,
        )

    def region(self, region: str | None = None) -> str | None:
        """The region a call goes to: the task's own, else Sundial's, else the chain's."""
        return region or self.options.region or self._session.region_name

    def client(self, service: str, region: str | None = None) -> Any:
        """This process's client for ``service`` in ``region`` (see ``region()``)."""
        where = self.region(region) or ""
        with self._lock:
            client = self._clients.get((service, where))
            if client is None:
                client = self._session.client(
                    service, region_name=where or None, config=self._config
                )
                budget = self._budgets.get(service)
                if budget is not None:
                    client.meta.events.register(f"before-send.{service}", _take_from(budget))
                self._clients[(service, where)] = client
            return client

    def budget(self, service: str) -> RateBudget | None:
        return self._budgets.get(service)


def _take_from(budget: RateBudget) -> Any:
    def take(**_: object) -> None:
        budget.take()  # returns None: botocore goes on and sends the request

    return take
