"""Polling AWS at scale, and submitting through a real worker, against moto server.

Prints `name: value` lines, each beside what it must be or its target:
  poll_calls_batch_10000   DescribeJobs calls of one poll cycle over 10,000 live Batch
                           attempts (must be 100: 100 ids per call)
  poll_cpu_s_10000         Sundial's own CPU seconds for that cycle (target <= 2)
  poll_wall_s_10000        its wall time (no target: the rate budget, 40 calls/s, sets it)
  poll_first_cpu_s_10000   the cycle before it, which saves every job's Batch state
                           (SUBMITTED) once: a write per attempt
  poll_calls_ecs_2000      DescribeTasks calls over 2,000 live ECS attempts (20 per cluster)
  submit_per_s             attempts a real worker submits per second (at most the rate
                           budget, 40 SubmitJob calls/s per worker)

moto runs in a process of its own (this file, run with --moto-server), so the CPU figures
are Sundial's alone; PostgreSQL's work is in another process too. moto's Batch would run
each job in Docker, on a thread per job; here that thread does nothing, so every job stays
SUBMITTED (live) and a poll cycle changes nothing in AWS.

Sizes: BENCH_POLL_ATTEMPTS (10000), BENCH_SUBMIT_ATTEMPTS (200). The database is
BENCH_POLLER_DATABASE_URL, else a database of its own on the local PostgreSQL
(sundial_bench_poller), else SQLite; the broker is the embedded file-system one. Every run
starts from an empty database and an empty moto.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VAR_DIR = Path("/tmp/sundial-bench-poller")
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's
QUEUE = "bench"  # the Batch job queue, and the job definition every attempt submits
POLL_ATTEMPTS = int(os.environ.get("BENCH_POLL_ATTEMPTS", "10000"))
SUBMIT_ATTEMPTS = int(os.environ.get("BENCH_SUBMIT_ATTEMPTS", "200"))
TASKS_PER_RUN = 100  # the poll's attempts are spread over runs of a 100-task process
DESCRIBE_BATCH = 100  # ids per DescribeJobs / DescribeTasks call
POLL_CPU_TARGET_S = 2.0


def database_url() -> str:
    if url := os.environ.get("BENCH_POLLER_DATABASE_URL"):
        return url
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=0.5).close()
    except OSError:
        return f"sqlite:///{VAR_DIR / 'bench.sqlite3'}"
    return "postgres://postgres@127.0.0.1:5432/sundial_bench_poller"


def ensure_database(url: str) -> None:
    if not url.startswith("postgres"):
        return
    import psycopg

    server, name = url.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


# ---- moto, in a process of its own ----


def serve_moto() -> None:
    """The moto server process: prints its endpoint, then serves until its stdin closes.

    Meanwhile each line ``<queue> <job definition> <count>`` on its stdin submits that many
    Batch jobs inside this process (50 times faster than through moto's HTTP API) and
    answers with their ARNs, a line each, then ``done``.
    """
    from moto.batch import models as moto_batch
    from moto.server import ThreadedMotoServer

    # moto would run a Batch job in Docker, polling for a state change every 0.5 s on a
    # thread of its own: 10,000 of those would take the machine. Here a job stays SUBMITTED.
    moto_batch.Job.run = lambda self: None  # type: ignore[method-assign]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(f"http://{host}:{port}", flush=True)
    for line in sys.stdin:
        queue, definition, count = line.split()
        backend = moto_batch.batch_backends[ACCOUNT][REGION]
        for i in range(int(count)):
            print(backend.submit_job(f"bench-{i}", definition, queue, array_properties={})[2])
        print("done", flush=True)
    server.stop()


class Moto:
    """A moto server in a child process (this file, run with --moto-server); stop() it."""

    def __init__(self) -> None:
        self._log = (VAR_DIR / "moto.log").open("w")
        self._proc = subprocess.Popen(
            [sys.executable, __file__, "--moto-server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._stdin, self._stdout = self._proc.stdin, self._proc.stdout
        self.endpoint = self._stdout.readline().strip()
        if not self.endpoint:
            raise SystemExit(f"moto server did not start; see {self._log.name}")
        deadline = time.monotonic() + 10
        while True:
            try:
                self.post("config", {})
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"moto server does not answer; see {self._log.name}") from None
                time.sleep(0.05)
        # Belt and braces: moto's own state machine never moves a job on either.
        self.post(
            "state-manager/set-transition",
            {"model_name": "batch::job", "transition": {"progression": "manual", "times": 10**9}},
        )

    def post(self, path: str, body: dict[str, Any]) -> None:
        """POST to moto's own API (``/moto-api/<path>``)."""
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/{path}", json.dumps(body).encode(), method="POST"
        )
        urllib.request.urlopen(request, timeout=5).close()

    def batch_jobs(self, count: int) -> list[str]:
        """The ARNs of ``count`` new jobs in the bench's queue (see ``serve_moto``)."""
        self._stdin.write(f"{QUEUE} {QUEUE} {count}\n")
        self._stdin.flush()
        arns = [line.strip() for line in iter(self._stdout.readline, "done\n")]
        if len(arns) != count or not all(arn.startswith("arn:aws:batch:") for arn in arns):
            raise SystemExit(f"moto made {len(arns)} jobs of {count}; see {self._log.name}")
        return arns

    def stop(self) -> None:
        self._stdin.close()
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self._log.close()


