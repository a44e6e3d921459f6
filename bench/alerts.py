"""Notifications at production size: the alert scan over every process, and deciding who
hears of a run's end.

Uses bench/pages.py's database (1,000 processes of 10 tasks, 100,000 runs, 1,000,000
attempts; filled on first use), and inside one transaction that is rolled back at the end
(the data stays as pages.py left it) gives every process a cron schedule, a long-running
factor, a deadline and three subscriptions to the in-memory channel. Prints `name: value`
lines beside what they must be or their target:
  alert_scan_queries / alert_scan_ms   one scan of every process (median of 5); beat runs
                                       it every 30 s, so it must stay far below that
  notice_queries / notice_ms           notice_run of a finished run (median of 20 runs)
A query count over its bound fails the bench (exit 1); the times are reported against
their targets, not enforced (the machine is noisy).
"""

from __future__ import annotations

import functools
import statistics
import sys
import time
from collections.abc import Callable
from datetime import time as clock
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import pages  # its database, settings and data

SCANS = 5
NOTICES = 20
MAX_SCAN_QUERIES = 10
MAX_NOTICE_QUERIES = 15
TARGETS_MS = {"alert_scan_ms": 1000, "notice_ms": 50}


class Rollback(Exception):
    """Raised at the end to undo the bench's changes to the shared data."""


def timed(call: Callable[[], object]) -> tuple[float, int]:
    """Milliseconds and statements of one call, savepoints aside (the bench's own outer
    transaction turns each of the call's transactions into a pair of them)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        call()
        took = (time.perf_counter() - started) * 1000
    statements = [
        q["sql"]
        for q in queries.captured_queries
        if not q["sql"].startswith(("SAVEPOINT", "RELEASE"))
    ]
    return took, len(statements)


def main() -> None:
    pages.ensure_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import transaction
    from django.utils import timezone

    from jobs.models import ProcessDefinition, ProcessRun, RunEnding
    from notifications import alerts, outbox
    from notifications.models import Subscription

    call_command("migrate", verbosity=0)
    pages.ensure_data()
    now = timezone.now()
    figures: dict[str, tuple[float, int]] = {}
    try:
        with transaction.atomic():
            ProcessDefinition.objects.update(
                schedule_kind="cron",
                cron="0 * * * *",
                next_fire_at=now + timedelta(minutes=30),
                long_running_factor=2,
                deadline=clock(23, 59),
            )
            Subscription.objects.bulk_create(
                Subscription(process_id=pk, channel="memory", target=f"team-{pk}-{i}")
                for pk in ProcessDefinition.objects.values_list("pk", flat=True)
                for i in range(3)
            )
            alerts.scan(now)  # the first scan opens what holds; the next ones find it open
            scans = [timed(lambda: alerts.scan(now)) for _ in range(SCANS)]
            figures["alert_scan"] = (statistics.median(t for t, _ in scans), scans[-1][1])
            finished = ProcessRun.objects.filter(status__in=["succeeded", "failed"]).order_by("-id")
            runs = list(
                finished.values_list("pk", "definition_id", "status", "finished_at")[:NOTICES]
            )
            # The fill writes runs without their endings (the orchestrator writes both).
            RunEnding.objects.bulk_create(
                RunEnding(run_id=pk, definition_id=process, status=status, at=at)
                for pk, process, status, at in runs
            )
            notices = [timed(functools.partial(outbox.notice_run, pk)) for pk, *_ in runs]
            figures["notice"] = (
                statistics.median(t for t, _ in notices),
                max(count for _, count in notices),
            )
            raise Rollback
    except Rollback:
        pass
    failed = False
    for name, bound in (("alert_scan", MAX_SCAN_QUERIES), ("notice", MAX_NOTICE_QUERIES)):
        median_ms, count = figures[name]
        failed |= not pages.print_count(f"{name}_queries", count, bound)
        pages.print_ms(f"{name}_ms", median_ms, TARGETS_MS[f"{name}_ms"])
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
