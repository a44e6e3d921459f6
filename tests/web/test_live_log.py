"""The live log: the tail first, new lines by cursor, earlier pages, a download, every
answer bounded however large the log or its lines."""

import html
import re
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse

from executors.memory import MemoryExecutor
from jobs import aws_runtime
from jobs.engine import AttemptStatus
from jobs.logs import LINE_BYTES, PAGE_BYTES, PAGE_LINES
from jobs.models import TaskRun, Trigger
from jobs.orchestrator import trigger_run
from jobs.submission import submit_task_run
from tests.conftest import make_process, serve_memory
from tests.orchestrator.driving import drive

pytestmark = pytest.mark.django_db(transaction=True)

NEXT = re.compile(r'hx-get="[^"]*/log/more\?cursor=(\d+)"')
EARLIER = re.compile(r'hx-get="([^"]*/log/earlier\?before=[^"]*)"')


def finished_attempt(output: str) -> TaskRun:
    """An attempt of a local task that wrote the bytes of the Python expression ``output``."""
    program = [sys.executable, "-c", f"import sys; sys.stdout.buffer.write({output})"]
    process = make_process("logged", {"logged": {"config": {"command": program}}})
    run = trigger_run(process, Trigger.MANUAL)
    without_old_log(run.task_runs.get())
    return drive(run).task_runs.get()


def without_old_log(attempt: TaskRun) -> None:
    """Remove a log an earlier test session left under this attempt's name: the database
    starts afresh each session, the log directory does not, and a log is appended to."""
    (settings.SUNDIAL_LOG_DIR / f"{attempt.idempotency_key}.log").unlink(missing_ok=True)


def lines_of(body: bytes) -> list[str]:
    return re.findall(r'<div class="line(?: alarm)?">(.*?)</div>', body.decode(), re.DOTALL)


@pytest.fixture
def logged_in(client, admin_user):
    client.force_login(admin_user)
    return client


def more(client, attempt: TaskRun, cursor: str):
    return client.get(reverse("task-run-log-more", args=[attempt.pk]), {"cursor": cursor})


def test_the_page_shows_the_tail_of_a_20_mb_log_quickly_and_pages_backwards(logged_in):
    attempt = finished_attempt(
        "b''.join(b'%08d some text of the line\\n' % i for i in range(700_000))"
    )
    assert Path(attempt.log_ref).stat().st_size > 20_000_000
    started = time.monotonic()
    body = logged_in.get(reverse("task-run-log", args=[attempt.pk])).content
    assert time.monotonic() - started < 1.0
    assert len(body) < PAGE_BYTES // 4, "a page of the tail, not the log"
    shown = lines_of(body)
    assert len(shown) == PAGE_LINES
    assert shown[0].startswith("00699800") and shown[-1].startswith("00699999")

    before = re.search(rb'log/earlier\?before=(\d+)"', body).group(1).decode()
    earlier = logged_in.get(reverse("task-run-log-earlier", args=[attempt.pk]), {"before": before})
    shown = lines_of(earlier.content)
    assert shown[0].startswith("00699600") and shown[-1].startswith("00699799"), (
        "no gap, no overlap"
    )
    assert b"Load earlier lines" in earlier.content


def test_a_single_50_mb_line_is_cut_in_every_answer(logged_in):
    attempt = finished_attempt("b'x' * (50 << 20) + b'\\nafter it\\n'")
    body = logged_in.get(reverse("task-run-log", args=[attempt.pk])).content
    assert lines_of(body) == ["after it"], "the tail starts after the piece of a line"
    before = re.search(rb'log/earlier\?before=(\d+)"', body).group(1).decode()
    earlier = logged_in.get(reverse("task-run-log-earlier", args=[attempt.pk]), {"before": before})
    assert len(earlier.content) < LINE_BYTES + 1_000
    assert earlier.content.count(b"line cut at 64 KiB; download the whole log") == 1

    started = time.monotonic()
    response = more(logged_in, attempt, "0")
    assert time.monotonic() - started < 2.0
    assert response.status_code == 200 and len(response.content) < LINE_BYTES + 10_000
    assert response.content.count(b"line cut at 64 KiB") == 1, "the rest of the line is skipped"


def test_paging_back_to_the_start_through_a_line_longer_than_a_page(logged_in):
    attempt = finished_attempt("b'x' * (300 << 10) + b'\\nafter it\\n'")
    body = logged_in.get(reverse("task-run-log", args=[attempt.pk])).content
    pages = [lines_of(body)]
    while before := re.search(rb'log/earlier\?before=(\d+)"', body):
        url = reverse("task-run-log-earlier", args=[attempt.pk])
        body = logged_in.get(url, {"before": before.group(1).decode()}).content
        pages.insert(0, lines_of(body))
    assert len(pages) == 3 and pages[-1] == ["after it"]
    assert all(len(page) == 1 and page[0].startswith("x" * 1000) for page in pages[:2])


