"""End-to-end orchestration overhead in production mode: PostgreSQL + Redis + a real worker.

Prints `name: value` lines (medians of 5 runs after a warm-up), each with its target:
  chain20_wall_s   a chain of 20 local tasks running `true`, trigger to run finished
  fanout50_wall_s  1 -> 50 parallel -> 1, trigger to run finished
  handoff_p50_ms / handoff_p99_ms   a task finishing -> its downstream starting (chain runs)
  floor_chain20_s  20 sequential `true` spawns with no orchestration at all

Needs PostgreSQL and Redis (defaults: the local ones; override with BENCH_DATABASE_URL and
BENCH_BROKER_URL). Uses its own database and Redis db, never the app's.
"""

from __future__ import annotations

import itertools
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DB_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/sundial_bench")
BROKER_URL = os.environ.get("BENCH_BROKER_URL", "redis://127.0.0.1:6379/14")
RUNS = 5
TARGETS = {
    "chain20_wall_s": "<= 0.30",
    "fanout50_wall_s": "<= 0.50",
    "handoff_p50_ms": "<= 10",
    "handoff_p99_ms": "<= 50",
}

os.environ.update(
    DATABASE_URL=DB_URL,
    CELERY_BROKER_URL=BROKER_URL,
    SUNDIAL_VAR_DIR="/tmp/sundial-bench",
    DJANGO_SETTINGS_MODULE="sundial_site.settings",
    LOG_LEVEL="WARNING",
)


def ensure_database() -> None:
    import psycopg

    name = DB_URL.rsplit("/", 1)[1]
    with psycopg.connect(DB_URL.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


def floor_chain20() -> float:
    start = time.perf_counter()
    for _ in range(20):
        subprocess.run(["true"], check=True)
    return time.perf_counter() - start


def main() -> None:
    ensure_database()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from celery import current_app

    from jobs.models import ProcessDefinition, ProcessRun
    from jobs.orchestrator import trigger_run
    from tests.conftest import make_process

    current_app.connection_for_write().default_channel.queue_purge("celery")
    ProcessRun.objects.filter(definition__name__startswith="bench-").delete()
    ProcessDefinition.objects.filter(name__startswith="bench-").delete()
    chain = make_process(
        f"bench-chain-{os.getpid()}",
        {f"t{i:02}": {"requires": [f"t{i - 1:02}"] if i else []} for i in range(20)},
        overlap="allow",
    )
    fan: dict[str, dict] = {"root": {}} | {f"p{i:02}": {"requires": ["root"]} for i in range(50)}
    fan["sink"] = {"requires": [f"p{i:02}" for i in range(50)]}
    fanout = make_process(f"bench-fanout-{os.getpid()}", fan, overlap="allow")

    worker_log = Path(os.environ["SUNDIAL_VAR_DIR"]) / "bench-worker.log"
    worker_log.parent.mkdir(parents=True, exist_ok=True)
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "sundial_site", "worker", "--pool", "threads",
         "--concurrency", "8", "-l", "warning", "--without-gossip", "--without-mingle",
         "--without-heartbeat"],
        cwd=ROOT, stdout=worker_log.open("w"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:

        def timed_run(process) -> tuple[float, ProcessRun]:
            start = time.time()
            run = trigger_run(process, "api")
            deadline = time.monotonic() + 60
            while True:
                run.refresh_from_db(fields=["status", "finished_at"])
                if run.finished_at:
                    break
                if time.monotonic() > deadline:
                    raise SystemExit(f"run {run.pk} did not finish in 60 s; see {worker_log}")
                time.sleep(0.02)
            if run.status != "succeeded":
                raise SystemExit(f"run {run.pk} ended {run.status}")
            return run.finished_at.timestamp() - start, run

        timed_run(chain)  # warm-up: worker start, imports, connections
        timed_run(fanout)
        chains, fanouts, handoffs = [], [], []
        for _ in range(RUNS):
            wall, run = timed_run(chain)
            chains.append(wall)
            attempts = list(run.task_runs.order_by("task_name"))
            handoffs += [
                (b.started_at - a.finished_at).total_seconds() * 1000
                for a, b in itertools.pairwise(attempts)
            ]
            fanouts.append(timed_run(fanout)[0])
        floors = [floor_chain20() for _ in range(RUNS)]
    finally:
        worker.terminate()
        worker.wait(timeout=30)

    handoffs.sort()
    figures = {
        "chain20_wall_s": statistics.median(chains),
        "fanout50_wall_s": statistics.median(fanouts),
        "handoff_p50_ms": statistics.median(handoffs),
        "handoff_p99_ms": handoffs[min(len(handoffs) - 1, int(len(handoffs) * 0.99))],
        "floor_chain20_s": statistics.median(floors),
    }
    for name, value in figures.items():
        target = TARGETS.get(name, "(no target: the floor)")
        print(f"{name}: {value:.4f}  # target {target}")
    print(f"chain20_overhead_ratio: {figures['chain20_wall_s'] / figures['floor_chain20_s']:.1f}")


if __name__ == "__main__":
    main()
