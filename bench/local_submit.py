"""How long the local executor takes to start a process (`true`): the spawn in every local
hand-off. Prints the median and the 90th percentile of 200 submits beside the target."""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from executors.base import Launch
from executors.local.executor import LocalExecutor

SUBMITS = 200
TARGET_MS = 1.0  # vfork + exec of `true`, without preexec_fn (see docs/architecture.md)


def main() -> None:
    exited = threading.Semaphore(0)
    with tempfile.TemporaryDirectory() as logs:
        executor = LocalExecutor(Path(logs), lambda batch: exited.release(len(batch)))
        durations = []
        for i in range(SUBMITS):
            launch = Launch(i, 1, f"bench-{i}", {"command": ["true"]}, {})
            start = time.perf_counter()
            executor.submit(launch)
            durations.append(time.perf_counter() - start)
            exited.acquire(timeout=10)  # one at a time: the figure is a submit, not a queue
    p50 = statistics.median(durations) * 1000
    p90 = statistics.quantiles(durations, n=10)[-1] * 1000
    print(f"local_submit_ms_p50: {p50:.2f}  # target < {TARGET_MS:g}")
    print(f"local_submit_ms_p90: {p90:.2f}  # the noise of this machine")


if __name__ == "__main__":
    main()
