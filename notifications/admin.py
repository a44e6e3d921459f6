"""Subscriptions edited with their process; deliveries and alerts to read (and a test to
send), never to edit: they are the record of what was said."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from notifications import outbox
from notifications.forms import SubscriptionForm
from notifications.models import Alert, Delivery, Subscription
from notifications.registry import shown_target


class SubscriptionInline(admin.TabularInline):
    model = Subscription
    form = SubscriptionForm
    extra = 0
    fields = ["channel", "target", "policy", "secret", "health"]
    readonly_fields = ["health"]
    verbose_name = "notification"
    verbose_name_plural = "notifications (who hears of this process's runs and alerts)"

    @admin.display(description="health")
    def health(self, subscription: Subscription) -> str:
        return health(subscription)


def health(subscription: Subscription) -> str:
    if subscription.broken_at is None:
        return "working" if subscription.pk else ""
    return (
        f"refused since {subscription.broken_at:%Y-%m-%d %H:%M:%S %Z}: {subscription.broken_reason}"
    )


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    form = SubscriptionForm
    list_display = ["process", "channel", "recipient", "policy", "state"]
    list_filter = ["channel", "policy", ("broken_at", admin.EmptyFieldListFilter)]
    search_fields = ["process__name", "target"]
    list_select_related = ["process"]
    fields = ["process", "channel", "target", "policy", "secret"]
    actions = ["send_test"]

    @admin.display(description="recipient")
    def recipient(self, subscription: Subscription) -> str:
        return shown_target(subscription.channel, subscription.target)

    @admin.display(description="state")
    def state(self, subscription: Subscription) -> str:
        return health(subscription)

    @admin.action(description="Send a test to the selected subscriptions")
    def send_test(self, request: HttpRequest, chosen: QuerySet[Subscription]) -> None:
        count = sum(len(outbox.send_test(subscription)) for subscription in chosen)
        messages.success(
            request,
            f"{count} test message{'s' if count != 1 else ''} on the way: their outcome is"
            " listed under Deliveries.",
        )


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    # What a person looks for first, before the table scrolls: when, what, how it went.
    list_display = [
        "created_at",
        "process",
        "event",
        "status",
        "channel",
        "recipient",
        "attempts",
        "error_text",
    ]
    list_filter = ["status", "channel", "event"]
    search_fields = ["process__name", "error"]
    list_select_related = ["process"]
    date_hierarchy = "created_at"
    fields = [
        "process",
        "run_link",
        "alert",
        "channel",
        "recipient",
        "event",
        "status",
        "attempts",
        "error",
        "created_at",
        "next_try_at",
        "claimed_at",
        "finished_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="recipient")
    def recipient(self, delivery: Delivery) -> str:
        return shown_target(delivery.channel, delivery.target)

    @admin.display(description="error")
    def error_text(self, delivery: Delivery) -> str:
        return delivery.error[:120]

    @admin.display(description="run")
    def run_link(self, delivery: Delivery) -> str:
        if delivery.run_id is None:
            return "—"
        url = reverse("run", args=[delivery.run_id])
        return format_html('<a href="{}">run {}</a>', url, delivery.run_id)


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["opened_at", "process", "kind", "resolved_at", "message", "resolution"]
    list_filter = ["kind", ("resolved_at", admin.EmptyFieldListFilter)]
    search_fields = ["process__name", "message"]
    list_select_related = ["process"]
    fields = ["process", "kind", "key", "message", "opened_at", "resolved_at", "resolution"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
