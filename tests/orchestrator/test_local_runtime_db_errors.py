"""An exit code lives only in the worker until recorded: a database error must not lose it."""

import pytest
from django.db import OperationalError

from jobs import orchestrator
from jobs.models import Trigger
from jobs.orchestrator import trigger_run
from tests.conftest import make_process
from tests.orchestrator.driving import attempts, drive

pytestmark = pytest.mark.django_db(transaction=True)


def test_an_exit_the_database_refused_is_recorded_on_the_next_tick(monkeypatch, caplog):
    record = orchestrator.record_outcomes
    refused = []

    def database_down_once(outcomes, **options):
        if not refused:
            refused.extend(outcomes)
            raise OperationalError("server closed the connection unexpectedly")
        return record(outcomes, **options)

    monkeypatch.setattr(orchestrator, "record_outcomes", database_down_once)
    process = make_process("db-blip", {"a": {"config": {"command": ["sh", "-c", "exit 3"]}}})
    run = drive(trigger_run(process, Trigger.MANUAL))
    assert [o.exit_code for o in refused] == [3]
    assert attempts(run) == [("a", 1, "failed")], "the real exit code, not 'lost'"
    assert run.task_runs.get().exit_code == 3
    assert "trying again" in caplog.text
