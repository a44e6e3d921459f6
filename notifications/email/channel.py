"""Sends one notice to one address through Django's mail API, on the SMTP server the EMAIL_*
settings name (a new connection per message: deliveries are few, and a pooled connection
would outlive a server that restarted)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.validators import validate_email

from notifications.base import ChannelError, Outgoing
from notifications.email.errors import classify
from notifications.email.message import render

# RFC 3834: an automatic message, so out-of-office replies are not sent back to it.
HEADERS = {"Auto-Submitted": "auto-generated"}


class EmailChannel:
    def notify(self, outgoing: Outgoing) -> None:
        """Send the notice to ``outgoing.target``, or raise ChannelError."""
        address = outgoing.target
        try:
            (address,) = recipients(address)
        except ValueError:
            raise ChannelError(f"{address!r} is more than one address", permanent=True) from None
        except ValidationError as error:
            raise ChannelError(" ".join(error.messages), permanent=True) from None
        rendered = render(outgoing.notice)
        message = EmailMultiAlternatives(
            subject=rendered.subject,
            body=rendered.text,
            to=[address],
            headers={**HEADERS, "X-Sundial-Process": outgoing.notice.process},
            connection=get_connection(fail_silently=False),
        )
        message.attach_alternative(rendered.html, "text/html")
        try:
            message.send()
        except Exception as error:
            refusal = classify(error, address)
            if refusal is None:
                raise
            raise refusal from error


def channel() -> EmailChannel:
    return EmailChannel()


def recipients(target: str) -> list[str]:
    """The addresses a target names, separated by commas; ValidationError naming a bad one."""
    addresses = [address.strip() for address in target.split(",") if address.strip()]
    if not addresses:
        raise ValidationError("Name at least one email address.")
    for address in addresses:
        try:
            validate_email(address)
        except ValidationError:
            raise ValidationError(
                "%(address)s is not an email address.",
                code="invalid",
                params={"address": repr(address)},
            ) from None
    return addresses
