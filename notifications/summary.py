"""What the process page says about a process's notifications: who hears of it (and whether
their channel refuses), and which alerts are open."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import CharField, Value

from jobs.models import ProcessDefinition
from notifications.decide import POLICY_LABELS, AlertKind, Policy
from notifications.models import Alert, Subscription
from notifications.notice import ALERT_TITLES
from notifications.registry import KINDS, shown_target


@dataclass(frozen=True)
class Listener:
    channel: str  # its label: "Email"
    recipient: str  # credentials masked
    hears: str  # the policy in words
    refused: str = ""  # why its channel refuses it for good, "" while it works
    since: datetime | None = None


@dataclass(frozen=True)
class OpenAlert:
    title: str  # "did not start on time"
    message: str
    since: datetime


@dataclass(frozen=True)
class Summary:
    listeners: list[Listener]
    alerts: list[OpenAlert]


def summary(process: ProcessDefinition) -> Summary:
    """One query: the process's subscriptions and its open alerts, as rows of one UNION
    (the process page keeps to ten queries)."""
    text = CharField()
    # Without the models' orderings: SQLite allows no ORDER BY inside a UNION's parts.
    subscriptions = (
        Subscription.objects.filter(process=process)
        .order_by()
        .values_list(
            Value("subscription", output_field=text),
            "channel",
            "target",
            "policy",
            "broken_reason",
            "broken_at",
            "id",
        )
    )
    alerts = (
        Alert.objects.filter(process=process, resolved_at__isnull=True)
        .order_by()
        .values_list(
            Value("alert", output_field=text),
            "kind",
            "key",
            Value("", output_field=text),
            "message",
            "opened_at",
            "id",
        )
    )
    listeners, opened = [], []
    pages_itself = False
    for row, name, target, policy, words, when, _ in sorted(
        subscriptions.union(alerts, all=True), key=lambda r: (r[0], r[6])
    ):
        if row == "alert":
            opened.append(OpenAlert(ALERT_TITLES[AlertKind(name)], words, when))
            continue
        kind = KINDS.get(name)
        pages_itself |= name == "pagerduty"
        listeners.append(
            Listener(
                channel=kind.label if kind else name,
                recipient=shown_target(name, target),
                hears=_hears(name, policy, process),
                refused=words if when is not None else "",
                since=when,
            )
        )
    if process.critical and settings.SUNDIAL_PAGERDUTY_ROUTING_KEY and not pages_itself:
        listeners.append(
            Listener("PagerDuty", "the default service", _hears("pagerduty", "", process))
        )
    return Summary(listeners, opened)


def _hears(channel: str, policy: str, process: ProcessDefinition) -> str:
    kind = KINDS.get(channel)
    if policy == Policy.NEVER:
        return POLICY_LABELS[Policy.NEVER]
    if kind is not None and kind.incidents:
        if not process.critical:
            return "nothing: only critical processes page"
        after = process.page_after_failures
        return "pages when it fails" + (f" {after} times in a row" if after > 1 else "")
    try:
        return POLICY_LABELS[Policy(policy)]
    except ValueError:  # a value written outside the admin: shown as it is
        return policy
