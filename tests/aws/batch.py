"""AWS Batch in the tests' AWS: setting up a queue, looking at its jobs, and what Batch
would do on its own (moto records jobs but does not run them here: it would need Docker)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import pytest
from moto.batch import models as moto_batch
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
    state_manager.set_transition("batch::job", FOREVER)
    yield
    state_manager.unset_transition("batch::job")


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
