"""The pages people read, at production size: queries per page and server time.

Fills a database of its own with 1,000 processes of 10 tasks each (10,000 tasks) and 100
runs per process of one attempt per task (100,000 runs, 1,000,000 attempts), then prints
`name: value` lines, each beside what it must be or its target:
  dashboard_queries / dashboard_ms          /  (counts every process; shows its first page)
  process_page_queries / process_page_ms    /processes/<name>/  (a process with 100 runs)
  run_page_queries / run_page_ms            /runs/<id>/  (its latest run, one still running)
  log_tail_ms                               /task-runs/<id>/log  (the tail of a 100 MB log)
Times are the median server time of 20 requests through Django's test client after a
warm-up; queries are those of one request. A page over 10 queries fails the bench (exit 1);
the times are reported against their targets, not enforced (the machine is noisy).

The data stays in the database (marked with its size in the table bench_pages_data), so a
second run only times the pages. BENCH_PAGES_SCALE (default 1) scales the number of
processes, and with it every count (0.01: 10 processes, 10,000 attempts) for a quick check;
BENCH_PAGES_DATABASE_URL overrides the database (default: sundial_bench_pages on the local
PostgreSQL, with the number of processes appended at another scale; created if missing).
"""

from __future__ import annotations

import io
import json
import os
import random
import secrets
import shutil
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
SCALE = float(os.environ.get("BENCH_PAGES_SCALE", "1"))
PROCESSES = max(1, round(1000 * SCALE))
# A smaller scale has a database and a directory of its own, so a quick check keeps the
# full-size data.
SUFFIX = "" if PROCESSES == 1000 else f"_{PROCESSES}"
DB_URL = os.environ.get(
    "BENCH_PAGES_DATABASE_URL",
    f"postgres://postgres@127.0.0.1:5432/sundial_bench_pages{SUFFIX}",
)
TASKS = 10  # per process
RUNS = 100  # per process; each run has one attempt per task
LOG_BYTES = 100 * 1024 * 1024
REQUESTS = 20
MAX_QUERIES = 10
VAR_DIR = Path(f"/tmp/sundial-bench-pages{SUFFIX}")
TARGETS_MS = {"dashboard_ms": 150, "process_page_ms": 100, "run_page_ms": 100, "log_tail_ms": 50}
# The DAG of every process: t0 -> t1..t4 -> t5 -> t6..t8 -> t9.
REQUIRES = {
    **{f"t{i}": ["t0"] for i in range(1, 5)},
    "t5": [f"t{i}" for i in range(1, 5)],
    **{f"t{i}": ["t5"] for i in range(6, 9)},
    "t9": [f"t{i}" for i in range(6, 9)],
}
NAMES = [f"t{i}" for i in range(TASKS)]
EXIT_CODES = {"succeeded": "0", "failed": "1"}
# What the database holds, in the table bench_pages_data: another value means fill it again
# (change the version when fill() changes).
FILL = f"{PROCESSES} processes, fill 2"

os.environ.update(
    DATABASE_URL=DB_URL,
    SUNDIAL_VAR_DIR=str(VAR_DIR),
    SUNDIAL_LOG_DIR=str(VAR_DIR / "logs"),
    DJANGO_SETTINGS_MODULE="sundial_site.settings",
    ALLOWED_HOSTS="testserver",
    LOG_LEVEL="WARNING",
)


def ensure_database() -> None:
    import psycopg

    server, name = DB_URL.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def _ts(moment: datetime | None) -> str:
    return r"\N" if moment is None else moment.isoformat()


def _copy_text(value: str) -> str:
    """``value`` as a field of COPY's text format."""
    return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")


def _attempt_statuses(run_status: str, rng: random.Random) -> list[str]:
    """What each task's attempt ended as (or is doing) in a run that is ``run_status``."""
    if run_status == "succeeded":
        return ["succeeded"] * TASKS
    if run_status == "running":  # t0..t4 done, t5 running, the rest waiting for it
        return ["succeeded"] * 5 + ["running"] + ["waiting"] * 4
    failed = rng.randrange(TASKS)  # failed runs: one task failed, what needs it was skipped
    statuses, down = [], {NAMES[failed]}
    for name in NAMES:
        if name in down and name != NAMES[failed]:
            statuses.append("skipped")
        elif name == NAMES[failed]:
            statuses.append("failed")
        elif any(u in down for u in REQUIRES.get(name, [])):
            down.add(name)
            statuses.append("skipped")
        else:
            statuses.append("succeeded")
    return statuses


