"""AWS Batch: submit a job once per attempt, follow it by polling, stop it, read its log.

The job's name is the attempt's idempotency key, so a job started by a worker that died
before saving its id is found by name (ListJobs with a JOB_NAME filter) and adopted, never
submitted twice. Batch has no idempotency token of its own, so a submit that may have
reached AWS more than once (botocore retried it, or it failed after sending) is checked by
name at once, and any second job with that name is terminated.

A task gives either an existing job definition or an image; for an image Sundial registers
a job definition named after the process and task, reusing its latest revision when the
container properties are unchanged. With sidecars the definition is an ECS task of several
containers (``ecsProperties``), the job's own named "main": it gets the overrides, and its
exit code, reason and log are the job's. Resources (vCPU, memory, GPU) always go in as overrides,
so a retry with more memory runs on the same revision. Sundial's retries are Sundial's: a
registered definition tries once.

External ids and log refs are job ARNs: they name the region a job runs in, and
DescribeJobs and TerminateJob take the id at their end.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from executors.aws import arns, failures, once
from executors.aws.clients import AwsClients
from executors.aws.definitions import Definitions, holds, registrable
from executors.aws.errors import aws_call
from executors.aws.groups import statuses_by_group
from executors.aws.launch import definition_name, definition_tags, environment, tags
from executors.aws.logs import TAIL, read_stream
from executors.base import ExecutorError, Launch, LogChunk, State, Status, Submission
from executors.batch.config import MAIN_CONTAINER, BatchConfig, Sidecar

KIND = "batch"
DESCRIBE_BATCH = 100  # DescribeJobs takes at most 100 ids
DEFAULT_LOG_GROUP = "/aws/batch/job"
NAME_LIMIT = 128  # job and job definition names

# Batch's states, as Sundial's.
_STATES = {
    "SUBMITTED": State.PENDING,
    "PENDING": State.PENDING,
    "RUNNABLE": State.PENDING,
    "STARTING": State.PENDING,
    "RUNNING": State.RUNNING,
    "SUCCEEDED": State.SUCCEEDED,
    "FAILED": State.FAILED,
}
# Why a job waits, in words for the run page (a status's detail), with Batch's own word.
WAITS = {
    "SUBMITTED": "accepted by AWS Batch (SUBMITTED)",
    "PENDING": "waiting for a dependency (PENDING)",  # Sundial's jobs have none
    "RUNNABLE": "waiting for capacity (RUNNABLE)",  # no instance has room for it yet
    "STARTING": "starting: pulling the image (STARTING)",
}


class BatchExecutor:
    kind = KIND
    runs_on_submit = False
    tail_cursor = TAIL  # read_logs from here gives the newest lines of the log

    def __init__(self, clients: AwsClients, *, default_queue: str | None = None) -> None:
        self.clients = clients
        self.default_queue = default_queue
        self._lock = threading.Lock()
        self._definitions = Definitions()
        self._log_streams: dict[str, tuple[str, str]] = {}  # job ARN -> (group, stream)

    # ---- submit and find ----

    def submit(self, launch: Launch) -> Submission:
        config = _parse(launch.config)
        batch = self._client(config)
        queue = self._queue(config)
        if launch.resubmit and (started := self._adopt(batch, queue, launch)) is not None:
            return started  # the earlier try's answer was lost, not its job
        request = {
            "jobName": job_name(launch),
            "jobQueue": queue,
            "jobDefinition": self._definition(batch, config, launch),
            **_overrides(config, launch),
            "tags": tags(launch, config.tags),
            "propagateTags": True,  # onto the ECS task, for cost allocation
            # Sundial's retries are Sundial's, whatever a team's own job definition says.
            "retryStrategy": {"attempts": 1},
        }
        try:
            with aws_call("SubmitJob"):
                response = batch.submit_job(**request)
        except ExecutorError as exc:
            return once.found_after_failure(exc, lambda: self._adopt(batch, queue, launch))
        submission = Submission(response["jobArn"], response["jobArn"], _resources(config))
        if response.get("ResponseMetadata", {}).get("RetryAttempts"):
            # botocore sent SubmitJob more than once: each may have started a job. The first
            # is kept, whichever answer came back, as recovery would keep it: if this worker
            # dies now, recovery settles on the same job instead of stopping this one too.
            return self._adopt(batch, queue, launch) or submission
        return submission

    def find(self, launch: Launch) -> Submission | None:
        config = _parse(launch.config)
        return self._adopt(self._client(config), self._queue(config), launch)

    def _adopt(self, batch: Any, queue: str, launch: Launch) -> Submission | None:
        """The attempt's job, if one was started; a second one (never wanted) is terminated."""
        jobs = self._jobs_named(batch, queue, job_name(launch))
        first = once.keep_first(jobs, self._stop_duplicate(batch))
        if first is None:
            return None
        return Submission(first, first, _resources(_parse(launch.config)))

    def _stop_duplicate(self, batch: Any) -> Callable[[str], None]:
        def terminate(arn: str) -> None:
            with aws_call("TerminateJob"):
                batch.terminate_job(
                    jobId=_job_id(arn), reason="a second job for one Sundial attempt"
                )

        return terminate

    def _jobs_named(self, batch: Any, queue: str, name: str) -> list[once.Started]:
        # With a filter, ListJobs returns jobs in every status (of Batch's recent history).
        pages = batch.get_paginator("list_jobs").paginate(
            jobQueue=queue, filters=[{"name": "JOB_NAME", "values": [name]}]
        )
        with aws_call("ListJobs"):
            return [
                _started(job)
                for page in pages
                for job in page.get("jobSummaryList", [])
                if job["jobName"] == name
            ]

    # ---- follow and stop ----

    def statuses(self, external_ids: Sequence[str]) -> dict[str, Status]:
        """Every job AWS still knows, 100 per DescribeJobs call, per region; jobs it has
        forgotten (expired from Batch's history) are left out."""
        by_region: dict[str, list[str]] = defaultdict(list)
        for arn in external_ids:
            by_region[_region_of(arn)].append(arn)
        return statuses_by_group(by_region, self._statuses_in)

    def _statuses_in(self, region: str, arns: Sequence[str]) -> dict[str, Status]:
        batch = self.clients.client("batch", region)
        by_id = {_job_id(arn): arn for arn in arns}
        ids = list(by_id)
        result: dict[str, Status] = {}
        for start in range(0, len(ids), DESCRIBE_BATCH):
            with aws_call("DescribeJobs"):
                jobs = batch.describe_jobs(jobs=ids[start : start + DESCRIBE_BATCH])["jobs"]
            for job in jobs:
                if job["jobId"] in by_id:
                    result[by_id[job["jobId"]]] = job_status(job)
        return result

    def terminate(self, external_id: str, reason: str) -> None:
        batch = self.clients.client("batch", _region_of(external_id))
        with aws_call("TerminateJob"):
            # TerminateJob also cancels a job that has not started yet.
            batch.terminate_job(jobId=_job_id(external_id), reason=reason[:1024] or "stopped")

    # ---- logs ----

    def read_logs(self, log_ref: str, cursor: str | None) -> LogChunk:
        where = self._log_stream(log_ref)
        if where is None:
            return LogChunk((), cursor or "")  # not started: no stream yet
        group, stream = where
        return read_stream(self.clients.client("logs", _region_of(log_ref)), group, stream, cursor)

    def _log_stream(self, arn: str) -> tuple[str, str] | None:
        with self._lock:
            known = self._log_streams.get(arn)
        if known is not None:
            return known
        batch = self.clients.client("batch", _region_of(arn))
        with aws_call("DescribeJobs"):
            jobs = batch.describe_jobs(jobs=[_job_id(arn)])["jobs"]
        if not jobs:
            raise ExecutorError(f"AWS Batch no longer knows job {arn}", permanent=True)
        container = _container(jobs[0])
        stream = container.get("logStreamName")
        if not stream:
            return None
        options = container.get("logConfiguration", {}).get("options", {})
        where = (options.get("awslogs-group", DEFAULT_LOG_GROUP), stream)
        with self._lock:
            self._log_streams[arn] = where
        return where

    # ---- job definitions ----

    def _definition(self, batch: Any, config: BatchConfig, launch: Launch) -> str:
        """The job definition to submit with: the task's own, or one registered for its image."""
        if config.job_definition is not None:
            return config.job_definition
        name = definition_name(launch, NAME_LIMIT)
        properties = _job_properties(config)
        # Resources are overridden at every submit, so a change of them needs no new revision.
        compared = {
            **_job_properties(config, resources=False),
            "platformCapabilities": [config.platform],
        }
        return self._definitions.revision(
            batch.meta.region_name,
            name,
            compared,
            latest_holding=lambda: self._latest_holding(batch, name, compared),
            register=lambda: self._register(batch, name, config, properties, launch),
        )

    def _latest_holding(self, batch: Any, name: str, compared: Mapping[str, Any]) -> str | None:
        """The latest active revision, if it holds what Sundial would register."""
        pages = batch.get_paginator("describe_job_definitions").paginate(
            jobDefinitionName=name, status="ACTIVE"
        )
        with aws_call("DescribeJobDefinitions"):
            revisions = [d for page in pages for d in page.get("jobDefinitions", [])]
        if not revisions:
            return None
        latest = max(revisions, key=lambda d: d["revision"])
        return f"{name}:{latest['revision']}" if holds(latest, compared) else None

    def _register(
        self,
        batch: Any,
        name: str,
        config: BatchConfig,
        properties: Mapping[str, Any],
        launch: Launch,
    ) -> str:
        with aws_call("RegisterJobDefinition"):
            registered = batch.register_job_definition(
                jobDefinitionName=name,
                type="container",
                **registrable(properties),
                platformCapabilities=[config.platform],
                retryStrategy={"attempts": 1},
                propagateTags=True,
                tags=definition_tags(launch),
            )
        return f"{name}:{registered['revision']}"

    # ---- helpers ----

    def _client(self, config: BatchConfig) -> Any:
        return self.clients.client("batch", config.region)

    def _queue(self, config: BatchConfig) -> str:
        queue = config.job_queue or self.default_queue
        if not queue:
            raise ExecutorError(
                "no job queue: set job_queue in the task, or SUNDIAL_BATCH_JOB_QUEUE",
                permanent=True,
            )
        return queue


