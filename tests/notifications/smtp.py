"""A real SMTP server in the test process (aiosmtpd), on 127.0.0.1 and a free port: it
keeps every message it accepts, and refuses the recipients it is told to refuse."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from dataclasses import dataclass, field
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session


@dataclass(frozen=True)
class Received:
    sender: str
    recipients: tuple[str, ...]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    def part(self, content_type: str) -> str:
        """The decoded text of the message's ``text/plain`` or ``text/html`` part."""
        found = self.message.get_body(preferencelist=(content_type.split("/")[1],))
        assert found is not None and found.get_content_type() == content_type, content_type
        return str(found.get_content())


@dataclass
class Handler:
    """aiosmtpd's handler: what the server accepted, and whom it refuses ("550 ...")."""

    received: list[Received] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # address -> the whole answer
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        answer = self.refused.get(address)
        if answer is not None:
            return answer
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        with self._lock:
            self.received.append(
                Received(str(envelope.mail_from), tuple(envelope.rcpt_tos), parsed)
            )
        return "250 Message accepted"


class SmtpServer:
    """The server, on a port chosen up front, so a test can send to it before it is up."""

    def __init__(self) -> None:
        self.handler = Handler()
        self.host = "127.0.0.1"
        self.port = free_port()
        self._controller: Controller | None = None

    @property
    def received(self) -> list[Received]:
        with self.handler._lock:
            return list(self.handler.received)

    def to(self, address: str) -> list[Received]:
        return [message for message in self.received if address in message.recipients]

    def refuse(self, address: str, answer: str = "550 no such user") -> None:
        self.handler.refused[address] = answer

    def accept(self, address: str) -> None:
        self.handler.refused.pop(address, None)

    def start(self) -> None:
        self._controller = Controller(self.handler, hostname=self.host, port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def serve_mail(settings) -> SmtpServer:
    """A server, not started yet, that Django's mail API sends to by SMTP from now on
    (``settings``: pytest-django's fixture, which puts the settings back afterwards)."""
    server = SmtpServer()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = server.host, server.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    settings.DEFAULT_FROM_EMAIL = "sundial@example.com"
    return server
