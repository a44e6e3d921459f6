"""A body the API cannot use is refused with a message saying what is wrong."""

import pytest


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (
            '{"success": true',
            "body is not valid JSON: Expecting ',' delimiter (line 1, column 17)",
        ),
        ("", "body is not valid JSON: Expecting value (line 1, column 1)"),
        ('{"metadata": {"x": NaN}}', "body is not valid JSON: NaN is not allowed"),
        ("[1, 2]", "body must be a JSON object"),
        ('{"success": true, "status": "ok"}', "unknown field(s): status"),
        ('{"success": "yes"}', "success must be true or false"),
        ('{"success": null}', "success must be true or false"),
        ('{"metadata": [1, 2]}', "metadata must be an object"),
    ],
)
def test_bad_bodies(report, attempt, body, error):
    response = report(attempt.pk, body, attempt.token)
    assert (response.status_code, response.json()) == (400, {"error": error})
    attempt.refresh_from_db()
    assert attempt.reported_success is None
    assert not attempt.metadata.exists()


def test_overlong_metadata_keys(report, attempt):
    body = '{"metadata": {"%s": 1}}' % ("k" * 201)
    response = report(attempt.pk, body, attempt.token)
    assert response.status_code == 400
    assert response.json()["error"].startswith("metadata key longer than 200 characters: kkk")


def test_bytes_that_are_not_utf8(report, attempt):
    response = report(attempt.pk, b'{"metadata": {"k": "\xff"}}', attempt.token)
    assert (response.status_code, response.json()) == (
        400,
        {
            "error": "body is not valid JSON: "
            "'utf-8' codec can't decode byte 0xff in position 20: invalid start byte"
        },
    )
