"""What a report stores: explicit success, and metadata upserted by key."""

import json

from jobs.models import TaskMetadata


def stored(attempt):
    return {
        m.key: (m.value, m.numeric_value) for m in TaskMetadata.objects.filter(task_run=attempt)
    }


def test_success_and_failure_are_recorded(report, attempt):
    assert report(attempt.pk, '{"success": false}', attempt.token).status_code == 200
    attempt.refresh_from_db()
    assert attempt.reported_success is False
    assert report(attempt.pk, '{"success": true}', attempt.token).status_code == 200
    attempt.refresh_from_db()
    assert attempt.reported_success is True


def test_metadata_alone_leaves_success_unreported(report, attempt):
    assert report(attempt.pk, '{"metadata": {"rows": 1}}', attempt.token).status_code == 200
    attempt.refresh_from_db()
    assert attempt.reported_success is None


def test_numbers_become_metrics_but_flags_and_text_do_not(report, attempt):
    metadata = {"rows": 1200, "ratio": 0.25, "clean": True, "table": "sales", "tags": ["a"]}
    body = json.dumps({"metadata": metadata})
    assert report(attempt.pk, body, attempt.token).status_code == 200
    assert stored(attempt) == {
        "rows": (1200, 1200.0),
        "ratio": (0.25, 0.25),
        "clean": (True, None),
        "table": ("sales", None),
        "tags": (["a"], None),
    }


def test_a_key_reported_again_is_updated(report, attempt):
    report(attempt.pk, '{"metadata": {"rows": 1, "table": "sales"}}', attempt.token)
    report(attempt.pk, '{"metadata": {"rows": "many"}}', attempt.token)
    assert stored(attempt) == {"rows": ("many", None), "table": ("sales", None)}


def test_an_empty_report_is_fine(report, attempt):
    response = report(attempt.pk, "{}", attempt.token)
    assert (response.status_code, response.json()) == (200, {"ok": True})
