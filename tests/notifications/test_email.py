"""The email channel against a real SMTP server in the test process: one message per
recipient with both parts, what each policy sends over a run of failures and successes,
a refused address flagging its subscription, and a server that is down for a while."""

from __future__ import annotations

import smtplib
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from jobs.models import TaskRun
from notifications import outbox
from notifications.base import ChannelError, Notice, Outgoing
from notifications.decide import AlertKind, Event
from notifications.email.channel import channel, recipients
from notifications.email.errors import classify
from notifications.models import Delivery, DeliveryStatus, Subscription
from tests.conftest import make_process
from tests.notifications.flow import finish, make_due, send_due
from tests.notifications.smtp import SmtpServer, serve_mail

BASE_URL = "https://sundial.example.com"


@pytest.fixture(autouse=True)
def _base_url(settings):
    settings.SUNDIAL_BASE_URL = BASE_URL


@pytest.fixture
def smtp_down(settings) -> Iterator[SmtpServer]:
    """The mail server Django sends to, not up yet (``start()`` it)."""
    server = serve_mail(settings)
    yield server
    server.stop()


@pytest.fixture
def smtp(smtp_down: SmtpServer) -> SmtpServer:
    """The mail server Django sends to, up."""
    smtp_down.start()
    return smtp_down


def subscribe(process, target: str, policy: str = "on_state_change_and_failures"):
    return Subscription.objects.create(
        process=process, channel="email", target=target, policy=policy
    )


def attempt(run, task: str, status: str, number: int = 1, log: list[str] | None = None, **fields):
    """A local attempt of ``task``; with ``log``, the lines of its log file."""
    log_ref = ""
    if log is not None:
        log_dir = Path(django_settings.SUNDIAL_LOG_DIR)  # where the local executor keeps logs
        log_dir.mkdir(parents=True, exist_ok=True)
        path = log_dir / f"email-{run.pk}-{task}-{number}.log"
        path.write_text("".join(f"{line}\n" for line in log))
        log_ref = str(path)
    finished = timezone.now()
    return TaskRun.objects.create(
        run=run,
        task_name=task,
        number=number,
        executor="local",
        status=status,
        log_ref=log_ref,
        started_at=finished - timedelta(seconds=65),
        finished_at=finished,
        **fields,
    )


# ---- addresses ----------------------------------------------------------------------------


def test_a_target_names_one_or_more_addresses_separated_by_commas():
    assert recipients("ana@example.com") == ["ana@example.com"]
    assert recipients(" ana@example.com,bo@example.com , ") == ["ana@example.com", "bo@example.com"]


@pytest.mark.parametrize(
    ("target", "problem"),
    [
        ("ana@", "'ana@' is not an email address"),
        ("ana@example.com, bo at example.com", "'bo at example.com' is not an email address"),
        ("", "at least one"),
        (" , ", "at least one"),
    ],
)
def test_a_target_that_is_not_addresses_says_which_part_is_wrong(target, problem):
    with pytest.raises(ValidationError) as raised:
        recipients(target)
    assert problem in " ".join(raised.value.messages)


# ---- what a message says ------------------------------------------------------------------


@pytest.mark.django_db
def test_a_failed_run_sends_one_message_per_recipient_with_its_tasks_and_log(smtp):
    process = make_process("orders-etl")
    subscribe(process, "ana@example.com, bo@example.com")
    run = finish(process, "failed", "task load failed after 2 attempts")
    # The attempts are read when the message is written, at its send.
    extract = attempt(run, "extract", "succeeded", log=["reading orders"])
    attempt(run, "load", "failed", reason="exit code 1", log=["first try"])
    log = [f"line {i}" for i in range(1, 60)] + ["<script>alert('owned')</script>"]
    load = attempt(run, "load", "failed", number=2, reason="exit code 3", log=log)

    assert send_due() == [DeliveryStatus.SENT, DeliveryStatus.SENT]

    assert sorted(m.recipients for m in smtp.received) == [
        ("ana@example.com",),
        ("bo@example.com",),
    ]
    for received in smtp.received:
        message = received.message
        assert received.subject == f"[Sundial] orders-etl run {run.pk} failed"
        assert message["From"] == "sundial@example.com"
        assert message["To"] in ("ana@example.com", "bo@example.com"), "never both in To"
        assert message["Auto-Submitted"] == "auto-generated"
        text, html = received.part("text/plain"), received.part("text/html")
        run_url = f"{BASE_URL}/runs/{run.pk}/"
        load_log = f"{BASE_URL}/task-runs/{load.pk}/log"
        for part in (text, html):
            assert run_url in part and load_log in part
            assert f"{BASE_URL}/task-runs/{extract.pk}/log" in part
            assert "task load failed after 2 attempts" in part
            assert "3m 00s" in part, "the run's duration"
            assert "line 11" in part and "line 10\n" not in part, "the last 50 lines"
            assert "first try" not in part, "the latest attempt's log only"
            assert "reading orders" not in part, "no log of a task that succeeded"
        assert "- load: failed, 2 attempts, 1m 05s: exit code 3" in text
        assert "- extract: succeeded, 1 attempt, 1m 05s" in text
        assert "  <script>alert('owned')</script>" in text, "plain text is not escaped"
        assert "<script>" not in html
        assert "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt;" in html
        assert f'<a href="{load_log}"' in html and f'<a href="{run_url}"' in html
        for heading in ("Task", "Status", "Attempts", "Duration", "Reason"):
            assert f">{heading}</th>" in html


