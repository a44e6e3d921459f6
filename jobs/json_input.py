"""Parsing JSON that people and tasks send in, into a value PostgreSQL will store.

The report API and the admin's config field both parse with ``parse_json``, so they accept
and refuse the same values, in the same words. Python's ``json`` accepts more than that:
numbers that overflow to infinity, NUL and unpaired surrogates written as ``\\u`` escapes
(PostgreSQL's text and jsonb refuse both; a surrogate cannot even be encoded to send), and
nesting deep enough to exhaust the interpreter's recursion limit.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

MAX_DEPTH = 64  # deeper than any config or report needs, far below the recursion limit

_SURROGATE = re.compile("[\ud800-\udfff]")  # json.loads has joined every valid pair by now


class JsonInputError(ValueError):
    """JSON that cannot be used; the message says what is wrong and where."""


def parse_json(text: str | bytes, name: str) -> Any:
    """The JSON value in ``text``, fit to store, or JsonInputError naming the problem.

    ``name`` says what the text is ("body", "config"): it starts the messages about the text
    as a whole, and is the path of the top-level value. Values inside are named by their
    path from there: ``metadata.rows``, ``command[0]``, ``env["A-B"]``.
    """
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        where = f"(line {exc.lineno}, column {exc.colno})"
        raise JsonInputError(f"{name} is not valid JSON: {exc.msg} {where}") from None
    except ValueError as exc:  # NaN or Infinity, or bytes that are not UTF-8
        raise JsonInputError(f"{name} is not valid JSON: {exc}") from None
    except RecursionError:
        raise _too_deep(name) from None
    _check(value, name, "", 1)
    return value


def parse_json_object(text: str | bytes, name: str) -> dict[str, Any]:
    """Like ``parse_json``, for a value that must be a JSON object."""
    value = parse_json(text, name)
    if not isinstance(value, dict):
        raise JsonInputError(f"{name} must be a JSON object")
    return value


def _reject_constant(constant: str) -> None:
    # Python's json accepts NaN and Infinity, which are not JSON and which PostgreSQL refuses.
    raise ValueError(f"{constant} is not allowed")


def _too_deep(name: str) -> JsonInputError:
    return JsonInputError(f"{name} is nested more than {MAX_DEPTH} levels deep")


def _check(value: Any, name: str, path: str, depth: int) -> None:
    """Raise JsonInputError for the first part of ``value`` that cannot be stored."""
    where = path or name
    if isinstance(value, float) and not math.isfinite(value):
        raise JsonInputError(f"{where}: number is out of range (beyond ±1.8e308)")
    if isinstance(value, str):
        _check_text(value, where, "")
    elif isinstance(value, dict | list):
        if depth > MAX_DEPTH:
            raise _too_deep(name)
        if isinstance(value, dict):
            for key, item in value.items():
                inner = _key_path(path, key)
                _check_text(key, inner, "key ")
                _check(item, name, inner, depth + 1)
        else:
            for index, item in enumerate(value):
                # A top-level list's items carry its name: "[0]" alone would name nothing.
                _check(item, name, f"{path or name}[{index}]", depth + 1)


def _check_text(text: str, where: str, what: str) -> None:
    if "\0" in text:
        raise JsonInputError(f"{where}: {what}must not contain NUL characters")
    if surrogate := _SURROGATE.search(text):
        code = f"\\u{ord(surrogate[0]):04x}"
        raise JsonInputError(f"{where}: {what}must not contain an unpaired surrogate ({code})")


def _key_path(path: str, key: str) -> str:
    # A key that is not a plain name is quoted as JSON, which escapes NUL and surrogates too.
    if key.isidentifier():
        return f"{path}.{key}" if path else key
    return f"{path}[{json.dumps(key)}]"
