"""The log page of one attempt: what it printed, read through its executor."""

import re
import sys

import pytest
from django.template.defaultfilters import filesizeformat
from django.urls import reverse

from jobs.logs import MAX_BYTES
from jobs.models import TaskRun, Trigger
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


def test_a_long_log_is_cut_to_one_page(client, admin_user, monkeypatch):
    monkeypatch.setattr("jobs.logs.MAX_LINES", 10)
    process = make_process("long", {"long": {"config": {"shell": "seq 1 50"}}})
    run = drive(trigger_run(process, Trigger.MANUAL))
    client.force_login(admin_user)
    page = client.get(reverse("task-run-log", args=[run.task_runs.get().pk])).content.decode()
    assert "This page shows only the first 21\xa0bytes (10 lines) of the log." in page
    assert "\n10\n" in page and "\n11\n" not in page
    assert TaskRun.objects.count() == 1


@pytest.mark.parametrize(
    "output",
    [
        pytest.param("'x' * (21 << 20) + '\\n'", id="one 21 MiB line"),
        pytest.param("('y' * 999 + '\\n') * 3000", id="3,000 lines of 1,000 bytes"),
        pytest.param("('\\xe9' * 999 + '\\n') * 1000", id="a cut through a character"),
    ],
)
def test_a_log_page_holds_at_most_max_bytes_of_text(client, admin_user, output):
    program = [sys.executable, "-c", f"import sys; sys.stdout.buffer.write(({output}).encode())"]
    process = make_process("wide", {"wide": {"config": {"command": program}}})
    run = drive(trigger_run(process, Trigger.MANUAL))
    client.force_login(admin_user)
    body = client.get(reverse("task-run-log", args=[run.task_runs.get().pk])).content
    text = re.search(rb'<pre class="log">(.*)</pre>', body, re.DOTALL).group(1)
    assert MAX_BYTES - 4 < len(text) <= MAX_BYTES, "the log is shown up to the cap, no further"
    text.decode()  # a cut never splits a character
    assert len(body) < MAX_BYTES + 10_000, "the rest of the page is small"
    lines = text.count(b"\n")
    notice = f"This page shows only the first {filesizeformat(len(text))} ({lines} lines)"
    assert notice.encode() in body
