"""Only the attempt's own token may report for it."""

import pytest

from jobs.models import TaskRun


def test_no_token(report, attempt):
    response = report(attempt.pk, '{"success": true}', None)
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response.json() == {
        "error": "missing token: send 'Authorization: Bearer $SUNDIAL_TOKEN'"
    }


def test_wrong_token(report, attempt):
    response = report(attempt.pk, '{"success": true}', "not-the-token")
    assert (response.status_code, response.json()) == (
        401,
        {"error": "invalid token for this task run"},
    )
    attempt.refresh_from_db()
    assert attempt.reported_success is None


def test_another_attempts_token_is_rejected(report, attempt):
    other = TaskRun.objects.get(run=attempt.run, task_name="load")
    TaskRun.objects.filter(pk=other.pk).update(status="running")
    response = report(attempt.pk, '{"success": true}', other.token)
    assert response.status_code == 401
    attempt.refresh_from_db()
    assert attempt.reported_success is None


@pytest.mark.django_db
def test_unknown_task_run(report):
    response = report(999999, '{"success": true}', "whatever")
    assert (response.status_code, response.json()) == (
        404,
        {"error": "task run 999999 does not exist"},
    )


def test_only_post(client, attempt):
    response = client.get(f"/api/v1/task-runs/{attempt.pk}/report")
    assert response.status_code == 405
