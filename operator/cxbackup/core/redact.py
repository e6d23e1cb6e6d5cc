"""Removing secrets from text before it reaches logs, summaries, Kubernetes status or Events.

boto3 and HTTP errors can carry URLs with credentials (user:password@host) or pre-signed query
strings (X-Amz-Signature, X-Amz-Credential, ...). `redact_url` cleans one URL; `Redactor` also
replaces every known secret value (passwords, secret keys) wherever it appears.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["Redactor", "redact_url"]

_SENSITIVE_QUERY = re.compile(
    r"(signature|credential|security-token|token|password|passwd|secret|key|auth|sig)", re.IGNORECASE
)
_URL_IN_TEXT = re.compile(r"https?://[^\s'\"<>]+", re.IGNORECASE)
_MASK = "***"


def redact_url(url: str) -> str:
    """The URL without user info and with sensitive query values masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return _MASK
    netloc = parts.netloc.rsplit("@", 1)[-1]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, _MASK if _SENSITIVE_QUERY.search(k) else v) for k, v in pairs], safe=",/*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class Redactor:
    """Masks the given secret values and cleans every URL in a text."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def clean(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _MASK)
        return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