POLICIES = {
    "always": ["failed", "failed", "recovered: it succeeded", "succeeded", "failed"],
    "on_failure": ["failed", "failed", "failed"],
    "on_state_change": ["failed", "recovered: it succeeded", "failed"],
    "on_state_change_and_failures": ["failed", "failed", "recovered: it succeeded", "failed"],
    "never": [],
}


@pytest.mark.django_db
def test_each_policy_sends_what_it_promises_over_fail_fail_succeed_succeed_fail(smtp):
    process = make_process("orders-etl")
    for policy in POLICIES:
        subscribe(process, f"{policy}@example.com", policy)
    runs = []
    for status in ["failed", "failed", "succeeded", "succeeded", "failed"]:
        runs.append(finish(process, status))
        assert set(send_due()) <= {DeliveryStatus.SENT}

    said = {f"orders-etl run {run.pk} {word}" for run in runs for word in POLICIES["always"]}
    for policy, expected in POLICIES.items():
        subjects = [m.subject.removeprefix("[Sundial] ") for m in smtp.to(f"{policy}@example.com")]
        assert [subject.split(" ", 3)[3] for subject in subjects] == expected, policy
        assert set(subjects) <= said
    assert [m.subject for m in smtp.to("always@example.com")] == [
        f"[Sundial] orders-etl run {run.pk} {word}"
        for run, word in zip(runs, POLICIES["always"], strict=True)
    ], "in order, each naming its run"
    assert len(smtp.received) == sum(len(expected) for expected in POLICIES.values())


@pytest.mark.django_db
def test_an_alert_its_resolution_and_a_test_read_as_what_they_are(smtp):
    at = timezone.now()
    alert = Notice(
        event=Event.ALERT,
        process="orders-etl",
        title="orders-etl did not start on time",
        detail="the run due at 06:00 had not started by 06:15",
        url=f"{BASE_URL}/processes/orders-etl/",
        at=at,
        alert=AlertKind.MISSED_START,
    )
    resolved = Notice(
        event=Event.RESOLVED,
        process="orders-etl",
        title="orders-etl recovered",
        detail="run 43 started at 06:20",
        url=f"{BASE_URL}/processes/orders-etl/",
        at=at,
        alert=AlertKind.MISSED_START,
    )
    test = Notice(
        event=Event.TEST,
        process="orders-etl",
        title="Test from Sundial for orders-etl",
        detail="This subscription works: Sundial can reach it.",
        url=f"{BASE_URL}/processes/orders-etl/",
        at=at,
    )
    for notice in (alert, resolved, test):
        channel().notify(Outgoing("ana@example.com", notice))

    subjects = [m.subject for m in smtp.received]
    assert subjects == [
        "[Sundial] orders-etl did not start on time",
        "[Sundial] orders-etl recovered",
        "[Sundial] Test from Sundial for orders-etl",
    ]
    texts = [m.part("text/plain") for m in smtp.received]
    htmls = [m.part("text/html") for m in smtp.received]
    assert "Alert: missed start" in texts[0] and "had not started by 06:15" in texts[0]
    assert f"Open orders-etl: {BASE_URL}/processes/orders-etl/" in texts[0]
    assert "Run:" not in texts[0] and "Tasks:" not in texts[0], "no run, no run facts"
    assert ">Alert</div>" in htmls[0] and ">Resolved</div>" in htmls[1]
    assert "run 43 started at 06:20" in texts[1]
    assert ">Test</div>" in htmls[2] and "Sundial can reach it" in texts[2]


# ---- when the mail server says no ---------------------------------------------------------


@pytest.mark.django_db
def test_a_refused_address_fails_its_delivery_and_flags_the_subscription_until_a_send_works(smtp):
    process = make_process("orders-etl")
    subscription = subscribe(process, "gone@example.com")
    smtp.refuse("gone@example.com", "550 no such user")

    finish(process, "failed")
    assert send_due() == [DeliveryStatus.FAILED]
    delivery = Delivery.objects.get()
    assert delivery.error == "the mail server refused gone@example.com: 550 no such user"
    subscription.refresh_from_db()
    assert subscription.broken_at is not None
    assert subscription.broken_reason == delivery.error
    assert smtp.received == []

    smtp.accept("gone@example.com")  # the mailbox exists again
    finish(process, "failed")
    assert send_due() == [DeliveryStatus.SENT]
    subscription.refresh_from_db()
    assert subscription.broken_at is None and subscription.broken_reason == ""
    assert len(smtp.to("gone@example.com")) == 1


