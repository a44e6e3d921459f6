"""AWS ECS: run a task once per attempt, follow it by polling, stop it, read its log.

RunTask carries two names made from the attempt's idempotency key: ``clientToken``, so AWS
starts one task however often botocore resends the call, and ``startedBy``, so a task
started by a worker that died before saving its ARN is found (ListTasks) and adopted, never
started twice. Should one attempt have two tasks all the same (a submit repeated after the
token's 24 hours), the first is kept and the others are stopped.

A task gives either an existing task definition or an image; for an image Sundial registers
a task definition named after the process and task, reusing its latest revision while what
Sundial puts in it is unchanged. CPU, memory and disk always go in as overrides, so a retry
with more memory runs on the same revision.

External ids and log refs are task ARNs in ECS's long form,
``arn:aws:ecs:<region>:<account>:task/<cluster>/<task id>``: they name the region and the
cluster that DescribeTasks and StopTask need. For an account still on the short form
(``task/<task id>``) Sundial puts the cluster's name in the same way; calls name a task by
its id, which both forms end with.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from executors.aws import arns, failures, once
from executors.aws.clients import AwsClients
from executors.aws.definitions import Definitions, holds, registrable
from executors.aws.errors import aws_call, error_code
from executors.aws.groups import statuses_by_group
from executors.aws.launch import (
    definition_name,
    definition_tags,
    environment,
    fitted,
    tags,
)
from executors.aws.logs import TAIL, read_stream
from executors.base import ExecutorError, Launch, LogChunk, State, Status, Submission
from executors.ecs import errors
from executors.ecs.config import EcsConfig

KIND = "ecs"
DESCRIBE_BATCH = 100  # DescribeTasks takes at most 100 tasks
FAMILY_LIMIT = 255  # task definition family names
CLIENT_TOKEN_LIMIT = 64
STARTED_BY_LIMIT = 36
STOP_REASON_LIMIT = 255
LOG_STREAM_PREFIX = "sundial"  # a registered definition's streams: sundial/<container>/<task id>

# ECS's states short of STOPPED, as Sundial's.
_STATES = {
    "PROVISIONING": State.PENDING,
    "PENDING": State.PENDING,
    "ACTIVATING": State.PENDING,
    "RUNNING": State.RUNNING,
    # Asked to stop: the container may still be running until it exits or is killed.
    "DEACTIVATING": State.RUNNING,
    "STOPPING": State.RUNNING,
    "DEPROVISIONING": State.RUNNING,
}
# What a task not (or no longer) simply running is doing, in words for the run page (a
# status's detail), with ECS's own word.
STAGES = {
    "PROVISIONING": "waiting for capacity (PROVISIONING)",
    "PENDING": "starting: pulling the image (PENDING)",
    "ACTIVATING": "starting: setting up its network (ACTIVATING)",
    "DEACTIVATING": "stopping (DEACTIVATING)",
    "STOPPING": "stopping (STOPPING)",
    "DEPROVISIONING": "stopping: releasing its network (DEPROVISIONING)",
}


@dataclass(frozen=True)
class TaskRef:
    """What an external id says: where the task is, and its id there."""

    region: str
    cluster: str
    task_id: str


class EcsExecutor:
    kind = KIND
    runs_on_submit = False
    tail_cursor = TAIL  # read_logs from here gives the newest lines of the log

    def __init__(self, clients: AwsClients, *, default_cluster: str | None = None) -> None:
        self.clients = clients
        self.default_cluster = default_cluster
        self._lock = threading.Lock()
        self._definitions = Definitions()
        # task ARN -> (region, log group, log stream)
        self._log_streams: dict[str, tuple[str, str, str]] = {}

    # ---- submit and find ----

    def submit(self, launch: Launch) -> Submission:
        config = _parse(launch.config)
        ecs = self._client(config)
        cluster = self._cluster(config)
        request = {
            "cluster": cluster,
            "taskDefinition": self._definition(ecs, config, launch),
            "count": 1,
            "clientToken": fitted(launch.idempotency_key, CLIENT_TOKEN_LIMIT),
            "startedBy": started_by(launch),
            "overrides": _overrides(config, launch),
            "tags": _tag_list(tags(launch, config.tags)),
            **_capacity(config),
            **_network(config),
        }
        action = f"RunTask in cluster {cluster!r}"
        try:
            with aws_call(action):
                response = ecs.run_task(**request)
        except ExecutorError as exc:
            return once.found_after_failure(exc, lambda: self._adopt(ecs, cluster, config, launch))
        if not response.get("tasks"):
            raise errors.placement_failure(action, response.get("failures", []))
        return _submission(response["tasks"][0], config)

    def find(self, launch: Launch) -> Submission | None:
        config = _parse(launch.config)
        return self._adopt(self._client(config), self._cluster(config), config, launch)

    def _adopt(
        self, ecs: Any, cluster: str, config: EcsConfig, launch: Launch
    ) -> Submission | None:
        """The attempt's task, if one was started; a second one (never wanted) is stopped."""
        found = {task["taskArn"]: task for task in self._started_by(ecs, cluster, launch)}
        first = once.keep_first(
            [_started(task) for task in found.values()],
            lambda arn: _stop_task(ecs, cluster, arn, "a second task for one Sundial attempt"),
        )
        return None if first is None else _submission(found[first], config)

    def _started_by(self, ecs: Any, cluster: str, launch: Launch) -> list[dict[str, Any]]:
        """Every task ECS still lists as started for the attempt. ListTasks lists one desired
        status at a time; asking for RUNNING first, a task that stops in between is still
        listed by the second question."""
        listed: dict[str, None] = {}
        pages = ecs.get_paginator("list_tasks")
        with aws_call("ListTasks"):
            for desired in ("RUNNING", "STOPPED"):
                for page in pages.paginate(
                    cluster=cluster, startedBy=started_by(launch), desiredStatus=desired
                ):
                    listed.update(dict.fromkeys(page.get("taskArns", [])))
        return _describe(ecs, cluster, list(listed))

    # ---- follow and stop ----

    def statuses(self, external_ids: Sequence[str]) -> dict[str, Status]:
        """Every task ECS still knows, 100 per DescribeTasks call, per region and cluster;
        tasks it has forgotten (stopped more than about an hour ago) are left out."""
        by_place: dict[tuple[str, str], list[str]] = defaultdict(list)
        for external_id in external_ids:
            ref = task_ref(external_id)
            by_place[(ref.region, ref.cluster)].append(external_id)
        return statuses_by_group(by_place, self._statuses_in)

    def _statuses_in(
        self, place: tuple[str, str], external_ids: Sequence[str]
    ) -> dict[str, Status]:
        region, cluster = place
        by_id = {task_ref(external_id).task_id: external_id for external_id in external_ids}
        ecs = self.clients.client("ecs", region)
        result: dict[str, Status] = {}
        for task in _describe(ecs, cluster, list(by_id)):
            asked_as = by_id.get(_task_id(task["taskArn"]))
            if asked_as is not None:
                result[asked_as] = task_status(task)
        return result

    def terminate(self, external_id: str, reason: str) -> None:
        ref = task_ref(external_id)
        ecs = self.clients.client("ecs", ref.region)
        # StopTask also stops a task that has not started yet.
        _stop_task(ecs, ref.cluster, ref.task_id, reason)

    # ---- logs ----

    def read_logs(self, log_ref: str, cursor: str | None) -> LogChunk:
        """The container's log, from CloudWatch; a task that has not started has no stream
        yet, which reads as empty."""
        region, group, stream = self._log_stream(log_ref)
        return read_stream(self.clients.client("logs", region), group, stream, cursor)

    def _log_stream(self, arn: str) -> tuple[str, str, str]:
        """Where the task's container logs, from the awslogs options of its task definition
        (the stream is <prefix>/<container>/<task id>)."""
        with self._lock:
            known = self._log_streams.get(arn)
        if known is not None:
            return known
        ref = task_ref(arn)
        ecs = self.clients.client("ecs", ref.region)
        tasks = _describe(ecs, ref.cluster, [ref.task_id])
        if not tasks:
            raise ExecutorError(f"AWS ECS no longer knows task {arn}", permanent=True)
        name = _essential_name(tasks[0])
        options = _awslogs_options(_task_definition(ecs, tasks[0]["taskDefinitionArn"]), name)
        where = (
            options.get("awslogs-region", ref.region),
            options["awslogs-group"],
            f"{options['awslogs-stream-prefix']}/{name}/{ref.task_id}",
        )
        with self._lock:
            self._log_streams[arn] = where
        return where

    # ---- task definitions ----

    def _definition(self, ecs: Any, config: EcsConfig, launch: Launch) -> str:
        """The task definition to run: the task's own, or one registered for its image."""
        if config.task_definition is not None:
            return config.task_definition
        family = definition_name(launch, FAMILY_LIMIT)
        region = ecs.meta.region_name
        registration = _registration(config, region)
        # CPU and memory are overridden at every run, so a change of them needs no new revision.
        compared = {k: v for k, v in registration.items() if k not in ("cpu", "memory")}
        return self._definitions.revision(
            region,
            family,
            compared,
            latest_holding=lambda: self._latest_holding(ecs, family, compared),
            register=lambda: self._register(ecs, family, registration, launch),
        )

    def _latest_holding(self, ecs: Any, family: str, compared: Mapping[str, Any]) -> str | None:
        """The family's latest active revision, if it holds what Sundial would register."""
        revisions: list[int] = []
        with aws_call("ListTaskDefinitions"):
            # familyPrefix is the full family name, despite its name.
            pages = ecs.get_paginator("list_task_definitions")
            for page in pages.paginate(familyPrefix=family, status="ACTIVE"):
                revisions += [int(arn.rsplit(":", 1)[-1]) for arn in page["taskDefinitionArns"]]
        if not revisions:
            return None
        latest = f"{family}:{max(revisions)}"
        return latest if holds(_task_definition(ecs, latest), compared) else None

    def _register(
        self, ecs: Any, family: str, registration: Mapping[str, Any], launch: Launch
    ) -> str:
        with aws_call("RegisterTaskDefinition"):
            registered = ecs.register_task_definition(
                family=family,
                **registrable(registration),
                tags=_tag_list(definition_tags(launch)),
            )["taskDefinition"]
        return f"{family}:{registered['revision']}"

    # ---- helpers ----

    def _client(self, config: EcsConfig) -> Any:
        return self.clients.client("ecs", config.region)

    def _cluster(self, config: EcsConfig) -> str:
        cluster = config.cluster or self.default_cluster
        if not cluster:
            raise ExecutorError(
                "no cluster: set cluster in the task, or SUNDIAL_ECS_CLUSTER", permanent=True
            )
        return cluster


