"""A body the API cannot use is refused with a message saying what is wrong."""

import pytest


def nested(levels: int) -> str:
    """A successful report that is ``levels`` deep: the body, its metadata, then lists."""
    lists = levels - 2
    return '{"success": true, "metadata": {"a": ' + "[" * lists + "]" * lists + "}}"


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
        # Valid JSON that PostgreSQL cannot store, or Python cannot parse: the whole report is
        # refused, "success" included, rather than failing half-way as a server error.
        (
            '{"success": true, "metadata": {"rows": 1e400}}',
            "metadata.rows: number is out of range (beyond ±1.8e308)",
        ),
        (
            '{"success": true, "metadata": {"xs": [1, -1e999]}}',
            "metadata.xs[1]: number is out of range (beyond ±1.8e308)",
        ),
        ("1e400", "body: number is out of range (beyond ±1.8e308)"),
        (
            r'{"success": true, "metadata": {"a\u0000": 1}}',
            r'metadata["a\u0000"]: key must not contain NUL characters',
        ),
        (
            r'{"success": true, "metadata": {"table": "sa\u0000les"}}',
            "metadata.table: must not contain NUL characters",
        ),
        (
            r'{"success": true, "metadata": {"name": "x\ud800"}}',
            r"metadata.name: must not contain an unpaired surrogate (\ud800)",
        ),
        (
            r'{"success": true, "metadata": {"\udc00": 1}}',
            r'metadata["\udc00"]: key must not contain an unpaired surrogate (\udc00)',
        ),
        pytest.param(nested(100_000), "body is nested more than 64 levels deep", id="deep"),
        pytest.param(nested(65), "body is nested more than 64 levels deep", id="65 levels"),
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


def test_64_levels_of_nesting_are_stored(report, attempt):
    assert report(attempt.pk, nested(64), attempt.token).status_code == 200
    assert attempt.metadata.get().key == "a"
