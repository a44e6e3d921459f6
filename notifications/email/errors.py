"""How the mail server's refusals and the network's failures read, and which are for good.

An SMTP answer in the 5xx range is final (RFC 5321): trying again cannot help, so the
delivery fails and its subscription is flagged. A 4xx answer (greylisting, a full mailbox,
a busy server) and every network failure are for now: the outbox tries again later.

A refusal of Sundial's own mail settings (its login, its sender address, TLS) is no
subscription's fault: flagging every email subscription "refused" would blame the wrong
thing, and once the settings are fixed the messages should still go. Those are tried again
like a network failure, and say which setting to fix.
"""

from __future__ import annotations

import smtplib
import socket

from django.conf import settings

from notifications.base import ChannelError


def classify(error: Exception, address: str) -> ChannelError | None:
    """The ChannelError a failed send is, in words a person can act on; None if ``error``
    is neither the mail server's nor the network's (a bug: let it be seen as one)."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, said = error.recipients.get(address) or next(iter(error.recipients.values()))
        return _answer(f"the mail server refused {address}", code, said)
    if isinstance(error, smtplib.SMTPSenderRefused):
        return _settings(
            f"the mail server refused the sender {_text(error.sender)} (DEFAULT_FROM_EMAIL)",
            error.smtp_code,
            error.smtp_error,
        )
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return _settings(
            f"the mail server did not accept the login of {settings.EMAIL_HOST_USER!r}"
            " (EMAIL_HOST_USER, EMAIL_HOST_PASSWORD)",
            error.smtp_code,
            error.smtp_error,
        )
    if isinstance(error, smtplib.SMTPDataError):
        return _answer(
            f"the mail server refused the message to {address}", error.smtp_code, error.smtp_error
        )
    if isinstance(error, smtplib.SMTPResponseException):
        return _answer("the mail server answered", error.smtp_code, error.smtp_error)
    if isinstance(error, smtplib.SMTPNotSupportedError):
        return ChannelError(
            f"the mail server at {_server()} does not support it: {error}"
            f" (check EMAIL_USE_TLS and EMAIL_USE_SSL); {_UNTIL_FIXED}"
        )
    if isinstance(error, smtplib.SMTPServerDisconnected):
        return ChannelError(f"the mail server at {_server()} closed the connection: {error}")
    if isinstance(error, smtplib.SMTPException):
        return ChannelError(f"sending to {address} through {_server()} failed: {error}")
    if isinstance(error, ConnectionRefusedError):
        return ChannelError(f"the mail server at {_server()} refused the connection")
    if isinstance(error, TimeoutError):  # socket.timeout is TimeoutError since 3.10
        return ChannelError(
            f"the mail server at {_server()} did not answer within {settings.EMAIL_TIMEOUT} s"
        )
    if isinstance(error, socket.gaierror):
        return ChannelError(f"cannot find the mail server {settings.EMAIL_HOST!r}: {error}")
    if isinstance(error, OSError):
        return ChannelError(f"cannot reach the mail server at {_server()}: {error}")
    return None


def _answer(what: str, code: int, said: bytes | str) -> ChannelError:
    """The server's own answer, quoted, final unless it is a 4xx "not now"."""
    text = " ".join(_text(said).split())
    return ChannelError(f"{what}: {code} {text}".rstrip(), permanent=not 400 <= code < 500)


_UNTIL_FIXED = "tried again until Sundial's mail settings are fixed"


def _settings(what: str, code: int, said: bytes | str) -> ChannelError:
    """A refusal of Sundial's own settings, quoted: for now, whatever its code."""
    text = " ".join(_text(said).split())
    return ChannelError(f"{what}: {code} {text}; {_UNTIL_FIXED}")


def _text(said: bytes | str) -> str:
    return said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)


def _server() -> str:
    return f"{settings.EMAIL_HOST or 'localhost'}:{settings.EMAIL_PORT}"