def fill() -> None:
    """The processes, their tasks and edges, runs and attempts, from an empty database."""
    from django.db import connection

    from jobs.models import ProcessDefinition, TaskDefinition, TaskDependency
    from jobs.snapshot import take_snapshot

    shutil.rmtree(VAR_DIR / "logs", ignore_errors=True)  # the logs of the data replaced
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE jobs_processdefinition, jobs_taskdefinition, jobs_taskdependency,"
            " jobs_processrun, jobs_taskrun, jobs_taskevent, jobs_taskmetadata"
            " RESTART IDENTITY CASCADE"
        )
    processes = ProcessDefinition.objects.bulk_create(
        ProcessDefinition(
            name=f"process-{p:04}",
            description="A nightly load of one source into the warehouse.",
            schedule_kind="cron",
            cron=f"{p % 60} {p % 24} * * *",
            owner=f"team-{p % 12}",
            paused=p % 50 == 7,
        )
        for p in range(PROCESSES)
    )
    tasks = TaskDefinition.objects.bulk_create(
        TaskDefinition(
            process=process,
            name=name,
            executor="local",
            config={"command": ["python", "-m", "etl", name]},
            max_attempts=3,
        )
        for process in processes
        for name in NAMES
    )
    by_key = {(t.process_id, t.name): t for t in tasks}
    TaskDependency.objects.bulk_create(
        TaskDependency(task=by_key[(p.pk, name)], upstream=by_key[(p.pk, upstream)])
        for p in processes
        for name, upstreams in REQUIRES.items()
        for upstream in upstreams
    )

    rng = random.Random(7)
    now = datetime.now(UTC)
    log_dir = VAR_DIR / "logs"
    runs, attempts = io.StringIO(), io.StringIO()
    run_id = attempt_id = 0
    for process in processes:
        snapshot = _copy_text(json.dumps(take_snapshot(process)))
        for k in range(RUNS):
            run_id += 1
            created = now - timedelta(hours=RUNS - k, minutes=process.pk % 60)
            # The latest run of every tenth process is still running; 8% of the others failed.
            if k == RUNS - 1 and process.pk % 10 == 1:
                status = "running"
            else:
                status = "failed" if rng.random() < 0.08 else "succeeded"
            statuses = _attempt_statuses(status, rng)
            start = created + timedelta(seconds=1)
            moment = start
            for name, attempt_status in zip(NAMES, statuses, strict=True):
                attempt_id += 1
                began = moment if attempt_status not in ("waiting", "skipped") else None
                took = timedelta(seconds=rng.randint(20, 400))
                ended = (
                    began + took
                    if began and attempt_status in ("succeeded", "failed")
                    else (moment if attempt_status == "skipped" else None)
                )
                if ended:
                    moment = ended
                key = f"sundial-{run_id}-{attempt_id}-{name}-1-1"
                attempts.write(
                    "\t".join(
                        (
                            str(attempt_id),
                            str(run_id),
                            name,
                            "1",
                            "1",
                            "local",
                            attempt_status,
                            "1" if began else "0",
                            "bench-host" if began else "",
                            str(4000 + attempt_id % 60000) if began else "",
                            str(log_dir / f"{key}.log") if began else "",
                            "{}",
                            "",
                            "",
                            EXIT_CODES.get(attempt_status, r"\N"),
                            "exit code 1" if attempt_status == "failed" else "",
                            "f",
                            "f",
                            "",
                            "",
                            secrets.token_urlsafe(32),
                            _ts(created),
                            _ts(began),
                            _ts(began),
                            _ts(began),
                            _ts(ended),
                            _ts(ended or began),
                        )
                    )
                    + "\n"
                )
            finished = None if status == "running" else moment
            runs.write(
                "\t".join(
                    (
                        str(run_id),
                        str(process.pk),
                        snapshot,
                        "schedule" if k % 5 else "manual",
                        "{}",
                        status,
                        "" if status != "failed" else "a task failed",
                        _ts(created),
                        _ts(start),
                        _ts(finished),
                    )
                )
                + "\n"
            )
    run_columns = (
        "id, definition_id, snapshot, trigger, parameters, status, reason, created_at,"
        " started_at, finished_at"
    )
    attempt_columns = (
        "id, run_id, task_name, round, number, executor, status, submit_tries, worker_host,"
        " external_id, log_ref, resources, placement, executor_state, exit_code, reason,"
        " out_of_memory, permanent, stop_as, stop_reason, token, created_at, submitting_at,"
        " submitted_at, started_at, finished_at, heartbeat_at"
    )
    with connection.cursor() as cursor:
        for table, columns, data in (
            ("jobs_processrun", run_columns, runs),
            ("jobs_taskrun", attempt_columns, attempts),
        ):
            raw = data.getvalue().encode()
            with cursor.cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
                for offset in range(0, len(raw), 1 << 22):
                    copy.write(raw[offset : offset + (1 << 22)])
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'),"
                f" (SELECT max(id) FROM {table}))"
            )
        cursor.execute("ANALYZE")


