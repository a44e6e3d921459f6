"""What a person sees: the dashboard updating itself, and the admin naming bad input."""

from pathlib import Path

import pytest

from jobs.models import Trigger
from jobs.orchestrator import trigger_run
from tests.conftest import make_process
from tests.orchestrator.driving import drive
from tests.web.test_live_log import without_old_log

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]

# Screenshots of the pages, for a person to look at after a run (not committed).
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
SCREENSHOTS.mkdir(parents=True, exist_ok=True)


def test_the_dashboard_turns_red_when_a_run_fails_without_a_page_reload(page):
    process = make_process("watched", {"only": {"config": {"command": ["false"]}}})
    page.goto("/")
    assert page.locator("#board").inner_text().count("never run") == 1
    page.evaluate("window.sameDocument = true")
    drive(trigger_run(process, Trigger.MANUAL))
    page.wait_for_selector("#board .square.failed", timeout=15_000)
    page.wait_for_selector("#board .light.red")
    assert page.evaluate("window.sameDocument === true"), "HTMX swapped the board in place"
    page.screenshot(path=str(SCREENSHOTS / "dashboard.png"), full_page=True)


def test_the_admin_names_what_is_wrong_with_a_process(page):
    process = make_process(
        "edited", {"extract": {}, "load": {"requires": ["extract"]}}, schedule_kind="cron",
        cron="0 * * * *",
    )  # fmt: skip
    page.goto(f"/admin/jobs/processdefinition/{process.pk}/change/")
    page.fill("#id_cron", "0 25 * * *")
    page.fill("#id_tasks-0-requires", "load")
    page.fill("#id_tasks-1-config", '{"command": ["true"],}')
    with page.expect_navigation():
        page.click("input[name=_save]")
    errors = page.locator(".errorlist").all_inner_texts()
    assert any("invalid cron expression '0 25 * * *'" in e for e in errors)
    assert any("dependency cycle: extract → load → extract" in e for e in errors)
    assert any("config is not valid JSON" in e for e in errors)
    assert page.input_value("#id_tasks-1-config") == '{"command": ["true"],}', (
        "nothing typed is lost"
    )


def test_the_kill_button_stops_a_running_local_task(page):
    from jobs.submission import submit_task_run
    from tests.workers import alive, task_pid, wait_until_this_process_recorded_its_exits

    process = make_process("endless", {"only": {"config": {"command": ["sleep", "300"]}}})
    run = trigger_run(process, Trigger.MANUAL)
    attempt = run.task_runs.get()
    submit_task_run(attempt.pk)  # this process's local runtime runs it, as a worker would
    attempt.refresh_from_db()
    pid = task_pid(attempt)
    assert alive(pid)
    page.goto(f"/runs/{run.pk}/")
    with page.expect_navigation():
        page.click("button.danger")  # Kill
    assert "kill requested" in page.inner_text("ul.messages")
    page.wait_for_selector(".badge-killed", timeout=20_000)  # the live page shows the end
    wait_until_this_process_recorded_its_exits()
    assert not alive(pid), "the task's process is gone"
    page.screenshot(path=str(SCREENSHOTS / "run_killed.png"), full_page=True)


def test_a_script_tag_printed_by_a_task_shows_as_text(page):
    shout = "echo '<script>window.pwned = 1</script><b>not bold</b>'"
    process = make_process("printer", {"printer": {"config": {"shell": shout}}})
    run = trigger_run(process, Trigger.MANUAL)
    attempt = run.task_runs.get()
    without_old_log(attempt)  # another test's attempt of the same id may have left one
    drive(run)
    page.goto(f"/task-runs/{attempt.pk}/log")
    page.wait_for_selector("#log .line")
    assert page.locator("#log .line").all_inner_texts() == [
        "<script>window.pwned = 1</script><b>not bold</b>"
    ]
    assert page.evaluate("window.pwned === undefined"), "the script never ran"
    assert page.locator("#log b").count() == 0


def test_the_process_page_recolours_its_dag_as_a_run_goes_without_a_reload(page):
    process = make_process(
        "nightly",
        {"extract": {}, "load": {"config": {"command": ["false"]}, "requires": ["extract"]}},
    )
    page.goto(f"/processes/{process.name}/")
    assert page.locator("section.history").inner_text().count("Never run") == 1
    page.evaluate("window.sameDocument = true")
    run = drive(trigger_run(process, Trigger.MANUAL))
    page.wait_for_selector("svg g.task.failed", timeout=15_000)
    page.wait_for_selector(f"section.history a[href='/runs/{run.pk}/']")
    assert page.locator("svg g.task.succeeded").count() == 1, "extract, green"
    assert page.evaluate("window.sameDocument === true"), "HTMX swapped the body in place"
    page.screenshot(path=str(SCREENSHOTS / "process.png"), full_page=True)