def test_new_lines_come_after_the_cursor_and_polling_stops_once_all_is_read(logged_in):
    attempt = finished_attempt("b'one\\n'")
    cursor = NEXT.search(logged_in.get(reverse("task-run-log", args=[attempt.pk])).content.decode())
    with open(attempt.log_ref, "ab") as log:
        log.write(b"two\nthree\n")
    response = more(logged_in, attempt, cursor.group(1))
    assert response.status_code == 200
    assert lines_of(response.content) == ["two", "three"]
    assert b'id="log-poller" hx-swap-oob="true"' in response.content
    following = NEXT.search(response.content.decode()).group(1)
    assert int(following) == Path(attempt.log_ref).stat().st_size

    last = more(logged_in, attempt, following)
    assert last.status_code == 286, "final and exhausted: HTMX stops polling"
    assert lines_of(last.content) == [] and b"badge-succeeded" in last.content


def test_an_attempt_that_has_not_started_is_polled_until_it_has_a_log(logged_in):
    process = make_process("later", {"a": {}, "b": {"requires": ["a"]}})
    waiting = trigger_run(process, Trigger.MANUAL).task_runs.get(task_name="b")
    body = logged_in.get(reverse("task-run-log", args=[waiting.pk])).content.decode()
    assert "has not started, so it has no log yet" in body
    assert f'hx-get="/task-runs/{waiting.pk}/log/more" hx-trigger="every 1s"' in body
    assert logged_in.get(reverse("task-run-log-more", args=[waiting.pk])).status_code == 204


def test_nothing_new_for_a_running_attempt_is_an_empty_answer(logged_in):
    attempt = finished_attempt("b'one\\n'")
    TaskRun.objects.filter(pk=attempt.pk).update(status=AttemptStatus.RUNNING)
    response = more(logged_in, attempt, "4")
    assert response.status_code == 204 and response.content == b""


def test_lines_are_escaped_and_errors_highlighted(logged_in):
    attempt = finished_attempt(
        "b'<script>alert(1)</script>\\nERROR: boom\\nTraceback (most recent call last):\\nok\\n'"
    )
    body = logged_in.get(reverse("task-run-log", args=[attempt.pk])).content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body and "<script>alert" not in body
    assert '<div class="line alarm">ERROR: boom</div>' in body
    assert '<div class="line alarm">Traceback (most recent call last):</div>' in body
    assert '<div class="line">ok</div>' in body


def test_the_download_is_the_whole_log(logged_in):
    attempt = finished_attempt("b''.join(b'row %d\\n' % i for i in range(300_000))")
    response = logged_in.get(reverse("task-run-log-download", args=[attempt.pk]))
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment; filename=")
    assert b"".join(response.streaming_content) == Path(attempt.log_ref).read_bytes()


@pytest.mark.parametrize("cursor", ["abc", "-5", "1e3", "٣"])
def test_a_bad_cursor_is_a_400_that_says_why(logged_in, cursor):
    attempt = finished_attempt("b'one\\n'")
    response = more(logged_in, attempt, cursor)
    assert response.status_code == 400 and b"invalid log cursor" in response.content
    earlier = logged_in.get(reverse("task-run-log-earlier", args=[attempt.pk]), {"before": cursor})
    assert earlier.status_code == 400


@pytest.mark.parametrize("name", ["task-run-log", "task-run-log-more", "task-run-log-download"])
def test_an_unknown_attempt_is_a_404_and_a_visitor_logs_in(client, admin_user, name):
    assert client.get(reverse(name, args=[999_999])).status_code == 302
    client.force_login(admin_user)
    assert client.get(reverse(name, args=[999_999])).status_code == 404


