"""Notifications edited with their process: targets checked by their channel, credentials
never shown in full, a test sent on demand, deliveries and alerts to read."""

from __future__ import annotations

import pytest
from django.urls import reverse

from notifications.models import Delivery, Subscription
from tests.admin.posting import current_form, error_messages
from tests.conftest import make_process

pytestmark = pytest.mark.django_db

KEY = "R0utingKey" + "x" * 18 + "9a8b"  # 32 characters


def with_subscriptions(process, rows: list[dict], *, existing: int = 0) -> dict:
    data = current_form(process)
    data |= {
        "subscriptions-TOTAL_FORMS": str(len(rows)),
        "subscriptions-INITIAL_FORMS": str(existing),
    }
    for i, row in enumerate(rows):
        fields = {"policy": "on_state_change_and_failures", "secret": "", **row}
        data |= {f"subscriptions-{i}-{key}": value for key, value in fields.items()}
    return data


def change(process):
    return reverse("admin:jobs_processdefinition_change", args=[process.pk])


def test_targets_are_checked_by_their_channel(admin_client):
    process = make_process("orders")
    data = with_subscriptions(
        process,
        [
            {"channel": "email", "target": "ana@example.com, bo@"},
            {"channel": "webhook", "target": "https://hooks.example.com/x"},
            {"channel": "pagerduty", "target": "short"},
        ],
    )
    errors = error_messages(admin_client.post(change(process), data))
    assert any("bo@" in message for message in errors), errors
    assert "A webhook needs a secret to sign with." in errors
    assert any("32" in message for message in errors), errors
    assert not Subscription.objects.exists(), "nothing is saved while anything is wrong"


def test_credentials_are_written_never_read_back(admin_client):
    process = make_process("orders", critical=True)
    data = with_subscriptions(
        process,
        [
            {"channel": "pagerduty", "target": KEY},
            {"channel": "webhook", "target": "https://hooks.example.com/x", "secret": "s3cret!"},
        ],
    )
    assert admin_client.post(change(process), data).status_code == 302
    page = admin_client.get(change(process)).content.decode()
    assert KEY not in page and "s3cret!" not in page
    assert "R0ut…9a8b" in page, "enough of the key to tell which one it is"
    # Saving again with the boxes left empty keeps what is stored.
    pager, hook = Subscription.objects.order_by("pk")
    again = with_subscriptions(
        process,
        [
            {"id": str(pager.pk), "channel": "pagerduty", "target": ""},
            {"id": str(hook.pk), "channel": "webhook", "target": hook.target, "secret": ""},
        ],
        existing=2,
    )
    assert admin_client.post(change(process), again).status_code == 302
    pager.refresh_from_db(), hook.refresh_from_db()
    assert pager.target == KEY and hook.secret == "s3cret!"


def test_send_a_test_records_a_delivery_per_recipient(admin_client):
    process = make_process("orders")
    subscription = Subscription.objects.create(
        process=process, channel="email", target="ana@example.com, bo@example.com"
    )
    response = admin_client.post(
        reverse("admin:notifications_subscription_changelist"),
        {"action": "send_test", "_selected_action": [subscription.pk]},
        follow=True,
    )
    assert "2 test messages on the way" in response.content.decode()
    assert sorted(Delivery.objects.values_list("event", "target")) == [
        ("test", "ana@example.com"),
        ("test", "bo@example.com"),
    ]


def test_deliveries_show_a_slack_url_masked(admin_client):
    process = make_process("orders")
    url = "https://hooks.slack.com/services/T000/B000/secretpart"
    Subscription.objects.create(process=process, channel="slack", target=url)
    Delivery.objects.create(
        key="k", process=process, channel="slack", target=url, event="failed", error="timed out"
    )
    page = admin_client.get(reverse("admin:notifications_delivery_changelist")).content.decode()
    assert "secretpart" not in page and "http…part" in page and "timed out" in page
    listing = admin_client.get(reverse("admin:notifications_subscription_changelist"))
    assert "secretpart" not in listing.content.decode()