def started_by(launch: Launch) -> str:
    """RunTask's ``startedBy`` for the attempt: what ListTasks finds its task by."""
    return fitted(launch.idempotency_key, STARTED_BY_LIMIT)


def external_id(task: Mapping[str, Any]) -> str:
    """The task's ARN in ECS's long form, with its cluster (see the module)."""
    arn = str(task["taskArn"])
    prefix, _, task_id = arn.rpartition("/")
    if prefix.endswith(":task"):  # the short form: ...:task/<task id>
        cluster = str(task["clusterArn"]).rsplit("/", 1)[-1]
        return f"{prefix}/{cluster}/{task_id}"
    return arn


def task_ref(external_id: str) -> TaskRef:
    region, resource = arns.parse(external_id, "ecs", "an ECS task ARN")
    kind, _, rest = resource.partition("/")
    cluster, _, task_id = rest.partition("/")
    if kind != "task" or not cluster or not task_id:
        raise ExecutorError(
            f"not an ECS task ARN with its cluster: {external_id!r}", permanent=True
        )
    return TaskRef(region, cluster, task_id)


def task_status(task: Mapping[str, Any]) -> Status:
    """One DescribeTasks entry as a Status."""
    last_status = task.get("lastStatus", "")
    if last_status == "STOPPED":
        return _stopped(task)
    return Status(
        _STATES.get(last_status, State.PENDING),
        started_at=task.get("startedAt"),
        detail="" if last_status == "RUNNING" else STAGES.get(last_status, last_status),
        placement=_placement(task),
    )


