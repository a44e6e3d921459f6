"""The admin is the editor: processes with their tasks, read-only runs, users.

Every action (run now, pause, resume, kill, retry) writes a LogEntry naming the user,
which is the audit trail of who did what.
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from jobs import describe
from jobs.actions import record_run_now, set_paused
from jobs.cron import reschedule
from jobs.engine import FINAL_RUN, RunStatus, waiting_reasons
from jobs.forms import ProcessDefinitionForm, RunForm, TaskDefinitionForm, TaskFormSet
from jobs.models import (
    ProcessDefinition,
    ProcessRun,
    ScheduleKind,
    TaskDefinition,
    TaskMetadata,
    TaskRun,
    Trigger,
    User,
)
from jobs.orchestrator import TriggerError, request_kill, retry_failed_tasks, trigger_run
from jobs.schedule import ScheduleError, next_fire_times
from jobs.snapshot import attempt_of, run_state
from jobs.views import (
    badge,
    latest_run,
    next_fire_text,
    schedule_summary,
    with_latest_run,
)
from notifications.admin import SubscriptionInline


@admin.register(User)
class AccountAdmin(UserAdmin):
    """Django's user admin; its add and password pages get crumbs that say Accounts (the
    section users are listed in), like the pages templates/admin/jobs/user/ overrides."""

    add_form_template = "admin/jobs/user/add_form.html"
    change_user_password_template = "admin/jobs/user/change_password.html"


class TaskInline(admin.StackedInline):
    model = TaskDefinition
    form = TaskDefinitionForm
    formset = TaskFormSet
    fieldsets = [
        (None, {"fields": [("name", "executor"), "config", ("requires", "runs_after")]}),
        (
            "Attempts",
            {
                "fields": [
                    ("max_attempts", "time_limit_s", "retry_on_timeout"),
                    ("retry_initial_delay_s", "retry_multiplier", "retry_max_delay_s"),
                    "retry_jitter",
                    "require_explicit_success",
                    "retry_rules",
                    ("oom_memory_factor", "oom_memory_max_mib"),
                ]
            },
        ),
    ]

    def get_extra(self, request, obj=None, **kwargs) -> int:
        return 0 if obj else 1  # a new process starts with one blank task

    def get_queryset(self, request):
        # Each task's title names its process, and its form shows its edges as text.
        return (
            super()
            .get_queryset(request)
            .select_related("process")
            .prefetch_related("upstream_edges__upstream")
        )


@admin.register(ProcessDefinition)
class ProcessDefinitionAdmin(admin.ModelAdmin):
    form = ProcessDefinitionForm
    inlines = [TaskInline, SubscriptionInline]
    list_display = [
        "name",
        "schedule",
        "next_fire",
        "state",
        "latest_run_status",
        "runs",
    ]
    list_filter = ["paused", "critical", "archived", "schedule_kind"]
    search_fields = ["name", "description", "owner"]
    readonly_fields = ["upcoming_fires"]
    fieldsets = [
        (None, {"fields": ["name", "description", "owner", "critical"]}),
        (
            "Schedule",
            {
                "fields": [
                    "schedule_kind",
                    "cron",
                    "timezone",
                    "upcoming_fires",
                    "min_gap_seconds",
                    ("catch_up", "catch_up_window_seconds"),
                    "overlap",
                    "run_time_limit_s",
                    "paused",
                ]
            },
        ),
        (
            "Alerts",
            {
                "fields": [
                    "page_after_failures",
                    "missed_start_grace_s",
                    ("long_running_after_s", "long_running_factor"),
                    "deadline",
                ],
                "description": "Who hears of them is set under Notifications below; critical"
                " processes also page PagerDuty.",
            },
        ),
        ("History", {"fields": ["archived"]}),
    ]
    actions = ["run_now", "pause", "resume"]

    class Media:
        css = {"all": ["sundial.css"]}

    def get_queryset(self, request):
        return with_latest_run(super().get_queryset(request))

    @admin.display(description="Schedule")
    def schedule(self, process: ProcessDefinition) -> str:
        return schedule_summary(process)

    @admin.display(description="Next fire time", ordering="next_fire_at")
    def next_fire(self, process: ProcessDefinition) -> str:
        return next_fire_text(process)

    @admin.display(description="State")
    def state(self, process: ProcessDefinition) -> str:
        """ "paused", "archived", "critical" as neutral labels; nothing for a plain process
        (Django's boolean icons would show a healthy process as three red crosses)."""
        marks = [
            ("paused", process.paused),
            ("archived", process.archived),
            ("critical", process.critical),
        ]
        return format_html_join(
            " ",
            '<span class="badge badge-{}">{}</span>',
            ((mark, mark) for mark, on in marks if on),
        )

    @admin.display(description="Runs")
    def runs(self, process: ProcessDefinition) -> str:
        url = reverse("admin:jobs_processrun_changelist")
        return format_html('<a href="{}?definition__id__exact={}">runs</a>', url, process.pk)

    @admin.display(description="Latest run")
    def latest_run_status(self, process: ProcessDefinition) -> str:
        run = latest_run(process)
        if run is None:
            return "—"
        url = reverse("admin:jobs_processrun_change", args=[run.pk])
        return format_html('<a href="{}">run {}</a> {}', url, run.pk, badge(run.status))

    @admin.display(description="Next fire times")
    def upcoming_fires(self, process: ProcessDefinition) -> str:
        """The saved schedule's next five fire times, each in local time and UTC."""
        if process.schedule_kind != ScheduleKind.CRON:
            return next_fire_text(process)
        try:
            fires = next_fire_times(process.cron, process.timezone, timezone.now(), 5)
        except ScheduleError as exc:
            return str(exc)
        zone = describe.process_zone(process)
        lines = format_html_join(
            "", "<div>{}</div>", ((describe.wall_clock(fire, zone),) for fire in fires)
        )
        if process.paused or process.archived:
            return format_html(
                "<div>Nothing fires while paused or archived. Once resumed:</div>{}", lines
            )
        return lines

    def save_model(self, request, obj, form, change) -> None:
        super().save_model(request, obj, form, change)
        reschedule(obj)

    def get_urls(self):
        run = path(
            "<int:object_id>/run/",
            self.admin_site.admin_view(self.run_view),
            name="jobs_processdefinition_run",
        )
        return [run, *super().get_urls()]

    def run_view(self, request: HttpRequest, object_id: int) -> HttpResponse:
        """Run a process now, all of its tasks or some, with parameters (a form page)."""
        process = get_object_or_404(ProcessDefinition, pk=object_id)
        if not self.has_change_permission(request, process):
            raise PermissionDenied
        names = list(process.tasks.values_list("name", flat=True))
        form = RunForm(request.POST if request.method == "POST" else None, task_names=names)
        if request.method == "POST" and form.is_valid():
            try:
                run = trigger_run(
                    process,
                    Trigger.MANUAL,
                    user=request.user,
                    parameters=form.cleaned_data["parameters"],
                    only=form.only(),
                )
            except TriggerError as exc:
                form.add_error(None, str(exc))
            else:
                self._report_run(request, process, run)
                return redirect("admin:jobs_processrun_change", run.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Run {process.name}",
            "opts": self.opts,
            "original": process,
            "form": form,
        }
        return TemplateResponse(request, "admin/jobs/processdefinition/run.html", context)

    def _report_run(
        self, request: HttpRequest, process: ProcessDefinition, run: ProcessRun
    ) -> None:
        """Audit a manual run and tell the person what became of it, with a link."""
        started = run.status == RunStatus.RUNNING
        outcome = record_run_now(request.user, process, run)
        url = reverse("admin:jobs_processrun_change", args=[run.pk])
        level = messages.SUCCESS if started else messages.WARNING
        self.message_user(
            request, format_html('{}: <a href="{}">{}</a>', process.name, url, outcome), level
        )

    @admin.action(description="Run now", permissions=["change"])
    def run_now(self, request: HttpRequest, queryset: QuerySet[ProcessDefinition]) -> None:
        for process in queryset:
            try:
                run = trigger_run(process, Trigger.MANUAL, user=request.user)
            except TriggerError as exc:
                self.message_user(request, f"{process.name}: {exc}", messages.ERROR)
                continue
            self._report_run(request, process, run)

    @admin.action(description="Pause", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[ProcessDefinition]) -> None:
        self._set_paused(request, queryset, paused=True)

    @admin.action(description="Resume", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[ProcessDefinition]) -> None:
        self._set_paused(request, queryset, paused=False)

    def _set_paused(
        self, request: HttpRequest, queryset: QuerySet[ProcessDefinition], *, paused: bool
    ) -> None:
        verb = "Paused" if paused else "Resumed"
        names = []
        for process in queryset:
            set_paused(process, paused=paused, user=request.user)
            names.append(process.name)
        self.message_user(request, f"{verb}: {', '.join(names)}", messages.SUCCESS)


def _task_runs(run: ProcessRun) -> list[TaskRun]:
    """The run's attempts, read once for the page's attempts table and its estimated cost."""
    cached: list[TaskRun] | None = getattr(run, "_page_task_runs", None)
    if cached is None:
        cached = run._page_task_runs = list(run.task_runs.all())
    return cached


@admin.register(ProcessRun)
class ProcessRunAdmin(admin.ModelAdmin):
    """Runs are written by the engine only: the admin reads them and can kill or retry."""

    list_display = [
        "id",
        "definition",
        "status_badge",
        "trigger",
        "triggered_by",
        "scheduled_for",
        "started_at",
        "finished_at",
        "duration",
    ]
    list_filter = ["definition", "status", "trigger", ("started_at", admin.DateFieldListFilter)]
    date_hierarchy = "created_at"
    list_select_related = ["definition", "triggered_by"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "definition",
                    "status_badge",
                    "reason",
                    ("trigger", "triggered_by", "scheduled_for"),
                    "parameters",
                    ("created_at", "started_at", "finished_at"),
                    ("kill_requested_at", "kill_requested_by"),
                    "estimated_cost",
                ]
            },
        ),
        ("Attempts", {"fields": ["attempts"]}),
        ("Task metadata", {"fields": ["task_metadata"]}),
        ("Events", {"fields": ["events"]}),
        ("Snapshot", {"classes": ["collapse"], "fields": ["snapshot"]}),
    ]
    readonly_fields = flatten_fieldsets(fieldsets)
    actions = ["kill", "retry_failed"]

    class Media:
        css = {"all": ["sundial.css"]}

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .select_related("definition", "triggered_by", "kill_requested_by")
        )

    # Saving a run from a form would overwrite what the engine wrote meanwhile.
    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_operate_permission(self, request) -> bool:
        """Kill and retry: for users who may change runs, though the form itself is read-only."""
        return request.user.has_perm("jobs.change_processrun")

    @admin.display(description="Status", ordering="status")
    def status_badge(self, run: ProcessRun) -> str:
        return badge(run.status)

    @admin.display(description="Duration")
    def duration(self, run: ProcessRun) -> str:
        """How long the run took, or has taken so far."""
        return describe.short(describe.duration(run, timezone.now()))

    @admin.display(description="Task metadata")
    def task_metadata(self, run: ProcessRun) -> str:
        """What the run's tasks reported through the API: each task's latest value of each
        key (a later attempt's report replaces an earlier one's), in one query."""
        reported = (
            TaskMetadata.objects.filter(task_run__run=run)
            .order_by("task_run_id", "reported_at")
            .values_list("task_run__task_name", "key", "value", "reported_at")
        )
        latest = {(task, key): (value, at) for task, key, value, at in reported}
        rows = [
            (task, key, value if isinstance(value, str) else json.dumps(value), at)
            for (task, key), (value, at) in sorted(latest.items())
        ]
        return render_to_string("admin/jobs/processrun/metadata.html", {"rows": rows})

    @admin.display(description="Attempts")
    def attempts(self, run: ProcessRun) -> str:
        task_runs = _task_runs(run)
        now = timezone.now()
        # The engine says what a pending attempt waits for, and a remote job's executor what
        # it waits for at AWS; a finished attempt has its reason.
        why = (
            waiting_reasons(run_state(run, map(attempt_of, task_runs)), now)
            if run.status == RunStatus.RUNNING
            else {}
        )
        latest = {tr.task_name: tr for tr in task_runs}  # ordered by id: the last one wins
        rows = [
            (
                tr,
                badge(tr.status),
                describe.waiting(tr, now)
                or (why.get(tr.task_name, tr.reason) if latest[tr.task_name] is tr else tr.reason),
                describe.resources(tr),
                describe.usd(describe.cost(tr)),
            )
            for tr in task_runs
        ]
        return render_to_string("admin/jobs/processrun/attempts.html", {"rows": rows})

    @admin.display(description="Estimated cost")
    def estimated_cost(self, run: ProcessRun) -> str:
        """The priced attempts' sum, saying so when some could not be priced (local ones,
        running ones, a job definition's own sizes): an estimate, never a bill."""
        estimate = describe.run_cost(_task_runs(run))
        if estimate.complete:
            return describe.usd(estimate.usd)
        unpriced = f"{estimate.unpriced} attempt{'s' if estimate.unpriced > 1 else ''}"
        if not estimate.priced:
            return f"— ({unpriced} that cannot be priced: local, unfinished, or of unknown size)"
        return f"{describe.usd(estimate.usd)}, and {unpriced} that cannot be priced"

    @admin.display(description="Events")
    def events(self, run: ProcessRun) -> str:
        events = run.events.select_related("task_run", "actor")
        return render_to_string("admin/jobs/processrun/events.html", {"events": events})

    @admin.action(description="Kill", permissions=["operate"])
    def kill(self, request: HttpRequest, queryset: QuerySet[ProcessRun]) -> None:
        reason = f"killed by {request.user.get_username()}"
        for run in queryset:
            if request_kill(run.pk, user=request.user, reason=reason):
                self.log_change(request, run, "Kill requested")
                self.message_user(request, f"{run}: kill requested", messages.SUCCESS)
            elif run.status in FINAL_RUN:
                self.message_user(request, f"{run}: already {run.status}", messages.WARNING)
            else:
                self.message_user(request, f"{run}: a kill was already requested", messages.WARNING)

    @admin.action(description="Retry failed tasks", permissions=["operate"])
    def retry_failed(self, request: HttpRequest, queryset: QuerySet[ProcessRun]) -> None:
        for run in queryset:
            try:
                names = retry_failed_tasks(run.pk, user=request.user)
            except TriggerError as exc:
                self.message_user(request, f"{run}: {exc}", messages.ERROR)
                continue
            outcome = f"retrying {', '.join(names)}"
            self.log_change(request, run, f"Retry failed tasks: {outcome}")
            self.message_user(request, f"{run}: {outcome}", messages.SUCCESS)
