"""The shell around the decisions: record who is told what, then send each delivery.

A finished run is *noticed* once (``notice_run``): in one transaction the process's history
is read, ``decide`` says who hears what, and a Delivery row is written for each recipient
before anything is sent. Each delivery is then sent by its own Celery task (``deliver``),
after that transaction committed, never inside a run's lock, and never failing the run:

- the claim is a conditional UPDATE (pending -> sending); 0 rows means another worker has
  it or it is done, and this one leaves it;
- a temporary error puts it back to pending with a growing delay (``Backoff``), up to
  SUNDIAL_DELIVERY_MAX_ATTEMPTS; a permanent one fails it and flags its subscription;
- the deliveries of one incident to one recipient go out in the order they were decided
  (a resolve never overtakes its trigger, nor an old alert's resolve the next trigger);
- a delivery whose subscription was deleted before it went is failed, not sent (a webhook
  would go unsigned);
- ``reconcile`` re-sends what the broker lost: pending deliveries that are due, deliveries
  claimed by a worker that died, and finished runs never noticed.

A worker killed between the send and its record leaves the delivery "sending"; it is tried
again after SUNDIAL_DELIVERY_STUCK_AFTER_S, so a send is at least once. PagerDuty takes a
repeat under the same dedup key as one incident.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from jobs import dispatch
from jobs.engine import Backoff, RunStatus
from jobs.models import ProcessDefinition, RunEnding
from notifications import decide
from notifications.base import ChannelError, Outgoing
from notifications.models import Alert, Delivery, DeliveryStatus, RunNotice, Subscription
from notifications.notice import notice_for
from notifications.registry import KINDS, channel_for

log = logging.getLogger(__name__)

DELIVER = "notifications.tasks.deliver"
RETRY_DELAYS = Backoff(initial_delay_s=15, multiplier=2, max_delay_s=900, jitter=0.1)
# A pending delivery younger than this was just enqueued: the reconciler leaves it be.
FRESH = timedelta(seconds=10)
# A message may come this early for its due time (clocks of two hosts differ a little).
EARLY = timedelta(seconds=1)
# How long after an earlier delivery of the same incident is due a later one is tried.
AFTER_EARLIER = timedelta(seconds=2)
# Finished runs older than this are history: a run never noticed by then is not reported.
NOTICE_WINDOW = timedelta(days=1)
DEFAULT = "default"  # the subscriber key of the installation's PagerDuty service


@dataclass(frozen=True)
class _Audience:
    """A process's subscribers, as decisions see them and as deliveries are addressed."""

    subscribers: list[decide.Subscriber]
    subscriptions: dict[str, Subscription | None]  # by subscriber key; None: the default


def audience(process: ProcessDefinition) -> _Audience:
    """The process's subscriptions, and the installation's PagerDuty service for a critical
    process that has no PagerDuty subscription of its own."""
    rows = list(process.subscriptions.all())
    subscribers = [
        decide.Subscriber(str(row.pk), decide.Policy(row.policy), KINDS[row.channel].incidents)
        for row in rows
        if row.channel in KINDS
    ]
    chosen: dict[str, Subscription | None] = {str(row.pk): row for row in rows}
    pages_itself = any(row.channel == "pagerduty" for row in rows)
    if process.critical and settings.SUNDIAL_PAGERDUTY_ROUTING_KEY and not pages_itself:
        subscribers.append(decide.Subscriber(DEFAULT, decide.Policy.ALWAYS, incidents=True))
        chosen[DEFAULT] = None
    return _Audience(subscribers, chosen)


def notice_run(run_id: int) -> list[int]:
    """Decide who hears of each ending of a run not yet noticed, in the order they came,
    and send it; the ids of new deliveries. (A run retried in place before its failure was
    noticed has two endings to tell; the run itself already says only the second.)"""
    made: list[int] = []
    for ending in RunEnding.objects.filter(run_id=run_id, notice__isnull=True).order_by("id"):
        made += notice_ending(ending)
    return made


