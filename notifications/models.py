"""Who is told about a process (subscriptions), what is open about it (alerts), and every
send, written before it is tried (deliveries)."""

from __future__ import annotations

from typing import Any

from django.db import models
from django.db.models import Q

from jobs.models import ProcessDefinition, ProcessRun, RunEnding
from notifications.decide import POLICY_LABELS, AlertKind, Event, Policy
from notifications.registry import choices as channel_choices


class Subscription(models.Model):
    process = models.ForeignKey(
        ProcessDefinition, on_delete=models.CASCADE, related_name="subscriptions"
    )
    channel = models.CharField(max_length=12, choices=channel_choices)
    target = models.CharField(
        max_length=1000,
        blank=True,
        help_text="Addresses, a routing key or a URL, depending on the channel.",
    )
    policy = models.CharField(
        max_length=32,
        choices=[(policy.value, label) for policy, label in POLICY_LABELS.items()],
        default=Policy.ON_STATE_CHANGE_AND_FAILURES.value,
        help_text="Which finished runs it hears of (PagerDuty: alerts only).",
    )
    secret = models.CharField(
        max_length=200, blank=True, help_text="Webhooks: the key their HMAC-SHA256 signature uses."
    )
    # Set when the channel refused a delivery for good (an address or key it does not know):
    # shown in the admin and on the process page until a send succeeds again.
    broken_at = models.DateTimeField("refused since", null=True, blank=True)
    broken_reason = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["process", "id"]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} for {self.process.name}"


class Alert(models.Model):
    """One occurrence of a condition about a process, open until it clears."""

    process = models.ForeignKey(ProcessDefinition, on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(
        max_length=16, choices=[(k.value, k.value.replace("_", " ")) for k in AlertKind]
    )
    # Tells occurrences apart: the fire time a start was missed at, the long run's id (or
    # "task<attempt id>"), the deadline's local date, the run that opened a "failing" alert.
    key = models.CharField(max_length=100)
    message = models.TextField()
    opened_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolution = models.TextField(blank=True)
    dedup_key = models.CharField(max_length=300, editable=False)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # Sent once per occurrence, however many scans or notices find it.
            models.UniqueConstraint(fields=["process", "kind", "key"], name="alert_once"),
            # A process is failing at most once at a time: one incident, updated.
            models.UniqueConstraint(
                fields=["process"],
                condition=Q(kind=AlertKind.FAILING.value, resolved_at__isnull=True),
                name="alert_one_failing_open",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.process.name}: {self.kind} {self.key}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self.dedup_key:
            self.dedup_key = self.incident_key()
        super().save(*args, **kwargs)

    def incident_key(self) -> str:
        """The incident's key at PagerDuty: one per process for "failing" (every failure
        updates the one incident), one per occurrence for the others. Kept on the alert when
        it opens, so renaming the process later never leaves its incident open."""
        if self.kind == AlertKind.FAILING:
            return f"sundial/{self.process.name}/failing"
        return f"sundial/{self.process.name}/{self.kind}/{self.key}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"  # to be tried (again) from next_try_at
    SENDING = "sending"  # claimed by a worker
    SENT = "sent"
    FAILED = "failed"  # refused for good, or given up on after MAX_ATTEMPTS


class Delivery(models.Model):
    """One send of one notice to one recipient, recorded before it is tried."""

    # What makes it happen once: the same run, alert change, channel and recipient always
    # produce the same key, so a repeated or concurrent decision creates nothing new.
    key = models.CharField(max_length=400, unique=True)
    subscription = models.ForeignKey(
        Subscription, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries"
    )
    process = models.ForeignKey(
        ProcessDefinition, on_delete=models.CASCADE, related_name="deliveries"
    )
    run = models.ForeignKey(
        ProcessRun, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries"
    )
    # The ending a run report tells (a run retried in place has several).
    ending = models.ForeignKey(
        RunEnding, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries"
    )
    alert = models.ForeignKey(
        Alert, null=True, blank=True, on_delete=models.CASCADE, related_name="deliveries"
    )
    channel = models.CharField(max_length=12)
    target = models.CharField(max_length=1000, blank=True)  # the one recipient; "": default
    event = models.CharField(max_length=12, choices=[(e.value, e.value) for e in Event])
    status = models.CharField(
        max_length=8, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    next_try_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        indexes = [models.Index(fields=["status", "next_try_at"])]

    def __str__(self) -> str:
        return f"{self.channel} {self.event} ({self.status})"


class RunNotice(models.Model):
    """A run's ending whose news has been decided, written with its deliveries: a repeated
    notice decides nothing twice, and the reconciler finds endings never noticed."""

    ending = models.OneToOneField(
        RunEnding, primary_key=True, on_delete=models.CASCADE, related_name="notice"
    )
    decided_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"notice of {self.ending}"


class ScanClock(models.Model):
    """When the alert scan is next due: one row. Beat's task and every worker's watchdog
    claim a scan with a conditional UPDATE of it, so one scan runs per period however many
    ask, and a scan still runs while beat is down (the case a missed start is about)."""

    due_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"alert scan due at {self.due_at:%Y-%m-%d %H:%M:%S}"
