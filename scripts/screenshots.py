"""`make screenshots`: the README's pictures of the dashboard and a failed run's page.

Starts Sundial as `make run` does, on a throwaway SUNDIAL_VAR_DIR (SQLite and the embedded
broker) and a free port, gives it a few processes with a history of real runs through the
orchestrator (local tasks that succeed, fail and retry), logs in with Debian's chromium and
saves docs/screenshots/dashboard.png and docs/screenshots/run.png. The server is stopped and
the directory removed at the end, whatever happens.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent.parent
OUT_DIR = BASE_DIR / "docs" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Variables that would point the throwaway Sundial at a real database, broker or AWS.
INHERITED_PREFIXES = ("SUNDIAL_", "DATABASE_", "CELERY_", "AWS_", "SECRET_KEY", "DEBUG")
STARTUP_TIMEOUT_S = 120.0
RUNS_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 40.0


@dataclass(frozen=True)
class Task:
    name: str
    does: str  # what its log says it does
    requires: tuple[str, ...] = ()


@dataclass(frozen=True)
class Process:
    """A process of the picture and its history: one letter per run, oldest first
    (g succeeded, r failed, R still running when the pictures are taken)."""

    name: str
    owner: str
    description: str
    cron: str
    tasks: tuple[Task, ...]
    flaky: str  # the task that fails in a failed run
    error: str  # what it says when it does
    history: str
    timezone: str = "UTC"
    paused: bool = False
    attempts: dict[str, int] = field(default_factory=dict)


PROCESSES = (
    Process(
        name="orders-nightly",
        owner="data-eng",
        description="Orders and customers from the shop database into the warehouse.",
        cron="0 2 * * *",
        timezone="Europe/Berlin",
        tasks=(
            Task("extract_orders", "extracting orders"),
            Task("extract_customers", "extracting customers"),
            Task(
                "join_orders",
                "joining orders to customers",
                ("extract_orders", "extract_customers"),
            ),
            Task("quality_checks", "checking row counts", ("join_orders",)),
            Task("publish", "publishing to the warehouse", ("quality_checks",)),
        ),
        flaky="join_orders",
        error="duplicate key customer_id=48213 in customers snapshot",
        history="ggggrgggr",
        attempts={"join_orders": 2},
    ),
    Process(
        name="billing-export",
        owner="finance",
        description="Yesterday's invoices to the accounting system.",
        cron="30 6 * * 1-5",
        timezone="Europe/London",
        tasks=(
            Task("invoices", "reading invoices"),
            Task("export_csv", "writing the export", ("invoices",)),
            Task("upload_sftp", "uploading to sftp.accounting.example", ("export_csv",)),
        ),
        flaky="upload_sftp",
        error="sftp: connection reset by peer",
        history="gggrgggg",
    ),
    Process(
        name="ml-feature-refresh",
        owner="ml-platform",
        description="Recompute the recommendation model's features.",
        cron="0 */4 * * *",
        tasks=(
            Task("snapshot_events", "snapshotting events"),
            Task("user_features", "computing user features", ("snapshot_events",)),
            Task("item_features", "computing item features", ("snapshot_events",)),
            Task("write_store", "writing the feature store", ("user_features", "item_features")),
        ),
        flaky="item_features",
        error="MemoryError: item embedding matrix does not fit",
        history="ggrggggg",
    ),
    Process(
        name="crm-sync",
        owner="growth",
        description="Contacts and consents from the CRM.",
        cron="0 */6 * * *",
        tasks=(
            Task("fetch_contacts", "fetching contacts"),
            Task("merge_consents", "merging consents", ("fetch_contacts",)),
        ),
        flaky="fetch_contacts",
        error="HTTP 429 from api.crm.example: rate limit exceeded",
        history="gggggrr",
    ),
    Process(
        name="clickstream-sessionize",
        owner="analytics",
        description="Sessions from the last hour of clickstream.",
        cron="5 * * * *",
        tasks=(
            Task("read_clicks", "reading clicks"),
            Task("sessionize", "building sessions", ("read_clicks",)),
        ),
        flaky="sessionize",
        error="unreachable",
        history="ggggggR",
    ),
    Process(
        name="warehouse-vacuum",
        owner="platform",
        description="Weekly vacuum and analyze of the warehouse.",
        cron="0 3 * * 0",
        tasks=(Task("vacuum", "vacuuming"),),
        flaky="vacuum",
        error="unreachable",
        history="gggg",
    ),
    Process(
        name="legacy-fx-rates",
        owner="finance",
        description="Exchange rates from the old provider (replaced; kept for its history).",
        cron="0 7 * * *",
        tasks=(Task("fetch_rates", "fetching rates"),),
        flaky="fetch_rates",
        error="unreachable",
        history="",
        paused=True,
    ),
)


def main() -> None:
    if not Path(CHROMIUM).exists():
        sys.exit("make screenshots needs Debian's chromium: apt-get install chromium")
    sys.path.insert(0, str(BASE_DIR))  # for Django's settings and the jobs app
    var_dir = Path(tempfile.mkdtemp(prefix="sundial-screenshots-"))
    port = free_port()
    env = throwaway_env(var_dir, port)
    os.environ.clear()
    # This process only triggers runs; the orchestrator's lines would drown its own.
    os.environ.update(env, LOG_LEVEL="WARNING")
    print(f"starting Sundial on 127.0.0.1:{port} in {var_dir}")
    try:
        with sundial(var_dir, port, env) as password:
            failed_run = make_history()
            take_pictures(f"http://127.0.0.1:{port}", password, failed_run)
    finally:
        shutil.rmtree(var_dir, ignore_errors=True)
    for name in ("dashboard.png", "run.png"):
        path = OUT_DIR / name
        print(f"wrote {path.relative_to(BASE_DIR)} ({path.stat().st_size // 1024} KiB)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def throwaway_env(var_dir: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(INHERITED_PREFIXES)}
    env.update(
        DJANGO_SETTINGS_MODULE="sundial_site.settings",
        SUNDIAL_VAR_DIR=str(var_dir),
        SUNDIAL_API_URL=f"http://127.0.0.1:{port}",
        # The one task still running when the pictures are taken need not linger.
        SUNDIAL_SHUTDOWN_GRACE_S="2",
    )
    return env


@contextmanager
def sundial(var_dir: Path, port: int, env: dict[str, str]) -> Iterator[str]:
    """Run `manage.py run` (web, worker, beat) until the block ends; yield admin's password."""
    console = var_dir / "console.log"
    with console.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "run", "--addr", f"127.0.0.1:{port}"],
            cwd=BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            # Its own process group, so that one signal reaches web, worker and beat, as
            # Ctrl-C does in a terminal.
            start_new_session=True,
        )
    try:
        password = wait_for_start(server, console, port)
        yield password
    except BaseException:
        sys.stderr.write(f"--- Sundial's console ---\n{console.read_text(errors='replace')}\n")
        raise
    finally:
        stop(server)