def job_name(launch: Launch) -> str:
    """The job's name: the attempt's idempotency key (unique: it holds the attempt's id)."""
    return launch.idempotency_key[:NAME_LIMIT]


def job_status(job: Mapping[str, Any]) -> Status:
    """One DescribeJobs entry as a Status. The job's own container speaks for it; with
    sidecars, one that failed is named in the reason, and a sidecar that can never start
    (its image cannot be pulled) makes the failure permanent too. Only the job's own
    container is out of memory: it alone gets more on a retry."""
    batch_state = job["status"]
    state = _STATES.get(batch_state, State.PENDING)
    containers = _containers(job)
    container = containers.pop(MAIN_CONTAINER, {})
    exit_code = container.get("exitCode")
    container_reason = container.get("reason", "")
    sidecars = [_sidecar_failure(name, sidecar) for name, sidecar in containers.items()]
    reason = "; ".join(r for r in (job.get("statusReason", ""), container_reason, *sidecars) if r)
    if state == State.SUCCEEDED and exit_code is None:
        exit_code = 0
    failed = state == State.FAILED
    return Status(
        state,
        exit_code=exit_code,
        reason=reason if failed else "",
        started_at=_time(job.get("startedAt")),
        ended_at=_time(job.get("stoppedAt")),
        detail=WAITS.get(batch_state, batch_state) if state == State.PENDING else "",
        placement=_placement(job),
        out_of_memory=failed and failures.out_of_memory(exit_code, container_reason),
        permanent=failed and failures.permanent(" ".join((container_reason, *sidecars))),
    )


