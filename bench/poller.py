"""Polling AWS at scale, and submitting through a real worker, against moto server.

Prints `name: value` lines, each beside what it must be or its target. One poll cycle over
10,000 live Batch attempts and 2,000 live ECS attempts (in one cluster):
  poll_calls_batch_10000   its DescribeJobs calls (must be 100: 100 ids per call)
  poll_calls_ecs_2000      its DescribeTasks calls (must be 20: 100 tasks per call, per cluster)
  poll_cpu_s_10000         Sundial's own CPU seconds for the cycle (target <= 2)
  poll_wall_s_10000        its wall time (no target: moto's time and any wait for the rate
                           budgets, Batch 40 and ECS 20 calls/s, are most of it)
  poll_first_cpu_s_10000   the cycle before it, the first to see those jobs, which saves
  poll_first_wall_s_10000  once what each says (why it waits, where it runs): a write per
                           attempt
and through a real worker:
  submit_per_s             attempts submitted per second (at most the rate budget, 40
                           SubmitJob calls/s per worker)

moto runs in a process of its own (this file, run with --moto-server), so the CPU figures
are Sundial's alone; PostgreSQL's work is in another process too. Nothing moves in that
moto: Batch jobs stay SUBMITTED (moto would run each in Docker, on a thread per job; here
that thread does nothing) and ECS tasks RUNNING, so a poll cycle changes nothing in AWS.

Sizes: BENCH_POLL_ATTEMPTS (10000 Batch), BENCH_POLL_ECS_ATTEMPTS (2000),
BENCH_SUBMIT_ATTEMPTS (200). The database is BENCH_POLLER_DATABASE_URL, else a database of
its own on the local PostgreSQL (sundial_bench_poller), else SQLite; the broker is the
embedded file-system one. Every run starts from an empty database and an empty moto.
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
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VAR_DIR = Path("/tmp/sundial-bench-poller")
REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's
# The name of everything the bench makes in AWS: Batch's job queue and job definition,
# ECS's cluster and task definition.
BENCH = "bench"
POLL_ATTEMPTS = int(os.environ.get("BENCH_POLL_ATTEMPTS", "10000"))
POLL_ECS_ATTEMPTS = int(os.environ.get("BENCH_POLL_ECS_ATTEMPTS", "2000"))
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

    Meanwhile each line ``batch <count>`` or ``ecs <count> <subnet> <security group>`` on
    its stdin starts that many Batch jobs or ECS tasks of the bench's inside this process
    (50 times faster than through moto's HTTP API) and answers with their ARNs, a line
    each, then ``done``.
    """
    from moto.batch import models as moto_batch
    from moto.ecs import models as moto_ecs
    from moto.server import ThreadedMotoServer

    # moto would run a Batch job in Docker, polling for a state change every 0.5 s on a
    # thread of its own: 10,000 of those would take the machine. Here a job stays SUBMITTED.
    moto_batch.Job.run = lambda self: None  # type: ignore[method-assign]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    print(f"http://{host}:{port}", flush=True)
    for line in sys.stdin:
        service, count, *network = line.split()
        if service == "batch":
            batch = moto_batch.batch_backends[ACCOUNT][REGION]
            for i in range(int(count)):
                print(batch.submit_job(f"bench-{i}", BENCH, BENCH, array_properties={})[2])
        else:
            subnet, group = network
            awsvpc = {"awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}}
            ecs = moto_ecs.ecs_backends[ACCOUNT][REGION]
            for task in ecs.run_task(
                BENCH, BENCH, int(count), None, BENCH, None, "FARGATE", awsvpc
            ):
                print(task.task_arn)
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
        # moto's own state machine moves a job or task on as it is described: not here.
        for model in ("batch::job", "ecs::task"):
            self.post(
                "state-manager/set-transition",
                {"model_name": model, "transition": {"progression": "manual", "times": 10**9}},
            )

    def post(self, path: str, body: dict[str, Any]) -> None:
        """POST to moto's own API (``/moto-api/<path>``)."""
        request = urllib.request.Request(
            f"{self.endpoint}/moto-api/{path}", json.dumps(body).encode(), method="POST"
        )
        urllib.request.urlopen(request, timeout=5).close()

    def start(self, service: str, count: int, *network: str) -> list[str]:
        """The ARNs of ``count`` new Batch jobs or ECS tasks (see ``serve_moto``)."""
        self._stdin.write(" ".join([service, str(count), *network]) + "\n")
        self._stdin.flush()
        arns = [line.strip() for line in iter(self._stdout.readline, "done\n")]
        if len(arns) != count or not all(arn.startswith(f"arn:aws:{service}:") for arn in arns):
            raise SystemExit(f"moto started {len(arns)} of {count}; see {self._log.name}")
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


def batch_queue() -> dict[str, Any]:
    """A job queue on an unmanaged compute environment, and a job definition, both "bench";
    the config of a task that submits that definition (one SubmitJob, nothing to register)."""
    from jobs import sandbox

    batch = plain_client("batch")
    sandbox.batch_queue(plain_client("iam"), batch, BENCH)
    batch.register_job_definition(
        jobDefinitionName=BENCH,
        type="container",
        containerProperties={"image": "busybox", "vcpus": 1, "memory": 512},
    )
    return {"job_definition": BENCH, "job_queue": BENCH}


def ecs_cluster() -> tuple[dict[str, Any], tuple[str, str]]:
    """A cluster and a Fargate task definition, both "bench", with a subnet and a security
    group for the tasks' network; the config of a task that runs it, and the network."""
    ec2 = plain_client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    ec2.modify_vpc_attribute(VpcId=vpc, EnableDnsHostnames={"Value": True})
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.0.0/20")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName=BENCH, Description=BENCH, VpcId=vpc)["GroupId"]
    ecs = plain_client("ecs")
    ecs.create_cluster(clusterName=BENCH)
    ecs.register_task_definition(
        family=BENCH,
        containerDefinitions=[{"name": "main", "image": "busybox", "memory": 512}],
        requiresCompatibilities=["FARGATE"],
        networkMode="awsvpc",
        cpu="256",
        memory="512",
    )
    config = {
        "cluster": BENCH,
        "task_definition": BENCH,
        "container": "main",
        "subnets": [subnet],
        "security_groups": [group],
    }
    return config, (subnet, group)


# ---- Sundial's side ----


def bench_process(name: str, tasks: int, kind: str, config: dict[str, Any]) -> Any:
    """A process of ``tasks`` independent tasks, all of one executor kind and config."""
    from executors.config import validate_config
    from jobs.models import ProcessDefinition, TaskDefinition

    config = validate_config(kind, config)
    process = ProcessDefinition.objects.create(name=name, overlap="allow")
    TaskDefinition.objects.bulk_create(
        TaskDefinition(process=process, name=f"t{i:03}", executor=kind, config=config)
        for i in range(tasks)
    )
    return process


def live_attempts(kind: str, config: dict[str, Any], arns: list[str], status: str) -> None:
    """An attempt per job, as a worker leaves it after the submit (and, for ``running``, a
    poll that saw it start): runs of a 100-task process, each attempt with its job's ARN."""
    from django.utils import timezone

    from jobs.engine import RunStatus
    from jobs.models import ProcessRun, TaskRun
    from jobs.snapshot import take_snapshot

    process = bench_process(f"bench-poll-{kind}", TASKS_PER_RUN, kind, config)
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
                executor=kind,
                status=status,
                worker_host="bench",
                external_id=arn,
                log_ref=arn,
                submitting_at=now,
                submitted_at=now,
                started_at=now if status == "running" else None,
                heartbeat_at=now,
            )
            for i, arn in enumerate(arns)
        ),
        batch_size=1000,
    )


