import pytest
from django.urls import reverse

from jobs.models import TaskRun, Trigger
from jobs.orchestrator import trigger_run
from tests.conftest import make_process


@pytest.fixture
def attempt(db) -> TaskRun:
    """A running attempt, as a task calling the API would have."""
    run = trigger_run(make_process("etl", tasks={"extract": {}, "load": {}}), Trigger.MANUAL)
    TaskRun.objects.filter(run=run, task_name="extract").update(status="running")
    return TaskRun.objects.get(run=run, task_name="extract")


@pytest.fixture
def report(client):
    """POST a report the way a task's curl does; returns the response."""

    def post(attempt_id: int, body: str | bytes, token: str | None):
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return client.post(
            reverse("api-task-run-report", args=[attempt_id]),
            body,
            content_type="application/json",
            headers=headers,
        )

    return post
