"""Removing secrets from text before it reaches logs, summaries, Kubernetes status or Events.

boto3 and HTTP errors can carry URLs with credentials (user:password@host) or pre-signed query
strings (X-Amz-Signature, X-Amz-Credential, ...), headers (`Authorization: Basic <base64>`), and
servers echo what they were sent. Three tools:

- `redact_url(url)`: the URL (any scheme) without user info (also when the password holds `/ # ? @ :`,
  which end the authority part for a URL parser: everything up to the last `@` after a `user:` is user
  info), and with the values of secret-named query and fragment parameters masked; scheme, host, port,
  path and the other parameters stay.
- `Redactor(secrets).clean(text)`: masks every known secret value (also percent-encoded, base64-encoded
  and escaped as in a JSON or Python string), every `Authorization` / `Proxy-Authorization` value
  (keeping its scheme: `Basic`, `Bearer`, `AWS4-HMAC-SHA256`, ...) and free-standing `Basic`/`Bearer`
  token, the value given to a secret-named key (`password`, `client_secret`, `access_token`,
  `X-Amz-Security-Token`, `aws_secret_access_key`, ...) in the forms `key=value`, `key: value`,
  `"key": "value"` (JSON, also escaped inside another string) and `{'key': 'value'}` (Python), anything
  shaped like an AWS secret access key (40 characters of base64 with upper case, lower case and digits),
  and cleans every URL. Key names stay. `basic_token(user, password)` is the base64 form HTTP Basic
  sends: give it to the Redactor along with the password.
- `snippet(text)`: a short, single-line, cleaned excerpt, the most of a server's answer an error
  message may carry.

Without a known secret, some forms cannot be told from ordinary text; these are left as they are:
user info that is a token alone (no `:`) and holds `/ ? #` (`https://to/ken@host/` reads as the path
`/ken@host/`), the part of an unquoted value after whitespace, a quote or `& , ; } ]` (the value ends
there; an unquoted Authorization value ends at a quote, `&`, `}` or the line's end), and a value that is
itself a JSON object or list (`"credentials": {...}`: its own keys are looked at).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote_plus

__all__ = ["SNIPPET_CHARS", "Redactor", "basic_token", "redact_url", "snippet"]

SNIPPET_CHARS = 120
"""The longest excerpt of a server's answer (`snippet`) an error message carries."""

# A part of a key's name that says its value is a secret: `password`, `client_secret`, `access_token`,
# `X-Amz-Security-Token`, `X-Amz-Signature`, `aws_secret_access_key`, `api-key`, `db_pass`, `auth`, `userPwd`...
# An access key *id* (`aws_access_key_id`, `AWSAccessKeyId`) names no secret, nor do `author` or `bypass`, nor
# the letters of a vendor's id (`...18 digits PWDA 10 digits`, `...PASS...`: the short names stand between
# non-alphanumerics, `pwd` at least ends a word).
_SENSITIVE_NAME = (
    r"(?:pass(?:word|wd|phrase)|pwd(?![a-z0-9])|secret|token|credential|signature"
    r"|(?:api|private|session|access(?![-_.]?key[-_.]?id))[-_.]?key"
    r"|(?<![a-z0-9])(?:pass|auth|sig)(?![a-z0-9]))"
)
# In a URL's query and fragment, a bare `key` (`?key=...`) is an API key too, and `Authorization` a
# credential; not so in text, where a `Key` is usually an object's name (`Key: 'recordings/...'`) and
# Authorization values have a rule of their own.
_SENSITIVE_QUERY = re.compile(rf"{_SENSITIVE_NAME}|(?<![a-z])key(?![a-z])|authorization", re.IGNORECASE)
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
# A URL in text: the whole run of scheme characters before `://` (possessive, so a long run of them costs
# linear time), of which the scheme is the part from the first letter on.
_URL_IN_TEXT = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z0-9+.-]*+://[^\s'\"<>`]+")