def _stopped(task: Mapping[str, Any]) -> Status:
    """A stopped task succeeded when its essential container exited 0, whatever else ECS
    says (its desired status is STOPPED either way)."""
    container = _essential(task)
    exit_code = container.get("exitCode")
    container_reason = container.get("reason", "")
    succeeded = exit_code == 0
    words = (task.get("stopCode", ""), task.get("stoppedReason", ""), container_reason)
    reason = "; ".join(word for word in words if word)
    return Status(
        State.SUCCEEDED if succeeded else State.FAILED,
        exit_code=exit_code,
        reason="" if succeeded else reason,
        started_at=task.get("startedAt"),
        ended_at=task.get("stoppedAt"),
        placement=_placement(task),
        out_of_memory=not succeeded and failures.out_of_memory(exit_code, container_reason),
        permanent=not succeeded and failures.permanent(reason),
    )


def _essential_name(task: Mapping[str, Any]) -> str:
    """The container Sundial's overrides went to: the one the config names."""
    overrides = (task.get("overrides") or {}).get("containerOverrides") or [{}]
    return str(overrides[0].get("name", ""))


def _essential(task: Mapping[str, Any]) -> Mapping[str, Any]:
    return _named(task.get("containers"), _essential_name(task))


def _named(containers: Sequence[Mapping[str, Any]] | None, name: str) -> Mapping[str, Any]:
    """The container called ``name`` (of a task, or of a task definition), or {}."""
    return next((c for c in containers or [] if c.get("name") == name), {})


