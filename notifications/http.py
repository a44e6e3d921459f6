"""POST a JSON body to a URL and say what the answer means for a delivery: the one HTTP
transport of the webhook and Slack channels (their provider errors are worded here, once).

- 2xx: delivered.
- 408, 429, 5xx, a timeout, a refused or dropped connection, a name that does not resolve,
  a TLS failure: ``ChannelError`` for now (the outbox tries again with a growing delay).
- any other answer, 3xx included: ``ChannelError`` for good (the subscription is flagged).
  Redirects are not followed: urllib would turn a redirected POST into a GET without its
  body, and the notice would be lost while the answer looked like a success.

Errors name the URL's host and the status, never the whole URL: a Slack webhook URL (and
often a webhook's query string) is a credential. When the target is one, a masked form is
added so that two subscriptions to one host can be told apart.

The standard library's urllib, not httpx2: httpx2 is here only because the ``pagerduty``
package depends on it, and a channel should not break the day that package changes its
mind. One short POST per delivery, sent from a Celery worker, needs no connection pool.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from http.client import HTTPException
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

from notifications.base import ChannelError
from notifications.registry import masked

# Seconds to wait for the connection and for each read; a receiver slower than this is
# treated as down for now. urllib has no deadline for the whole exchange, but we read no
# more than the status line, the headers and ANSWER_SHOWN bytes of the body.
TIMEOUT_S = 10.0
USER_AGENT = "Sundial"
ANSWER_SHOWN = 200  # bytes of a refusal's body quoted in its error (Slack says why there)
_TEMPORARY = frozenset({408, 429})


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError with the 3xx answer


def post_json(
    url: str,
    body: bytes,
    *,
    headers: dict[str, str] | None = None,
    timeout_s: float = TIMEOUT_S,
    context: ssl.SSLContext | None = None,
    secret_url: bool = False,
) -> None:
    """POST ``body`` (JSON) to ``url``; return on a 2xx answer, else raise ChannelError,
    ``permanent`` when trying again cannot help. ``context``: the TLS trust (None: the
    system's); ``secret_url``: the URL is a credential."""
    where = _where(url, secret_url)
    opener = urllib.request.build_opener(_NoRedirect, urllib.request.HTTPSHandler(context=context))
    try:
        # Inside the try: a target that is no URL ("hooks", "http://[bad") fails here.
        request = urllib.request.Request(
            url,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "User-Agent": USER_AGENT,
                **(headers or {}),
            },
        )
        with opener.open(request, timeout=timeout_s):
            return
    except urllib.error.HTTPError as answer:
        status = answer.code
        said = _quoted(answer)
        answer.close()
        permanent = status not in _TEMPORARY and not 500 <= status <= 599
        raise ChannelError(f"{where} answered {status}{said}", permanent=permanent) from None
    except ValueError:  # not a URL urllib can send to (its message quotes the URL: not shown)
        raise ChannelError(f"{where} is not an http(s) URL", permanent=True) from None
    except (OSError, HTTPException) as error:  # URLError, a timeout, a dropped connection
        reason = error.reason if isinstance(error, urllib.error.URLError) else error
        if isinstance(reason, TimeoutError):
            raise ChannelError(f"{where} did not answer within {timeout_s:g} s") from None
        said = str(reason) or type(reason).__name__
        raise ChannelError(f"{where} could not be reached: {said}") from None


def dumps(value: object) -> bytes:
    """JSON as the channels send it: compact, UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def _where(url: str, secret_url: bool) -> str:
    try:
        host = urlsplit(url).netloc.rpartition("@")[2] or "(no host)"
    except ValueError:
        host = "(not a URL)"
    return f"{host} ({masked(url)})" if secret_url else host


def _quoted(answer: urllib.error.HTTPError) -> str:
    try:
        text = answer.read(ANSWER_SHOWN).decode("utf-8", "replace")
    except (OSError, HTTPException):
        return ""
    text = " ".join(text.split())
    return f": {text}" if text else ""


def one_url(target: str, schemes: list[str], wrong: str) -> list[str]:
    """The one URL a subscription's target is (a channel's ``recipients``), or a
    ValidationError saying ``wrong``."""
    url = target.strip()
    try:
        URLValidator(schemes=schemes)(url)
    except ValidationError:
        raise ValidationError(wrong, code="invalid") from None
    return [url]
