"""The run page shows every attempt with why it is where it is, and the event trail."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from jobs import describe
from jobs.models import ProcessRun, TaskMetadata, TaskRun, Trigger
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
    for attempt in big.task_runs.all():
        TaskMetadata.objects.create(task_run=attempt, key="rows", value=1, numeric_value=1)
    run_page(admin_client, small)  # warm the session and content types
    # The session, the user, the run, its attempts, its events, its tasks' metadata.
    with django_assert_max_num_queries(6) as small_queries:
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
    assert "<td>4096 MiB (raised)</td>" in html
    TaskRun.objects.filter(run=run, number=2).update(status="failed", out_of_memory=True)
    page = run_page(admin_client, run).content.decode()
    assert "<td>4096 MiB (raised); out of memory</td>" in page


def test_attempts_show_what_a_remote_job_asked_for_where_it_ran_and_what_it_cost(admin_client):
    run = start(tasks={"only": {}})
    began = timezone.now() - timedelta(hours=2)
    TaskRun.objects.filter(run=run).update(
        status="succeeded",
        resources={"platform": "FARGATE", "vcpu": 2, "memory_mib": 4096},
        placement="Fargate",
        started_at=began,
        finished_at=began + timedelta(hours=1),
    )
    html = run_page(admin_client, run).content.decode()
    assert "<td>2 vCPU · 4096 MiB · FARGATE</td>" in html, "on Fargate: said once"
    per_hour = 2 * 0.04048 + 4 * 0.004445
    assert f"<td>${per_hour:.4f}</td>" in html
    assert f"${per_hour:.4f}</div>" in html, "the run's estimated cost"


def test_a_job_waiting_for_capacity_says_so_and_for_how_long(admin_client):
    run = start(tasks={"only": {}})
    TaskRun.objects.filter(run=run).update(
        status="submitted",
        external_id="arn:aws:batch:us-east-1:123456789012:job/x",
        executor_state="waiting for capacity (RUNNABLE)",
        executor_state_since=timezone.now() - timedelta(minutes=4),
    )
    html = run_page(admin_client, run).content.decode()
    assert "<td>waiting for capacity (RUNNABLE) for 4\xa0minutes</td>" in html
    assert "— (1 attempt that cannot be priced" in html


def test_where_a_job_ran_is_said_when_it_adds_to_what_it_asked_for():
    asked = {"platform": "FARGATE", "vcpu": 1, "memory_mib": 2048, "gpu": 1, "disk_gib": 50}
    spot = TaskRun(resources=asked, placement="FARGATE_SPOT")
    assert (
        describe.resources(spot)
        == "1 vCPU · 2048 MiB · 1 GPU · 50 GiB disk · FARGATE, on FARGATE_SPOT"
    )
    assert describe.resources(TaskRun(resources=asked, placement="Fargate")).endswith("· FARGATE")
    assert describe.resources(TaskRun(placement="EC2")) == "on EC2"
    assert describe.usd(0.00001) == "< $0.0001" and describe.usd(0) == "$0.0000"
