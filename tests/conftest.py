"""Fixtures shared by the whole suite."""

from __future__ import annotations

import os

import pytest
from django.db import connection
from hypothesis import settings as hypothesis_settings

from jobs.models import ProcessDefinition, TaskDefinition, TaskDependency, User
from tests.aws import aws, moto_endpoint  # noqa: F401  (fixtures for every test that needs AWS)

IN_CI = os.environ.get("CI") == "true"


def _require(marker: str, available: bool) -> None:
    if available:
        return
    if IN_CI:
        pytest.fail(f"this test needs the real {marker}, and CI must provide it")
    pytest.skip(f"needs the real {marker} (not reachable here)")


@pytest.fixture(autouse=True)
def _services(request):
    """Tests marked postgres/redis run on the real thing; skipped where absent, never in CI."""
    if request.node.get_closest_marker("postgres"):
        _require("PostgreSQL", connection.vendor == "postgresql")
    if request.node.get_closest_marker("redis"):
        from django.conf import settings

        _require("Redis", settings.CELERY_BROKER_URL.startswith("redis"))


@pytest.fixture(scope="session", autouse=True)
def _drop_stray_connections(django_db_setup, django_db_blocker):
    """Background threads (the local executor's watcher) keep connections open; close them
    before the test database is dropped, or PostgreSQL refuses to drop it."""
    yield
    if connection.vendor != "postgresql":
        return
    # On a fresh connection: this one may itself have been terminated by a test that
    # terminates connections (the database-fault attacks), and a dead one cannot be used.
    connection.close()
    with django_db_blocker.unblock(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


def purge_task_queue() -> None:
    """Drop the messages earlier tests left in this test process's queue (on any broker)."""
    from sundial_site.celery import app

    with app.connection_for_write() as conn:
        queue = app.amqp.queues[app.conf.task_default_queue].bind(conn.default_channel)
        queue.declare()  # AMQP refuses to purge a queue that does not exist yet
        queue.purge()


@pytest.fixture
def admin_user(db) -> User:
    return User.objects.create_superuser("admin", "admin@example.com", "pw")


def make_process(name: str = "etl", tasks: dict | None = None, **fields) -> ProcessDefinition:
    """A process whose tasks are given as {name: {"requires": [...], "after": [...], **fields}}."""
    process = ProcessDefinition.objects.create(name=name, **fields)
    created = {}
    specs = tasks if tasks is not None else {"only": {}}
    for task_name, spec in specs.items():
        spec = dict(spec)
        spec.pop("requires", None), spec.pop("after", None)
        spec.setdefault("config", {"command": ["true"]})
        created[task_name] = TaskDefinition.objects.create(process=process, name=task_name, **spec)
    for task_name, spec in specs.items():
        for upstream in spec.get("requires", []):
            TaskDependency.objects.create(task=created[task_name], upstream=created[upstream])
        for upstream in spec.get("after", []):
            TaskDependency.objects.create(
                task=created[task_name], upstream=created[upstream], required=False
            )
    return process


def serve_memory(monkeypatch: pytest.MonkeyPatch, executor):
    """Make ``executor`` the one that runs every task whose executor kind is ``memory``."""
    import executors.memory

    monkeypatch.setattr(executors.memory, "_shared", executor)
    return executor


# Hypothesis explores new examples on every local run; CI replays a fixed derivation so a
# submission's result does not depend on luck (a failure found locally becomes a test).
hypothesis_settings.register_profile("ci", derandomize=True)
if IN_CI:
    hypothesis_settings.load_profile("ci")
