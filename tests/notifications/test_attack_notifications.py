"""Attacks on the notifications outbox (issue 8) with real processes: Celery workers on the
test PostgreSQL and Redis, SIGKILLs, a local HTTPS PagerDuty, a webhook receiver that checks
signatures, and an SMTP server.

What is attacked is the promise in notifications/outbox.py's docstring: every send recorded
before it is tried; each run ending decided once; a delivery claimed by one worker; temporary
errors retried; a resolve never overtaking its trigger; nothing lost when a worker dies
mid-send or the broker loses a message; a run never failed by its notifications; an alert
occurrence opened and resolved once by two scans at once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

import pytest
from celery import current_app
from django.conf import settings as django_settings
from django.db.models import F
from django.utils import timezone

from jobs import dispatch
from jobs.models import ProcessDefinition, ProcessRun, RunEnding, TaskDefinition, TaskRun, Trigger
from jobs.orchestrator import request_kill, retry_failed_tasks, trigger_run
from notifications import alerts, outbox
from notifications.models import Alert, Delivery, DeliveryStatus, RunNotice, Subscription
from tests.conftest import make_process, purge_task_queue
from tests.notifications.flow import finish
from tests.notifications.on_workers import (
    FINAL,
    KEY,
    pagerduty_env,
    shell_process,
    signed,
    subscribe_hook,
)
from tests.notifications.smtp import SmtpServer
from tests.orchestrator.driving import drive, race, wait_for
from tests.workers import (
    ROOT,
    database_url,
    wait_until_this_process_recorded_its_exits,
)

pytestmark = [
    pytest.mark.usefixtures("clean_queue"),
    pytest.mark.django_db(transaction=True),
    pytest.mark.postgres,
    pytest.mark.redis,
]


# ---- fixtures and helpers ----


def set_script(process: ProcessDefinition, script: str) -> None:
    TaskDefinition.objects.filter(process=process).update(config={"shell": script})


def run_to_end(process: ProcessDefinition, timeout: float = 30) -> ProcessRun:
    run = trigger_run(process, Trigger.API)
    return wait_finished(run, timeout)


def wait_finished(run: ProcessRun, timeout: float = 30) -> ProcessRun:
    def finished():
        """the run to finish on the worker"""
        return ProcessRun.objects.filter(pk=run.pk, finished_at__isnull=False).exists()

    wait_for(finished, timeout=timeout, interval=0.05)
    run.refresh_from_db()
    return run


def wait_settled(timeout: float = 40, count: int | None = None) -> list[Delivery]:
    """Wait until every delivery (at least ``count`` of them) is sent or failed."""

    def settled():
        """every delivery to be sent or failed"""
        rows = list(Delivery.objects.order_by("pk"))
        if count is not None and len(rows) < count:
            return None
        return rows if rows and all(row.status in FINAL for row in rows) else None

    return wait_for(settled, timeout=timeout, interval=0.1)


# ---- 1. two workers, fail x3 then succeed ----


def test_two_workers_fail_three_times_then_recover_page_once_and_resolve_once(
    ca, tmp_path, fake, workers
):
    process = shell_process("nightly", "exit 1", critical=True)
    Subscription.objects.create(process=process, channel="pagerduty", target=KEY)
    workers.env = pagerduty_env(fake, tmp_path, ca)
    workers.start("a"), workers.start("b")
    for count, status in enumerate(("failed", "failed", "failed", "succeeded"), 1):
        if status == "succeeded":
            set_script(process, "true")
        run = run_to_end(process)
        assert run.status == status
        fake.wait_for(count, timeout=30)
    deliveries = wait_settled(count=4)
    dedup = "sundial/nightly/failing"
    assert fake.actions() == [("trigger", dedup)] * 3 + [("resolve", dedup)]
    assert {event["routing_key"] for event in fake.accepted()} == {KEY}
    assert [d.status for d in deliveries] == [DeliveryStatus.SENT] * 4
    assert RunNotice.objects.count() == 4
    (alert,) = Alert.objects.all()
    assert alert.resolved_at is not None


# ---- 2. a worker SIGKILLed in the middle of a send ----


def test_a_worker_killed_mid_send_leaves_it_sending_until_the_reconciler_takes_it_back(
    tmp_path, receiver, workers, settings
):
    settings.SUNDIAL_DELIVERY_STUCK_AFTER_S = 30
    workers.env = {"SUNDIAL_DELIVERY_STUCK_AFTER_S": "30"}
    process = make_process("hooked")
    subscribe_hook(process, receiver.url)
    receiver.delay_s = 8  # under the webhook's 10 s timeout: the worker waits, mid-send
    first = workers.start("first")
    finish(process, "failed", "task only failed")
    wait_for(lambda: receiver.received, timeout=20)
    (delivery,) = Delivery.objects.all()
    assert delivery.status == DeliveryStatus.SENDING
    first.kill()

    outbox.reconcile()  # not stuck yet: a live worker may still be sending it
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.SENDING

    # SUNDIAL_DELIVERY_STUCK_AFTER_S pass (its times moved back rather than waited for).
    ago = timedelta(seconds=31)
    Delivery.objects.filter(pk=delivery.pk).update(
        claimed_at=F("claimed_at") - ago, created_at=F("created_at") - ago
    )
    receiver.delay_s = 0
    workers.start("second")
    assert outbox.reconcile() >= 1

    def sent():
        """the delivery to be sent again by the second worker"""
        delivery.refresh_from_db()
        return delivery.status == DeliveryStatus.SENT

    wait_for(sent, timeout=20)
    assert delivery.attempts == 2
    assert len(receiver.received) == 2, "at least once: the killed send, then the retry"
    keys = {r.headers.get("X-Sundial-Delivery") for r in receiver.received}
    assert keys == {delivery.key}, "a receiver can tell the repeat by its delivery header"
    assert all(signed(r) for r in receiver.received)


# ---- 3. the broker loses the notice ----


def test_a_notice_the_broker_lost_is_sent_by_the_reconciler(
    monkeypatch, tmp_path, receiver, workers
):
    """The run is driven here with every Celery message caught (the broker "loses" them):
    its NOTICE never reaches a worker; the reconciler finds the unnoticed ending."""
    process = shell_process("lost", "exit 1")
    subscribe_hook(process, receiver.url)
    caught: list[str] = []
    app = current_app._get_current_object()
    monkeypatch.setattr(app, "send_task", lambda name, *a, **k: caught.append(name))
    run = trigger_run(process, Trigger.API)
    drive(run)
    wait_until_this_process_recorded_its_exits()
    run.refresh_from_db()
    assert run.status == "failed"
    assert dispatch.NOTICE in caught
    monkeypatch.undo()
    purge_task_queue()
    assert not RunNotice.objects.exists() and not Delivery.objects.exists()

    workers.start()
    # The reconciler leaves endings younger than FRESH to their own message: wait it out.
    time.sleep(max(0.0, (run.finished_at + outbox.FRESH - timezone.now()).total_seconds()) + 0.2)
    assert outbox.reconcile() == 1
    (delivery,) = wait_settled(count=1)
    assert delivery.status == DeliveryStatus.SENT and delivery.event == "failed"
    assert RunNotice.objects.filter(ending__run=run).count() == 1
    assert [r.json["event"] for r in receiver.received] == ["failed"]
    assert outbox.reconcile() == 0, "noticed once: the reconciler has nothing more to send"


# ---- 4. PagerDuty down while the success comes ----


def test_a_resolve_waits_for_its_trigger_while_pagerduty_answers_500(ca, tmp_path, fake, workers):
    process = make_process("orders", critical=True)
    Subscription.objects.create(process=process, channel="pagerduty", target=KEY)
    workers.env = pagerduty_env(fake, tmp_path, ca)
    workers.start()
    fake.script(500, 500)  # the trigger's first try and the library's one retry
    finish(process, "failed", "task only failed")
    wait_for(lambda: fake.statuses() == [500, 500], timeout=20)
    finish(process, "succeeded")
    time.sleep(3)
    assert fake.statuses() == [500, 500], "the resolve must not go while its trigger waits"
    fake.wait_for(2, timeout=40)
    wait_settled(count=2)
    dedup = "sundial/orders/failing"
    assert fake.actions() == [("trigger", dedup), ("resolve", dedup)]
    actions = [r.action for r in fake.received]
    assert actions.index("resolve") > actions.index("trigger")


def test_a_late_resolve_of_an_old_failing_alert_does_not_close_the_new_incident(
    ca, tmp_path, fake, workers
):
    process = make_process("orders", critical=True)
    Subscription.objects.create(process=process, channel="pagerduty", target=KEY)
    workers.env = pagerduty_env(fake, tmp_path, ca)
    workers.start()
    fake.script(500, 500)  # PagerDuty down for alert A's trigger (its first try)
    finish(process, "failed", "first failure")  # opens alert A: trigger (fails, waits 15 s)
    wait_for(lambda: fake.statuses() == [500, 500], timeout=20)
    finish(process, "succeeded")  # resolves A: its resolve waits for A's trigger
    finish(process, "failed", "second failure")  # opens alert B: trigger, sent at once
    wait_settled(count=3, timeout=45)
    first, second = Alert.objects.order_by("pk")
    assert first.resolved_at is not None and second.resolved_at is None
    dedup = "sundial/orders/failing"
    assert {key for _, key in fake.actions()} == {dedup}
    # The process is failing (alert B open): the last word PagerDuty had must be a trigger.
    assert fake.actions()[-1] == ("trigger", dedup), fake.actions()


# ---- 5. two alert scans at once ----


def stuck_beat(name: str) -> ProcessDefinition:
    process = make_process(name, schedule_kind="cron", cron="0 * * * *", overlap="allow")
    ProcessDefinition.objects.filter(pk=process.pk).update(
        next_fire_at=timezone.now() - timedelta(hours=2)
    )
    return process


def subscribe_two(process, receiver) -> None:
    subscribe_hook(process, receiver.url, policy="on_failure")
    Subscription.objects.create(process=process, channel="email", target="ops@example.com")


def test_two_scans_in_threads_open_and_resolve_one_alert_each(receiver):
    processes = [stuck_beat(f"stuck{i}") for i in range(3)]
    for process in processes:
        subscribe_two(process, receiver)
    for _ in range(3):  # many times: threads released together
        outcomes = race(alerts.scan, alerts.scan)
        assert [error for _, error in outcomes] == [None, None]
    assert Alert.objects.count() == 3
    per_subscription = Counter(Delivery.objects.values_list("subscription_id", "event"))
    assert set(per_subscription.values()) == {1} and len(per_subscription) == 6

    ProcessDefinition.objects.update(next_fire_at=timezone.now() + timedelta(hours=1))
    for _ in range(3):
        outcomes = race(alerts.scan, alerts.scan)
        assert [error for _, error in outcomes] == [None, None]
    assert Alert.objects.filter(resolved_at__isnull=True).count() == 0
    per_subscription = Counter(Delivery.objects.values_list("subscription_id", "event"))
    assert set(per_subscription.values()) == {1} and len(per_subscription) == 12


SCAN_AT = """
import os, time
import django
django.setup()
from notifications.alerts import scan
start = float(os.environ["SCAN_AT"])
while time.time() < start:
    pass
