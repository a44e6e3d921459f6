"""A second attack on notifications (issue 8), after the change that keeps every run ending
(jobs.RunEnding, written in the transaction that ends the run) and notices each once.

Real processes again: Celery workers on the test PostgreSQL and Redis, SIGKILLs, row locks
held from a connection of the test's own, a local HTTPS PagerDuty and a webhook receiver.

What is attacked: every ending noticed exactly once (``notice_run`` / ``notice_ending``,
RunNotice one-to-one with the ending), nothing lost when a worker dies in the middle of a
notice or of an alert scan; PagerDuty's last word is the process's last ending (all of a
process's "failing" alerts are one incident, sent in order by ``_behind_earlier``); one alert
scan per period on the ScanClock row however many watchdogs ask; the RunEnding backfill of
an installation that already has finished runs.
"""

from __future__ import annotations

import itertools
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from unittest import mock

import psycopg
import pytest
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.models import F
from django.utils import timezone

from jobs import dispatch
from jobs.engine import RunStatus
from jobs.models import ProcessDefinition, ProcessRun, RunEnding, TaskDefinition, Trigger
from jobs.orchestrator import _finish_run, retry_failed_tasks, trigger_run
from notifications import alerts, outbox
from notifications.models import Alert, Delivery, DeliveryStatus, RunNotice, Subscription
from tests.conftest import make_process
from tests.notifications.on_workers import (
    FINAL,
    KEY,
    pagerduty_env,
    shell_process,
    signed,
    subscribe_hook,
)
from tests.orchestrator.driving import wait_for
from tests.workers import Worker, database_url

pytestmark = [
    pytest.mark.usefixtures("clean_queue"),
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.redis,
]


# ---- fixtures and helpers ----


@pytest.fixture
def side() -> Iterator[psycopg.Connection]:
    """A connection of the test's own, outside Django's: to hold row locks while workers wait."""
    with psycopg.connect(database_url()) as conn:
        yield conn


def page(process) -> Subscription:
    return Subscription.objects.create(process=process, channel="pagerduty", target=KEY)


def wait_status(run: ProcessRun, status: str, timeout: float = 30) -> ProcessRun:
    def there():
        """the run to reach the status"""
        return ProcessRun.objects.filter(
            pk=run.pk, status=status, finished_at__isnull=False
        ).exists()

    wait_for(there, timeout=timeout, interval=0.01)
    run.refresh_from_db()
    return run


def wait_all_noticed_and_settled(timeout: float = 45) -> list[Delivery]:
    """Every ending noticed, and every delivery sent or failed."""

    def settled():
        """every ending to be noticed and every delivery to be sent or failed"""
        if RunEnding.objects.filter(notice__isnull=True).exists():
            return None
        rows = list(Delivery.objects.order_by("pk"))
        return rows if all(row.status in FINAL for row in rows) else None

    return wait_for(settled, timeout=timeout, interval=0.1)


def pagerduty_sent(process) -> list[tuple[str, str]]:
    """The (action, dedup key) the deliveries to PagerDuty say, in the order they were made."""
    rows = Delivery.objects.filter(process=process, channel="pagerduty").order_by("pk")
    dedup = f"sundial/{process.name}/failing"
    return [("resolve" if d.event == "resolved" else "trigger", dedup) for d in rows]


def blocked_by(side: psycopg.Connection, timeout: float = 20) -> list[int]:
    """The backends waiting for a lock this side connection holds."""
    me = side.execute("select pg_backend_pid()").fetchone()[0]

    def waiting():
        """a backend to wait on the side connection's lock"""
        with psycopg.connect(database_url(), autocommit=True) as probe:
            rows = probe.execute(
                "select pid from pg_stat_activity where %s = any(pg_blocking_pids(pid))", (me,)
            ).fetchall()
        return [row[0] for row in rows] or None

    return wait_for(waiting, timeout=timeout, interval=0.05)