def _awslogs_options(definition: Mapping[str, Any], name: str) -> Mapping[str, str]:
    log = _named(definition.get("containerDefinitions"), name).get("logConfiguration") or {}
    options: Mapping[str, str] = log.get("options") or {}
    if log.get("logDriver") != "awslogs" or "awslogs-stream-prefix" not in options:
        # Without a prefix the stream is named after the Docker container id, which ECS
        # does not report, so the log cannot be found.
        raise ExecutorError(
            f"container {name!r} does not log to CloudWatch Logs with a stream prefix"
            " (awslogs driver, awslogs-stream-prefix), so Sundial cannot read its log",
            permanent=True,
        )
    return options


def _placement(task: Mapping[str, Any]) -> str:
    provider = task.get("capacityProviderName")
    if provider:
        return str(provider)
    return {"FARGATE": "Fargate", "EC2": "EC2"}.get(task.get("launchType", ""), "")


def _started(task: Mapping[str, Any]) -> once.Started:
    """A described task, for choosing the attempt's task among several."""
    created = task.get("createdAt")
    return once.Started(
        task["taskArn"],
        created.timestamp() if created else 0.0,
        active=task.get("desiredStatus") != "STOPPED",
    )


def _stop_task(ecs: Any, cluster: str, task: str, reason: str) -> None:
    with aws_call("StopTask"):
        ecs.stop_task(cluster=cluster, task=task, reason=reason[:STOP_REASON_LIMIT] or "stopped")


def _describe(ecs: Any, cluster: str, tasks: Sequence[str]) -> list[dict[str, Any]]:
    """DescribeTasks, 100 at a time; tasks ECS no longer knows are left out, and so are the
    tasks of a cluster that no longer exists (they went with it)."""
    described: list[dict[str, Any]] = []
    for start in range(0, len(tasks), DESCRIBE_BATCH):
        with aws_call("DescribeTasks"):
            try:
                page = ecs.describe_tasks(
                    cluster=cluster, tasks=list(tasks[start : start + DESCRIBE_BATCH])
                )
            except ClientError as exc:
                if error_code(exc) == "ClusterNotFoundException":
                    return []
                raise
        described += page["tasks"]
    return described


def _task_definition(ecs: Any, name: str) -> dict[str, Any]:
    with aws_call("DescribeTaskDefinition"):
        definition: dict[str, Any] = ecs.describe_task_definition(taskDefinition=name)[
            "taskDefinition"
        ]
    return definition


def _task_id(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]


def _parse(config: Mapping[str, Any]) -> EcsConfig:
    # The shell validated it already; this turns it back into the model (and catches a
    # config that bypassed the shell).
    try:
        return EcsConfig.model_validate(dict(config))
    except ValueError as exc:
        raise ExecutorError(f"invalid ecs config: {exc}", permanent=True) from None


