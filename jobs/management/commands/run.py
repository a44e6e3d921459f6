"""`make run`: migrate, create a login and the demo, then run web + worker + beat together."""

from __future__ import annotations

import errno
import os
import secrets
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from jobs.models import User

ADMIN = "admin"
DEFAULT_ADDR = "127.0.0.1:8000"
SHUTDOWN_MARGIN_S = 15.0


class Command(BaseCommand):
    help = "Run Sundial in one terminal: web, Celery worker and beat. Ctrl-C stops all three."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default=DEFAULT_ADDR, help="where the web server listens")
        parser.add_argument("--no-demo", action="store_true", help="do not create the demo process")

    def handle(self, *args, addr: str, no_demo: bool, **options):
        # First, so a second `make run` touches nothing and says what to do.
        check_free(addr)
        for folder in (settings.VAR_DIR, settings.SUNDIAL_LOG_DIR):
            folder.mkdir(parents=True, exist_ok=True)
        if settings.CELERY_BROKER_URL == "filesystem://":
            for folder in ("processed", "control"):
                (settings.VAR_DIR / "broker" / folder).mkdir(parents=True, exist_ok=True)
        call_command("migrate", interactive=False, verbosity=0)
        self._ensure_login()
        if not no_demo:
            call_command("load_demo")
        self._run_all(addr)

    def _ensure_login(self) -> None:
        if User.objects.filter(username=ADMIN).exists():
            self.stdout.write(
                f"log in as {ADMIN!r} (its password was printed when it was created; "
                f"reset it with: .venv/bin/python manage.py changepassword {ADMIN})"
            )
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(ADMIN, "", password)
        self.stdout.write(self.style.SUCCESS(f"created login {ADMIN!r} with password {password!r}"))
        self.stdout.write("(shown once: note it down)")

    def _run_all(self, addr: str) -> None:
        python = sys.executable
        celery = [python, "-m", "celery", "-A", "sundial_site"]
        commands = {
            "web": [python, "manage.py", "runserver", addr, "--noreload", "--insecure"],
            # Threads, not prefork: orchestration waits on the database, AWS and child
            # processes, and one process keeps every local task under one supervisor.
            "worker": [*celery, "worker", "--pool", "threads", "--concurrency", "8", "-l", "info"],
            "beat": [*celery, "beat", "-l", "info", "--scheduler", settings.CELERY_BEAT_SCHEDULER],
        }
        # runserver's banner repeats the address printed below; its errors go to stderr.
        quiet = {"web": subprocess.DEVNULL}
        # Tasks report to, and messages link to, where this web server listens, unless the
        # environment says otherwise (a proxy in front, another name).
        env = dict(os.environ)
        env.setdefault("SUNDIAL_API_URL", site_url(addr))
        env.setdefault("SUNDIAL_BASE_URL", env["SUNDIAL_API_URL"])
        children = {
            name: subprocess.Popen(cmd, cwd=settings.BASE_DIR, stdout=quiet.get(name), env=env)
            for name, cmd in commands.items()
        }
        self.stdout.write(
            self.style.SUCCESS(f"Sundial is running: http://{addr}/  (Ctrl-C stops it)")
        )
        stopping = False
        failed = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, child in children.items():
                    if not stopping and child.poll() is not None:
                        self.stderr.write(
                            f"{name} stopped with exit code {child.returncode}; stopping all"
                        )
                        stopping = failed = True
                time.sleep(0.5)
        finally:
            for child in children.values():
                if child.poll() is None:
                    child.terminate()
            # The worker stops its local tasks (SIGTERM, at most the shutdown grace, SIGKILL)
            # and records how they ended before it exits; killed sooner, it would leave them
            # running unsupervised. The margin covers recording (the runtime allows 10 s) and
            # the tasks Celery lets finish first.
            started = time.monotonic()
            patience = {"worker": settings.SUNDIAL_SHUTDOWN_GRACE_S + SHUTDOWN_MARGIN_S}
            for name, child in children.items():
                deadline = started + patience.get(name, SHUTDOWN_MARGIN_S)
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    self.stderr.write(f"{name} did not stop in time; killing it")
                    child.kill()
                    child.wait()
        if failed:
            sys.exit(1)


def site_url(addr: str) -> str:
    """The URL of a web server listening on ``addr`` (runserver's forms), as this machine
    reaches it: a server on every interface is reached on loopback."""
    host, _, port = addr.rpartition(":")
    host = host.strip("[]") or DEFAULT_ADDR.partition(":")[0]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def check_free(addr: str) -> None:
    """Raise CommandError, saying what to do instead, unless the web server can listen on addr
    (runserver's forms: "8000", "127.0.0.1:8000", "[::1]:8000")."""
    given_host, _, port = addr.rpartition(":")
    if not port.isdigit():
        raise CommandError(f"--addr {addr!r} is not host:port (e.g. {DEFAULT_ADDR})")
    host = given_host.strip("[]") or DEFAULT_ADDR.partition(":")[0]
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(
            host, int(port), type=socket.SOCK_STREAM
        )[0]
        with socket.socket(family, kind, proto) as sock:
            # As runserver does: a port left in TIME_WAIT by a stopped server is free.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(sockaddr)
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            raise CommandError(f"cannot listen on {addr}: {exc}") from exc
        spare = f"{given_host or host}:{int(port) + 1}"
        raise CommandError(
            f"port {port} on {host} is in use (another Sundial?); "
            f"stop it, or run: make run ADDR={spare}"
        ) from exc
