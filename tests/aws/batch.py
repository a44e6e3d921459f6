"""AWS Batch in the tests' AWS: setting up a queue, looking at its jobs, and what Batch
would do on its own (moto records jobs but does not run them here: it would need Docker)."""

from __future__ import annotations

import copy
import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest
from moto.batch import models as moto_batch
from moto.batch.responses import BatchResponse
from moto.moto_api import state_manager

from jobs import sandbox
from tests.aws.world import ACCOUNT, FOREVER, REGION, World


@contextmanager
def jobs_wait_for_the_test(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> Iterator[None]:
    """moto would run a Batch job in Docker; here a job waits until the test moves it on."""
    # Whatever an earlier test told moto (aws_sandbox: end jobs at once without Docker), a
    # job goes to Job.run, which waits.
    docker = json.dumps({"batch": {"use_docker": True}}).encode()
    urllib.request.urlopen(urllib.request.Request(f"{endpoint}/moto-api/config", docker, {}))
    monkeypatch.setattr(moto_batch.Job, "run", lambda job: None)
    _take_ecs_properties(monkeypatch)
    state_manager.set_transition("batch::job", FOREVER)
    yield
    state_manager.unset_transition("batch::job")


# ---- jobs of several containers (ecsProperties), which moto does not know ----

_moto_register = BatchResponse.registerjobdefinition
_moto_submit = BatchResponse.submitjob
_moto_describe_definition = moto_batch.JobDefinition.describe
_moto_describe_job = moto_batch.Job.describe


def _take_ecs_properties(monkeypatch: pytest.MonkeyPatch) -> None:
    """AWS registers a job definition of several containers (``ecsProperties``: one ECS
    task), applies a submit's ``ecsPropertiesOverride`` to the containers it names, and
    describes such a job by its containers (``ecsProperties``, and ``taskProperties`` in
    each attempt) instead of by one ``container``. moto requires ``containerProperties``
    and models a job on one container: it is given the first container (the job's own) as
    that one, and shows it as that container when it describes the job."""
    monkeypatch.setattr(BatchResponse, "registerjobdefinition", _register_ecs_properties)
    monkeypatch.setattr(BatchResponse, "submitjob", _submit_ecs_override)
    monkeypatch.setattr(moto_batch.JobDefinition, "describe", _definition_as_registered)
    monkeypatch.setattr(moto_batch.Job, "describe", _job_by_its_containers)


def _register_ecs_properties(response: Any) -> str:
    request = json.loads(response.body)
    ecs = request.pop("ecsProperties", None)
    if ecs is None:
        return str(_moto_register(response))
    own = ecs["taskProperties"][0]["containers"][0]
    stand_in = {"image": own["image"], "vcpus": 1, "memory": 2048}  # moto's, never shown
    response.body = json.dumps({**request, "containerProperties": stand_in})
    registered = _moto_register(response)
    arn = json.loads(registered)["jobDefinitionArn"]
    response.batch_backend.get_job_definition_by_arn(arn).ecs_properties = ecs
    return str(registered)


def _submit_ecs_override(response: Any) -> str:
    submitted = _moto_submit(response)
    job = response.batch_backend._jobs[json.loads(submitted)["jobId"]]
    job.ecs_override = response._get_param("ecsPropertiesOverride") or {}
    return str(submitted)


def _definition_as_registered(definition: Any) -> dict[str, Any]:
    described: dict[str, Any] = _moto_describe_definition(definition)
    if (ecs := getattr(definition, "ecs_properties", None)) is not None:
        del described["containerProperties"]
        described["ecsProperties"] = ecs
    return described


def _job_by_its_containers(job: Any) -> dict[str, Any]:
    described: dict[str, Any] = _moto_describe_job(job)
    ecs = getattr(job.job_definition, "ecs_properties", None)
    if ecs is None:
        return described
    own = described.pop("container")  # moto's one container: the job's own, the first
    task = copy.deepcopy(ecs["taskProperties"][0])
    overrides = getattr(job, "ecs_override", {}).get("taskProperties") or [{}]
    by_name = {c["name"]: c for c in overrides[0].get("containers", [])}
    for container in task["containers"]:
        override = by_name.get(container.get("name"), {})
        # AWS adds the overridden variables to the definition's, and replaces the rest.
        env = {e["name"]: e["value"] for e in container.get("environment", [])}
        env |= {e["name"]: e["value"] for e in override.get("environment", [])}
        container.update(
            {**override, "environment": [{"name": k, "value": v} for k, v in env.items()]}
        )
    if "logStreamName" in own:
        task["containers"][0]["logStreamName"] = own["logStreamName"]
    described["ecsProperties"] = {"taskProperties": [task]}
    described["attempts"] = [_attempt_by_its_containers(a, task) for a in described["attempts"]]
    return described


def _attempt_by_its_containers(attempt: dict[str, Any], task: dict[str, Any]) -> dict[str, Any]:
    own = attempt["container"]
    first = {"name": task["containers"][0]["name"]}
    first |= {k: own[k] for k in ("exitCode", "reason", "logStreamName") if own.get(k) is not None}
    containers = [first, *({"name": c["name"]} for c in task["containers"][1:])]
    ecs_task = {"containerInstanceArn": own.get("containerInstanceArn"), "containers": containers}
    return {**{k: v for k, v in attempt.items() if k != "container"}, "taskProperties": [ecs_task]}


class BatchWorld(World):
    # ---- setting up ----

    def batch_queue(self, name: str = "sundial") -> str:
        """A job queue on an unmanaged compute environment; returns its name."""
        return sandbox.batch_queue(self.client("iam"), self.client("batch"), name)

    def batch_jobs(self, queue: str = "sundial") -> list[dict[str, Any]]:
        """Every job AWS holds in the queue, in every status."""
        batch = self.client("batch")
        statuses = ("SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED")
        jobs = []
        for status in (*statuses, "FAILED"):
            jobs += batch.list_jobs(jobQueue=queue, jobStatus=status)["jobSummaryList"]
        return jobs

    def describe_batch_job(self, arn: str) -> dict[str, Any]:
        return self.client("batch").describe_jobs(jobs=[arn.rsplit("/", 1)[-1]])["jobs"][0]

    def asked_memory_mib(self, arn: str) -> int:
        """The memory a job was submitted with: its MEMORY override, else its definition's.
        (AWS describes the job with it; moto leaves a resourceRequirements override out.)"""
        job = self._job(arn)
        for requirement in job.container_overrides.get("resourceRequirements", []):
            if requirement["type"] == "MEMORY":
                return int(requirement["value"])
        return int(self.describe_batch_job(arn)["container"]["memory"])

    # ---- what AWS would do on its own ----

    def _job(self, arn: str) -> Any:
        return moto_batch.batch_backends[ACCOUNT][REGION]._jobs[arn.rsplit("/", 1)[-1]]

    def wait_for_capacity(self, arn: str) -> None:
        """The scheduler took the job; no instance has room for it yet."""
        self._job(arn).status = "RUNNABLE"

    def run_batch_job(self, arn: str, *log_lines: str) -> None:
        """The job started on an instance and wrote ``log_lines`` to CloudWatch."""
        job = self._job(arn)
        job.job_started_at = datetime.now()
        job.log_stream_name = job._stream_name
        job._start_attempt()
        job.status = "RUNNING"
        if log_lines:
            self.write_log("/aws/batch/job", job._stream_name, *log_lines)

    def finish_batch_job(
        self,
        arn: str,
        exit_code: int | None,
        *,
        status_reason: str = "",
        container_reason: str = "",
    ) -> None:
        """The job ended: SUCCEEDED for exit 0, FAILED otherwise, with AWS's reasons."""
        job = self._job(arn)
        if not job.attempts:
            job._start_attempt()
        job.exit_code = exit_code
        job.job_stopped_reason = status_reason or job.job_stopped_reason
        container = job.latest_attempt["container"]
        if exit_code is not None:
            container["exitCode"] = exit_code
        if container_reason:
            container["reason"] = container_reason
        job._mark_stopped(success=exit_code == 0)

    def carry_out_terminations(self) -> int:
        """Jobs asked to terminate end FAILED with the reason given, as Batch does."""
        stopped = 0
        for job in list(moto_batch.batch_backends[ACCOUNT][REGION]._jobs.values()):
            if job.stop and not job.job_stopped:
                self.finish_batch_job(job.arn, None, status_reason=job.job_stopped_reason or "")
                stopped += 1
        return stopped

    def forget_batch_job(self, arn: str) -> None:
        """The job expired from Batch's history: AWS no longer returns it."""
        backend = moto_batch.batch_backends[ACCOUNT][REGION]
        job = backend._jobs.pop(arn.rsplit("/", 1)[-1])
        job.job_queue.jobs.remove(job)
