"""One job per attempt on AWS. A submit that failed may still have started a job (the
answer was lost, not the request), and a submit repeated after a crash or by a retry may
have started a second one; both are found by the attempt's name and settled here alike."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from executors.base import ExecutorError, Submission


@dataclass(frozen=True)
class Started:
    """A job AWS lists under an attempt's name: enough to choose which one to keep."""

    arn: str
    created: float  # when AWS accepted it, in any unit the jobs of one kind share
    active: bool  # not ended nor asked to stop: a duplicate that must be stopped


def keep_first(jobs: Sequence[Started], stop: Callable[[str], None]) -> str | None:
    """The ARN of the attempt's first job (by creation), or None; every other active one is
    stopped, so whoever finds the attempt's job later finds this one."""
    if not jobs:
        return None
    first = min(jobs, key=lambda job: (job.created, job.arn))
    keep_only(first.arn, jobs, stop)
    return first.arn


def keep_only(keep: str, jobs: Sequence[Started], stop: Callable[[str], None]) -> None:
    """Stop every active job but ``keep``: the attempt wanted one."""
    for job in jobs:
        if job.arn != keep and job.active:
            stop(job.arn)


def found_after_failure(
    failure: ExecutorError, find: Callable[[], Submission | None]
) -> Submission:
    """After a submit failed: the job it started anyway (a timeout after sending), found by
    ``find``; else the failure itself. A permanent failure started nothing, so it is not
    looked for."""
    if failure.permanent:
        raise failure
    found = find()
    if found is None:
        raise failure
    return found