@pytest.mark.django_db
def test_a_target_saved_without_validation_is_refused_for_good(smtp):
    process = make_process("orders-etl")
    subscription = subscribe(process, "ana@")
    finish(process, "failed")
    assert send_due() == [DeliveryStatus.FAILED]
    assert Delivery.objects.get().error == "'ana@' is not an email address."
    subscription.refresh_from_db()
    assert subscription.broken_at is not None
    assert smtp.received == []


@pytest.mark.django_db
def test_a_4xx_answer_is_for_now_and_the_delivery_is_tried_again(smtp):
    process = make_process("orders-etl")
    subscription = subscribe(process, "busy@example.com")
    smtp.refuse("busy@example.com", "450 mailbox busy, try later")

    finish(process, "failed")
    assert send_due() == [DeliveryStatus.PENDING]
    delivery = Delivery.objects.get()
    assert delivery.error == "the mail server refused busy@example.com: 450 mailbox busy, try later"
    assert delivery.next_try_at is not None
    subscription.refresh_from_db()
    assert subscription.broken_at is None


@pytest.mark.django_db
def test_while_the_mail_server_is_down_the_delivery_waits_then_goes_once(smtp_down):
    process = make_process("orders-etl")
    subscribe(process, "ana@example.com")
    run = finish(process, "failed")

    assert send_due() == [DeliveryStatus.PENDING]
    delivery = Delivery.objects.get()
    assert delivery.error == (
        f"the mail server at 127.0.0.1:{smtp_down.port} refused the connection"
    )
    assert delivery.next_try_at is not None and delivery.next_try_at > timezone.now()

    smtp_down.start()
    assert outbox.deliver(delivery.pk) is None, "not before its next try"
    assert smtp_down.received == []

    make_due()
    assert outbox.deliver(delivery.pk) == DeliveryStatus.SENT
    assert outbox.deliver(delivery.pk) is None, "sent once"
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.error) == ("sent", 2, "")
    assert [m.subject for m in smtp_down.received] == [f"[Sundial] orders-etl run {run.pk} failed"]


@pytest.mark.parametrize(
    ("error", "message", "permanent"),
    [
        (
            smtplib.SMTPSenderRefused(553, b"sender not allowed", "sundial@example.com"),
            "the mail server refused the sender sundial@example.com (DEFAULT_FROM_EMAIL):"
            " 553 sender not allowed; tried again until Sundial's mail settings are fixed",
            False,
        ),
        (
            smtplib.SMTPRecipientsRefused({"ana@example.com": (452, b"mailbox full")}),
            "the mail server refused ana@example.com: 452 mailbox full",
            False,
        ),
        (
            smtplib.SMTPAuthenticationError(535, b"5.7.8 bad credentials"),
            "the mail server did not accept the login of '' (EMAIL_HOST_USER,"
            " EMAIL_HOST_PASSWORD): 535 5.7.8 bad credentials; tried again until Sundial's"
            " mail settings are fixed",
            False,
        ),
        (
            smtplib.SMTPNotSupportedError("STARTTLS extension not supported by server."),
            "the mail server at mail.example.com:2525 does not support it: STARTTLS extension"
            " not supported by server. (check EMAIL_USE_TLS and EMAIL_USE_SSL); tried again"
            " until Sundial's mail settings are fixed",
            False,
        ),
        (
            smtplib.SMTPDataError(552, b"message too big"),
            "the mail server refused the message to ana@example.com: 552 message too big",
            True,
        ),
        (
            smtplib.SMTPResponseException(421, b"shutting down"),
            "the mail server answered: 421 shutting down",
            False,
        ),
        (
            smtplib.SMTPServerDisconnected("Connection unexpectedly closed"),
            "the mail server at mail.example.com:2525 closed the connection:"
            " Connection unexpectedly closed",
            False,
        ),
        (
            TimeoutError("timed out"),
            "the mail server at mail.example.com:2525 did not answer within 7 s",
            False,
        ),
        (
            socket.gaierror(-2, "Name or service not known"),
            "cannot find the mail server 'mail.example.com': [Errno -2] Name or service not known",
            False,
        ),
    ],
)
def test_each_failure_is_worded_and_classed_in_one_place(settings, error, message, permanent):
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "mail.example.com", 2525, 7
    settings.EMAIL_HOST_USER = ""
    classified = classify(error, "ana@example.com")
    assert isinstance(classified, ChannelError)
    assert (classified.message, classified.permanent) == (message, permanent)


def test_an_error_that_is_not_the_mail_servers_is_left_to_be_seen_as_a_bug():
    assert classify(KeyError("notice"), "ana@example.com") is None
