"""What a person sees: the home table updating itself, and the admin naming bad input."""

import pytest

from jobs.models import Trigger
from jobs.orchestrator import trigger_run
from tests.conftest import make_process
from tests.orchestrator.driving import drive

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.browser]


def test_the_home_table_shows_a_finished_run_without_a_page_reload(page):
    process = make_process("watched")
    page.goto("/")
    assert page.locator("#processes").inner_text().count("never run") == 1
    page.evaluate("window.sameDocument = true")
    drive(trigger_run(process, Trigger.MANUAL))
    page.wait_for_selector("#processes .badge-succeeded", timeout=15_000)
    assert page.evaluate("window.sameDocument === true"), "HTMX swapped the table in place"


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