def aws_environment(endpoint: str) -> dict[str, str]:
    """What this process and its worker need to talk to moto, and nothing of the machine's."""
    for name in ("AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION"):
        os.environ.pop(name, None)
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "SUNDIAL_AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_CONFIG_FILE": "/nonexistent",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def plain_client(service: str) -> Any:
    """A boto3 client of the bench's own (no rate budget), for setting AWS up."""
    import boto3

    return boto3.client(service, region_name=REGION)


def batch_queue() -> None:
    """A job queue on an unmanaged compute environment, and a job definition, both "bench"."""
    role = plain_client("iam").create_role(RoleName="bench-batch", AssumeRolePolicyDocument="{}")
    batch = plain_client("batch")
    environment = batch.create_compute_environment(
        computeEnvironmentName="bench-env",
        type="UNMANAGED",
        state="ENABLED",
        serviceRole=role["Role"]["Arn"],
    )
    batch.create_job_queue(
        jobQueueName=QUEUE,
        state="ENABLED",
        priority=1,
        computeEnvironmentOrder=[
            {"order": 1, "computeEnvironment": environment["computeEnvironmentArn"]}
        ],
    )
    batch.register_job_definition(
        jobDefinitionName=QUEUE,
        type="container",
        containerProperties={"image": "busybox", "vcpus": 1, "memory": 512},
    )


# ---- Sundial's side ----


def bench_process(name: str, tasks: int) -> Any:
    """A process of ``tasks`` independent Batch tasks, each submitting the bench's job
    definition (one SubmitJob per attempt: nothing to register)."""
    from executors.config import validate_config
    from jobs.models import ProcessDefinition, TaskDefinition

    config = validate_config("batch", {"job_definition": QUEUE, "job_queue": QUEUE})
    process = ProcessDefinition.objects.create(name=name, overlap="allow")
    TaskDefinition.objects.bulk_create(
        TaskDefinition(process=process, name=f"t{i:03}", executor="batch", config=config)
        for i in range(tasks)
    )
    return process