def worker_of_backend(backend_pid: int, candidates: list[Worker]) -> Worker:
    """Which worker process a PostgreSQL backend serves (by its client socket)."""
    with psycopg.connect(database_url(), autocommit=True) as probe:
        (port,) = probe.execute(
            "select client_port from pg_stat_activity where pid = %s", (backend_pid,)
        ).fetchone()
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                local, remote = fields[1], fields[2]
                if int(local.rsplit(":", 1)[1], 16) == port and remote.endswith(":1538"):
                    inodes.add(fields[9])
    for worker in candidates:
        fd_dir = f"/proc/{worker.pid}/fd"
        for fd in os.listdir(fd_dir):
            try:
                target = os.readlink(f"{fd_dir}/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return worker
    raise AssertionError(f"no worker holds the connection of backend {backend_pid}")


# ---- 1. many runs of one process ending at once on three workers ----


def test_ten_runs_ending_at_once_on_three_workers_leave_pagerduty_as_the_last_ending(
    ca, tmp_path, fake, receiver, workers
):
    script = (
        'python3 -c "import random, sys, time; time.sleep(random.random() * 1.5);'
        ' sys.exit(random.choice([0, 1]))"'
    )
    process = shell_process("crowd", script, overlap="allow", critical=True)
    page(process)
    subscribe_hook(process, receiver.url)
    workers.env = pagerduty_env(fake, tmp_path, ca)
    for name in "abc":
        workers.start(name)
    runs = [trigger_run(process, Trigger.API) for _ in range(10)]
    for run in runs:
        wait_for(
            lambda run=run: ProcessRun.objects.filter(
                pk=run.pk, finished_at__isnull=False
            ).exists(),
            timeout=40,
            interval=0.05,
        )
    deliveries = wait_all_noticed_and_settled()
    endings = list(RunEnding.objects.filter(definition=process).order_by("id"))
    assert len(endings) == 10
    assert RunNotice.objects.filter(ending__in=endings).count() == 10
    # Each ending told once to the webhook, by its own event.
    hooked = [d for d in deliveries if d.channel == "webhook"]
    assert sorted(d.ending_id for d in hooked) == [e.pk for e in endings]
    by_ending = {d.ending_id: d.event for d in hooked}
    for ending in endings:
        expected = ("failed",) if ending.status == "failed" else ("succeeded", "recovered")
        assert by_ending[ending.pk] in expected
    assert all(d.status == DeliveryStatus.SENT for d in deliveries), deliveries
    keys = Counter(r.headers.get("X-Sundial-Delivery") for r in receiver.received)
    assert set(keys.values()) == {1} and len(keys) == 10
    assert all(signed(r) for r in receiver.received)
    # PagerDuty heard what was decided, in the order it was decided ...
    assert fake.actions() == pagerduty_sent(process)
    actions = [action for action, _ in fake.actions()]
    # ... a resolve only ever closes a trigger before it ...
    for before, after in itertools.pairwise(["resolve", *actions]):
        assert not (before == "resolve" and after == "resolve"), actions
    # ... and its last word is the last ending's.
    last = endings[-1]
    failing = Alert.objects.filter(process=process, kind="failing", resolved_at__isnull=True)
    assert failing.exists() == (last.status == "failed"), [e.status for e in endings]
    if last.status == "failed":
        assert actions and actions[-1] == "trigger", ([e.status for e in endings], actions)
    else:
        assert not actions or actions[-1] == "resolve", ([e.status for e in endings], actions)


# ---- 2. retry in place racing its own notice ----


def test_retries_in_place_racing_their_notices_on_two_workers_tell_every_ending_once(
    ca, tmp_path, fake, receiver, workers
):
    marker = tmp_path / "fixed"
    process = shell_process("hasty", f"test -e {marker}", critical=True)
    page(process)
    subscribe_hook(process, receiver.url, policy="on_state_change_and_failures")
    workers.env = pagerduty_env(fake, tmp_path, ca)
    workers.start("a"), workers.start("b")
    for _ in range(3):
        marker.unlink(missing_ok=True)
        run = wait_status(trigger_run(process, Trigger.API), "failed")
        marker.touch()  # retried as soon as the failure is seen: its notice is in flight
        retry_failed_tasks(run.pk)
        wait_status(run, "succeeded")
    deliveries = wait_all_noticed_and_settled()
    endings = list(RunEnding.objects.filter(definition=process).order_by("id"))
    assert [e.status for e in endings] == ["failed", "succeeded"] * 3
    assert RunNotice.objects.count() == 6
    hooked = [(d.ending_id, d.event) for d in deliveries if d.channel == "webhook"]
    assert sorted(hooked) == [
        (e.pk, "failed" if e.status == "failed" else "recovered") for e in endings
    ]
    assert all(d.status == DeliveryStatus.SENT for d in deliveries)
    assert fake.actions() == pagerduty_sent(process)
    actions = [action for action, _ in fake.actions()]
    assert actions[0] == "trigger" and actions[-1] == "resolve", actions
    assert "resolve" not in [a for a, b in itertools.pairwise(actions) if a == b]
    assert not Alert.objects.filter(resolved_at__isnull=True).exists()


# ---- 3. a worker SIGKILLed in the middle of a notice ----


def test_a_worker_killed_inside_notice_ending_leaves_the_ending_to_the_reconciler(
    ca, tmp_path, fake, receiver, workers, side
):
    process = shell_process("noticed", "sleep 1; exit 1", critical=True)
    page(process)
    subscribe_hook(process, receiver.url)
    workers.env = pagerduty_env(fake, tmp_path, ca)
    first = workers.start("first")
    run = trigger_run(process, Trigger.API)
    # FOR NO KEY UPDATE: the run still ends (its ending's foreign key takes KEY SHARE), but
    # the notice's FOR UPDATE of the process row waits.
    with side.transaction():
        side.execute(
            "select id from jobs_processdefinition where id = %s for no key update", (process.pk,)
        )
        wait_status(run, "failed")
        assert RunEnding.objects.filter(run=run).count() == 1

        def notice_waits():
            """the worker's notice to wait for the process row"""
            with psycopg.connect(database_url(), autocommit=True) as probe:
                return probe.execute(
                    "select 1 from pg_stat_activity where state = 'active'"
                    " and wait_event_type = 'Lock' and query like %s",
                    ("%jobs_processdefinition%FOR UPDATE",),
                ).fetchone()

        wait_for(notice_waits, timeout=20, interval=0.05)
        first.kill()  # in the middle of notice_ending, its transaction open
    time.sleep(1)  # the killed worker's backends get the lock, find no client, roll back
    assert not RunNotice.objects.exists() and not Delivery.objects.exists()

    RunEnding.objects.update(at=F("at") - timedelta(seconds=11))  # no longer FRESH
    workers.start("second")
    assert outbox.reconcile() == 1
    deliveries = wait_all_noticed_and_settled()
    assert sorted((d.channel, d.event) for d in deliveries) == [
        ("pagerduty", "alert"),
        ("webhook", "failed"),
    ]
    assert all(d.status == DeliveryStatus.SENT for d in deliveries)
    assert RunNotice.objects.filter(ending__run=run).count() == 1
    assert fake.actions() == [("trigger", "sundial/noticed/failing")]
    assert [r.json["event"] for r in receiver.received] == ["failed"]
    assert outbox.reconcile() == 0, "noticed once: nothing more to send"


# ---- 4. three watchdogs, one stuck schedule each for many processes, a scanner killed ----


def stuck(name: str) -> ProcessDefinition:
    process = make_process(
        name, schedule_kind="cron", cron="0 * * * *", overlap="allow", critical=True
    )
    ProcessDefinition.objects.filter(pk=process.pk).update(
        next_fire_at=timezone.now() - timedelta(hours=2)
    )
    return process


def test_three_watchdogs_and_a_scanner_killed_mid_scan_alert_once_per_missed_start(
    ca, tmp_path, fake, receiver, workers, side, settings
):
    processes = [stuck(f"stuck{i:02}") for i in range(8)]
    for process in processes:
        page(process)
        subscribe_hook(process, receiver.url, policy="on_failure")
    middle = processes[4]
    workers.env = {**pagerduty_env(fake, tmp_path, ca), "SUNDIAL_ALERT_SCAN_EVERY_S": "1"}
    with side.transaction():
        # The scan that opens the middle process's alert waits at its COMMIT (its foreign
        # keys' KEY SHARE on the process row): a scan stopped half way.
        side.execute("select id from jobs_processdefinition where id = %s for update", (middle.pk,))
        started = [workers.start(name) for name in "abc"]
        (backend,) = blocked_by(side)
        scanner = worker_of_backend(backend, started)
        assert Alert.objects.count() == 4, "the processes before the middle one are told"
        scanner.kill()
        time.sleep(2.5)  # the others' watchdogs claim the next periods and scan too
    # The killed scanner's COMMIT was sent before it died: it completes now, but the
    # messages it would have sent after it are lost; the reconciler sends them.

    def all_open():
        """an alert per process"""
        return Alert.objects.count() >= len(processes)

    wait_for(all_open, timeout=20)
    time.sleep(2)  # more periods: nothing more is opened
    # The killed worker may have been sending deliveries of the alerts opened before: they
    # stay "sending" until SUNDIAL_DELIVERY_STUCK_AFTER_S (moved back, not waited for).
    ago = timedelta(seconds=settings.SUNDIAL_DELIVERY_STUCK_AFTER_S + 11)
    Delivery.objects.update(created_at=F("created_at") - ago, claimed_at=F("claimed_at") - ago)
    outbox.reconcile()
    deliveries = wait_all_noticed_and_settled(timeout=30)
    assert Alert.objects.count() == len(processes)
    assert Counter(Alert.objects.values_list("process_id", "kind")) == {
        (p.pk, "missed_start"): 1 for p in processes
    }
    per_subscription = Counter(Delivery.objects.values_list("subscription_id", "event"))
    assert set(per_subscription.values()) == {1} and len(per_subscription) == 2 * len(processes)
    assert all(d.status == DeliveryStatus.SENT for d in deliveries)
    # At least once: a send the killed worker was making goes again (the same dedup key at
    # PagerDuty, the same delivery header at the webhook).
    assert {action for action, _ in fake.actions()} == {"trigger"}
    dedups = Counter(key for _, key in fake.actions())
    assert len(dedups) == len(processes), fake.actions()
    keys = Counter(r.headers.get("X-Sundial-Delivery") for r in receiver.received)
    assert len(keys) == len(processes)
    assert sum(dedups.values()) + sum(keys.values()) <= 2 * len(processes) + 4


# ---- 5. the RunEnding backfill on an installation with finished runs ----


def test_the_backfill_keeps_one_noticed_ending_per_finished_run_and_reports_none_of_them(
    receiver, monkeypatch
):
    monkeypatch.setattr(dispatch, "after_commit", lambda *a, **k: None)  # no worker here
    executor = MigrationExecutor(connection)
    graph = executor.loader.graph
    leaves = graph.leaf_nodes()
    # notifications 0001 depends on jobs 0014: with jobs at 0013 there are no notifications.
    parents = {node.key for node in graph.node_map[("notifications", "0001_initial")].parents}
    assert ("jobs", "0014_run_endings") in parents
    before = [("jobs", "0013_process_alert_settings"), ("notifications", None)]
    try:
        executor.migrate(before)
        old = MigrationExecutor(connection).loader.project_state(before[:1]).apps
        process_model = old.get_model("jobs", "ProcessDefinition")
        run_model = old.get_model("jobs", "ProcessRun")
        process = process_model.objects.create(name="legacy")
        now = timezone.now()
        statuses = ["succeeded", "failed", "killed", "failed", "skipped"]
        for minutes, status in enumerate(statuses):
            at = now - timedelta(minutes=30 - minutes)
            run_model.objects.create(
                definition=process,
                snapshot={},
                trigger="manual",
                status=status,
                started_at=at - timedelta(minutes=1),
                finished_at=at,
            )
        running = run_model.objects.create(
            definition=process,
            snapshot={"process": {"name": "legacy"}},
            trigger="manual",
            status="running",
            started_at=now,
        )
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(leaves)
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
    endings = list(RunEnding.objects.order_by("id"))
    assert [e.status for e in endings] == ["succeeded", "failed", "killed", "failed"]
    assert [e.at for e in endings] == sorted(e.at for e in endings)
    assert RunNotice.objects.count() == 4
    assert outbox.reconcile() == 0 and not Delivery.objects.exists()
    # The next ending is told against the history the backfill kept: a recovery.
    process = ProcessDefinition.objects.get(name="legacy")
    subscribe_hook(process, receiver.url, policy="on_state_change")
    run = ProcessRun.objects.get(pk=running.pk)
    with transaction.atomic():
        assert _finish_run(run, RunStatus.SUCCEEDED, "all tasks succeeded", timezone.now())
    outbox.notice_run(run.pk)
    assert list(Delivery.objects.values_list("event", flat=True)) == ["recovered"]


# ---- 6. an ending committed after a later one was noticed ----


def test_two_failures_in_a_row_page_even_when_the_first_commits_after_the_second_is_noticed(
    monkeypatch,
):
    monkeypatch.setattr(dispatch, "after_commit", lambda *a, **k: None)  # no worker here
    process = shell_process("slowcommit", "exit 1", critical=True, page_after_failures=2)
    page(process)
    now = timezone.now()

    def running() -> ProcessRun:
        return ProcessRun.objects.create(
            definition=process,
            snapshot={"process": {"name": process.name}},
            trigger="manual",
            status="running",
            started_at=now,
        )

    first, second = running(), running()
    inserted, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def end_first():
        # The orchestrator's own end of a run; its transaction takes a moment to commit (it
        # writes its events, or waits at COMMIT for another notice's lock of the process).
        try:
            with transaction.atomic():
                assert _finish_run(first, RunStatus.FAILED, "failed: only", timezone.now())
                inserted.set()
                release.wait(20)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=end_first)
    thread.start()
    assert inserted.wait(20)
    ended_second = threading.Event()

    def end_second():
        try:
            with transaction.atomic():
                assert _finish_run(second, RunStatus.FAILED, "failed: only", timezone.now())
            ended_second.set()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    other = threading.Thread(target=end_second)
    other.start()
    # The second run's end waits for the first's commit: a process's endings commit in
    # order, so no notice reads the later one while the earlier is unseen.
    assert not ended_second.wait(1.5), "the second ending committed before the first"
    release.set()
    thread.join(20), other.join(20)
    assert not errors, errors
    assert ended_second.is_set()
    outbox.notice_run(second.pk)  # the second run's notice first, on another worker
    outbox.notice_run(first.pk)
    endings = list(RunEnding.objects.filter(definition=process).order_by("id"))
    assert [(e.run_id, e.status) for e in endings] == [
        (first.pk, "failed"),
        (second.pk, "failed"),
    ]
    assert RunNotice.objects.count() == 2
    # Two failed runs in a row, page_after_failures=2: the on-call is paged.
    assert Alert.objects.filter(process=process, kind="failing").count() == 1
    assert Delivery.objects.filter(channel="pagerduty", event="alert").count() == 1


