"""The webhook channel against a real receiver in the test process: the JSON it gets, the
signature it verifies, and what each answer makes of the delivery."""

from __future__ import annotations

import time

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError

from jobs.models import TaskRun
from notifications.models import Delivery, DeliveryStatus, Subscription
from notifications.registry import channel_for
from notifications.webhook.channel import recipients
from tests.conftest import make_process
from tests.notifications.flow import finish, make_due, send_due
from tests.notifications.receiver import verify

pytestmark = pytest.mark.django_db

SECRET = "s3cret-for-tests"


def subscribe(url: str, secret: str = SECRET) -> Subscription:
    process = make_process("orders", tasks={"extract": {}, "load": {}})
    return Subscription.objects.create(
        process=process, channel="webhook", target=url, secret=secret
    )


def delivery() -> Delivery:
    (only,) = Delivery.objects.filter(channel="webhook")
    return only


def test_a_failed_run_arrives_as_signed_json(receiver):
    subscription = subscribe(receiver.url)
    run = finish(subscription.process, "failed", "task load failed")
    TaskRun.objects.create(run=run, task_name="extract", executor="local", status="succeeded")
    for number in (1, 2):
        TaskRun.objects.create(
            run=run,
            task_name="load",
            number=number,
            executor="local",
            status="failed",
            reason="exit code 1",
        )
    assert send_due() == [DeliveryStatus.SENT]

    (got,) = receiver.received
    assert got.headers["Content-Type"] == "application/json"
    assert got.headers["User-Agent"] == "Sundial"
    header = got.headers["X-Sundial-Signature"]
    assert verify(header, got.body, SECRET)
    assert not verify(header, got.body, "another secret")
    assert not verify(header, got.body.replace(b"failed", b"succeeded"), SECRET)
    assert not verify(header, got.body, SECRET, now=time.time() + 600)  # a replay, later

    body = got.json
    assert body["event"] == "failed"
    assert body["process"] == "orders"
    assert body["title"] == f"orders run {run.pk} failed"
    assert body["detail"] == "task load failed"
    assert body["url"] == f"{settings.SUNDIAL_BASE_URL}/runs/{run.pk}/"
    assert body["at"] == run.finished_at.isoformat()
    assert body["run"] == {"id": run.pk, "status": "failed", "duration_s": 180.0}
    assert body["alert"] is None
    assert [(t["name"], t["status"], t["attempts"], t["reason"]) for t in body["tasks"]] == [
        ("extract", "succeeded", 1, ""),
        ("load", "failed", 2, "exit code 1"),
    ]
    assert "log_tail" not in body["tasks"][1]  # compact: the log is a link away


def test_without_a_secret_it_is_sent_unsigned(receiver):
    subscription = subscribe(receiver.url, secret="")
    finish(subscription.process, "failed")
    assert send_due() == [DeliveryStatus.SENT]
    (got,) = receiver.received
    assert "X-Sundial-Signature" not in got.headers
    assert got.json["event"] == "failed"


def test_a_server_error_is_tried_again_and_then_arrives(receiver):
    receiver.answer(500)
    subscription = subscribe(receiver.url)
    finish(subscription.process, "failed")

    assert send_due() == [DeliveryStatus.PENDING]
    first = delivery()
    host = receiver.url.split("/")[2]
    assert first.attempts == 1 and first.next_try_at is not None
    assert first.error == f"{host} answered 500: no_service"
    assert send_due() == [None]  # not due yet: nothing is sent

    make_due()
    assert send_due() == [DeliveryStatus.SENT]
    assert delivery().attempts == 2
    assert len(receiver.received) == 2
    assert receiver.received[0].body == receiver.received[1].body
    assert all(verify(r.headers["X-Sundial-Signature"], r.body, SECRET) for r in receiver.received)
    # The same delivery key both times: the receiver can tell the second is a repeat.
    keys = {r.headers["X-Sundial-Delivery"] for r in receiver.received}
    assert keys == {first.key}


@pytest.mark.parametrize("status", [408, 429, 502, 503])
def test_busy_or_down_answers_are_temporary(receiver, status):
    receiver.answer(status)
    subscription = subscribe(receiver.url)
    finish(subscription.process, "failed")
    assert send_due() == [DeliveryStatus.PENDING]
    subscription.refresh_from_db()
    assert subscription.broken_at is None


@pytest.mark.parametrize("status", [404, 401, 301])
def test_a_refusal_fails_for_good_and_flags_the_subscription(receiver, status):
    receiver.answer(status)
    subscription = subscribe(receiver.url)
    finish(subscription.process, "failed")

    assert send_due() == [DeliveryStatus.FAILED]
    failed = delivery()
    assert failed.attempts == 1 and failed.finished_at is not None
    subscription.refresh_from_db()
    assert subscription.broken_at is not None
    assert f"answered {status}" in subscription.broken_reason
    assert "/hook" not in subscription.broken_reason  # the host, not the URL
    make_due()
    assert send_due() == [] and len(receiver.received) == 1


def test_a_receiver_too_slow_to_answer_is_tried_again_later(receiver, monkeypatch):
    monkeypatch.setattr(channel_for("webhook"), "timeout_s", 0.3)
    receiver.delay_s = 1.0
    subscription = subscribe(receiver.url)
    finish(subscription.process, "failed")

    assert send_due() == [DeliveryStatus.PENDING]
    waiting = delivery()
    assert waiting.attempts == 1 and "did not answer within 0.3 s" in waiting.error
    subscription.refresh_from_db()
    assert subscription.broken_at is None


def test_nobody_listening_is_tried_again_later():
    subscription = subscribe("http://127.0.0.1:9/hook")  # the discard port: closed here
    finish(subscription.process, "failed")
    assert send_due() == [DeliveryStatus.PENDING]
    assert "127.0.0.1:9 could not be reached" in delivery().error


@pytest.mark.parametrize(
    "target", ["https://hooks.example.com/sundial", "http://127.0.0.1:8080/hook?token=x"]
)
def test_a_webhook_target_is_one_http_url(target):
    assert recipients(f" {target} ") == [target]


@pytest.mark.parametrize("target", ["", "hooks.example.com", "ftp://example.com/x", "a, b"])
def test_anything_else_is_refused_with_what_to_enter(target):
    with pytest.raises(ValidationError, match="http or https URL"):
        recipients(target)