def live_attempts(arns: list[str]) -> None:
    """An attempt per job, as a worker leaves it after the submit: runs of a 100-task
    process, every attempt SUBMITTED with its job's ARN."""
    from django.utils import timezone

    from jobs.engine import AttemptStatus, RunStatus
    from jobs.models import ProcessRun, TaskRun
    from jobs.snapshot import take_snapshot

    process = bench_process("bench-poll", TASKS_PER_RUN)
    snapshot = take_snapshot(process)
    now = timezone.now()
    runs = ProcessRun.objects.bulk_create(
        ProcessRun(
            definition=process,
            snapshot=snapshot,
            trigger="api",
            status=RunStatus.RUNNING,
            started_at=now,
        )
        for _ in range(math.ceil(len(arns) / TASKS_PER_RUN))
    )
    TaskRun.objects.bulk_create(
        (
            TaskRun(
                run=runs[i // TASKS_PER_RUN],
                task_name=f"t{i % TASKS_PER_RUN:03}",
                executor="batch",
                status=AttemptStatus.SUBMITTED,
                worker_host="bench",
                external_id=arn,
                log_ref=arn,
                resources={"platform": "EC2"},
                submitting_at=now,
                submitted_at=now,
                heartbeat_at=now,
            )
            for i, arn in enumerate(arns)
        ),
        batch_size=1000,
    )


def count_calls(service: str, operation: str) -> list[int]:
    """Counts ``operation`` calls on this process's own client (retries are not calls)."""
    from jobs import aws_runtime

    calls: list[int] = []
    aws_runtime.clients().client(service).meta.events.register(
        f"before-call.{service}.{operation}", lambda **_: calls.append(1)
    )
    return calls


def poll_cycle() -> tuple[float, float, int]:
    """One poll_running(): (CPU seconds of this process, wall seconds, attempts changed)."""
    from jobs.supervision import poll_running

    cpu, wall = time.process_time(), time.perf_counter()
    changed = poll_running()
    return time.process_time() - cpu, time.perf_counter() - wall, changed


def measure_poll(moto: Moto, figures: dict[str, str], failures: list[str]) -> None:
    from jobs.engine import AttemptStatus
    from jobs.models import TaskRun

    n = POLL_ATTEMPTS
    started = time.perf_counter()
    live_attempts(moto.batch_jobs(n))
    print(
        f"# {n} Batch jobs and attempts set up in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    calls = count_calls("batch", "DescribeJobs")
    first_cpu, first_wall, first_changed = poll_cycle()
    first_calls = len(calls)
    calls.clear()
    cpu, wall, changed = poll_cycle()
    if first_changed != n or changed != 0:
        failures.append(f"poll cycles changed {first_changed} then {changed} attempts, not {n}, 0")
    still_live = TaskRun.objects.filter(status=AttemptStatus.SUBMITTED).count()
    if still_live != n:
        failures.append(f"{n - still_live} attempts ended during the poll cycles")
    must = math.ceil(n / DESCRIBE_BATCH)
    for name, value in (
        (f"poll_first_calls_batch_{n}", first_calls),
        (f"poll_calls_batch_{n}", len(calls)),
    ):
        figures[name] = f"{value}  # must be {must}"
        if value != must:
            failures.append(f"{name} is {value}, must be {must}")
    missed = "" if cpu <= POLL_CPU_TARGET_S else ": MISSED"
    figures[f"poll_cpu_s_{n}"] = f"{cpu:.2f}  # target <= {POLL_CPU_TARGET_S:g}{missed}"
    figures[f"poll_wall_s_{n}"] = f"{wall:.2f}  # no target: {must} calls at the rate budget"
    figures[f"poll_first_cpu_s_{n}"] = (
        f"{first_cpu:.2f}  # no target: saves every job's Batch state once ({n} writes)"
    )
    figures[f"poll_first_wall_s_{n}"] = f"{first_wall:.2f}"


def start_worker() -> subprocess.Popen[bytes]:
    log = (VAR_DIR / "worker.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "sundial_site", "worker", "--pool", "threads",
         "--concurrency", "8", "-l", "warning", "--without-gossip", "--without-mingle",
         "--without-heartbeat"],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def submitted(run: Any, count: int, timeout: float) -> float:
    """Wait until the run's ``count`` attempts are SUBMITTED; the time of the last one."""
    from django.db.models import Max

    from jobs.engine import AttemptStatus

    unsubmitted = [AttemptStatus.WAITING, AttemptStatus.READY, AttemptStatus.SUBMITTING]
    deadline = time.monotonic() + timeout
    while True:
        attempts = run.task_runs.all()
        if attempts.exclude(status__in=unsubmitted).count() == count:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"run {run.pk}: not all submitted in {timeout:.0f} s; see worker.log")
        time.sleep(0.05)
    failed = attempts.exclude(status=AttemptStatus.SUBMITTED)
    if failed.exists():
        raise SystemExit(f"run {run.pk}: {failed.first().status}: {failed.first().reason}")
    last: Any = attempts.aggregate(last=Max("submitted_at"))["last"]
    return float(last.timestamp())


def measure_submit(figures: dict[str, str]) -> None:
    from django.conf import settings

    from jobs.orchestrator import trigger_run

    n = SUBMIT_ATTEMPTS
    process = bench_process("bench-submit", n)
    rate = settings.SUNDIAL_AWS_RATES["batch"]
    worker = start_worker()
    try:
        warm_up = ["t000", "t001", "t002"]  # worker start, imports, connections
        submitted(trigger_run(process, "api", only=warm_up), len(warm_up), timeout=60)
        time.sleep(1.0)  # the rate budget full again, as for any burst after a quiet while
        start = time.time()
        run = trigger_run(process, "api")
        last = submitted(run, n, timeout=n / rate * 3 + 30)
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    # The budget holds a second's worth of tokens: the first `rate` calls go at once.
    bound = n / max(n - rate, 1) * rate
    figures["submit_per_s"] = (
        f"{n / (last - start):.1f}  # bound: the rate budget, SUNDIAL_AWS_RATE_BATCH={rate:g}/s"
        f" per worker ({bound:.0f}/s over {n} attempts with its one-second burst)"
    )


def main() -> None:
    shutil.rmtree(VAR_DIR, ignore_errors=True)
    for folder in ("processed", "control"):  # the file-system broker's (as `make run` makes)
        (VAR_DIR / "broker" / folder).mkdir(parents=True)
    url = database_url()
    ensure_database(url)
    figures: dict[str, str] = {}
    failures: list[str] = []
    moto = Moto()
    try:
        os.environ.update(
            DATABASE_URL=url,
            CELERY_BROKER_URL="filesystem://",
            SUNDIAL_VAR_DIR=str(VAR_DIR),
            DJANGO_SETTINGS_MODULE="sundial_site.settings",
            LOG_LEVEL="WARNING",
            **aws_environment(moto.endpoint),
        )
        import django

        django.setup()
        # The file-system broker's URL has no host, which kombu warns about on every start.
        logging.getLogger("kombu.connection").setLevel(logging.ERROR)
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        call_command("flush", interactive=False, verbosity=0)
        batch_queue()
        measure_poll(moto, figures, failures)
        figures["poll_calls_ecs_2000"] = "not measured  # the ECS executor is not in the tree yet"
        measure_submit(figures)
    finally:
        moto.stop()
    for name, value in figures.items():
        print(f"{name}: {value}")
    if failures:
        raise SystemExit("FAILED: " + "; ".join(failures))


if __name__ == "__main__":
    if sys.argv[1:] == ["--moto-server"]:
        serve_moto()
    else:
        main()
