"""The outbox: every send recorded before it is tried, claimed once, retried with backoff,
ordered per incident, and re-sent by the reconciler when the broker loses it."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.models import ProcessDefinition, ProcessRun, RunEnding
from notifications import outbox, registry
from notifications.decide import AlertKind, Event
from notifications.memory.channel import SHARED
from notifications.models import Alert, Delivery, DeliveryStatus, RunNotice, Subscription
from tests.conftest import make_process
from tests.notifications.flow import end, finish, make_due, send_due

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def memory_channel():
    SHARED.reset()
    yield SHARED
    SHARED.reset()


@pytest.fixture
def pager(monkeypatch):
    """The in-memory channel, as an incident channel (the way PagerDuty hears)."""
    monkeypatch.setitem(registry.KINDS, "memory", replace(registry.KINDS["memory"], incidents=True))


def sent(channel) -> list[tuple[str, str, str]]:
    return [(o.target, o.notice.event.value, o.notice.title) for o in channel.sent]


def test_one_delivery_per_recipient_sent_once(memory_channel):
    process = make_process("orders")
    Subscription.objects.create(process=process, channel="memory", target="ana, bo")
    run = finish(process, "failed", "failed: load")
    send_due()
    assert sent(memory_channel) == [
        ("ana", "failed", f"orders run {run.pk} failed"),
        ("bo", "failed", f"orders run {run.pk} failed"),
    ]
    # The broker repeats both messages: nothing is decided or sent twice.
    assert outbox.notice_run(run.pk) == []
    assert send_due() == [] and len(memory_channel.sent) == 2
    assert RunNotice.objects.filter(ending__run=run).count() == 1


def test_a_run_retried_in_place_is_news_again_when_it_ends_again(memory_channel):
    process = make_process("orders")
    Subscription.objects.create(process=process, channel="memory", target="ana", policy="always")
    run = finish(process, "failed")
    end(run, "succeeded")
    send_due()
    assert [event for _, event, _ in sent(memory_channel)] == ["failed", "recovered"]


def test_a_temporary_error_is_tried_again_later_and_a_lasting_one_gives_up(
    memory_channel, settings
):
    settings.SUNDIAL_DELIVERY_MAX_ATTEMPTS = 3
    process = make_process("orders")
    Subscription.objects.create(process=process, channel="memory", target="ana")
    finish(process, "failed")
    memory_channel.failures = 1
    assert send_due() == [DeliveryStatus.PENDING]
    delivery = Delivery.objects.get()
    assert delivery.attempts == 1 and delivery.next_try_at > timezone.now()
    assert "unreachable for now" in delivery.error
    assert send_due() == [None], "not due yet: nothing is sent"
    make_due()
    assert send_due() == [DeliveryStatus.SENT] and len(memory_channel.sent) == 1
    # Failing for good after the most attempts allowed.
    Subscription.objects.create(process=process, channel="memory", target="fails-always")
    finish(process, "failed")
    for _ in range(3):
        make_due()
        send_due()
    gave_up = Delivery.objects.get(target="fails-always")
    assert gave_up.status == DeliveryStatus.FAILED and gave_up.attempts == 3
    assert gave_up.error.startswith("gave up after 3 attempts")


def test_a_refusal_fails_at_once_and_flags_the_subscription_until_a_send_works(
    memory_channel,
):
    process = make_process("orders")
    refused = Subscription.objects.create(process=process, channel="memory", target="refuse-me")
    finish(process, "failed")
    assert send_due() == [DeliveryStatus.FAILED]
    refused.refresh_from_db()
    assert refused.broken_at is not None and "refused" in refused.broken_reason
    refused.target = "ana"
    refused.save()
    finish(process, "failed")
    send_due()
    refused.refresh_from_db()
    assert refused.broken_at is None and refused.broken_reason == ""


def test_a_claim_lost_to_another_worker_sends_nothing(memory_channel):
    process = make_process("orders")
    Subscription.objects.create(process=process, channel="memory", target="ana")
    finish(process, "failed")
    delivery = Delivery.objects.get()
    # Another worker claimed it between this worker's read and its claim.
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.SENDING, attempts=1)
    assert outbox.deliver(delivery.pk) is None and memory_channel.sent == []


def test_the_reconciler_resends_lost_messages_and_sends_stuck_ones_again(
    memory_channel, monkeypatch
):
    enqueued = []
    monkeypatch.setattr(
        outbox.dispatch, "after_commit", lambda name, *args, **kw: enqueued.append((name, args))
    )
    process = make_process("orders")
    Subscription.objects.create(process=process, channel="memory", target="ana")
    long_ago = timezone.now() - timedelta(minutes=20)
    # A run whose end was never noticed (the message was lost).
    lost = ProcessRun.objects.create(
        definition=process, snapshot={}, trigger="manual", status="failed", finished_at=long_ago
    )
    RunEnding.objects.create(run=lost, definition=process, status="failed", at=long_ago)
    # A delivery whose message was lost, and one whose worker died while sending it.
    finish(process, "failed")
    finish(process, "failed")
    waiting, stuck = Delivery.objects.order_by("pk")
    Delivery.objects.filter(pk=waiting.pk).update(created_at=long_ago)
    Delivery.objects.filter(pk=stuck.pk).update(
        created_at=long_ago, status=DeliveryStatus.SENDING, attempts=1, claimed_at=long_ago
    )
    enqueued.clear()
    assert outbox.reconcile() == 3
    assert sorted(enqueued) == sorted(
        [
            (outbox.DELIVER, (waiting.pk,)),
            (outbox.DELIVER, (stuck.pk,)),
            (outbox.dispatch.NOTICE, (lost.pk,)),
        ]
    )
    assert Delivery.objects.get(pk=stuck.pk).status == DeliveryStatus.PENDING
    assert outbox.deliver(stuck.pk) == DeliveryStatus.SENT


@pytest.mark.usefixtures("pager")
def test_fail_fail_succeed_is_one_incident_updated_then_resolved(memory_channel):
    process = make_process("orders", critical=True)
    Subscription.objects.create(process=process, channel="memory", target="pager")
    for status in ("failed", "failed", "succeeded", "succeeded"):
        finish(process, status)
        send_due()
    events = [(o.notice.event, o.notice.dedup_key) for o in memory_channel.sent]
    key = "sundial/orders/failing"
    assert events == [(Event.ALERT, key), (Event.ALERT, key), (Event.RESOLVED, key)]
    alert = Alert.objects.get()
    assert alert.kind == AlertKind.FAILING and alert.resolved_at is not None


@pytest.mark.usefixtures("pager")
def test_the_resolve_goes_where_the_trigger_went_whatever_changed_since(memory_channel):
    process = make_process("orders", critical=True)
    Subscription.objects.create(process=process, channel="memory", target="pager")
    finish(process, "failed")
    send_due()
    # Made non-critical and renamed while failing: the incident is resolved all the same,
    # under the key it was opened with.
    ProcessDefinition.objects.filter(pk=process.pk).update(critical=False, name="orders-v2")
    process.refresh_from_db()
    finish(process, "succeeded")
    send_due()
    assert [(o.notice.event, o.notice.dedup_key) for o in memory_channel.sent] == [
        (Event.ALERT, "sundial/orders/failing"),
        (Event.RESOLVED, "sundial/orders/failing"),
    ]
    # A subscription added since never heard of the incident: it hears no resolve.
    assert Delivery.objects.filter(event=Event.RESOLVED).count() == 1


@pytest.mark.usefixtures("pager")
def test_a_resolve_never_overtakes_its_trigger(memory_channel):
    process = make_process("orders", critical=True)
    Subscription.objects.create(process=process, channel="memory", target="pager")
    finish(process, "failed")
    memory_channel.failures = 1
    send_due()  # the trigger fails for now
    finish(process, "succeeded")
    _trigger, resolve = Delivery.objects.order_by("pk")
    assert outbox.deliver(resolve.pk) is None, "the resolve waits for its trigger"
    assert memory_channel.sent == []
    make_due()
    send_due()
    assert [o.notice.event for o in memory_channel.sent] == [Event.ALERT, Event.RESOLVED]


@pytest.mark.usefixtures("pager")
def test_a_critical_process_pages_after_n_failures_in_a_row(memory_channel):
    process = make_process("orders", critical=True, page_after_failures=3)
    Subscription.objects.create(process=process, channel="memory", target="pager")
    for status in ("failed", "failed", "killed", "failed", "failed"):
        finish(process, status)
    send_due()
    assert memory_channel.sent == [], "a kill breaks the row: only two failures since"
    finish(process, "failed")
    send_due()
    assert [o.notice.event for o in memory_channel.sent] == [Event.ALERT]


def test_the_default_pagerduty_service_pages_critical_processes_without_their_own(settings):
    settings.SUNDIAL_PAGERDUTY_ROUTING_KEY = "k" * 32
    critical = make_process("orders", critical=True)
    finish(critical, "failed")
    (delivery,) = Delivery.objects.all()
    assert (delivery.channel, delivery.target, delivery.subscription) == ("pagerduty", "", None)
    calm = make_process("reports")
    finish(calm, "failed")
    own = make_process("billing", critical=True)
    Subscription.objects.create(process=own, channel="pagerduty", target="p" * 32)
    finish(own, "failed")
    assert list(Delivery.objects.values_list("process__name", "target").order_by("pk")) == [
        ("orders", ""),
        ("billing", "p" * 32),
    ]


def test_an_alert_told_and_resolved_once(memory_channel):
    process = make_process("orders")
    Subscription.objects.create(process=process, channel="memory", target="ana")
    alert = Alert.objects.create(
        process=process, kind=AlertKind.MISSED_START, key="2026-12-02T10:00", message="late"
    )
    outbox.tell_alert(alert)
    outbox.tell_alert(alert)
    assert outbox.resolve(alert, "it started") and not outbox.resolve(alert, "again")
    outbox.tell_resolved(alert)
    send_due()
    assert [(o.notice.event, o.notice.title) for o in memory_channel.sent] == [
        (Event.ALERT, "orders did not start on time"),
        (Event.RESOLVED, "orders did not start on time: resolved"),
    ]