def _sidecar_failure(name: str, sidecar: Mapping[str, Any]) -> str:
    """A sidecar's end in words, if it had a part in the job's: AWS gave a reason (its
    image, its memory), or it was essential and failed. A non-essential one stopped with the
    job after the job's own container ended is no part of why ("" then)."""
    exit_code, why = sidecar.get("exitCode"), sidecar.get("reason", "")
    failed = sidecar.get("essential", True) and exit_code not in (None, 0)
    if not (why or failed):
        return ""
    said = f"exit code {exit_code}" if exit_code is not None else ""
    return f"sidecar {name}: " + ", ".join(part for part in (said, why) if part)


def _container(job: Mapping[str, Any]) -> dict[str, Any]:
    """The job's own container's details (see ``_containers``)."""
    return _containers(job).get(MAIN_CONTAINER, {})


def _containers(job: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each container's details by name ("main": the job's own, also when it is the only
    one), completed from the job's last attempt's (where AWS also puts the exit codes,
    reasons and log streams). A job with sidecars has them in ``ecsProperties`` and its
    attempts in ``taskProperties``, instead of in ``container``."""
    attempts = job.get("attempts") or [{}]
    containers = _by_name(job)
    for name, details in _by_name(attempts[-1]).items():
        known = containers.setdefault(name, {})
        for key, value in details.items():
            known.setdefault(key, value)
    return containers


def _by_name(holder: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The containers of a job or of an attempt, by name."""
    if holder.get("container"):
        return {MAIN_CONTAINER: dict(holder["container"])}
    task = _task(holder.get("ecsProperties") or holder)
    return {c.get("name", ""): dict(c) for c in task.get("containers") or []}