def wait_for_start(server: subprocess.Popen[bytes], console: Path, port: int) -> str:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    password = None
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"manage.py run stopped with exit code {server.returncode}")
        if password is None:
            found = re.search(r"with password '([^']+)'", console.read_text(errors="replace"))
            password = found and found.group(1)
        if password and answers(f"http://127.0.0.1:{port}/admin/login/"):
            return password
        time.sleep(0.3)
    raise RuntimeError(f"Sundial did not start within {STARTUP_TIMEOUT_S:.0f} s")


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def stop(server: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the whole group (the worker then stops its tasks), SIGKILL if it lingers."""
    if server.poll() is not None:
        return
    os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def make_history() -> int:
    """Create the processes and run their histories for real; return the id of the failed
    run whose page is pictured."""
    import django

    django.setup()
    from jobs.cron import reschedule
    from jobs.engine import RunStatus
    from jobs.models import ProcessDefinition, ProcessRun, TaskDefinition, TaskDependency, User
    from jobs.orchestrator import trigger_run

    admin = User.objects.get(username="admin")
    tasks: dict[tuple[str, str], Any] = {}
    for spec in PROCESSES:
        process = ProcessDefinition.objects.create(
            name=spec.name,
            owner=spec.owner,
            description=spec.description,
            schedule_kind="cron",
            cron=spec.cron,
            timezone=spec.timezone,
            paused=spec.paused,
        )
        for task in spec.tasks:
            tasks[spec.name, task.name] = TaskDefinition.objects.create(
                process=process,
                name=task.name,
                executor="local",
                config=shell(task, "g"),
                max_attempts=spec.attempts.get(task.name, 1),
                retry_initial_delay_s=1,
                retry_jitter=0,
            )
            for upstream in task.requires:
                TaskDependency.objects.create(
                    task=tasks[spec.name, task.name], upstream=tasks[spec.name, upstream]
                )
        reschedule(process)

    # Round by round, one run per process, each round waiting for the last to finish: the
    # overlap policy (skip) would otherwise drop a trigger.
    random.seed(7)
    failed_run = 0
    for round_ in range(max(len(p.history) for p in PROCESSES)):
        started = []
        for spec in PROCESSES:
            if round_ >= len(spec.history):
                continue
            outcome = spec.history[round_]
            for task in spec.tasks:
                tasks[spec.name, task.name].config = shell(
                    task, outcome if task.name == spec.flaky else "g", spec.error
                )
                tasks[spec.name, task.name].save(update_fields=["config"])
            process = ProcessDefinition.objects.get(name=spec.name)
            run = trigger_run(process, "manual", user=admin)
            if outcome == "r" and spec is PROCESSES[0]:
                failed_run = run.pk
            if outcome != "R":
                started.append(run.pk)
        deadline = time.monotonic() + RUNS_TIMEOUT_S
        while ProcessRun.objects.filter(pk__in=started, status__in=["queued", "running"]).exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"runs {started} did not finish in {RUNS_TIMEOUT_S:.0f} s")
            time.sleep(0.3)
        print(f"round {round_ + 1}: runs {started} finished")
    if ProcessRun.objects.get(pk=failed_run).status != RunStatus.FAILED:
        raise RuntimeError(f"run {failed_run} was meant to fail")
    return failed_run


def shell(task: Task, outcome: str, error: str = "") -> dict[str, str]:
    """A local task's config that ends as outcome says, after a realistic pause."""
    took = f"{random.uniform(1.0, 2.5):.1f}"
    script = f"echo '{task.does}'; sleep {took}; "
    if outcome == "r":
        script += f"echo '{error}' >&2; exit 1"
    elif outcome == "R":
        script += "sleep 3600"
    else:
        script += f"echo '{random.randint(1000, 90000)} rows'"
    return {"shell": script}


def take_pictures(url: str, password: str, failed_run: int) -> None:
    from playwright.sync_api import sync_playwright

    OUT_DIR.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page(base_url=url, viewport={"width": 1280, "height": 800})
            page.goto("/admin/login/?next=/")
            page.fill("#id_username", "admin")
            page.fill("#id_password", password)
            with page.expect_navigation():
                page.click("input[type=submit]")
            page.goto("/")
            page.wait_for_selector("#board tr.process")
            if page.locator(".light.ring").count() == 0:
                raise RuntimeError("the dashboard shows no running process")
            page.screenshot(path=OUT_DIR / "dashboard.png", full_page=False)
            page.goto(f"/runs/{failed_run}/")
            page.wait_for_load_state("networkidle")
            page.screenshot(path=OUT_DIR / "run.png", full_page=False)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
