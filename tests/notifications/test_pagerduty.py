"""PagerDuty: one incident per failing critical process, triggered, updated and resolved,
through the real Events API v2 client against a local HTTPS stand-in; errors worded and
classified without ever showing the routing key."""

from __future__ import annotations

import logging

import pytest
import trustme
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from jobs.models import ProcessRun, TaskDefinition, Trigger
from jobs.orchestrator import trigger_run
from notifications import outbox, registry
from notifications.base import ChannelError, Notice, Outgoing
from notifications.decide import Event
from notifications.models import Delivery, DeliveryStatus, Subscription
from notifications.notice import absolute
from notifications.pagerduty import channel as pagerduty
from tests.conftest import make_process, purge_task_queue
from tests.notifications.fake_pagerduty import SLOW, FakePagerDuty, write_ca
from tests.notifications.flow import finish, make_due, send_due
from tests.orchestrator.driving import wait_for
from tests.workers import Worker, stop_task_processes

KEY = "R0ut1ngKeyOfTheOrdersService0001"  # 32 letters and digits
DEFAULT_KEY = "DefaultRoutingKeyOfTheWholeSite2"
FAILING = "sundial/orders/failing"


@pytest.fixture
def fake(fake, monkeypatch):
    """The conftest's stand-in, with short waits, so a SLOW answer and the library's one
    retry take a moment, not seconds (this process's channel is built after this)."""
    monkeypatch.setattr(pagerduty, "TIMEOUT_S", 0.5)
    monkeypatch.setattr(pagerduty, "RETRY_AFTER_S", 0.01)
    return fake


def critical(name: str = "orders", **fields):
    process = make_process(name, critical=True, **fields)
    Subscription.objects.create(process=process, channel="pagerduty", target=KEY)
    return process


@pytest.mark.django_db
def test_fail_fail_succeed_is_one_incident_triggered_twice_then_resolved_once(fake):
    process = critical()
    first = finish(process, "failed", "failed: load")
    send_due()
    finish(process, "failed", "failed: load")
    send_due()
    finish(process, "succeeded")
    send_due()
    finish(process, "succeeded")
    send_due()
    assert fake.actions() == [("trigger", FAILING), ("trigger", FAILING), ("resolve", FAILING)]
    trigger = fake.accepted()[0]
    page = absolute(reverse("run", args=[first.pk]))
    assert trigger["routing_key"] == KEY
    assert trigger["payload"]["summary"] == (
        "orders is failing: orders failed its latest run: failed: load"
    )
    assert trigger["payload"]["source"] == "sundial"
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["custom_details"] == {
        "process": "orders",
        "url": page,
        "run_id": first.pk,
        "status": "failed",
        "reason": "orders failed its latest run: failed: load",
    }
    assert trigger["links"] == [{"href": page, "text": f"Run {first.pk} in Sundial"}]
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SENT}


@pytest.mark.django_db
def test_a_process_that_pages_after_three_failures_pages_on_the_third(fake):
    process = critical(page_after_failures=3)
    for _ in range(2):
        finish(process, "failed")
        send_due()
    assert fake.received == []
    finish(process, "failed")
    send_due()
    assert fake.actions() == [("trigger", FAILING)]


@pytest.mark.django_db
def test_a_process_that_is_not_critical_never_pages(fake, settings):
    settings.SUNDIAL_PAGERDUTY_ROUTING_KEY = DEFAULT_KEY
    process = make_process("orders")
    Subscription.objects.create(process=process, channel="pagerduty", target=KEY)
    for status in ("failed", "failed", "failed", "succeeded"):
        finish(process, status)
        send_due()
    assert fake.received == [] and not Delivery.objects.exists()


@pytest.mark.django_db
def test_the_default_routing_key_pages_a_critical_process_with_no_subscription(fake, settings):
    settings.SUNDIAL_PAGERDUTY_ROUTING_KEY = DEFAULT_KEY
    process = make_process("orders", critical=True)
    finish(process, "failed")
    finish(process, "succeeded")
    send_due()
    assert fake.actions() == [("trigger", FAILING), ("resolve", FAILING)]
    assert [event["routing_key"] for event in fake.accepted()] == [DEFAULT_KEY, DEFAULT_KEY]
    assert set(Delivery.objects.values_list("target", flat=True)) == {""}


