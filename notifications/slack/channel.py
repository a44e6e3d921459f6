"""Slack: a compact message to an incoming webhook (https://api.slack.com/messaging/webhooks).

One section: an emoji for the news, the title linked to the run (or process) page, the
detail, and the names of the tasks that failed; ``text`` carries the same news on one line
for notifications and clients that do not show blocks. The webhook URL is a credential
(whoever has it can post to the channel): errors show it masked.
"""

from __future__ import annotations

import ssl

from notifications import http
from notifications.base import Notice, Outgoing
from notifications.decide import Event

RED, GREEN, INFO = ":red_circle:", ":white_check_mark:", ":information_source:"
EMOJI = {
    Event.FAILED: RED,
    Event.KILLED: RED,
    Event.ALERT: RED,
    Event.SUCCEEDED: GREEN,
    Event.RECOVERED: GREEN,
    Event.RESOLVED: GREEN,
    Event.TEST: INFO,
}
FAILED_TASKS = ("failed", "timed_out")
DETAIL_SHOWN = 1000  # characters of the detail (a section's text may hold 3,000)
TASKS_SHOWN = 10


class SlackChannel:
    def __init__(self) -> None:
        self.timeout_s = http.TIMEOUT_S
        self.context: ssl.SSLContext | None = None  # the TLS trust; None: the system's

    def notify(self, outgoing: Outgoing) -> None:
        http.post_json(
            outgoing.target,
            http.dumps(message(outgoing.notice)),
            timeout_s=self.timeout_s,
            context=self.context,
            secret_url=True,
        )


def message(notice: Notice) -> dict[str, object]:
    """The message's JSON: a one-line ``text`` and a section of Slack mrkdwn."""
    emoji = EMOJI.get(notice.event, INFO)
    title = escape(notice.title)
    # Only an absolute link is a link in Slack; "|" and ">" would end it early.
    if notice.url.startswith(("https://", "http://")):
        url = escape(notice.url).replace("|", "%7C")
        heading = f"*<{url}|{title}>*"
    else:
        heading = f"*{title}*"
    lines = [f"{emoji} {heading}"]
    if notice.detail:
        lines.append(escape(_shortened(notice.detail, DETAIL_SHOWN)))
    failed = [task.name for task in notice.tasks if task.status in FAILED_TASKS]
    if failed:
        more = len(failed) - TASKS_SHOWN
        names = ", ".join(escape(name) for name in failed[:TASKS_SHOWN])
        lines.append(f"Failed tasks: {names}{f' and {more} more' if more > 0 else ''}")
    said = f"{notice.title}: {notice.detail}" if notice.detail else notice.title
    return {
        "text": f"{emoji} {escape(_shortened(' '.join(said.split()), 300))}",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}],
    }


def escape(text: str) -> str:
    """Text as Slack shows it literally: &, < and > are its markup, the rest is text."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _shortened(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


_SHARED = SlackChannel()


def channel() -> SlackChannel:
    return _SHARED


def recipients(target: str) -> list[str]:
    """The one incoming-webhook URL a Slack subscription posts to."""
    return http.one_url(
        target,
        ["https"],
        "Enter the Slack incoming-webhook URL, such as"
        " https://hooks.slack.com/services/T000/B000/XXXX (it starts with https://).",
    )
