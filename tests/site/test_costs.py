"""Cost estimates: what an attempt asked for, for as long as it ran, at the configured prices."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ImproperlyConfigured

from jobs.costs import DEFAULT_PRICES, attempt_cost, total
from sundial_site.env import env_json_object

START = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
HOUR = START + timedelta(hours=1)


def test_fargate_is_priced_per_vcpu_and_gb_hour():
    cost = attempt_cost(
        {"platform": "FARGATE", "vcpu": 2, "memory_mib": 4096}, START, HOUR, DEFAULT_PRICES
    )
    assert cost == pytest.approx(2 * 0.04048 + 4 * 0.004445)


def test_fargate_storage_beyond_the_free_20_gib_and_gpus_on_ec2():
    disk = attempt_cost(
        {"platform": "FARGATE", "vcpu": 1, "memory_mib": 2048, "disk_gib": 120},
        START,
        START + timedelta(minutes=30),
        DEFAULT_PRICES,
    )
    assert disk == pytest.approx((0.04048 + 2 * 0.004445 + 100 * 0.000111) / 2)
    gpu = attempt_cost(
        {"platform": "EC2", "vcpu": 4, "memory_mib": 16384, "gpu": 1}, START, HOUR, DEFAULT_PRICES
    )
    assert gpu == pytest.approx(4 * 0.03334 + 16 * 0.003664 + 0.334)


@pytest.mark.parametrize(
    ("resources", "started", "finished"),
    [
        ({}, START, HOUR),  # a local process: nothing to price it by
        ({"platform": "EC2", "vcpu": 1}, START, HOUR),  # a job definition's own memory
        ({"platform": "FARGATE", "vcpu": 1, "memory_mib": 512}, None, None),  # never ran
        ({"platform": "FARGATE", "vcpu": 1, "memory_mib": 512}, START, None),  # still running
        ({"platform": "MARS", "vcpu": 1, "memory_mib": 512}, START, HOUR),  # no price for it
    ],
)
def test_what_cannot_be_priced_is_none(resources, started, finished):
    assert attempt_cost(resources, started, finished, DEFAULT_PRICES) is None


def test_a_run_total_says_whether_every_attempt_was_priced():
    assert total([0.5, 0.25]).usd == 0.75 and total([0.5, 0.25]).complete
    partial = total([0.5, None, None])
    assert (partial.usd, partial.priced, partial.unpriced) == (0.5, 1, 2)
    assert not partial.complete


def test_prices_from_the_environment_must_be_a_json_object(monkeypatch):
    monkeypatch.setenv("SUNDIAL_PRICES", '{"FARGATE": {"vcpu_hour": 0.05}}')
    assert env_json_object("SUNDIAL_PRICES") == {"FARGATE": {"vcpu_hour": 0.05}}
    monkeypatch.setenv("SUNDIAL_PRICES", "[1]")
    with pytest.raises(ImproperlyConfigured, match="SUNDIAL_PRICES"):
        env_json_object("SUNDIAL_PRICES")