def _registration(config: EcsConfig, region: str) -> dict[str, Any]:
    """What the registered task definition holds; CPU and memory go in at every run too."""
    container: dict[str, Any] = {
        "name": config.essential_container,
        "image": config.image,
        "essential": True,
        "environment": environment(config.env),
        # None: unset, and compared as such (see definitions.holds).
        "command": list(config.command) or None,
        "logConfiguration": None,
    }
    if config.log_group:
        container["logConfiguration"] = {
            "logDriver": "awslogs",
            "options": {
                "awslogs-group": config.log_group,
                "awslogs-region": region,
                "awslogs-stream-prefix": LOG_STREAM_PREFIX,
            },
        }
    return {
        "containerDefinitions": [container],
        "requiresCompatibilities": ["FARGATE" if config.on_fargate else "EC2"],
        # Fargate needs awsvpc (the config requires subnets there); on EC2 it is the
        # team's choice, made by giving subnets.
        "networkMode": "awsvpc" if config.subnets else "bridge",
        "cpu": str(config.cpu),
        "memory": str(config.memory_mib),
        "taskRoleArn": config.task_role_arn,
        "executionRoleArn": config.execution_role_arn,
    }


def _overrides(config: EcsConfig, launch: Launch) -> dict[str, Any]:
    """Per attempt: the SUNDIAL_* variables and the resources; for a task definition of the
    team's own, also the command and the roles."""
    container: dict[str, Any] = {
        "name": config.essential_container,
        "environment": environment({**config.env, **launch.env}),
    }
    overrides: dict[str, Any] = {"containerOverrides": [container]}
    if config.cpu is not None:
        overrides["cpu"] = str(config.cpu)
    if config.memory_mib is not None:
        overrides["memory"] = str(config.memory_mib)
    if config.disk_gib is not None:
        overrides["ephemeralStorage"] = {"sizeInGiB": config.disk_gib}
    if config.task_definition is not None:
        if config.command:
            container["command"] = list(config.command)
        if config.task_role_arn:
            overrides["taskRoleArn"] = config.task_role_arn
        if config.execution_role_arn:
            overrides["executionRoleArn"] = config.execution_role_arn
    return overrides


def _capacity(config: EcsConfig) -> dict[str, Any]:
    """Where ECS places the task: a capacity provider strategy, or a launch type."""
    if config.capacity_provider_strategy:
        strategy = [
            {"capacityProvider": item.capacity_provider, "weight": item.weight, "base": item.base}
            for item in config.capacity_provider_strategy
        ]
        return {"capacityProviderStrategy": strategy}
    return {"launchType": config.launch_type}


def _network(config: EcsConfig) -> dict[str, Any]:
    if not config.subnets:
        return {}
    vpc: dict[str, Any] = {
        "subnets": list(config.subnets),
        "assignPublicIp": "ENABLED" if config.assign_public_ip else "DISABLED",
    }
    if config.security_groups:
        vpc["securityGroups"] = list(config.security_groups)
    return {"networkConfiguration": {"awsvpcConfiguration": vpc}}


def _tag_list(tags: Mapping[str, str]) -> list[dict[str, str]]:
    # ECS takes tags as a list of key/value pairs (Batch as a map).
    return [{"key": key, "value": value} for key, value in tags.items()]


def _submission(task: Mapping[str, Any], config: EcsConfig) -> Submission:
    arn = external_id(task)
    return Submission(arn, arn, _resources(task, config))


def _resources(task: Mapping[str, Any], config: EcsConfig) -> dict[str, Any]:
    """What the task asked for, as far as its config says (a task definition's own CPU and
    memory are not looked up); the platform is where ECS placed it."""
    resources: dict[str, Any] = {
        "platform": task.get("capacityProviderName") or task.get("launchType", "")
    }
    if config.cpu is not None:
        resources["vcpu"] = config.cpu / 1024
    if config.memory_mib is not None:
        resources["memory_mib"] = config.memory_mib
    if config.disk_gib is not None:
        resources["disk_gib"] = config.disk_gib
    return resources
