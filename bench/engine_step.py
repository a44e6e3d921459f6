"""How one engine step scales with the size of a run (pure code: no database, no broker).

Prints `name: value` lines, medians of 20 steps, each beside its ceiling: a step must stay
roughly linear in tasks + edges, or every hand-off of a large process pays for it.
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from jobs.engine import Attempt, AttemptStatus, RunState, RunStatus, TaskSpec, step

SIZE = 500
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _state(tasks: tuple[TaskSpec, ...], done: int) -> RunState:
    attempts = tuple(
        Attempt(i, t.name, 1, 1, AttemptStatus.SUCCEEDED if i < done else AttemptStatus.WAITING)
        for i, t in enumerate(tasks)
    )
    return RunState(run_id=1, status=RunStatus.RUNNING, tasks=tasks, attempts=attempts)


def _median_ms(state: RunState) -> float:
    samples = []
    for _ in range(20):
        start = time.perf_counter()
        step(state, NOW)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    chain = tuple(TaskSpec(f"t{i}", requires=(f"t{i - 1}",) if i else ()) for i in range(SIZE))
    middle = [TaskSpec(f"p{i}", requires=("root",)) for i in range(SIZE)]
    sink = TaskSpec("sink", requires=tuple(t.name for t in middle))
    fan = (TaskSpec("root"), *middle, sink)
    figures = {
        "engine_step_chain500_ms": (_median_ms(_state(chain, SIZE // 2)), 10),
        "engine_step_fanout500_ms": (_median_ms(_state(fan, 1)), 10),
    }
    for name, (value, ceiling) in figures.items():
        print(f"{name}: {value:.2f}  # ceiling {ceiling} (linear in tasks + edges)")


if __name__ == "__main__":
    main()
