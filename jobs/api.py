"""The JSON API tasks call while they run, authenticated by their attempt's own token.

A task finds what it needs in its environment::

    curl -X POST -H "Authorization: Bearer $SUNDIAL_TOKEN" \\
        "$SUNDIAL_API_URL/api/v1/task-runs/$SUNDIAL_TASK_RUN_ID/report" -d '{"success": true}'
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from jobs.engine import ACTIVE_ATTEMPT
from jobs.json_input import JsonInputError, parse_json_object
from jobs.models import TaskMetadata, TaskRun

_REPORT_FIELDS = {"success", "metadata"}
_KEY_MAX = TaskMetadata._meta.get_field("key").max_length


class BadRequest(ValueError):
    """The request body cannot be used; the message tells the task's author why."""


@dataclass(frozen=True)
class Report:
    success: bool | None = None
    metadata: dict[str, Any] = field(default_factory=dict)


def parse_report(body: bytes) -> Report:
    """The report in a request body, or BadRequest saying what is wrong with it."""
    try:
        data = parse_json_object(body, "body")
    except JsonInputError as exc:
        raise BadRequest(str(exc)) from None
    if unknown := sorted(data.keys() - _REPORT_FIELDS):
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}")
    success = data.get("success")
    if "success" in data and not isinstance(success, bool):
        raise BadRequest("success must be true or false")
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict):
        raise BadRequest("metadata must be an object")
    if long := [key for key in metadata if len(key) > _KEY_MAX]:
        raise BadRequest(f"metadata key longer than {_KEY_MAX} characters: {long[0][:40]}...")
    return Report(success, metadata)


def _numeric(value: Any) -> float | None:
    """The value as a metric; booleans are flags, not numbers."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:  # an integer beyond any float: kept as a value, not a metric
        return None


def record_report(task_run_id: int, report: Report) -> bool:
    """Store a report on an active attempt; False (nothing stored) if it is not active."""
    with transaction.atomic():
        active = TaskRun.objects.filter(pk=task_run_id, status__in=ACTIVE_ATTEMPT)
        # The conditional UPDATE decides: success reported after the attempt ended would
        # not count, so it must not be stored as if it did.
        found = (
            active.update(reported_success=report.success)
            if report.success is not None
            else active.exists()
        )
        if not found:
            return False
        TaskMetadata.objects.bulk_create(
            [
                TaskMetadata(task_run_id=task_run_id, key=k, value=v, numeric_value=_numeric(v))
                for k, v in report.metadata.items()
            ],
            update_conflicts=True,
            unique_fields=["task_run", "key"],
            update_fields=["value", "numeric_value", "reported_at"],
        )
    return True


def _error(status: int, message: str) -> JsonResponse:
    response = JsonResponse({"error": message}, status=status)
    if status == 401:
        response["WWW-Authenticate"] = "Bearer"
    return response


def _bearer_token(request: HttpRequest) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


@csrf_exempt  # called by tasks with their token, never by a browser with a session
@require_POST
def report_task_run(request: HttpRequest, task_run_id: int) -> JsonResponse:
    """Record a task's explicit success and metadata for its running attempt."""
    token = _bearer_token(request)
    if token is None:
        return _error(401, "missing token: send 'Authorization: Bearer $SUNDIAL_TOKEN'")
    task_run = TaskRun.objects.filter(pk=task_run_id).only("token").first()
    if task_run is None:
        return _error(404, f"task run {task_run_id} does not exist")
    if not secrets.compare_digest(token.encode(), task_run.token.encode()):
        return _error(401, "invalid token for this task run")
    try:
        report = parse_report(request.body)
    except BadRequest as exc:
        return _error(400, str(exc))
    if not record_report(task_run_id, report):
        return _error(409, f"task run {task_run_id} is no longer active")
    return JsonResponse({"ok": True})
