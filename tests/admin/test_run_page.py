"""The run page shows every attempt with why it is where it is, and the event trail."""

import pytest
from django.urls import reverse

from jobs.models import ProcessRun, TaskRun, Trigger
from jobs.orchestrator import trigger_run
from tests.conftest import make_process

pytestmark = pytest.mark.django_db


def start(name="etl", tasks=None):
    tasks = tasks or {"extract": {}, "load": {"requires": ["extract"]}}
    return trigger_run(make_process(name, tasks=tasks), Trigger.MANUAL)


def run_page(client, run):
    return client.get(reverse("admin:jobs_processrun_change", args=[run.pk]))


def test_attempts_show_the_engines_reasons(admin_client):
    run = start()
    TaskRun.objects.filter(run=run, task_name="extract").update(
        status="running", log_ref="/var/log/sundial/etl-1.log"
    )
    html = run_page(admin_client, run).content.decode()
    assert "<td>extract</td>" in html and "<td>1.1</td>" in html
    assert '<span class="badge badge-running">running</span>' in html
    assert "<td>waiting for extract</td>" in html, "load's reason comes from the engine"
    extract = run.task_runs.get(task_name="extract")
    assert f'<a href="{reverse("task-run-log", args=[extract.pk])}">log</a>' in html


def test_finished_attempts_show_their_own_reason_and_exit_code(admin_client):
    run = start(tasks={"only": {}})
    TaskRun.objects.filter(run=run).update(status="failed", exit_code=3, reason="exit code 3")
    ProcessRun.objects.filter(pk=run.pk).update(status="failed")
    html = run_page(admin_client, run).content.decode()
    assert "<td>exit code 3</td>" in html and "<td>3</td>" in html


def test_events_show_what_happened_and_who_did_it(admin_client, admin_user):
    run = trigger_run(make_process("etl"), Trigger.MANUAL, user=admin_user)
    html = run_page(admin_client, run).content.decode()
    assert "<td>triggered</td>" in html
    assert "<td>manual by admin; no other run is active</td>" in html
    assert "<td>admin</td>" in html


def test_runs_are_read_only(admin_client):
    run = start()
    assert admin_client.get(reverse("admin:jobs_processrun_add")).status_code == 403
    assert (
        admin_client.get(reverse("admin:jobs_processrun_delete", args=[run.pk])).status_code == 403
    )
    response = admin_client.post(
        reverse("admin:jobs_processrun_change", args=[run.pk]), {"status": "succeeded"}
    )
    assert response.status_code == 403
    run.refresh_from_db()
    assert run.status == "running"
    html = run_page(admin_client, run).content.decode()
    assert 'name="_save"' not in html


def test_the_page_costs_the_same_however_many_attempts(admin_client, django_assert_max_num_queries):
    small = start("small", tasks={"only": {}})
    big = start("big", tasks={f"t{i}": {} for i in range(12)})
    run_page(admin_client, small)  # warm the session and content types
    with django_assert_max_num_queries(5) as small_queries:
        assert run_page(admin_client, small).status_code == 200
    with django_assert_max_num_queries(len(small_queries)):
        assert run_page(admin_client, big).status_code == 200


def test_the_run_list_filters_by_status(admin_client):
    running = start("a")
    skipped = start("b", tasks={"only": {}})
    ProcessRun.objects.filter(pk=skipped.pk).update(status="skipped")
    url = reverse("admin:jobs_processrun_changelist")
    response = admin_client.get(url, {"status": "running"})
    assert list(response.context["cl"].result_list) == [running]


def test_attempts_show_memory_the_engine_raised_and_out_of_memory_kills(admin_client):
    run = start(tasks={"only": {}})
    TaskRun.objects.filter(run=run).update(status="failed", out_of_memory=True)
    TaskRun.objects.create(
        run=run, task_name="only", number=2, executor="local", status="waiting", memory_mib=4096
    )
    html = run_page(admin_client, run).content.decode()
    assert "<td>out of memory</td>" in html
    assert "<td>4096 MiB</td>" in html
    TaskRun.objects.filter(run=run, number=2).update(status="failed", out_of_memory=True)
    assert "<td>4096 MiB, out of memory</td>" in run_page(admin_client, run).content.decode()