def count_calls(service: str, operation: str) -> Counter[str | None]:
    """Counts ``operation`` calls on this process's own client (retries are not calls), by
    the cluster they name (None: a call that names none)."""
    from jobs import aws_runtime

    calls: Counter[str | None] = Counter()

    def count(params: dict[str, Any], **_: object) -> None:
        calls[params.get("cluster")] += 1

    aws_runtime.clients().client(service).meta.events.register(
        f"before-parameter-build.{service}.{operation}", count
    )
    return calls


def calls_for(attempts: int) -> int:
    return math.ceil(attempts / DESCRIBE_BATCH)


class Cycle(NamedTuple):
    cpu_s: float  # of this process
    wall_s: float
    waited_s: float  # of the wall time: waiting for the rate budgets
    changed: int  # attempts whose state or notes changed


def poll_cycle() -> Cycle:
    """One poll_running(), measured."""
    from jobs import aws_runtime
    from jobs.supervision import poll_running

    budgets = [aws_runtime.clients().budget(service) for service in ("batch", "ecs")]
    waited = sum(budget.waited_s for budget in budgets if budget)
    cpu, wall = time.process_time(), time.perf_counter()
    changed = poll_running()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    waited = sum(budget.waited_s for budget in budgets if budget) - waited
    return Cycle(cpu, wall, waited, changed)


