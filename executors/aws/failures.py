"""How AWS words a container that failed, read into what Sundial's retry rules need to know.

Batch runs its jobs as ECS tasks, so both say it alike: a job's or task's reason and its
container's ``reason`` are AWS's words. Two of their kinds change what a retry should do: an
out-of-memory kill (a retry needs more memory) and a failure no retry can fix (the image
cannot be pulled).
"""

from __future__ import annotations

# Reasons that fail the same way on every try: the image is missing or private.
PERMANENT_REASONS = ("CannotPullContainerError",)


def out_of_memory(exit_code: int | None, reason: str) -> bool:
    """AWS says ``OutOfMemoryError: Container killed due to memory usage``; a container
    killed by the kernel's OOM killer exits 137 (SIGKILL) with a reason that says memory."""
    if "OutOfMemoryError" in reason:
        return True
    return exit_code == 137 and "memory" in reason.lower()


def permanent(reason: str) -> bool:
    return any(word in reason for word in PERMANENT_REASONS)
