"""Build the process admin's POST data (form + task inline formset) and read its errors."""

from __future__ import annotations

from django.utils.html import escape

from jobs.models import ProcessDefinition

PROCESS_FIELDS = {
    "name": "etl",
    "description": "",
    "owner": "",
    "schedule_kind": "none",
    "cron": "",
    "timezone": "UTC",
    "min_gap_seconds": "60",
    "catch_up": "latest",
    "catch_up_window_seconds": "86400",
    "overlap": "skip",
    "page_after_failures": "1",
    "missed_start_grace_s": "300",
}
TASK_FIELDS = {
    "executor": "local",
    "config": '{"command": ["true"]}',
    "requires": "",
    "runs_after": "",
    "max_attempts": "1",
    "retry_initial_delay_s": "10",
    "retry_multiplier": "2",
    "retry_max_delay_s": "600",
    "retry_jitter": "0.1",
    "time_limit_s": "",
    "retry_on_timeout": "on",
    "retry_rules": "[]",
    "oom_memory_factor": "2",
    "oom_memory_max_mib": "",
}


def process_form(tasks: list[dict], *, existing: int = 0, **fields) -> dict:
    """POST data for the add/change page; a field given as None is left out (an unticked box)."""
    data = {**PROCESS_FIELDS, **fields}
    data |= {
        "tasks-TOTAL_FORMS": str(len(tasks)),
        "tasks-INITIAL_FORMS": str(existing),
        "tasks-MIN_NUM_FORMS": "0",
        "tasks-MAX_NUM_FORMS": "1000",
        # The notifications inline, with no rows unless a test adds some.
        "subscriptions-TOTAL_FORMS": "0",
        "subscriptions-INITIAL_FORMS": "0",
        "subscriptions-MIN_NUM_FORMS": "0",
        "subscriptions-MAX_NUM_FORMS": "1000",
    }
    for i, task in enumerate(tasks):
        data |= {f"tasks-{i}-{key}": value for key, value in {**TASK_FIELDS, **task}.items()}
    return {key: value for key, value in data.items() if value is not None}


def current_form(process: ProcessDefinition, **fields) -> dict:
    """POST data that saves a process as it is stored, with ``fields`` changed."""
    tasks = []
    for task in process.tasks.prefetch_related("upstream_edges__upstream"):
        edges = task.upstream_edges.all()
        tasks.append(
            {
                "id": str(task.pk),
                "name": task.name,
                "requires": ", ".join(e.upstream.name for e in edges if e.required),
                "runs_after": ", ".join(e.upstream.name for e in edges if not e.required),
            }
        )
    return process_form(tasks, existing=len(tasks), name=process.name, **fields)


def error_messages(response) -> list[str]:
    """Every error the admin shows for a rejected save, each checked to be on the page."""
    assert response.status_code == 200, f"the save was accepted ({response.status_code})"
    # The admin's list holds the inline formset's own errors as strings, the rest as lists.
    messages = []
    for errors in response.context["errors"]:
        messages += [errors] if isinstance(errors, str) else list(errors)
    page = response.content.decode()
    for message in messages:
        assert escape(message) in page, f"{message!r} is not shown"
    return messages
