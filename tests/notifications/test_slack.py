"""The Slack channel against a real HTTPS receiver standing in for an incoming webhook: the
message it gets (escaped, linked), and a refusal that never shows the URL in full."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError

from jobs.models import TaskRun
from notifications.base import Notice, TaskLine
from notifications.decide import Event
from notifications.models import Delivery, DeliveryStatus, Subscription
from notifications.registry import channel_for
from notifications.slack.channel import message, recipients
from tests.conftest import make_process
from tests.notifications.flow import finish, send_due
from tests.notifications.receiver import Receiver, serve

pytestmark = pytest.mark.django_db

TOKEN_PATH = "/services/T000/B000/sEcReTtOkEn"


@pytest.fixture
def slack(ca, monkeypatch) -> Iterator[Receiver]:
    """A local HTTPS Slack, trusted by this process's Slack channel."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    monkeypatch.setattr(channel_for("slack"), "context", client)
    yield from serve(server, TOKEN_PATH)


def subscribe(url: str) -> Subscription:
    process = make_process("orders", tasks={"extract": {}, "load": {}})
    return Subscription.objects.create(process=process, channel="slack", target=url)


def section(body: dict) -> str:
    (block,) = body["blocks"]
    assert block["type"] == "section" and block["text"]["type"] == "mrkdwn"
    return block["text"]["text"]


def test_a_failed_run_is_one_escaped_message_linking_the_run(slack):
    subscription = subscribe(slack.url)
    run = finish(subscription.process, "failed", "<script>alert(1)</script> & co")
    TaskRun.objects.create(run=run, task_name="extract", executor="local", status="succeeded")
    TaskRun.objects.create(run=run, task_name="load", executor="local", status="timed_out")
    assert send_due() == [DeliveryStatus.SENT]

    (got,) = slack.received
    assert got.path == TOKEN_PATH
    assert got.headers["Content-Type"] == "application/json"
    body = got.json
    link = f"{settings.SUNDIAL_BASE_URL}/runs/{run.pk}/"
    assert body["text"] == (
        f":red_circle: orders run {run.pk} failed: &lt;script&gt;alert(1)&lt;/script&gt; &amp; co"
    )
    assert section(body) == (
        f":red_circle: *<{link}|orders run {run.pk} failed>*\n"
        "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co\n"
        "Failed tasks: load"
    )
    assert "<script>" not in got.body.decode()


def notice(event: Event, **fields) -> Notice:
    defaults = dict(
        process="orders",
        title="orders run 7 said <hi> & bye",
        detail="",
        url="https://sundial.example.com/runs/7/?a=1&b=2",
        at=datetime(2026, 12, 2, tzinfo=UTC),
    )
    return Notice(event=event, **{**defaults, **fields})


@pytest.mark.parametrize(
    ("event", "emoji"),
    [
        (Event.FAILED, ":red_circle:"),
        (Event.KILLED, ":red_circle:"),
        (Event.ALERT, ":red_circle:"),
        (Event.SUCCEEDED, ":white_check_mark:"),
        (Event.RECOVERED, ":white_check_mark:"),
        (Event.RESOLVED, ":white_check_mark:"),
        (Event.TEST, ":information_source:"),
    ],
)
def test_each_event_has_its_emoji_and_a_linked_title(event, emoji):
    body = message(notice(event))
    assert section(body) == (
        f"{emoji} *<https://sundial.example.com/runs/7/?a=1&amp;b=2"
        "|orders run 7 said &lt;hi&gt; &amp; bye>*"
    )
    assert body["text"] == f"{emoji} orders run 7 said &lt;hi&gt; &amp; bye"


def test_a_relative_link_is_not_a_link_and_many_failed_tasks_are_counted():
    failed = [TaskLine(f"t{n}", "failed", 1, None, "", "") for n in range(12)]
    tasks = (*failed, TaskLine("fine", "succeeded", 1, None, "", ""))
    body = message(notice(Event.FAILED, url="/runs/7/", detail="two\nlines", tasks=tasks))
    assert section(body) == (
        ":red_circle: *orders run 7 said &lt;hi&gt; &amp; bye*\n"
        "two\nlines\n"
        "Failed tasks: t0, t1, t2, t3, t4, t5, t6, t7, t8, t9 and 2 more"
    )
    assert body["text"] == ":red_circle: orders run 7 said &lt;hi&gt; &amp; bye: two lines"


def test_a_refusal_flags_the_subscription_without_showing_the_url(slack):
    slack.answer(404)
    subscription = subscribe(slack.url)
    finish(subscription.process, "failed")

    assert send_due() == [DeliveryStatus.FAILED]
    subscription.refresh_from_db()
    host = slack.url.split("/")[2]
    assert subscription.broken_reason == f"{host} (http…OkEn) answered 404: no_service"
    (delivery,) = Delivery.objects.all()
    assert "sEcReT" not in delivery.error and "sEcReT" not in subscription.broken_reason


def test_a_certificate_it_does_not_trust_is_tried_again_later(slack, monkeypatch):
    monkeypatch.setattr(channel_for("slack"), "context", None)  # the system's trust only
    subscription = subscribe(slack.url)
    finish(subscription.process, "failed")
    assert send_due() == [DeliveryStatus.PENDING]
    (delivery,) = Delivery.objects.all()
    assert "CERTIFICATE_VERIFY_FAILED" in delivery.error
    assert slack.received == []


def test_a_slack_target_is_one_https_url():
    url = "https://hooks.slack.com/services/T000/B000/XXXX"
    assert recipients(f"{url}\n") == [url]


@pytest.mark.parametrize(
    "target", ["", "hooks.slack.com/services/T/B/X", "http://hooks.slack.com/services/T/B/X"]
)
def test_anything_else_is_refused_with_what_to_enter(target):
    with pytest.raises(ValidationError, match="Slack incoming-webhook URL"):
        recipients(target)
