"""What the notification tests share: the test CA, a webhook receiver, the PagerDuty
stand-in with this process's channel pointed at it, and real workers for the attacks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import trustme

from notifications import registry
from tests.conftest import purge_task_queue
from tests.notifications import receiver as hooks
from tests.notifications.fake_pagerduty import FakePagerDuty, write_ca
from tests.notifications.on_workers import Workers
from tests.workers import stop_task_processes


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def receiver() -> Iterator[hooks.Receiver]:
    yield from hooks.serve()


@pytest.fixture
def fake(ca, tmp_path, monkeypatch, settings) -> Iterator[FakePagerDuty]:
    """The PagerDuty stand-in; this process's channel pointed at it, trusting its CA."""
    monkeypatch.setenv("SSL_CERT_FILE", str(write_ca(ca, tmp_path)))
    settings.SUNDIAL_PAGERDUTY_ROUTING_KEY = ""
    with FakePagerDuty(ca, slow_s=1.0) as server:
        settings.SUNDIAL_PAGERDUTY_EVENTS_URL = server.url
        registry.channel_for.cache_clear()
        yield server
    registry.channel_for.cache_clear()


@pytest.fixture
def clean_queue() -> Iterator[None]:
    """The broker's queue empty, and no task process left, before and after a test."""
    purge_task_queue()
    yield
    stop_task_processes()
    purge_task_queue()


@pytest.fixture
def workers(tmp_path) -> Iterator[Workers]:
    started = Workers(tmp_path)
    try:
        yield started
    finally:
        started.kill_all()
        stop_task_processes()
