"""The domain's tables: definitions (edited in the admin) and runs (written by the shell)."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from executors.registry import choices as executor_choices
from jobs.engine import AttemptStatus, OverlapPolicy, RunStatus
from jobs.schedule import CatchUp


class User(AbstractUser):
    """Custom from the first migration: SSO identity, roles and API tokens hang off it later."""


class ScheduleKind(models.TextChoices):
    NONE = "none", "Manual / API only"
    CRON = "cron", "Cron"
    CONTINUOUS = "continuous", "Continuous"


class ProcessDefinition(models.Model):
    name = models.SlugField(max_length=100, unique=True)
    description = models.TextField(blank=True)
    schedule_kind = models.CharField(
        max_length=12, choices=ScheduleKind.choices, default=ScheduleKind.NONE
    )
    cron = models.CharField(
        max_length=100, blank=True, help_text="Five fields: minute hour day month weekday."
    )
    timezone = models.CharField(
        max_length=64, default="UTC", help_text="IANA name, e.g. Europe/Berlin."
    )
    min_gap_seconds = models.PositiveIntegerField(
        default=60,
        help_text="Continuous schedules: pause between one run's end and the next start.",
    )
    catch_up = models.CharField(
        max_length=8,
        choices=[(c.value, c.value) for c in CatchUp],
        default=CatchUp.LATEST,
        help_text="After downtime: run the latest missed time, none, or all within the window.",
    )
    catch_up_window_seconds = models.PositiveIntegerField(default=86400)
    overlap = models.CharField(
        max_length=8,
        choices=[(p.value, p.value) for p in OverlapPolicy],
        default=OverlapPolicy.SKIP,
        help_text="When a run is triggered while another is active: allow, skip, queue or replace.",
    )
    run_time_limit_s = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Seconds a whole run may take, counted from its start; then it is stopped"
        " and fails. Empty: no limit.",
    )
    next_fire_at = models.DateTimeField(null=True, blank=True, editable=False, db_index=True)
    paused = models.BooleanField(default=False)
    critical = models.BooleanField(default=False, help_text="Failures page PagerDuty.")
    # Alerts (notifications/): when the on-call is paged, and what else counts as trouble.
    page_after_failures = models.PositiveIntegerField(
        default=1,
        validators=[MinValueValidator(1)],
        help_text="Critical processes page after this many failed runs in a row.",
    )
    missed_start_grace_s = models.PositiveIntegerField(
        "missed start grace (s)",
        default=300,
        help_text="A scheduled run not started this many seconds after its time raises an alert.",
    )
    long_running_after_s = models.PositiveIntegerField(
        "long running after (s)",
        null=True,
        blank=True,
        help_text="A run going on longer than this raises an alert. Empty: no fixed threshold.",
    )
    long_running_factor = models.FloatField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="A run (or a task) going on longer than this times the p95 of its last 30"
        " successful runs (or attempts) raises an alert (e.g. 2). Empty: off.",
    )
    deadline = models.TimeField(
        null=True,
        blank=True,
        help_text="An alert when no run has succeeded by this time of day, in the process's"
        " time zone. Empty: none.",
    )
    owner = models.CharField(max_length=100, blank=True, help_text="Team or person responsible.")
    archived = models.BooleanField(
        default=False, help_text="Archived processes never run; their history stays readable."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class TaskDefinition(models.Model):
    process = models.ForeignKey(ProcessDefinition, on_delete=models.CASCADE, related_name="tasks")
    name = models.SlugField(max_length=100)
    executor = models.CharField(max_length=8, choices=executor_choices, default="local")
    config = models.JSONField(
        default=dict, help_text="Executor settings, checked against its schema."
    )
    max_attempts = models.PositiveIntegerField(default=1, validators=[MinValueValidator(1)])
    retry_initial_delay_s = models.FloatField(default=10, validators=[MinValueValidator(0)])
    retry_multiplier = models.FloatField(
        default=2, validators=[MinValueValidator(1)], help_text="1 = fixed delay; 2 = doubling."
    )
    retry_max_delay_s = models.FloatField(default=600, validators=[MinValueValidator(0)])
    retry_jitter = models.FloatField(
        default=0.1, validators=[MinValueValidator(0)], help_text="Fraction of the delay, 0 to 1."
    )
    time_limit_s = models.PositiveIntegerField(
        null=True, blank=True, help_text="Counted from RUNNING. Empty: no limit."
    )
    retry_on_timeout = models.BooleanField(default=True)
    require_explicit_success = models.BooleanField(
        default=False, help_text="Exit 0 counts only if the task reported success through the API."
    )
    retry_rules = models.JSONField(
        default=list,
        blank=True,
        help_text='What a failed attempt gets, by its exit code and reason: e.g. [{"exit_codes":'
        ' [2], "action": "fail"}, {"reason": "CannotPullContainerError", "action": "fail"}].'
        ' The first rule that matches decides: "fail" fails the task now, "retry" retries it'
        " while attempts remain, as a failure no rule matches is. A rule matches an exit code"
        " it lists and a reason containing its text (any case); one with neither matches every"
        " failure. A permanent error (image not found, unknown queue) is never retried.",
    )
    oom_memory_factor = models.FloatField(
        "memory factor after out of memory",
        default=2,
        validators=[MinValueValidator(1), MaxValueValidator(16)],
        help_text="After an out-of-memory kill the retry asks for the memory times this"
        " (1 = the same memory). For executors with memory_mib (Batch, ECS).",
    )
    oom_memory_max_mib = models.PositiveIntegerField(
        "memory cap after out of memory (MiB)",
        null=True,
        blank=True,
        help_text="The most memory, in MiB, a retry after an out-of-memory kill asks for."
        " Empty: the most its executor allows.",
    )

    class Meta:
        ordering = ["process", "id"]
        constraints = [
            models.UniqueConstraint(fields=["process", "name"], name="task_name_unique_in_process"),
            models.CheckConstraint(
                condition=Q(max_attempts__gte=1), name="task_max_attempts_gte_1"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.process.name}.{self.name}"


class TaskDependency(models.Model):
    """An edge: ``task`` runs after ``upstream``. Required: upstream must succeed."""

    task = models.ForeignKey(
        TaskDefinition, on_delete=models.CASCADE, related_name="upstream_edges"
    )
    upstream = models.ForeignKey(
        TaskDefinition, on_delete=models.CASCADE, related_name="downstream_edges"
    )
    required = models.BooleanField(default=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["task", "upstream"], name="dependency_unique"),
            models.CheckConstraint(
                condition=~Q(task=models.F("upstream")), name="dependency_no_self"
            ),
        ]

    def __str__(self) -> str:
        arrow = "requires" if self.required else "runs after"
        return f"{self.task.name} {arrow} {self.upstream.name}"


class Trigger(models.TextChoices):
    SCHEDULE = "schedule"
    MANUAL = "manual"
    API = "api"


class ProcessRun(models.Model):
    definition = models.ForeignKey(ProcessDefinition, on_delete=models.PROTECT, related_name="runs")
    # The definition and its tasks as they were at trigger time: editing a definition
    # never changes a run in flight (see jobs/snapshot.py for the format).
    snapshot = models.JSONField()
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    scheduled_for = models.DateTimeField(null=True, blank=True)
    parameters = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=10, choices=[(s.value, s.value) for s in RunStatus], db_index=True
    )
    reason = models.TextField(blank=True)
    kill_requested_at = models.DateTimeField(null=True, blank=True)
    kill_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # When the clock alone next changes this run (a retry falls due, a time limit expires);
    # the sweep advances runs whose wake_at has passed.
    wake_at = models.DateTimeField(null=True, blank=True, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        constraints = [
            # A cron tick can start at most one run, however many ticks or beats there are.
            models.UniqueConstraint(
                fields=["definition", "scheduled_for"], name="run_unique_scheduled_for"
            ),
        ]
        indexes = [
            models.Index(fields=["definition", "status"]),
            # A process's runs newest first: its latest finished run (the dashboard's colour)
            # and its recent runs cost an index probe, however long its history.
            models.Index(fields=["definition", "id"], name="run_definition_newest"),
        ]

    def __str__(self) -> str:
        return f"{self.definition.name} #{self.pk}"


class RunEnding(models.Model):
    """Each time a run ended, written in the transaction that ended it. A run retried in
    place ends again later: what reacts to endings (notifications) reads these, in order,
    rather than the run, which may have moved on by the time it looks."""

    run = models.ForeignKey(ProcessRun, on_delete=models.CASCADE, related_name="endings")
    definition = models.ForeignKey(
        ProcessDefinition, on_delete=models.CASCADE, related_name="endings"
    )
    status = models.CharField(max_length=10)
    reason = models.TextField(blank=True)
    at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["definition", "id"], name="ending_definition_order")]

    def __str__(self) -> str:
        return f"run {self.run_id} {self.status} at {self.at:%Y-%m-%d %H:%M:%S}"


def new_token() -> str:
    return secrets.token_urlsafe(32)


class TaskRun(models.Model):
    """One attempt of one task in one run."""

    run = models.ForeignKey(ProcessRun, on_delete=models.CASCADE, related_name="task_runs")
    task_name = models.CharField(max_length=100)
    round = models.PositiveIntegerField(default=1)
    number = models.PositiveIntegerField(default=1, help_text="The attempt's number in its round.")
    executor = models.CharField(max_length=8, choices=executor_choices)
    status = models.CharField(
        max_length=12, choices=[(s.value, s.value) for s in AttemptStatus], db_index=True
    )
    not_before = models.DateTimeField(null=True, blank=True)
    # Claims to submit it: a second one follows a failed submit, whose job may exist anyway.
    submit_tries = models.PositiveIntegerField(default=0)
    # The host of the worker that claimed the attempt: where a local process runs, and so
    # the only place its orphan can be looked up or stopped if that worker dies.
    worker_host = models.CharField(max_length=255, blank=True)
    external_id = models.CharField(max_length=512, blank=True)
    log_ref = models.CharField(max_length=1024, blank=True)
    # What the job asked for (vcpu, memory_mib, gpu, disk_gib, platform), as its executor
    # reported at submit, and where it ran once known: the run page shows and prices both.
    resources = models.JSONField(default=dict, blank=True)
    placement = models.CharField(max_length=200, blank=True)
    # A polled executor's own word for a waiting job (Batch's RUNNABLE: waiting for
    # capacity) and since when it has said it, so the page can say for how long.
    executor_state = models.CharField(max_length=200, blank=True)
    executor_state_since = models.DateTimeField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    reason = models.TextField(blank=True)
    # How its executor classified the end: killed for using too much memory; failed for
    # good (trying again cannot help). The engine's retry decision reads both.
    out_of_memory = models.BooleanField(default=False)
    permanent = models.BooleanField(default=False)
    # The memory the attempt asked for where the engine raised it after an out-of-memory
    # kill (a raised memory stays raised for the rest of its round); None: its config's.
    memory_mib = models.PositiveIntegerField(null=True, blank=True)
    reported_success = models.BooleanField(null=True, blank=True)
    # A stop asked for (kill, time limit, lost process, worker stopped): when, the status the
    # attempt ends with, and why. ``reason`` is the final reason, once the attempt ended.
    stop_requested_at = models.DateTimeField(null=True, blank=True)
    stop_as = models.CharField(
        max_length=12, blank=True, help_text="The status an attempt being stopped ends with."
    )
    stop_reason = models.TextField(blank=True)
    token = models.CharField(max_length=64, default=new_token, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    submitting_at = models.DateTimeField(null=True, blank=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        # Creation order. Not ["run", "id"]: ordering by a foreign key joins its table (and
        # orders by that table's own ordering) in every query, even a run's own attempts.
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(
                fields=["run", "task_name", "round", "number"], name="taskrun_unique_attempt"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_name} #{self.number} ({self.status})"

    @property
    def idempotency_key(self) -> str:
        """Names the attempt at the executor: a retried submit finds the job, never starts two."""
        return f"sundial-{self.run_id}-{self.pk}-{self.task_name}-{self.round}-{self.number}"


class TaskEvent(models.Model):
    """Append-only trail of what happened to a run and its attempts, and who did it."""

    run = models.ForeignKey(ProcessRun, on_delete=models.CASCADE, related_name="events")
    task_run = models.ForeignKey(
        TaskRun, null=True, blank=True, on_delete=models.CASCADE, related_name="events"
    )
    at = models.DateTimeField(auto_now_add=True)
    kind = models.CharField(max_length=32)
    message = models.TextField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class TaskMetadata(models.Model):
    """A key/value pair a task reported; numeric values also become metrics."""

    task_run = models.ForeignKey(TaskRun, on_delete=models.CASCADE, related_name="metadata")
    key = models.CharField(max_length=200)
    value = models.JSONField()
    numeric_value = models.FloatField(null=True, blank=True)
    reported_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["key"]
        constraints = [
            models.UniqueConstraint(fields=["task_run", "key"], name="metadata_unique_key"),
        ]

    def __str__(self) -> str:
        return f"{self.key}={self.value}"
