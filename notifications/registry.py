"""The channel kinds: one table that the subscription's choices, the admin's help, target
validation and ``channel_for`` all come from (the same shape as executors/registry.py).

Each kind is a package ``notifications/<kind>/`` whose ``channel.py`` has
``channel() -> Channel`` (this process's sender, built on first use) and
``recipients(target) -> list[str]`` (the one or more recipients a subscription's target
names, or a ValidationError that says what is wrong with it).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import import_module
from types import ModuleType

from notifications.base import Channel, ChannelError


@dataclass(frozen=True)
class ChannelKind:
    name: str  # stored on every subscription and delivery
    label: str
    target_help: str  # what the target is, with an example
    incidents: bool = False  # hears alerts as incidents (trigger, resolve), not run reports
    secret_target: bool = False  # the target is a credential: never shown in full
    signed: bool = False  # the subscription has a signing secret
    offered: bool = True  # shown in the admin; the in-memory channel is for tests only

    @property
    def module(self) -> ModuleType:
        return import_module(f"notifications.{self.name}.channel")

    def recipients(self, target: str) -> list[str]:
        """The recipients ``target`` names; ValidationError saying what is wrong."""
        found: list[str] = self.module.recipients(target)
        return found


KINDS: dict[str, ChannelKind] = {
    kind.name: kind
    for kind in (
        ChannelKind(
            "email",
            "Email",
            "One or more addresses, separated by commas: data-team@example.com, ana@example.com",
        ),
        ChannelKind(
            "pagerduty",
            "PagerDuty",
            "The Events API v2 integration key (routing key) of the service to page; empty:"
            " SUNDIAL_PAGERDUTY_ROUTING_KEY. Pages only for critical processes.",
            incidents=True,
            secret_target=True,
        ),
        ChannelKind(
            "webhook",
            "Webhook",
            "An http(s) URL that receives a JSON POST, signed with the secret:"
            " https://hooks.example.com/sundial",
            signed=True,
        ),
        ChannelKind(
            "slack",
            "Slack",
            "A Slack incoming-webhook URL: https://hooks.slack.com/services/T000/B000/XXXX",
            secret_target=True,
        ),
        ChannelKind(
            "memory",
            "In memory (tests)",
            "Any text: deliveries are recorded in this process; a target containing"
            " 'fail' or 'refuse' fails for now or for good.",
            offered=False,
        ),
    )
}


def choices() -> list[tuple[str, str]]:
    return [(kind.name, kind.label) for kind in KINDS.values() if kind.offered]


def kind_of(name: str) -> ChannelKind:
    kind = KINDS.get(name)
    if kind is None:
        raise ChannelError(f"unknown channel kind {name!r}", permanent=True)
    return kind


@cache
def channel_for(name: str) -> Channel:
    """This process's sender for a kind (one per process: channels may pool connections)."""
    channel: Channel = kind_of(name).module.channel()
    return channel


def masked(target: str) -> str:
    """A credential as a person may see it: enough to tell two apart, never enough to use."""
    if len(target) <= 8:
        return "•" * len(target)
    return f"{target[:4]}…{target[-4:]}"


def shown_target(channel: str, target: str) -> str:
    """A target as the pages show it: credentials masked, the default service named."""
    if not target:
        return "the default service" if channel == "pagerduty" else "—"
    kind = KINDS.get(channel)
    return masked(target) if kind is not None and kind.secret_target else target