def notice_ending(ending: RunEnding) -> list[int]:
    """Decide who hears of one ending, once.

    Notices of one process are decided one at a time (its row is locked), so two runs ending
    together read each other's alert, and a repeated notice finds the ending noticed already.
    """
    with transaction.atomic():
        process = ProcessDefinition.objects.select_for_update().get(pk=ending.definition_id)
        if not RunNotice.objects.get_or_create(ending=ending)[1]:
            return []  # noticed already: the first notice decided it all
        endings = RunEnding.objects.filter(definition=process)
        before = list(
            endings.filter(pk__lt=ending.pk)
            .order_by("-id")
            .values_list("status", flat=True)[: process.page_after_failures]
        )
        failing = Alert.objects.filter(
            process=process, kind=decide.AlertKind.FAILING, resolved_at__isnull=True
        ).first()
        heard = audience(process)
        decision = decide.decide_run(
            heard.subscribers,
            RunStatus(ending.status),
            RunStatus(before[0]) if before else None,
            failures_in_a_row=_leading_failures([ending.status, *before]),
            page_after=process.page_after_failures,
            failing_open=failing is not None,
            critical=process.critical,
            # News of an older ending (its notice came late) changes no alert.
            latest=not endings.filter(pk__gt=ending.pk).exists(),
        )
        alert = _apply_failing(process, ending, decision.failing, failing)
        reports = [(key, event) for key, event in decision.tell if event is not decide.Event.ALERT]
        pages = [(key, event) for key, event in decision.tell if event is decide.Event.ALERT]
        tag = f"ending{ending.pk}"
        made = _record(process, heard, reports, ending=ending, tag=tag)
        if alert is not None and decision.failing is decide.AlertChange.RESOLVE:
            made += tell_resolved(alert, ending=ending, tag=tag)
        elif alert is not None:
            made += _record(process, heard, pages, ending=ending, alert=alert, tag=tag)
    return made


def _leading_failures(statuses: Iterable[str]) -> int:
    count = 0
    for status in statuses:
        if status != RunStatus.FAILED:
            break
        count += 1
    return count


def _apply_failing(
    process: ProcessDefinition,
    ending: RunEnding,
    change: decide.AlertChange | None,
    open_alert: Alert | None,
) -> Alert | None:
    """Open, keep or resolve the process's "failing" alert; the alert the change is about."""
    if change is decide.AlertChange.OPEN:
        return Alert.objects.create(
            process=process,
            kind=decide.AlertKind.FAILING,
            key=f"ending{ending.pk}",
            message=f"{process.name} failed {_runs_in_a_row(process.page_after_failures)}:"
            f" {ending.reason or 'failed'}",
        )
    if change is decide.AlertChange.RESOLVE and open_alert is not None:
        resolve(open_alert, f"run {ending.run_id} succeeded")
    return open_alert if change is not None else None


def _runs_in_a_row(count: int) -> str:
    return "its latest run" if count == 1 else f"{count} runs in a row"


def resolve(alert: Alert, why: str) -> bool:
    """Close an open alert; False if it was closed already (by a concurrent resolve)."""
    now = timezone.now()
    closed = Alert.objects.filter(pk=alert.pk, resolved_at__isnull=True).update(
        resolved_at=now, resolution=why
    )
    alert.resolved_at, alert.resolution = now, why
    return bool(closed)


def tell_alert(alert: Alert) -> list[int]:
    """Record and send an alert's opening to everyone who hears of it (alerts other than
    "failing", whose news travels with the run reports)."""
    process = alert.process
    heard = audience(process)
    told = decide.alert_audience(
        heard.subscribers, decide.AlertKind(alert.kind), critical=process.critical
    )
    return _record(process, heard, list(told), alert=alert, tag="open")


def tell_resolved(
    alert: Alert, *, ending: RunEnding | None = None, tag: str = "resolve"
) -> list[int]:
    """Record and send an alert's clearing to exactly the recipients told of its opening
    (a delivery that failed for good told no one): whatever changed since (the process made
    non-critical or renamed, a subscription paused), an incident opened is resolved, and
    no one hears "resolved" of an alert they never heard of."""
    opened = (
        Delivery.objects.filter(alert=alert, event=decide.Event.ALERT)
        .exclude(status=DeliveryStatus.FAILED)
        .values_list("subscription_id", "channel", "target")
        .distinct()
    )
    subscriptions = Subscription.objects.in_bulk([pk for pk, _, _ in opened if pk is not None])
    recipients = [
        (subscriptions.get(pk) if pk is not None else None, channel, target)
        for pk, channel, target in opened
    ]
    return _write(
        alert.process, recipients, decide.Event.RESOLVED, ending=ending, alert=alert, tag=tag
    )


def _record(
    process: ProcessDefinition,
    heard: _Audience,
    told: Sequence[tuple[str, decide.Event]],
    *,
    ending: RunEnding | None = None,
    alert: Alert | None = None,
    tag: str,
) -> list[int]:
    """Write a pending delivery per recipient of each (subscriber, event) told, and send
    them once the transaction commits; the ids of those written now."""
    made: list[int] = []
    for event in dict.fromkeys(event for _, event in told):
        recipients = []
        for key, _ in (pair for pair in told if pair[1] is event):
            subscription = heard.subscriptions[key]
            kind = KINDS[subscription.channel if subscription else "pagerduty"]
            raw = subscription.target if subscription else ""
            recipients += [
                (subscription, kind.name, target) for target in _recipients(kind.recipients, raw)
            ]
        made += _write(process, recipients, event, ending=ending, alert=alert, tag=tag)
    return made