def _task(holder: Mapping[str, Any]) -> Mapping[str, Any]:
    """The ECS task of ``ecsProperties`` or of an attempt (Batch runs one per job)."""
    tasks = holder.get("taskProperties") or [{}]
    return tasks[0]


def _placement(job: Mapping[str, Any]) -> str:
    if "FARGATE" in (job.get("platformCapabilities") or []):
        return "Fargate"
    attempts = job.get("attempts") or [{}]
    instance = _container(job).get("containerInstanceArn") or _task(attempts[-1]).get(
        "containerInstanceArn"
    )
    return "EC2" if instance else ""


def _started(job: Mapping[str, Any]) -> once.Started:
    """A ListJobs summary, for choosing the attempt's job among several."""
    ended = job.get("status") in ("SUCCEEDED", "FAILED")
    return once.Started(job["jobArn"], job.get("createdAt", 0), active=not ended)


def _time(millis: int | None) -> datetime | None:
    return datetime.fromtimestamp(millis / 1000, UTC) if millis else None


def _parse(config: Mapping[str, Any]) -> BatchConfig:
    # The shell validated it already; this turns it back into the model (and catches a
    # config that bypassed the shell).
    try:
        return BatchConfig.model_validate(dict(config))
    except ValueError as exc:
        raise ExecutorError(f"invalid batch config: {exc}", permanent=True) from None