# ---- 7. a subscription deleted while its delivery is being sent ----


def test_a_subscription_deleted_mid_send_is_recorded_without_a_crash(receiver, workers):
    process = shell_process("fleeting", "exit 1")
    subscription = subscribe_hook(process, receiver.url)
    receiver.delay_s = 3
    worker = workers.start()
    run = wait_status(trigger_run(process, Trigger.API), "failed")
    wait_for(lambda: receiver.received, timeout=20)  # in flight on the worker
    assert Delivery.objects.get().status == DeliveryStatus.SENDING
    subscription.delete()
    time.sleep(3.5)
    (delivery,) = Delivery.objects.all()
    assert delivery.subscription_id is None and delivery.run_id == run.pk
    assert delivery.status == DeliveryStatus.SENT, (delivery.status, delivery.error)
    assert all(signed(r) for r in receiver.received)
    assert "Traceback" not in worker.output(), worker.output()
    assert outbox.reconcile() == 0


# ---- 8. a long history ----


def test_a_notice_reads_a_bounded_history_of_thousands_of_endings(
    monkeypatch, django_assert_max_num_queries
):
    monkeypatch.setattr(dispatch, "after_commit", lambda *a, **k: None)  # no worker here
    process = make_process("busy", critical=True, page_after_failures=3)
    page(process)
    now = timezone.now()
    runs = ProcessRun.objects.bulk_create(
        ProcessRun(
            definition=process,
            snapshot={},
            trigger="manual",
            status=random.choice(["failed", "succeeded"]),
            started_at=now,
            finished_at=now,
        )
        for _ in range(5000)
    )
    RunEnding.objects.bulk_create(
        RunEnding(run=run, definition=process, status=run.status, at=now) for run in runs
    )
    RunNotice.objects.bulk_create(
        RunNotice(ending=ending) for ending in RunEnding.objects.all()[: len(runs) - 1]
    )
    started = time.monotonic()
    with django_assert_max_num_queries(20):
        outbox.notice_run(runs[-1].pk)
    assert time.monotonic() - started < 2
    assert RunNotice.objects.count() == len(runs)