Recipient = tuple[
    Subscription | None, str, str
]  # subscription (None: the default), channel, target


def _write(
    process: ProcessDefinition,
    recipients: list[Recipient],
    event: decide.Event,
    *,
    ending: RunEnding | None,
    alert: Alert | None,
    tag: str,
) -> list[int]:
    """A pending delivery of ``event`` to each recipient, under a key that makes it once
    (a key already written is left alone); sent once the transaction commits."""
    if alert is not None:
        about = f"alert{alert.pk}"
    else:
        about = f"run{ending.run_id}" if ending is not None else f"process{process.pk}"
    rows = [
        Delivery(
            key=f"{about}:{tag}:{event}:{subscription.pk if subscription else DEFAULT}:"
            + hashlib.sha256(target.encode()).hexdigest()[:16],
            subscription=subscription,
            process=process,
            run_id=ending.run_id if ending is not None else None,
            ending=ending,
            alert=alert,
            channel=channel,
            target=target,
            event=event,
        )
        for subscription, channel, target in recipients
    ]
    if not rows:
        return []
    Delivery.objects.bulk_create(rows, ignore_conflicts=True)
    new = list(
        Delivery.objects.filter(
            key__in=[row.key for row in rows], status=DeliveryStatus.PENDING, attempts=0
        ).values_list("pk", flat=True)
    )
    for delivery_id in new:
        dispatch.after_commit(DELIVER, delivery_id)
    return new


def send_test(subscription: Subscription) -> list[int]:
    """A test message to each of the subscription's recipients (the admin's "send a test")."""
    key = str(subscription.pk)
    heard = _Audience([], {key: subscription})
    with transaction.atomic():
        return _record(
            subscription.process,
            heard,
            [(key, decide.Event.TEST)],
            tag=f"test{timezone.now().timestamp()}",
        )


def _recipients(split: Callable[[str], list[str]], raw: str) -> list[str]:
    """The recipients a target names. A target saved outside the admin that does not
    validate is sent as it is: the channel refuses it, and the subscription is flagged."""
    if raw == "":
        return [""]
    try:
        return list(split(raw))
    except ValidationError:
        return [raw]


def deliver(delivery_id: int) -> str | None:
    """Send one delivery if it is due and this worker wins its claim; what became of it
    (None: not this worker's to send now)."""
    now = timezone.now()
    delivery = (
        Delivery.objects.filter(pk=delivery_id).select_related("subscription", "alert").first()
    )
    if delivery is None or delivery.status != DeliveryStatus.PENDING:
        return None
    if delivery.next_try_at is not None and delivery.next_try_at > now + EARLY:
        # Not due: the message that was sent for its due time (or the reconciler) comes
        # then. Dropping this one keeps repeated messages from multiplying.
        return None
    if delivery.subscription_id is None and not _to_the_default(delivery):
        return _abandon(delivery, "its subscription was deleted before it was sent")
    if _behind_earlier(delivery, now):
        return None
    claimed = Delivery.objects.filter(
        pk=delivery.pk, status=DeliveryStatus.PENDING, attempts=delivery.attempts
    ).update(status=DeliveryStatus.SENDING, attempts=F("attempts") + 1, claimed_at=now)
    if not claimed:
        return None  # another worker claimed it first: it sends and records it
    attempt = delivery.attempts + 1
    subscription = delivery.subscription
    try:
        outgoing = Outgoing(
            delivery.target,
            notice_for(delivery),
            secret=subscription.secret if subscription else "",
            delivery_key=delivery.key,
        )
        channel_for(delivery.channel).notify(outgoing)
    except ChannelError as error:
        return _failed(delivery, attempt, error.message, permanent=error.permanent)
    except Exception as error:  # a bug or an unforeseen transport error: try again later
        log.exception("delivery %s: unexpected error", delivery.pk)
        return _failed(delivery, attempt, f"{type(error).__name__}: {error}", permanent=False)
    _finish(delivery, attempt, status=DeliveryStatus.SENT, error="")
    if subscription is not None and subscription.broken_at is not None:
        Subscription.objects.filter(pk=subscription.pk).update(broken_at=None, broken_reason="")
    return DeliveryStatus.SENT


def _to_the_default(delivery: Delivery) -> bool:
    """A delivery to the installation's PagerDuty service, which has no subscription row."""
    return delivery.channel == "pagerduty" and delivery.target == ""


