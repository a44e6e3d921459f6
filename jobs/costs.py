"""What an attempt probably cost: the resources it asked for, for as long as it ran, at the
prices in ``SUNDIAL_PRICES``.

An estimate, and said to be one: list prices of one region, no discounts, and EC2 jobs
priced by the share of an instance they asked for (Batch packs several jobs onto one
instance, and an idle instance's cost belongs to nobody). Pure: prices come in as values.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

# US East (N. Virginia) on-demand list prices in USD, per hour. Fargate's are AWS's own
# per-vCPU and per-GB prices; Fargate Spot's are about 70% lower. EC2 has no per-vCPU price:
# these split an m5.large (2 vCPU, 8 GiB, $0.096/h) in Fargate's vCPU:GB proportion, and a
# GPU is what a g4dn.xlarge costs beyond its vCPUs and memory.
DEFAULT_PRICES: Mapping[str, Mapping[str, float]] = {
    "FARGATE": {"vcpu_hour": 0.04048, "gb_hour": 0.004445, "disk_gb_hour": 0.000111},
    "FARGATE_SPOT": {"vcpu_hour": 0.012144, "gb_hour": 0.0013335, "disk_gb_hour": 0.000111},
    "EC2": {"vcpu_hour": 0.03334, "gb_hour": 0.003664, "gpu_hour": 0.334},
}
FREE_DISK_GIB = 20  # Fargate includes 20 GiB of ephemeral storage in its price


@dataclass(frozen=True)
class Estimate:
    usd: float
    priced: int  # attempts that could be priced
    unpriced: int  # attempts that could not (local ones, unfinished ones, unknown sizes)

    @property
    def complete(self) -> bool:
        return self.unpriced == 0


def attempt_cost(
    resources: Mapping[str, Any],
    started_at: datetime | None,
    finished_at: datetime | None,
    prices: Mapping[str, Mapping[str, float]],
) -> float | None:
    """USD for one attempt, or None when it cannot be priced (nothing known to price it by)."""
    table = prices.get(str(resources.get("platform", "")))
    vcpu, memory_mib = resources.get("vcpu"), resources.get("memory_mib")
    if table is None or vcpu is None or memory_mib is None or started_at is None:
        return None
    if finished_at is None:
        return None  # still running: the page says so instead of a number that keeps growing
    hours = max(0.0, (finished_at - started_at).total_seconds()) / 3600
    per_hour = vcpu * table.get("vcpu_hour", 0.0) + memory_mib / 1024 * table.get("gb_hour", 0.0)
    per_hour += resources.get("gpu", 0) * table.get("gpu_hour", 0.0)
    extra_disk = max(0, (resources.get("disk_gib") or 0) - FREE_DISK_GIB)
    per_hour += extra_disk * table.get("disk_gb_hour", 0.0)
    return per_hour * hours


def total(costs: Iterable[float | None]) -> Estimate:
    """The sum of the attempts that could be priced, and how many could not."""
    listed = list(costs)
    priced = [c for c in listed if c is not None]
    return Estimate(sum(priced), len(priced), len(listed) - len(priced))