# What follows a key's name up to its value: an optional closing quote (escaped when the JSON sits inside
# another string: `\"password\": \"...\"`), then `:` or `=` on the same line.
_KEY_END = r"""\\*["']?[ \t]*[:=][ \t]*+"""
# A quoted value (JSON or Python, `b'...'` too), masked up to its closing quote: the same quote after as
# many backslashes as opened it (`\"` inside `"..."` is part of the value); unclosed, to the line's end.
_QUOTED = r"""(?P<open>b?(?P<bs>\\*)(?P<q>["'])){scheme}(?P<body>.*?)(?P<close>(?<!\\)(?P=bs)(?P=q)|$)"""
_SCHEMES = r"(?:basic|bearer|digest|negotiate|ntlm|aws4-hmac-sha256|aws|token|oauth)"
# `Authorization: <scheme> <credentials>` (and Proxy-Authorization, any key naming it): the scheme stays,
# the rest is masked; unquoted, up to the end of the line, a quote, `&` or `}`, so that SigV4's
# `Credential=..., SignedHeaders=..., Signature=...` goes whole.
_AUTH_HEADER = re.compile(
    rf"(?im)(?P<key>(?<![\w.-])(?=[\w.-]*?authorization)[\w.-]*+{_KEY_END})"
    r"(?:" + _QUOTED.format(scheme=rf"(?P<qscheme>{_SCHEMES}[ \t]+)?") + "|"
    rf"(?P<scheme>{_SCHEMES}[ \t]+)?(?P<plain>[^\"'&\r\n}}]+))"
)
# A `Basic` or `Bearer` token anywhere (not "Basic authentication", nor a challenge's `Basic realm=`).
_AUTH_TOKEN = re.compile(r"""(?i)\b(basic|bearer)([ \t]+)(?!auth|realm\b)[^\s"'`<>,;)\]}]+""")
# `name=value`, `name: value`, `"name": "value"`, `'name': 'value'` with a secret name; an unquoted value
# ends at whitespace, a quote or `& , ; } ]`; one that opens an object or a list is not taken, nor one
# masked already (`token=***` of a cleaned URL, before the sentence's `).`).
_VALUE_END = r"""\s"'&,;}\]"""
_PLAIN = rf"(?P<plain>(?![\[{{])(?!\*\*\*[).:!?]*(?:[{_VALUE_END}]|$))[^{_VALUE_END}]+)"
_ASSIGNED = re.compile(
    rf"(?im)(?P<key>(?<![\w.-])(?=[\w.-]*?{_SENSITIVE_NAME})[\w.-]*+{_KEY_END})"
    r"(?:" + _QUOTED.format(scheme="") + "|" + _PLAIN + ")"
)
# 40 characters of base64 with upper case, lower case and a digit, standing alone: an AWS secret key.
_AWS_SECRET = re.compile(
    r"(?<![A-Za-z0-9/+=])(?=[A-Za-z0-9/+]{0,39}[A-Z])(?=[A-Za-z0-9/+]{0,39}[a-z])(?=[A-Za-z0-9/+]{0,39}[0-9])"
    r"[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])"
)
_TRAILING = ").,;:!?]}"
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")  # (split() takes the other line and paragraph separators)
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
    """The URL without user info and with sensitive query and fragment values masked."""
    # Masked first as a parser reads the URL, so that a secret query value holding `:` and `@`
    # (`?password=ab:cd@ef`) is gone before user info is cut up to its `@`, which would show `ef` as the
    # host; then again, as the URL reads without its user info.
    return _mask_parameters(_strip_userinfo(_mask_parameters(url)))


def _mask_parameters(url: str) -> str:
    """Query and fragment as a URL parser splits them (the fragment after the first `#`, the query after
    the first `?` before it), with secret values masked; everything else as it was."""
    rest, hash_mark, fragment = url.partition("#")
    rest, question_mark, query = rest.partition("?")
    query, fragment = _mask_pairs(query), _mask_pairs(fragment)
    if fragment and query.endswith(_MASK):  # `?token=ab#cd`: an unencoded `#` in a secret cut it in two
        fragment = _MASK
    return rest + question_mark + query + hash_mark + fragment


def _mask_pairs(query: str) -> str:
    # `&` separates pairs, and `;` on some servers; a `#` in a fragment is taken as part of a value
    return "".join(_mask_pair(piece) for piece in re.split(r"([&;])", query))


def _mask_pair(pair: str) -> str:
    """`key=value` of a query, with the value masked when the key names a secret (encoding kept)."""
    key, sep, _ = pair.partition("=")
    return f"{key}={_MASK}" if sep and _SENSITIVE_QUERY.search(unquote_plus(key)) else pair


def _redact_url_in_text(match: re.Match[str]) -> str:
    url = match.group(0)
    start = len(url) - len(url.lstrip("0123456789+.-"))  # "1https://..." is "1" and a URL
    core = url.rstrip(_TRAILING)  # "(see https://host/x)." ends the URL before ")."
    return url[:start] + redact_url(core[start:]) + url[len(core) :]


def _mask_value(match: re.Match[str]) -> str:
    """The key (and the scheme of an Authorization value) as it was, the value masked, quotes kept."""
    keep = match.group("key")
    if match.group("open") is None:
        scheme = match.groupdict().get("scheme")
    else:
        keep += match.group("open")
        scheme = match.groupdict().get("qscheme")
    return keep + (scheme or "") + _MASK + (match.group("close") or "")


def _forms(secret: str) -> set[str]:
    raw = secret.encode("utf-8", "surrogateescape")  # as the environment gave it, UTF-8 or not
    return {
        secret,
        quote(raw, safe=""),
        quote_plus(raw, safe=""),
        quote(raw),
        base64.b64encode(raw).decode("ascii").rstrip("="),
        base64.urlsafe_b64encode(raw).decode("ascii").rstrip("="),
        json.dumps(secret)[1:-1],
        repr(secret)[1:-1],
    }


class Redactor:
    """Masks the given secret values and the patterns above, and cleans every URL in a text."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        forms = {f for s in secrets if s and len(s) >= 4 for f in _forms(s)}
        self._secrets = sorted(forms, key=len, reverse=True)

    def clean(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, _MASK)
        text = _URL_IN_TEXT.sub(_redact_url_in_text, text)
        text = _AUTH_HEADER.sub(_mask_value, text)
        text = _AUTH_TOKEN.sub(lambda m: m.group(1) + m.group(2) + _MASK, text)
        text = _ASSIGNED.sub(_mask_value, text)
        return _AWS_SECRET.sub(_MASK, text)


def snippet(text: str, limit: int = SNIPPET_CHARS, redactor: Redactor | None = None) -> str:
    """At most `limit` characters of `text` on one line, cleaned by `redactor` (or one that knows no
    secrets but still masks URLs, tokens and key-shaped values)."""
    one_line = " ".join(_CONTROL.sub(" ", text).split())
    cleaned = (redactor or Redactor()).clean(one_line)
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
