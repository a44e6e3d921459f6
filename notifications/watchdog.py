"""Every worker looks for alerts as well as beat: a missed start is what a stopped beat
causes, and beat cannot report its own absence. A thread in each worker process asks for a
scan every SUNDIAL_ALERT_SCAN_EVERY_S; the scan clock (``alerts.scan_if_due``) lets one of
them (or beat's task) run it per period. With no worker at all nothing can be sent either:
watch the workers from outside (README)."""

from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import close_old_connections

from notifications import alerts

log = logging.getLogger(__name__)


class Watchdog:
    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sundial-alert-scan", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        while not self._stopped.wait(self.every_s):
            try:
                close_old_connections()
                alerts.scan_if_due()
            except Exception:  # a database blip: the next period tries again
                log.exception("the alert scan failed")
            finally:
                close_old_connections()


_running: Watchdog | None = None


def start_watchdog(**_: object) -> None:
    """Celery's worker_ready: start this worker process's watchdog (once)."""
    global _running
    if _running is None:
        _running = Watchdog(settings.SUNDIAL_ALERT_SCAN_EVERY_S)
        _running.start()


def stop_watchdog(**_: object) -> None:
    """Celery's worker_shutdown."""
    global _running
    if _running is not None:
        _running.stop()
        _running = None
