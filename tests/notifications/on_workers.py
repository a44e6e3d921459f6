"""Helpers of the attacks on notifications with real workers (test_attack_*.py)."""

from __future__ import annotations

from pathlib import Path

import trustme

from jobs.models import ProcessDefinition
from notifications.models import DeliveryStatus, Subscription
from tests.conftest import make_process
from tests.notifications import receiver as hooks
from tests.notifications.fake_pagerduty import FakePagerDuty, write_ca
from tests.workers import Worker

KEY = "R0ut1ngKeyOfTheOrdersService0001"  # 32 letters and digits
SECRET = "whsec-attack-8"
FINAL = (DeliveryStatus.SENT, DeliveryStatus.FAILED)


class Workers:
    """Workers started by a test, all SIGKILLed at its end."""

    def __init__(self, var_dir: Path) -> None:
        self.var_dir = var_dir
        self.env: dict[str, str] = {}
        self.started: list[Worker] = []

    def start(self, name: str = "w", **env: str) -> Worker:
        worker = Worker(self.var_dir / name, concurrency=4, **{**self.env, **env})
        self.started.append(worker)
        return worker

    def kill_all(self) -> None:
        for worker in self.started:
            worker.kill()


def pagerduty_env(fake: FakePagerDuty, tmp_path: Path, ca: trustme.CA) -> dict[str, str]:
    """What a worker needs to page the stand-in."""
    return {
        "SUNDIAL_PAGERDUTY_EVENTS_URL": fake.url,
        "SSL_CERT_FILE": str(write_ca(ca, tmp_path)),
    }


def shell_process(name: str, script: str, **fields) -> ProcessDefinition:
    return make_process(name, {"only": {"config": {"shell": script}}}, **fields)


def subscribe_hook(process, url: str, policy: str = "always", secret: str = SECRET):
    return Subscription.objects.create(
        process=process, channel="webhook", target=url, policy=policy, secret=secret
    )


def signed(received: hooks.Received) -> bool:
    header = received.headers.get("X-Sundial-Signature", "")
    return bool(header) and hooks.verify(header, received.body, SECRET)