# ---- 9. a host whose clock runs ahead claims the alert scan ----


def test_a_scan_claimed_by_a_host_whose_clock_runs_ahead_does_not_silence_the_others(
    receiver, workers, settings
):
    # A worker on a host whose clock is 10 minutes fast scans once, then is gone.
    settings.SUNDIAL_ALERT_SCAN_EVERY_S = 1
    ahead = timezone.now() + timedelta(minutes=10)
    with mock.patch("django.utils.timezone.now", return_value=ahead):
        assert alerts.scan_if_due() == 0
    process = stuck("unwatched")
    subscribe_hook(process, receiver.url, policy="on_failure")
    workers.start(SUNDIAL_ALERT_SCAN_EVERY_S="1")

    def alerted():
        """a worker's watchdog to report the missed start"""
        return Alert.objects.filter(process=process, kind="missed_start").exists()

    wait_for(alerted, timeout=12)


# ---- 10. a process renamed while its failing incident is open ----


def test_a_process_renamed_while_failing_still_resolves_its_incident(ca, tmp_path, fake, workers):
    process = shell_process("billing-old", "exit 1", critical=True)
    page(process)
    workers.env = pagerduty_env(fake, tmp_path, ca)
    workers.start()
    wait_status(trigger_run(process, Trigger.API), "failed")
    fake.wait_for(1)
    process.refresh_from_db()
    process.name = "billing-new"  # the admin's process form lets a person rename it
    process.save()
    TaskDefinition.objects.filter(process=process).update(config={"shell": "true"})
    wait_status(trigger_run(process, Trigger.API), "succeeded")
    fake.wait_for(2)
    wait_all_noticed_and_settled()
    assert [action for action, _ in fake.actions()] == ["trigger", "resolve"]
    opened = Counter(key for action, key in fake.actions() if action == "trigger")
    closed = Counter(key for action, key in fake.actions() if action == "resolve")
    assert set(opened) - set(closed) == set(), fake.actions()


# ---- 11. a process made non-critical while its incident is open ----


def test_a_process_made_non_critical_while_failing_still_resolves_its_incident(
    ca, tmp_path, fake, workers
):
    process = shell_process("quieted", "exit 1", critical=True)
    page(process)
    workers.env = pagerduty_env(fake, tmp_path, ca)
    workers.start()
    wait_status(trigger_run(process, Trigger.API), "failed")
    fake.wait_for(1)
    ProcessDefinition.objects.filter(pk=process.pk).update(critical=False)  # stop paging
    TaskDefinition.objects.filter(process=process).update(config={"shell": "true"})
    wait_status(trigger_run(process, Trigger.API), "succeeded")
    wait_all_noticed_and_settled()
    (alert,) = Alert.objects.filter(process=process, kind="failing")
    assert alert.resolved_at is not None, "Sundial considers the incident over"
    time.sleep(1)
    assert fake.actions() == [
        ("trigger", "sundial/quieted/failing"),
        ("resolve", "sundial/quieted/failing"),
    ]
