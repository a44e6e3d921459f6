"""The log page of one attempt: what it printed, read through its executor."""

import pytest
from django.urls import reverse

from jobs.models import Trigger
from jobs.orchestrator import trigger_run
from tests.conftest import make_process
from tests.orchestrator.driving import drive

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_failed_attempt_shows_its_output_and_reason(client, admin_user):
    process = make_process(
        "noisy",
        {
            "noisy": {
                "config": {
                    "shell": "echo 'reading <orders>'; printf '\\377 bad byte\\n' >&2; exit 4"
                }
            }
        },
    )
    run = drive(trigger_run(process, Trigger.MANUAL))
    attempt = run.task_runs.get()
    client.force_login(admin_user)
    page = client.get(reverse("task-run-log", args=[attempt.pk])).content.decode()
    assert "reading &lt;orders&gt;" in page, "output is shown, and escaped"
    assert "\ufffd bad byte" in page, "bytes that are not UTF-8 do not break the page"
    assert "exit code 4" in page


def test_an_attempt_that_never_started_says_so(client, admin_user):
    process = make_process("later", {"a": {}, "b": {"requires": ["a"]}})
    run = trigger_run(process, Trigger.MANUAL)
    waiting = run.task_runs.get(task_name="b")
    client.force_login(admin_user)
    page = client.get(reverse("task-run-log", args=[waiting.pk])).content.decode()
    assert "has not started, so it has no log yet" in page


def test_the_log_needs_a_login(client):
    response = client.get(reverse("task-run-log", args=[1]))
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