print("changed", scan())
"""


def scan_in_processes(count: int = 2) -> list[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": database_url(),
        "CELERY_BROKER_URL": django_settings.CELERY_BROKER_URL,
        "SCAN_AT": str(time.time() + 4),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCAN_AT],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(count)
    ]
    outputs = [proc.communicate(timeout=40)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * count, outputs
    return outputs


def test_two_scans_in_two_processes_open_and_resolve_one_alert_each(receiver):
    processes = [stuck_beat(f"proc{i}") for i in range(5)]
    for process in processes:
        subscribe_two(process, receiver)
    outputs = scan_in_processes(3)
    assert sum(int(out.split()[-1]) for out in outputs) == 5, outputs
    assert Alert.objects.count() == 5
    per_subscription = Counter(Delivery.objects.values_list("subscription_id", "event"))
    assert set(per_subscription.values()) == {1} and len(per_subscription) == 10

    ProcessDefinition.objects.update(next_fire_at=timezone.now() + timedelta(hours=1))
    outputs = scan_in_processes(3)
    assert sum(int(out.split()[-1]) for out in outputs) == 5, outputs
    assert Alert.objects.filter(resolved_at__isnull=True).count() == 0
    per_subscription = Counter(Delivery.objects.values_list("subscription_id", "event"))
    assert set(per_subscription.values()) == {1} and len(per_subscription) == 20


# ---- 6. a kill racing the end of a run ----


def test_a_kill_racing_the_end_of_a_run_is_noticed_once(receiver, workers):
    process = shell_process("racy", "sleep 0.3", overlap="allow")
    subscribe_hook(process, receiver.url)
    workers.start()
    runs = []
    for delay in (0.2, 0.27, 0.3, 0.33, 0.4):
        run = trigger_run(process, Trigger.API)

        def started(run=run):
            """the task to be running"""
            return TaskRun.objects.filter(run=run, status="running").exists()

        wait_for(started, timeout=20, interval=0.01)
        time.sleep(delay)
        request_kill(run.pk, reason="killed by the attack")
        runs.append(wait_finished(run))
    wait_settled(count=len(runs))
    for run in runs:
        assert run.status in ("killed", "succeeded")
        assert RunNotice.objects.filter(ending__run=run).count() == 1
        told = [r.json for r in receiver.received if (r.json["run"] or {}).get("id") == run.pk]
        assert len(told) == 1, told
        expected = {"killed": "killed"}.get(run.status, ("succeeded", "recovered"))
        assert told[0]["event"] in expected
    assert set(Delivery.objects.values_list("status", flat=True)) == {DeliveryStatus.SENT}


# ---- 7. a run retried in place that then succeeds ----


def test_a_run_retried_in_place_that_succeeds_recovers_and_resolves(
    ca, tmp_path, fake, receiver, workers
):
    marker = tmp_path / "fixed"
    process = shell_process("retried", f"test -e {marker}", critical=True)
    Subscription.objects.create(process=process, channel="pagerduty", target=KEY)
    subscribe_hook(process, receiver.url, policy="on_state_change_and_failures")
    workers.env = pagerduty_env(fake, tmp_path, ca)
    workers.start()
    run = run_to_end(process)
    assert run.status == "failed"
    fake.wait_for(1)
    wait_settled(count=2)
    marker.touch()
    retry_failed_tasks(run.pk)
    run = wait_finished(run)
    assert run.status == "succeeded"
    fake.wait_for(2)
    wait_settled(count=4)
    dedup = "sundial/retried/failing"
    assert fake.actions() == [("trigger", dedup), ("resolve", dedup)]
    assert [r.json["event"] for r in receiver.received] == ["failed", "recovered"]
    assert RunNotice.objects.filter(ending__run=run).count() == 2
    (alert,) = Alert.objects.all()
    assert alert.resolved_at is not None


# ---- 8. a target saved invalid through the ORM ----


def test_invalid_targets_fail_for_good_and_the_others_still_hear(
    ca, tmp_path, fake, receiver, workers
):
    process = shell_process("misconfigured", "exit 3", critical=True)
    bad_email = Subscription.objects.create(process=process, channel="email", target="nobody")
    bad_key = Subscription.objects.create(process=process, channel="pagerduty", target="short")
    good = subscribe_hook(process, receiver.url)
    workers.env = pagerduty_env(fake, tmp_path, ca)
    workers.start()
    run = run_to_end(process)
    assert run.status == "failed" and "only" in run.reason
    deliveries = {d.subscription_id: d for d in wait_settled(count=3)}
    for bad in (bad_email, bad_key):
        delivery = deliveries[bad.pk]
        assert (delivery.status, delivery.attempts) == (DeliveryStatus.FAILED, 1), delivery.error
        bad.refresh_from_db()
        assert bad.broken_at is not None and bad.broken_reason
    assert deliveries[good.pk].status == DeliveryStatus.SENT
    good.refresh_from_db()
    assert good.broken_at is None
    assert [r.json["event"] for r in receiver.received] == ["failed"]
    assert all(signed(r) for r in receiver.received)
    run.refresh_from_db()
    assert run.status == "failed"


def test_a_webhook_target_that_is_no_url_fails_for_good_at_once(tmp_path, workers):
    process = make_process("no-url")
    bad = subscribe_hook(process, "not a url")
    bracket = subscribe_hook(process, "http://[not-a-host/hook")
    slack = Subscription.objects.create(process=process, channel="slack", target="hooks")
    workers.start()
    finish(process, "failed", "task only failed")

    def tried():
        """both deliveries to have been tried once"""
        return all(d.attempts >= 1 for d in Delivery.objects.all())

    wait_for(tried, timeout=20)
    time.sleep(0.5)
    for subscription in (bad, bracket, slack):
        delivery = Delivery.objects.get(subscription=subscription)
        assert delivery.status == DeliveryStatus.FAILED, (delivery.status, delivery.error)
        subscription.refresh_from_db()
        assert subscription.broken_at is not None


# ---- 9. and the rest ----


def test_a_delivery_of_a_deleted_subscription_is_not_sent_unsigned(receiver, monkeypatch):
    monkeypatch.setattr(dispatch, "after_commit", lambda *a, **k: None)  # no worker here
    process = make_process("gone")
    subscription = subscribe_hook(process, receiver.url)
    finish(process, "failed", "task only failed")
    (delivery,) = Delivery.objects.all()
    subscription.delete()
    outbox.deliver(delivery.pk)
    forged = [r for r in receiver.received if not signed(r)]
    assert forged == [], "a webhook went out without the subscription's signature"


def test_a_deleted_process_drops_its_in_flight_delivery_without_a_crash(receiver, workers):
    """A process with runs cannot be deleted (runs PROTECT it); one without runs can, while
    its "send a test" is being sent."""
    process = make_process("doomed")
    subscription = subscribe_hook(process, receiver.url)
    receiver.delay_s = 3
    worker = workers.start()
    outbox.send_test(subscription)
    wait_for(lambda: receiver.received, timeout=20)  # in flight on the worker
    assert Delivery.objects.get().status == DeliveryStatus.SENDING
    ProcessDefinition.objects.filter(pk=process.pk).delete()
    time.sleep(3.5)  # the worker's send ends and its record finds nothing
    assert not Delivery.objects.exists()
    assert outbox.reconcile() == 0
    assert "Traceback" not in worker.output(), worker.output()


def test_an_archived_process_still_sends_what_was_decided(receiver, workers):
    process = make_process("old")
    subscribe_hook(process, receiver.url)
    ProcessDefinition.objects.filter(pk=process.pk).update(archived=True)
    workers.start()
    finish(process, "failed", "task only failed")
    (delivery,) = wait_settled(count=1)
    assert delivery.status == DeliveryStatus.SENT


def test_huge_log_lines_make_a_bounded_escaped_email(tmp_path, workers):
    smtp = SmtpServer()
    smtp.start()
    try:
        script = (
            'python3 -c "import sys; w = sys.stdout.write;'
            " [w('x' * 400000 + chr(10)) for _ in range(40)];"
            " [w('y' * 3000 + '<script>alert(1)</script>' + chr(10)) for _ in range(60)]\";"
            " exit 1"
        )
        process = shell_process("chatty", script)
        Subscription.objects.create(process=process, channel="email", target="ops@example.com")
        workers.start(
            EMAIL_HOST=smtp.host,
            EMAIL_PORT=str(smtp.port),
            DEFAULT_FROM_EMAIL="sundial@example.com",
        )
        run = run_to_end(process)
        assert run.status == "failed"
        (delivery,) = wait_settled(count=1)
        assert delivery.status == DeliveryStatus.SENT, delivery.error
        (message,) = smtp.received
        raw = message.message.as_bytes()
        assert len(raw) < 2_000_000, f"a {len(raw)} byte email from a 16 MB log"
        html = message.part("text/html")
        text = message.part("text/plain")
        assert "(last 50 lines)" in text and text.count("<script>alert(1)</script>") == 50
        at = html.find("<script>")
        assert at < 0, html[max(0, at - 300) : at + 100]
        assert "&lt;script&gt;" in html
    finally:
        smtp.stop()


def test_an_exception_inside_notice_for_is_retried_and_never_touches_the_run(receiver, monkeypatch):
    monkeypatch.setattr(dispatch, "after_commit", lambda *a, **k: None)  # no worker here
    process = make_process("buggy")
    subscribe_hook(process, receiver.url)
    run = finish(process, "succeeded")
    (delivery,) = Delivery.objects.all()

    def broken(delivery):
        raise RuntimeError("a bug in notice_for")

    monkeypatch.setattr(outbox, "notice_for", broken)
    assert outbox.deliver(delivery.pk) == DeliveryStatus.PENDING
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and "a bug in notice_for" in delivery.error
    assert delivery.next_try_at is not None
    run.refresh_from_db()
    assert run.status == "succeeded"
    monkeypatch.undo()
    monkeypatch.setattr(dispatch, "after_commit", lambda *a, **k: None)
    Delivery.objects.filter(pk=delivery.pk).update(next_try_at=timezone.now())
    assert outbox.deliver(delivery.pk) == DeliveryStatus.SENT
    assert len(receiver.received) == 1


def test_two_notices_of_one_run_and_two_runs_failing_at_once_decide_once(receiver, monkeypatch):
    """On PostgreSQL, threads released together: a repeated notice (the reconciler beside
    the run's own message) decides nothing twice, and two runs of one process failing at
    once open one "failing" alert."""
    monkeypatch.setattr(dispatch, "after_commit", lambda *a, **k: None)  # no worker here
    process = make_process("twice", critical=True)
    Subscription.objects.create(process=process, channel="pagerduty", target=KEY)
    subscribe_hook(process, receiver.url)
    now = timezone.now()

    def ended(status: str) -> ProcessRun:
        run = ProcessRun.objects.create(
            definition=process,
            snapshot={},
            trigger="manual",
            status=status,
            started_at=now - timedelta(minutes=1),
            finished_at=now,
        )
        RunEnding.objects.create(run=run, definition=process, status=status, at=now)
        return run

    one = ended("failed")
    outcomes = race(lambda: outbox.notice_run(one.pk), lambda: outbox.notice_run(one.pk))
    assert [error for _, error in outcomes] == [None, None]
    assert sorted(len(made) for made, _ in outcomes) == [0, 2]
    a, b = ended("failed"), ended("failed")
    outcomes = race(lambda: outbox.notice_run(a.pk), lambda: outbox.notice_run(b.pk))
    assert [error for _, error in outcomes] == [None, None]
    assert Alert.objects.count() == 1
    assert RunNotice.objects.count() == 3
    # The older of the two is news of an older run: reported, but the alert is the newer's.
    assert Delivery.objects.filter(event="alert").count() == 2
    assert Delivery.objects.filter(event="failed").count() == 3


def test_a_pagerduty_subscription_set_to_never_does_not_page(monkeypatch):
    monkeypatch.setattr(dispatch, "after_commit", lambda *a, **k: None)  # no worker here
    process = make_process("paused", critical=True)
    Subscription.objects.create(process=process, channel="pagerduty", target=KEY, policy="never")
    finish(process, "failed", "task only failed")
    assert not Delivery.objects.exists(), list(Delivery.objects.values("channel", "event"))


def test_a_failure_retried_in_place_before_its_notice_ran_is_still_reported(
    monkeypatch, tmp_path, receiver
):
    marker = tmp_path / "fixed"
    process = shell_process("hasty", f"test -e {marker}")
    subscribe_hook(process, receiver.url, policy="on_state_change_and_failures")
    caught: list[tuple[str, tuple]] = []
    app = current_app._get_current_object()
    monkeypatch.setattr(
        app, "send_task", lambda name, args=(), **k: caught.append((name, tuple(args)))
    )
    run = trigger_run(process, Trigger.API)
    drive(run)
    wait_until_this_process_recorded_its_exits()
    assert run.status == "failed"
    late = [args for name, args in caught if name == dispatch.NOTICE]
    assert late == [(run.pk,)]
    marker.touch()
    retry_failed_tasks(run.pk)  # a person retries at once; the notice message is still queued
    for run_id in late:  # then a worker takes the notice: the run is running again, and
        assert len(outbox.notice_run(*run_id)) == 1  # its failure is told all the same
    drive(run)
    wait_until_this_process_recorded_its_exits()
    run.refresh_from_db()
    assert run.status == "succeeded"
    monkeypatch.undo()
    monkeypatch.setattr(dispatch, "after_commit", lambda *a, **k: None)  # no sends needed
    for name, args in caught:  # every notice the run's endings sent, delivered
        if name == dispatch.NOTICE:
            outbox.notice_run(*args)
    outbox.reconcile()
    events = list(Delivery.objects.order_by("pk").values_list("event", flat=True))
    assert events == ["failed", "recovered"], events


def test_a_resolve_waiting_for_its_trigger_is_not_multiplied_by_the_reconciler(fake, monkeypatch):
    from tests.faults.conftest import Network, intercept

    network = intercept(monkeypatch, Network())
    process = make_process("outage", critical=True)
    Subscription.objects.create(process=process, channel="pagerduty", target=KEY)
    fake.script(*([500] * 50))  # PagerDuty down for the whole test
    finish(process, "failed", "task only failed")
    (trigger,) = Delivery.objects.all()
    assert outbox.deliver(trigger.pk) == DeliveryStatus.PENDING  # 500: tried again in ~15 s
    finish(process, "succeeded")
    resolve = Delivery.objects.get(event="resolved")
    Delivery.objects.update(created_at=F("created_at") - timedelta(seconds=11))  # not FRESH
    network.pending.clear()
    in_flight = []
    for _ in range(6):  # six reconcile passes (90 s of beat) before the trigger is due again
        outbox.reconcile()
        for message in list(network.pending):  # each message reaches a worker once
            network.pending.remove(message)
            outbox.deliver(*message.args)  # not due: re-scheduled with a countdown
        in_flight.append(Counter(message.args[0] for message in network.pending))
    trigger.refresh_from_db()
    assert trigger.attempts == 1, "the trigger was not tried again before it was due"
    last = in_flight[-1]
    assert last[resolve.pk] <= 1 and last[trigger.pk] <= 2, in_flight