def _abandon(delivery: Delivery, why: str) -> str | None:
    """Fail a pending delivery that must not be sent (never tried, so nothing was said)."""
    Delivery.objects.filter(
        pk=delivery.pk, status=DeliveryStatus.PENDING, attempts=delivery.attempts
    ).update(status=DeliveryStatus.FAILED, error=why, finished_at=timezone.now())
    return DeliveryStatus.FAILED


def _behind_earlier(delivery: Delivery, now: datetime) -> bool:
    """Whether an earlier delivery of the same incident to the same recipient is unsent;
    then this one is put off until just after it (a resolve never overtakes its trigger,
    nor a late resolve of an old "failing" alert the trigger of the next one: all of a
    process's "failing" alerts are one incident at PagerDuty, under one dedup key)."""
    alert = delivery.alert
    if alert is None:
        return False
    same_incident = Q(alert=alert)
    if alert.kind == decide.AlertKind.FAILING:
        same_incident = Q(alert__process_id=alert.process_id, alert__kind=alert.kind)
    earlier = (
        Delivery.objects.filter(
            same_incident,
            channel=delivery.channel,
            target=delivery.target,
            pk__lt=delivery.pk,
            status__in=[DeliveryStatus.PENDING, DeliveryStatus.SENDING],
        )
        .order_by("pk")
        .first()
    )
    if earlier is None:
        return False
    due = max(now, earlier.next_try_at or now) + AFTER_EARLIER
    # Recorded, so the reconciler leaves it until then; 0 rows: it moved on meanwhile.
    if Delivery.objects.filter(
        pk=delivery.pk, status=DeliveryStatus.PENDING, attempts=delivery.attempts
    ).update(next_try_at=due):
        dispatch.after_commit(DELIVER, delivery.pk, countdown=(due - now).total_seconds())
    return True


def _failed(delivery: Delivery, attempt: int, message: str, *, permanent: bool) -> str:
    now = timezone.now()
    last = attempt >= settings.SUNDIAL_DELIVERY_MAX_ATTEMPTS
    if permanent or last:
        error = message if permanent else f"gave up after {attempt} attempts: {message}"
        _finish(delivery, attempt, status=DeliveryStatus.FAILED, error=error)
        if permanent and delivery.subscription_id is not None:
            Subscription.objects.filter(pk=delivery.subscription_id).update(
                broken_at=now, broken_reason=message
            )
        log.warning("delivery %s (%s) failed: %s", delivery.pk, delivery.channel, error)
        return DeliveryStatus.FAILED
    delay = RETRY_DELAYS.delay(attempt, seed=f"delivery-{delivery.pk}")
    _finish(
        delivery,
        attempt,
        status=DeliveryStatus.PENDING,
        error=message,
        next_try_at=now + timedelta(seconds=delay),
    )
    dispatch.after_commit(DELIVER, delivery.pk, countdown=delay)
    return DeliveryStatus.PENDING


def _finish(
    delivery: Delivery,
    attempt: int,
    *,
    status: str,
    error: str,
    next_try_at: datetime | None = None,
) -> None:
    """Record how the claimed send went. 0 rows: the reconciler took the delivery back as
    stuck while this worker was still sending; it will be sent again (at least once)."""
    finished = timezone.now() if status != DeliveryStatus.PENDING else None
    recorded = Delivery.objects.filter(
        pk=delivery.pk, status=DeliveryStatus.SENDING, attempts=attempt
    ).update(status=status, error=error, next_try_at=next_try_at, finished_at=finished)
    if not recorded:
        log.warning(
            "delivery %s was taken back while being sent; it will be sent again", delivery.pk
        )


def reconcile() -> int:
    """Re-send what the broker may have lost; how many messages it sent."""
    now = timezone.now()
    stuck = now - timedelta(seconds=settings.SUNDIAL_DELIVERY_STUCK_AFTER_S)
    Delivery.objects.filter(status=DeliveryStatus.SENDING, claimed_at__lt=stuck).update(
        status=DeliveryStatus.PENDING, error="its worker stopped while sending it"
    )
    due = list(
        Delivery.objects.filter(status=DeliveryStatus.PENDING, created_at__lt=now - FRESH)
        .filter(Q(next_try_at__isnull=True) | Q(next_try_at__lte=now))
        .values_list("pk", flat=True)[:1000]
    )
    for delivery_id in due:
        dispatch.after_commit(DELIVER, delivery_id)
    unnoticed = list(
        RunEnding.objects.filter(
            at__gte=now - NOTICE_WINDOW, at__lt=now - FRESH, notice__isnull=True
        )
        .order_by("run_id")
        .values_list("run_id", flat=True)
        .distinct()[:1000]
    )
    for run_id in unnoticed:
        dispatch.after_commit(dispatch.NOTICE, run_id)
    return len(due) + len(unnoticed)