def _job_properties(config: BatchConfig, *, resources: bool = True) -> dict[str, Any]:
    """What the registered definition holds, as RegisterJobDefinition takes it: one
    container's ``containerProperties``, or with sidecars ``ecsProperties`` (an ECS task
    whose containers are the job's own, "main", and its sidecars). Both are made of the same
    pieces; only where AWS wants them differs. ``resources=False``: without the main
    container's resources, which go in at submit (see the module)."""
    main: dict[str, Any] = {
        "image": config.image,
        "environment": environment(config.env),
        # None: unset, and compared as such (see definitions.holds).
        "command": list(config.command) or None,
        "logConfiguration": _log_configuration(config),
    }
    if resources:
        main["resourceRequirements"] = _resource_requirements(config)
    # What the whole task gets: one container's properties hold it next to the container's.
    task: dict[str, Any] = {"executionRoleArn": config.execution_role_arn}
    fargate = config.platform == "FARGATE"
    if fargate:
        task["networkConfiguration"] = {
            "assignPublicIp": "ENABLED" if config.assign_public_ip else "DISABLED"
        }
        if config.disk_gib is not None:
            task["ephemeralStorage"] = {"sizeInGiB": config.disk_gib}
    if not config.sidecars:
        if fargate:
            task["fargatePlatformConfiguration"] = {"platformVersion": "LATEST"}
        return {"containerProperties": {**main, **task, "jobRoleArn": config.job_role_arn}}
    if fargate:
        task["platformVersion"] = "LATEST"
    containers = [
        {"name": MAIN_CONTAINER, "essential": True, **main},
        *(_sidecar(sidecar, config) for sidecar in config.sidecars),
    ]
    return {
        "ecsProperties": {
            "taskProperties": [
                {"containers": containers, **task, "taskRoleArn": config.job_role_arn}
            ]
        }
    }


def _sidecar(sidecar: Sidecar, config: BatchConfig) -> dict[str, Any]:
    return {
        "name": sidecar.name,
        "essential": sidecar.essential,
        "image": sidecar.image,
        "environment": environment(sidecar.env),
        "command": list(sidecar.command) or None,
        # A sidecar's memory is its definition's: only the job's own is raised after an OOM.
        "resourceRequirements": [
            {"type": "VCPU", "value": f"{sidecar.vcpu:g}"},
            {"type": "MEMORY", "value": str(sidecar.memory_mib)},
        ],
        # Its log goes where the job's does.
        "logConfiguration": _log_configuration(config),
    }


def _log_configuration(config: BatchConfig) -> dict[str, Any] | None:
    if not config.log_group:
        return None
    return {"logDriver": "awslogs", "options": {"awslogs-group": config.log_group}}


def _resource_requirements(config: BatchConfig) -> list[dict[str, str]]:
    wanted = [("VCPU", config.vcpu), ("MEMORY", config.memory_mib), ("GPU", config.gpu or None)]
    return [{"type": kind, "value": f"{value:g}"} for kind, value in wanted if value is not None]


def _overrides(config: BatchConfig, launch: Launch) -> dict[str, Any]:
    """Per attempt, as SubmitJob takes them: the SUNDIAL_* variables, the resources and (for
    a job definition of the team's own) the command and environment, for the job's container
    (with sidecars: the one named "main")."""
    overrides: dict[str, Any] = {"environment": environment({**config.env, **launch.env})}
    if requirements := _resource_requirements(config):
        overrides["resourceRequirements"] = requirements
    if config.job_definition is not None and config.command:
        overrides["command"] = list(config.command)
    if not config.sidecars:
        return {"containerOverrides": overrides}
    main = {"name": MAIN_CONTAINER, **overrides}
    return {"ecsPropertiesOverride": {"taskProperties": [{"containers": [main]}]}}


def _resources(config: BatchConfig) -> dict[str, Any]:
    """What the job asks for in all: its own container's and its sidecars' (the run page
    shows and prices the whole job)."""
    resources: dict[str, Any] = {"platform": config.platform}
    for key in ("vcpu", "memory_mib"):
        if (value := getattr(config, key)) is not None:
            resources[key] = value + sum(getattr(sidecar, key) for sidecar in config.sidecars)
    if config.disk_gib is not None:
        resources["disk_gib"] = config.disk_gib
    if config.gpu:
        resources["gpu"] = config.gpu
    return resources


def _region_of(arn: str) -> str:
    # arn:aws:batch:<region>:<account>:job/<id>
    region, _ = arns.parse(arn, "batch", "an AWS Batch job ARN")
    return region


def _job_id(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]
