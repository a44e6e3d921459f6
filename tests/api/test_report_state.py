"""Reports count only while the attempt is active: after it ended, they are refused."""

import pytest

from jobs.models import TaskRun


@pytest.mark.parametrize("status", ["submitting", "submitted", "running"])
def test_active_attempts_accept_reports(report, attempt, status):
    TaskRun.objects.filter(pk=attempt.pk).update(status=status)
    response = report(attempt.pk, '{"success": true}', attempt.token)
    assert (response.status_code, response.json()) == (200, {"ok": True})


@pytest.mark.parametrize("status", ["waiting", "ready", "succeeded", "failed", "killed"])
def test_inactive_attempts_refuse_them(report, attempt, status):
    TaskRun.objects.filter(pk=attempt.pk).update(status=status)
    response = report(attempt.pk, '{"success": true, "metadata": {"rows": 1}}', attempt.token)
    assert (response.status_code, response.json()) == (
        409,
        {"error": f"task run {attempt.pk} is no longer active"},
    )
    attempt.refresh_from_db()
    assert attempt.reported_success is None
    assert not attempt.metadata.exists()