@pytest.mark.django_db
def test_errors_then_recovery_lose_nothing_and_send_nothing_twice(fake):
    process = critical()
    fake.script(500, 429, SLOW)
    finish(process, "failed")
    # The library tries once more at once: the 500 and the 429 are one attempt.
    assert send_due() == [DeliveryStatus.PENDING]
    delivery = Delivery.objects.get()
    assert delivery.error.startswith("PagerDuty answered 429")
    assert send_due() == [None], "not due yet: the outbox waits before trying again"
    make_due()
    assert send_due() == [DeliveryStatus.PENDING]
    delivery.refresh_from_db()
    assert delivery.error.startswith("PagerDuty could not be reached: ReadTimeout")
    make_due()
    assert send_due() == [DeliveryStatus.SENT]
    make_due()
    assert send_due() == []
    assert fake.statuses() == [500, 429, 504, 202]
    assert fake.actions() == [("trigger", FAILING)]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.SENT, 3)


@pytest.mark.django_db
def test_a_resolve_waits_for_its_trigger_that_is_still_failing(fake):
    process = critical()
    fake.script(503, 503)
    finish(process, "failed")
    assert send_due() == [DeliveryStatus.PENDING]
    finish(process, "succeeded")
    trigger, resolve = Delivery.objects.order_by("pk")
    assert (trigger.event, resolve.event) == (Event.ALERT, Event.RESOLVED)
    assert outbox.deliver(resolve.pk) is None, "the resolve waits for its trigger"
    assert fake.actions() == []
    make_due()
    assert send_due() == [DeliveryStatus.SENT, DeliveryStatus.SENT]
    assert fake.actions() == [("trigger", FAILING), ("resolve", FAILING)]


@pytest.mark.django_db
def test_an_unknown_routing_key_fails_for_good_and_is_never_shown(fake, caplog):
    caplog.set_level(logging.DEBUG)
    fake.refused.add(KEY)
    process = critical()
    finish(process, "failed")
    assert send_due() == [DeliveryStatus.FAILED]
    delivery = Delivery.objects.get()
    subscription = Subscription.objects.get()
    assert delivery.error.startswith("PagerDuty answered 400: Event object is invalid")
    assert registry.masked(KEY) in delivery.error, "the answer quoted the key: masked"
    assert subscription.broken_at is not None
    assert KEY not in delivery.error + subscription.broken_reason + caplog.text


@pytest.mark.parametrize(
    ("answers", "permanent", "said"),
    [
        ((500, 500), False, "PagerDuty answered 500"),
        ((429, 429), False, "PagerDuty answered 429"),
        ((502, 502), False, "PagerDuty answered 502"),
        ((SLOW,), False, "PagerDuty could not be reached: ReadTimeout"),
        ((400,), True, "PagerDuty answered 400"),
        ((404,), True, "PagerDuty answered 404"),
    ],
)
def test_errors_are_temporary_or_permanent_and_never_show_the_key(
    fake, caplog, answers, permanent, said
):
    caplog.set_level(logging.DEBUG)
    fake.script(*answers)
    with pytest.raises(ChannelError) as raised:
        pagerduty.channel().notify(Outgoing(KEY, notice(Event.ALERT)))
    assert raised.value.permanent is permanent
    assert raised.value.message.startswith(said)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__
    assert KEY not in f"{raised.value!s} {raised.value!r} {caplog.text}"
    assert len(fake.received) == len(answers), "one retry in all, and none after a timeout"


def test_an_unreachable_pagerduty_is_a_temporary_error(settings, caplog):
    caplog.set_level(logging.DEBUG)
    settings.SUNDIAL_PAGERDUTY_EVENTS_URL = "https://127.0.0.1:9"  # nothing listens there
    with pytest.raises(ChannelError) as raised:
        pagerduty.channel().notify(Outgoing(KEY, notice(Event.ALERT)))
    assert not raised.value.permanent
    assert raised.value.message.startswith("PagerDuty could not be reached: ConnectError")
    assert KEY not in f"{raised.value!s} {caplog.text}"


def test_an_untrusted_certificate_is_refused(settings, monkeypatch, tmp_path):
    with FakePagerDuty(trustme.CA()) as stranger:
        settings.SUNDIAL_PAGERDUTY_EVENTS_URL = stranger.url
        monkeypatch.setenv("SSL_CERT_FILE", str(write_ca(trustme.CA(), tmp_path)))
        with pytest.raises(ChannelError, match="CERTIFICATE_VERIFY_FAILED"):
            pagerduty.channel().notify(Outgoing(KEY, notice(Event.ALERT)))
        assert stranger.received == []


