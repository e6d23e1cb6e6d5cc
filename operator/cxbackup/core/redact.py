"""Removing secrets from text before it reaches logs, summaries, Kubernetes status or Events.

boto3 and HTTP errors can carry URLs with credentials (user:password@host) or pre-signed query
strings (X-Amz-Signature, X-Amz-Credential, ...), headers (`Authorization: Basic <base64>`), and
servers echo what they were sent. Three tools:

- `redact_url(url)`: the URL without user info (also when the password holds `/ # ? @ :`, which end
  the authority part for a URL parser: everything up to the last `@` after a `user:` is user info) and
  with sensitive query values masked.
- `Redactor(secrets).clean(text)`: masks every known secret value (also percent-encoded), every
  `Authorization` header value and `Basic`/`Bearer` token, values assigned to names such as
  `password`, `secret`, `token` or `aws_secret_access_key`, anything shaped like an AWS secret access
  key (40 characters of base64 with upper case, lower case and digits), and cleans every URL.
  `basic_token(user, password)` is the base64 form HTTP Basic sends: give it to the Redactor along
  with the password.
- `snippet(text)`: a short, single-line, cleaned excerpt, the most of a server's answer an error
  message may carry.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote_plus, urlsplit, urlunsplit

__all__ = ["SNIPPET_CHARS", "Redactor", "basic_token", "redact_url", "snippet"]

SNIPPET_CHARS = 120
"""The longest excerpt of a server's answer (`snippet`) an error message carries."""

_SENSITIVE_QUERY = re.compile(
    r"(signature|credential|security-token|token|password|passwd|secret|key|auth|sig)", re.IGNORECASE
)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]+")
_AUTH_HEADER = re.compile(r"""(?i)(\b(?:proxy-)?authorization\b["']?\s*[:=]\s*["']?)([^"'\r\n,}]+)""")
_AUTH_TOKEN = re.compile(r"(?i)\b(basic|bearer)(\s+)(?!auth\w*\b)[A-Za-z0-9+/=._~-]+")
_ASSIGNED = re.compile(
    r"""(?i)(\b[\w.-]*(?:password|passwd|secret|token|credentials?)[\w.-]*["']?\s*[:=]\s*["']?)([^\s"'&,;}\]]+)"""
)
# 40 characters of base64 with upper case, lower case and a digit, standing alone: an AWS secret key.
_AWS_SECRET = re.compile(
    r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]{0,39}[A-Z])(?=[A-Za-z0-9/+]{0,39}[a-z])(?=[A-Za-z0-9/+]{0,39}[0-9])"
    r"[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"
)
_TRAILING = ").,;:!?]}"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_MASK = "***"


def basic_token(username: str, password: str) -> str:
    """The credentials as HTTP Basic sends them: base64 of `username:password` (bytes that were not UTF-8 in
    the environment, which Python keeps as surrogate escapes, as they were)."""
    return base64.b64encode(f"{username}:{password}".encode("utf-8", "surrogateescape")).decode("ascii")


def _strip_userinfo(url: str) -> str:
    m = _SCHEME.match(url)
    if m is None:
        return url
    rest = url[m.end() :]
    authority = re.split(r"[/?#]", rest, maxsplit=1)[0]
    # A password with `/`, `?` or `#` ends the authority early for a parser: `user:pa/ss@host`. Whenever
    # a `:` comes before an `@`, everything up to the last such `@` is taken as user info (this may also
    # cut a path or query holding `@`, which shows less but never a secret).
    at = rest.rfind("@")
    if at <= 0 or ":" not in rest[:at]:
        at = authority.rfind("@")
    return url if at < 0 else url[: m.end()] + rest[at + 1 :]


def redact_url(url: str) -> str:
    """The URL without user info and with sensitive query values masked."""
    url = _strip_userinfo(url)
    try:
        parts = urlsplit(url)
    except ValueError:
        return _MASK
    query = "&".join(_mask_pair(pair) for pair in parts.query.split("&")) if parts.query else ""
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _mask_pair(pair: str) -> str:
    """`key=value` of a query, with the value masked when the key names a secret (encoding kept)."""
    key, sep, _ = pair.partition("=")
    return f"{key}={_MASK}" if sep and _SENSITIVE_QUERY.search(unquote_plus(key)) else pair


def _redact_url_in_text(match: re.Match[str]) -> str:
    url = match.group(0)
    core = url.rstrip(_TRAILING)  # "(see https://host/x)." ends the URL before ")."
    return redact_url(core) + url[len(core) :]


def _forms(secret: str) -> set[str]:
    raw = secret.encode("utf-8", "surrogateescape")  # as the environment gave it, UTF-8 or not
    return {secret, quote(raw, safe=""), quote_plus(raw, safe=""), quote(raw)}


class Redactor:
    """Masks the given secret values and the patterns above, and cleans every URL in a text."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        forms = {f for s in secrets if s and len(s) >= 4 for f in _forms(s)}
        self._secrets = sorted(forms, key=len, reverse=True)

    def clean(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _MASK)
        text = _URL_IN_TEXT.sub(_redact_url_in_text, text)
        text = _AUTH_HEADER.sub(lambda m: m.group(1) + _MASK, text)
        text = _AUTH_TOKEN.sub(lambda m: m.group(1) + m.group(2) + _MASK, text)
        text = _ASSIGNED.sub(lambda m: m.group(1) + _MASK, text)
        return _AWS_SECRET.sub(_MASK, text)


def snippet(text: str, limit: int = SNIPPET_CHARS, redactor: Redactor | None = None) -> str:
    """At most `limit` characters of `text` on one line, cleaned by `redactor` (or one that knows no
    secrets but still masks URLs, tokens and key-shaped values)."""
    one_line = " ".join(_CONTROL.sub(" ", text).split())
    cleaned = (redactor or Redactor()).clean(one_line)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
