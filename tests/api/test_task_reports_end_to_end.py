"""A real local task reports to the real HTTP API with the credentials in its environment."""

import sys

import pytest

from jobs.models import TaskMetadata, Trigger
from jobs.orchestrator import trigger_run
from tests.conftest import make_process
from tests.orchestrator.driving import attempts, drive

pytestmark = pytest.mark.django_db(transaction=True)

REPORT = """
import json, os, sys, urllib.request
body = json.dumps({"success": sys.argv[1] == "yes", "metadata": {"rows": 1042, "source": "orders"}})
request = urllib.request.Request(
    f"{os.environ['SUNDIAL_API_URL']}/api/v1/task-runs/{os.environ['SUNDIAL_TASK_RUN_ID']}/report",
    data=body.encode(),
    headers={"Authorization": f"Bearer {os.environ['SUNDIAL_TOKEN']}"},
    method="POST",
)
urllib.request.urlopen(request).read()
"""


def _task(report: str | None) -> dict:
    command = [sys.executable, "-c", REPORT, report] if report else ["true"]
    return {"config": {"command": command}, "require_explicit_success": True}


@pytest.fixture
def api_url(live_server, settings):
    settings.SUNDIAL_API_URL = live_server.url


def test_explicit_success_and_metadata_reported_over_http(api_url):
    process = make_process(
        "reporting",
        {"reports": _task("yes"), "forgets": _task(None), "refuses": _task("no")},
        overlap="allow",
    )
    run = drive(trigger_run(process, Trigger.API))
    assert attempts(run) == [
        ("reports", 1, "succeeded"),
        ("forgets", 1, "failed"),
        ("refuses", 1, "failed"),
    ]
    by_task = {tr.task_name: tr for tr in run.task_runs.all()}
    assert by_task["forgets"].reason == "exited 0 without reporting success"
    assert by_task["refuses"].reason == "exited 0 but reported failure"
    rows = TaskMetadata.objects.get(task_run=by_task["reports"], key="rows")
    assert (rows.value, rows.numeric_value) == (1042, 1042.0)
