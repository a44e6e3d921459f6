"""The live log in a real browser: lines appear while a local task prints them, and the
page stops asking once the attempt is over."""

from pathlib import Path

import pytest

from jobs.engine import AttemptStatus
from jobs.models import Trigger
from jobs.orchestrator import trigger_run
from jobs.submission import submit_task_run
from tests.conftest import make_process
from tests.orchestrator.driving import drive
from tests.web.test_live_log import without_old_log

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
SCREENSHOTS.mkdir(parents=True, exist_ok=True)

PRINTS = (
    "echo 'starting <job>'; for i in 1 2 3 4 5 6; do echo line $i; sleep 0.5; done; "
    "echo 'ERROR: row 7 is bad'; echo done"
)


def test_lines_appear_while_a_local_task_prints_them_and_polling_stops_at_the_end(page):
    process = make_process("printer", {"printer": {"config": {"shell": PRINTS}}})
    run = trigger_run(process, Trigger.MANUAL)
    attempt = run.task_runs.get()
    without_old_log(attempt)
    submit_task_run(attempt.pk)
    attempt.refresh_from_db()
    assert attempt.status == AttemptStatus.RUNNING

    polls: list[int] = []
    page.on("response", lambda r: "/log/more" in r.url and polls.append(r.status))
    page.goto(f"/task-runs/{attempt.pk}/log")
    page.evaluate("window.sameDocument = true")
    page.wait_for_selector("#log .line:text-is('line 2')", timeout=10_000)
    assert "done" not in page.locator("#log").inner_text(), "the task is still printing"

    drive(run)
    page.wait_for_selector("#log .line:text-is('done')", timeout=10_000)
    page.wait_for_selector("#log-status .badge-succeeded", timeout=10_000)
    shown = page.locator("#log .line").all_inner_texts()
    assert shown == [
        "starting <job>",
        *(f"line {i}" for i in range(1, 7)),
        "ERROR: row 7 is bad",
        "done",
    ]
    assert page.locator("#log .line.alarm").all_inner_texts() == ["ERROR: row 7 is bad"]
    assert page.evaluate("window.sameDocument === true"), "no reload"
    page.screenshot(path=str(SCREENSHOTS / "live_log.png"), full_page=True)

    # Playwright reports responses while the page is waited on, not during time.sleep.
    for _ in range(50):
        if 286 in polls:
            break
        page.wait_for_timeout(100)
    assert polls[-1] == 286, polls
    page.wait_for_timeout(2500)
    assert polls[-1] == 286 and polls.count(286) == 1, "no more polls after 286"
