"""Reading the ARNs executors use as external ids: they name the region a job runs in, so
any worker can reach it with no other record."""

from __future__ import annotations

from executors.base import ExecutorError


def parse(arn: str, service: str, what: str) -> tuple[str, str]:
    """(region, resource) of an ARN of ``service``: ``arn:aws:<service>:<region>:<account>:
    <resource>``; a permanent ExecutorError saying it is not ``what`` otherwise."""
    parts = arn.split(":", 5)
    if len(parts) < 6 or parts[2] != service:
        raise ExecutorError(f"not {what}: {arn!r}", permanent=True)
    return parts[3], parts[5]