def measure_poll(
    moto: Moto, batch: dict[str, Any], figures: dict[str, str], failures: list[str]
) -> None:
    from jobs.engine import ACTIVE_ATTEMPT
    from jobs.models import TaskRun

    n, n_ecs = POLL_ATTEMPTS, POLL_ECS_ATTEMPTS
    started = time.perf_counter()
    live_attempts("batch", batch, moto.start("batch", n), "submitted")
    ecs, network = ecs_cluster()
    live_attempts("ecs", ecs, moto.start("ecs", n_ecs, *network), "running")
    print(f"# AWS and attempts set up in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    # (figure, its calls, the calls it must make, by cluster: DescribeTasks asks one)
    polled: list[tuple[str, Counter[str | None], Counter[str | None]]] = [
        (f"batch_{n}", count_calls("batch", "DescribeJobs"), Counter({None: calls_for(n)})),
        (f"ecs_{n_ecs}", count_calls("ecs", "DescribeTasks"), Counter({BENCH: calls_for(n_ecs)})),
    ]
    cycles: list[Cycle] = []
    # The first cycle sees every job for the first time; the second is the figures'.
    for cycle, should_change in (("first", n + n_ecs), ("second", 0)):
        cycles.append(poll_cycle())
        for name, calls, must in polled:
            figures[f"poll_calls_{name}"] = f"{calls.total()}  # must be {must.total()}"
            if calls != must:
                failures.append(f"{cycle} cycle: {dict(calls)} calls for {name}, not {dict(must)}")
            calls.clear()
        if cycles[-1].changed != should_change:
            failures.append(
                f"{cycle} cycle changed {cycles[-1].changed} attempts, not {should_change}"
            )
    still_live = TaskRun.objects.filter(status__in=list(ACTIVE_ATTEMPT)).count()
    if still_live != n + n_ecs:
        failures.append(f"{n + n_ecs - still_live} attempts ended during the poll cycles")
    first, second = cycles
    missed = "" if second.cpu_s <= POLL_CPU_TARGET_S else ": MISSED"
    figures[f"poll_cpu_s_{n}"] = f"{second.cpu_s:.2f}  # target <= {POLL_CPU_TARGET_S:g}{missed}"
    figures[f"poll_wall_s_{n}"] = f"{second.wall_s:.2f}  # no target: {wall_note(second)}"
    figures[f"poll_first_cpu_s_{n}"] = (
        f"{first.cpu_s:.2f}  # no target: the first look saves a note per attempt ({n + n_ecs})"
    )
    figures[f"poll_first_wall_s_{n}"] = f"{first.wall_s:.2f}  # {wall_note(first)}"


def wall_note(cycle: Cycle) -> str:
    return (
        f"{cycle.waited_s:.1f} s of it waiting for the rate budgets,"
        " the rest Sundial's, moto's and the database's"
    )


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


def measure_submit(batch: dict[str, Any], figures: dict[str, str]) -> None:
    from django.conf import settings

    from jobs.orchestrator import trigger_run

    n = SUBMIT_ATTEMPTS
    process = bench_process("bench-submit", n, "batch", batch)
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
        batch = batch_queue()
        measure_poll(moto, batch, figures, failures)
        measure_submit(batch, figures)
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
