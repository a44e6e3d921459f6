"""The run page: what a run did and is doing, task by task, with its kill and retry buttons.

It shows each task's attempts in the order they started, the engine's reason for every task
still waiting, what the tasks reported, and the run's trail; while the run is active the
page polls for its body and gets nothing back (204) until something changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from jobs import dag, describe, markers
from jobs.describe import duration, short
from jobs.engine import FINAL_RUN, RunStatus, waiting_reasons
from jobs.models import ProcessRun, TaskMetadata, TaskRun
from jobs.orchestrator import (
    TriggerError,
    request_kill,
    rerun_on_current_definition,
    retry_failed_tasks,
)
from jobs.snapshot import attempt_of, run_state
from jobs.views import badge

OPERATE = "jobs.change_processrun"  # as the admin's Kill and Retry actions


@dataclass(frozen=True)
class AttemptLine:
    attempt: TaskRun
    why: str  # the engine's reason while it waits, else how it ended
    took: str
    resources: str
    cost: str

    @property
    def status(self) -> str:
        return badge(self.attempt.status)

    @property
    def label(self) -> str:
        """ "attempt 2 of round 1" in words, as the glossary has it."""
        a = self.attempt
        return f"attempt {a.number}" + (f" of round {a.round}" if a.round > 1 else "")


def _lines(run: ProcessRun, attempts: list[TaskRun], now: datetime) -> list[AttemptLine]:
    """Every attempt in the order it started (not yet started ones last, as created)."""
    why = (
        waiting_reasons(run_state(run, map(attempt_of, attempts)), now)
        if run.status == RunStatus.RUNNING
        else {}
    )
    latest = {a.task_name: a for a in attempts}  # creation order: the last one wins
    ordered = sorted(attempts, key=lambda a: (a.started_at is None, a.started_at or now, a.pk))
    return [
        AttemptLine(
            attempt=a,
            why=describe.waiting(a, now)
            or (why.get(a.task_name, a.reason) if latest[a.task_name] is a else a.reason),
            took=short(duration(a, now)) if a.started_at else "",
            resources=describe.resources(a),
            cost=describe.usd(describe.cost(a)),
        )
        for a in ordered
    ]


def _context(request: HttpRequest, run: ProcessRun) -> dict:
    now = timezone.now()
    attempts = list(run.task_runs.all())
    metadata = TaskMetadata.objects.filter(task_run__run=run).select_related("task_run")
    estimate = describe.run_cost(attempts)
    tasks, edges = dag.graph_from_snapshot(run.snapshot)
    latest = {a.task_name: a for a in attempts}  # creation order: the last one wins
    return {
        "dag": dag.render_dag(tasks, edges, {name: a.status for name, a in latest.items()}),
        "run": run,
        "status": badge(run.status),
        "lines": _lines(run, attempts, now),
        "metadata": metadata,
        "events": run.events.select_related("task_run", "actor"),
        "took": short(duration(run, now)) if run.started_at else "",
        "cost": describe.usd(estimate.usd) if estimate.priced else "",
        "cost_complete": estimate.complete,
        "active": run.status not in FINAL_RUN,
        "retryable": run.status in (RunStatus.FAILED, RunStatus.KILLED),
        "may_operate": request.user.has_perm(OPERATE),
        "marker": markers.run(run),
    }


def _run(run_id: int) -> ProcessRun:
    return get_object_or_404(
        ProcessRun.objects.select_related("definition", "triggered_by", "kill_requested_by"),
        pk=run_id,
    )


@login_required
def run_page(request: HttpRequest, run_id: int) -> HttpResponse:
    run = _run(run_id)
    if request.htmx and request.GET.get("since") == markers.run(run):
        return HttpResponse(status=204)
    template = "jobs/partials/run_body.html" if request.htmx else "jobs/run.html"
    return render(request, template, _context(request, run))


def _operator(request: HttpRequest) -> None:
    if not request.user.has_perm(OPERATE):
        raise PermissionDenied("you may not kill or retry runs")


@require_POST
@login_required
def kill(request: HttpRequest, run_id: int) -> HttpResponse:
    _operator(request)
    run = _run(run_id)
    if request_kill(run.pk, user=request.user, reason=f"killed by {request.user.get_username()}"):
        messages.success(request, f"run {run.pk}: kill requested")
    elif run.status in FINAL_RUN:
        messages.warning(request, f"run {run.pk} is already {run.status}")
    else:
        messages.warning(request, f"run {run.pk}: a kill was already requested")
    return redirect("run", run_id=run.pk)


@require_POST
@login_required
def retry(request: HttpRequest, run_id: int) -> HttpResponse:
    """Retry the failed tasks: in this run on its frozen definition, or in a new run on the
    process as it is now (which picks up a fix made in the admin)."""
    _operator(request)
    run = _run(run_id)
    try:
        if request.POST.get("on") == "current":
            new = rerun_on_current_definition(run.pk, user=request.user)
            messages.success(request, f"run {new.pk} started on the current definition")
            return redirect("run", run_id=new.pk)
        names = retry_failed_tasks(run.pk, user=request.user)
    except TriggerError as exc:
        messages.error(request, str(exc))
        return redirect("run", run_id=run.pk)
    messages.success(request, f"run {run.pk}: retrying {', '.join(names)}")
    return redirect(reverse("run", kwargs={"run_id": run.pk}))