def test_no_routing_key_at_all_is_a_permanent_error(fake):
    with pytest.raises(ChannelError) as raised:
        pagerduty.channel().notify(Outgoing("", notice(Event.ALERT)))
    assert raised.value.permanent
    assert raised.value.message == (
        "no PagerDuty routing key: set SUNDIAL_PAGERDUTY_ROUTING_KEY or give the subscription one"
    )
    assert fake.received == []


def test_a_long_summary_is_cut_to_pagerdutys_limit(fake):
    pagerduty.channel().notify(Outgoing(KEY, notice(Event.ALERT, detail="x" * 5000)))
    (event,) = fake.accepted()
    summary = event["payload"]["summary"]
    assert len(summary) == 1024 and summary.endswith("x…")
    assert event["payload"]["custom_details"]["reason"] == "x" * 5000


def test_other_events_are_not_pagerdutys_news(fake):
    for event in (Event.FAILED, Event.SUCCEEDED, Event.RECOVERED, Event.KILLED):
        pagerduty.channel().notify(Outgoing(KEY, notice(event)))
    assert fake.received == []


@pytest.mark.django_db
def test_a_test_send_opens_an_incident_and_resolves_it_at_once(fake):
    process = critical()
    (delivery,) = outbox.send_test(process.subscriptions.get())
    assert outbox.deliver(delivery) == DeliveryStatus.SENT
    test_key = "sundial/orders/test"
    assert fake.actions() == [("trigger", test_key), ("resolve", test_key)]
    assert fake.accepted()[0]["payload"]["summary"].startswith("Test from Sundial for orders")


def test_a_target_is_one_routing_key_or_the_default(settings):
    assert pagerduty.recipients(f" {KEY} ") == [KEY]
    settings.SUNDIAL_PAGERDUTY_ROUTING_KEY = ""
    with pytest.raises(ValidationError, match="there is no default"):
        pagerduty.recipients("")
    settings.SUNDIAL_PAGERDUTY_ROUTING_KEY = DEFAULT_KEY
    assert pagerduty.recipients("") == [""]
    for wrong, why in ((KEY[:-1], "this one has 31 characters"), (KEY[:-1] + "-", "others")):
        with pytest.raises(ValidationError, match="32 letters and digits") as raised:
            pagerduty.recipients(wrong)
        assert why in str(raised.value) and wrong not in str(raised.value)


def notice(event: Event, *, detail: str = "failed: load") -> Notice:
    return Notice(
        event=event,
        process="orders",
        title="orders is failing",
        detail=detail,
        url="http://testserver/processes/orders/",
        at=timezone.now(),
        dedup_key=FAILING,
    )


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_critical_process_failing_three_times_then_recovering_through_a_worker(
    ca, tmp_path, settings
):
    """The whole way: runs on a real worker, their ends noticed and sent by its tasks."""
    purge_task_queue()
    process = critical("nightly")
    task = TaskDefinition.objects.get(process=process)
    task.config = {"shell": "exit 1"}
    task.save()
    with FakePagerDuty(ca) as fake:
        worker = Worker(
            tmp_path,
            SUNDIAL_PAGERDUTY_EVENTS_URL=fake.url,
            SSL_CERT_FILE=str(write_ca(ca, tmp_path)),
        )
        try:
            for count, status in enumerate(("failed", "failed", "failed", "succeeded"), 1):
                if status == "succeeded":
                    task.config = {"command": ["true"]}
                    task.save()
                run = trigger_run(process, Trigger.API)
                wait_for(
                    lambda run=run: ProcessRun.objects.filter(
                        pk=run.pk, finished_at__isnull=False
                    ).first(),
                    timeout=30,
                )
                run.refresh_from_db()
                assert run.status == status
                fake.wait_for(count)
            # The fake has the last event; the worker records the send just after.
            wait_for(
                lambda: (
                    set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SENT}
                ),
                timeout=15,
            )
        finally:
            worker.kill()
            stop_task_processes()
    key = "sundial/nightly/failing"
    assert fake.actions() == [("trigger", key)] * 3 + [("resolve", key)]
    assert {event["routing_key"] for event in fake.accepted()} == {KEY}
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SENT}