def ensure_data() -> None:
    from django.db import connection, transaction

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS bench_pages_data (fill text)")
        cursor.execute("SELECT fill FROM bench_pages_data")
        row = cursor.fetchone()
    if row and row[0] == FILL:
        print(f"# reusing the data of {PROCESSES} processes", file=sys.stderr)
        return
    started = time.perf_counter()
    with transaction.atomic():
        fill()
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM bench_pages_data")
            cursor.execute("INSERT INTO bench_pages_data VALUES (%s)", [FILL])
    print(
        f"# filled {PROCESSES} processes, {PROCESSES * RUNS} runs, {PROCESSES * RUNS * TASKS}"
        f" attempts in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )


def write_log(path: Path) -> None:
    """LOG_BYTES of log lines, some of them errors, unless the file is already that size."""
    if path.exists() and path.stat().st_size >= LOG_BYTES:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    block = "".join(
        f"2026-12-01T03:{i // 60 % 60:02}:{i % 60:02}Z "
        + ("ERROR could not parse record" if i % 97 == 0 else "INFO loaded batch")
        + f" {i} of the source table, 1000 rows, 0.25 s\n"
        for i in range(10_000)
    ).encode()
    with open(path, "wb") as f:
        written = 0
        while written < LOG_BYTES:
            f.write(block)
            written += len(block)


def measure(client, url: str) -> tuple[int, float, list[str]]:
    """The queries of one request to ``url`` and the median time of REQUESTS after a warm-up."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    response = client.get(url)
    if response.status_code != 200:
        raise SystemExit(f"{url} answered {response.status_code}")
    with CaptureQueriesContext(connection) as queries:
        client.get(url)
    # Read now: the next request's start empties the connection's query log.
    sql = [q["sql"] for q in queries.captured_queries]
    times = []
    for _ in range(REQUESTS):
        start = time.perf_counter()
        client.get(url)
        times.append((time.perf_counter() - start) * 1000)
    return len(sql), statistics.median(times), sql


def print_count(name: str, count: int, bound: int) -> bool:
    """A count with the bound it must keep (a line marked FAIL over it); whether it kept it."""
    ok = count <= bound
    print(f"{name}: {count}  # must be <= {bound}{'' if ok else ' FAIL'}")
    return ok


def print_ms(name: str, median_ms: float, target: float) -> None:
    """A time beside its target, reported, not enforced (the machine is noisy)."""
    miss = "" if median_ms <= target else " (missed)"
    print(f"{name}: {median_ms:.1f}  # target <= {target}{miss}")


def main() -> None:
    ensure_database()
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client
    from django.urls import reverse

    from jobs.models import ProcessRun, TaskRun, User

    call_command("migrate", verbosity=0)
    ensure_data()
    user = User.objects.filter(username="bench").first() or User.objects.create_superuser(
        "bench", "bench@example.com", None
    )
    # A process whose latest run is still running, that run, and the first attempt of it.
    run = ProcessRun.objects.filter(status="running").select_related("definition").first()
    process_name = run.definition.name
    attempt = TaskRun.objects.filter(run=run).exclude(log_ref="").order_by("id").first()
    write_log(Path(attempt.log_ref))

    client = Client()
    client.force_login(user)
    pages = {
        "dashboard": reverse("home"),
        "process_page": reverse("process", args=[process_name]),
        "run_page": reverse("run", args=[run.pk]),
        "log_tail": reverse("task-run-log", args=[attempt.pk]),
    }
    failed = False
    for name, url in pages.items():
        count, median_ms, sql = measure(client, url)
        if name != "log_tail":
            ok = print_count(f"{name}_queries", count, MAX_QUERIES)
            failed |= not ok
            if not ok or os.environ.get("BENCH_PAGES_SQL"):
                for statement in sql:
                    print(f"#   {statement[:300]}", file=sys.stderr)
        print_ms(f"{name}_ms", median_ms, TARGETS_MS[f"{name}_ms"])
    if failed:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