def test_a_log_kept_by_the_executor_reads_from_its_start_and_downloads_page_by_page(
    logged_in, monkeypatch
):
    executor = serve_memory(monkeypatch, MemoryExecutor())
    process = make_process("remote", {"remote": {"executor": "memory", "config": {}}})
    attempt = trigger_run(process, Trigger.MANUAL).task_runs.get()
    submit_task_run(attempt.pk)
    attempt.refresh_from_db()
    executor.write_log(attempt.external_id, "first", "ERROR second")

    body = logged_in.get(reverse("task-run-log", args=[attempt.pk])).content
    assert lines_of(body) == ["first", "ERROR second"]
    assert b"Load earlier lines" not in body, "no earlier pages from a log read forward only"
    earlier = logged_in.get(reverse("task-run-log-earlier", args=[attempt.pk]), {"before": "0"})
    assert earlier.status_code == 400 and earlier.content == b"this log is read forward only"
    executor.write_log(attempt.external_id, "third")
    response = more(logged_in, attempt, NEXT.search(body.decode()).group(1))
    assert lines_of(response.content) == ["third"]
    assert more(logged_in, attempt, "3").status_code == 204, "running, nothing new"
    assert more(logged_in, attempt, "x").status_code == 400

    download = logged_in.get(reverse("task-run-log-download", args=[attempt.pk]))
    assert download["Content-Disposition"] == (
        f'attachment; filename="remote-run{attempt.run_id}-remote-1.1.log"'
    )
    assert b"".join(download.streaming_content) == b"first\nERROR second\nthird\n"


def cloudwatch_attempt(aws, *lines: str) -> TaskRun:
    """A submitted attempt of an ECS task whose container wrote ``lines`` to CloudWatch."""
    cluster = aws.ecs_cluster()
    config = {
        "image": "repo/etl:1",
        "cluster": cluster.name,
        "subnets": [cluster.subnet],
        "security_groups": [cluster.security_group],
        "log_group": "/sundial/etl",
    }
    process = make_process("remote", {"extract": {"executor": "ecs", "config": config}})
    attempt = trigger_run(process, Trigger.MANUAL).task_runs.get()
    submit_task_run(attempt.pk)
    attempt.refresh_from_db()
    aws.run_ecs_task(attempt.external_id, *lines)
    return attempt


def test_a_cloudwatch_log_shows_its_tail_and_pages_back_to_its_start(logged_in, aws):
    attempt = cloudwatch_attempt(aws, *(f"row {i:04d} <b>" for i in range(1000)))
    body = logged_in.get(reverse("task-run-log", args=[attempt.pk])).content.decode()
    pages = [lines_of(body.encode())]
    assert pages[0] == [f"row {i:04d} &lt;b&gt;" for i in range(800, 1000)], "escaped"
    assert NEXT.search(body) is None, "the poller reads on by CloudWatch's token"

    while button := EARLIER.search(body):
        answer = logged_in.get(html.unescape(button.group(1)))
        assert answer.status_code == 200
        body = answer.content.decode()
        assert body.startswith('<div id="log-earlier">'), "the button replaces itself"
        pages.insert(0, lines_of(answer.content))
    assert [len(page) for page in pages] == [PAGE_LINES] * 5, "the start needs no empty page"
    assert [line for page in pages for line in page] == [
        f"row {i:04d} &lt;b&gt;" for i in range(1000)
    ], "no gap, no overlap"
    assert "Load earlier lines" not in body


def test_a_short_cloudwatch_log_offers_nothing_earlier(logged_in, aws):
    attempt = cloudwatch_attempt(aws, "one", "two")
    body = logged_in.get(reverse("task-run-log", args=[attempt.pk])).content
    assert lines_of(body) == ["one", "two"]
    assert b"Load earlier lines" not in body


def test_a_cloudwatch_position_it_does_not_know_is_said_in_place_of_the_button(logged_in, aws):
    attempt = cloudwatch_attempt(aws, "one")
    url = reverse("task-run-log-earlier", args=[attempt.pk])
    response = logged_in.get(url, {"before": "earlier:b/expired"})
    assert response.status_code == 200, "HTMX shows no 4xx answer"
    body = response.content.decode()
    assert '<p class="problem">cannot read the earlier lines: GetLogEvents: ' in body
    assert "InvalidParameterException: The specified nextToken is invalid." in body
    assert "Load earlier lines" not in body, "asking again cannot help"


def test_cloudwatch_throttling_keeps_the_button_to_try_again(logged_in, aws, settings):
    attempt = cloudwatch_attempt(aws, *(f"row {i}" for i in range(300)))
    before = html.unescape(
        EARLIER.search(
            logged_in.get(reverse("task-run-log", args=[attempt.pk])).content.decode()
        ).group(1)
    )
    settings.SUNDIAL_AWS_MAX_ATTEMPTS = 2  # botocore's backoff would make the test slow
    aws_runtime.forget()
    aws.throttle("logs", "GetLogEvents", times=100)
    body = logged_in.get(before).content.decode()
    assert "cannot read the earlier lines: GetLogEvents: ThrottlingException" in body
    assert html.unescape(EARLIER.search(body).group(1)) == before, "the same page, asked again"
