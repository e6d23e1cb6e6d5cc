"""Redaction (cxbackup.core.redact): passwords with URL delimiters, Basic tokens, AWS keys, server answers.

The property tests draw passwords from an alphabet rich in the characters that end a URL's authority
part (`/ # ? @ :`), so a parser alone would leave parts of them in place."""

from __future__ import annotations

import base64
from urllib.parse import quote, quote_plus

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cxbackup.core.http import RetriesExhausted, error_detail
from cxbackup.core.redact import SNIPPET_CHARS, Redactor, basic_token, redact_url, snippet

_DELIMITERS = "/#?@:"
_PASSWORD_CHARS = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789" + _DELIMITERS + "%!$&*()-_=+.,;~[]"
# The host and path of the test URLs share no character with a password that has a delimiter, except
# the delimiters themselves: a password can only "survive" if redaction left it in place.
_HOST = "vendor.example"

passwords = st.text(alphabet=_PASSWORD_CHARS, min_size=8, max_size=40).filter(
    lambda p: any(c in p for c in _DELIMITERS)
)
usernames = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-@", min_size=1, max_size=20)
paths = st.sampled_from(["", "/", "/api/v2/recordings", "/api/v2/me/settings/rcbs?x=1", "#frag", "?a=b"])


def basic_forms(user: str, password: str) -> list[str]:
    return [
        basic_token(user, password),
        base64.b64encode(f"{user}:{password}".encode("utf-8", "surrogateescape")).decode(),
    ]


@settings(max_examples=400, deadline=None)
@given(user=usernames, password=passwords, path=paths, scheme=st.sampled_from(["http", "https"]))
def test_redact_url_removes_any_password_even_with_url_delimiters(
    user: str, password: str, path: str, scheme: str
) -> None:
    url = f"{scheme}://{user}:{password}@{_HOST}{path}"
    assume(password not in f"{scheme}://{_HOST}{path}")
    cleaned = redact_url(url)
    assert password not in cleaned
    assert cleaned.startswith(f"{scheme}://{_HOST}")


@settings(max_examples=300, deadline=None)
@given(user=usernames, password=passwords, path=paths)
def test_a_redactor_that_knows_no_secret_still_removes_them_from_urls_and_headers(
    user: str, password: str, path: str
) -> None:
    token = basic_token(user, password)
    text = (
        f"GET https://{user}:{password}@{_HOST}{path} failed: ProxyError('Cannot connect to proxy.', "
        f"http://{user}:{password}@proxy.internal:3128) headers={{'Authorization': 'Basic {token}'}}; "
        f"retrying with Authorization: Basic {token} and Proxy-Authorization=Basic {token}"
    )
    assume(password not in text.replace(f"{user}:{password}@", "").replace(token, ""))
    cleaned = Redactor().clean(text)
    assert password not in cleaned
    assert token not in cleaned


@settings(max_examples=300, deadline=None)
@given(
    user=usernames,
    # any text the environment can hold: Unicode, and bytes that are not UTF-8 as surrogate escapes
    password=st.text(
        st.characters(exclude_characters="*", exclude_categories=("Cs",))
        | st.integers(0x80, 0xFF).map(lambda b: chr(0xDC00 + b)),
        min_size=4,
        max_size=40,
    ),
    noise=st.text(),
)
def test_a_redactor_that_knows_the_password_masks_it_and_its_basic_and_encoded_forms(
    user: str, password: str, noise: str
) -> None:
    redactor = Redactor([password, basic_token(user, password)])
    raw = password.encode("utf-8", "surrogateescape")
    forms = [password, quote(raw, safe=""), quote_plus(raw), *basic_forms(user, password)]
    text = noise.join(["error:", *forms, "end"])
    cleaned = redactor.clean(text)
    for form in forms:
        assert form not in cleaned


def test_the_basic_token_is_masked_wherever_an_authorization_value_appears() -> None:
    token = basic_token("rcbs@tenant.example", "pa/ss#wo?rd@x:y")
    for text in (
        f"{{'Authorization': 'Basic {token}'}}",
        f'{{"authorization": "Basic {token}"}}',
        f"Authorization: Basic {token}",
        f"sent Basic {token} to the proxy",
        f"bearer {token}",
    ):
        cleaned = Redactor().clean(text)
        assert token not in cleaned and "***" in cleaned, text
    assert Redactor().clean("HTTP Basic authentication failed") == "HTTP Basic authentication failed"


def test_aws_secret_keys_are_masked_by_name_and_by_shape() -> None:
    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    for text in (
        f"aws_secret_access_key={secret}",
        f"AWS_SECRET_ACCESS_KEY: {secret}",
        f'{{"SecretAccessKey": "{secret}"}}',
        f"the key {secret} was rejected",
    ):
        assert secret not in Redactor().clean(text), text
    # what is not a key stays: a SHA-1, a SHA-256, an access key id, a recording id
    keep = (
        "sha1 0123456789abcdef0123456789abcdef01234567 sha256 "
        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef AKIAIOSFODNN7EXAMPLE "
        "recording 000000000000000001LAES0000000001"
    )
    assert Redactor().clean(keep) == keep


def test_snippets_are_short_single_line_and_clean() -> None:
    body = "<html>\n<body>error\x00 at https://u:p@h/x?X-Amz-Signature=abc password=hunter2 " + "z" * 500
    cut = snippet(body)
    assert len(cut) <= SNIPPET_CHARS and "\n" not in cut and "\x00" not in cut
    assert "hunter2" not in cut and "abc" not in cut and "u:p@" not in cut


def test_error_answers_contribute_a_code_and_a_snippet_never_the_body() -> None:
    assert error_detail(b'{"code": "RATE_LIMITED", "message": "slow down"}') == "RATE_LIMITED: slow down"
    assert error_detail(b'{"statusCode": 404, "message": "chat user \'u9\' not found"}') == "chat user 'u9' not found"
    assert error_detail(b"<html>stack trace with secrets</html>") == ""
    assert error_detail(b'{"error": "has spaces so it is not a code"}') == ""
    long = b'{"message": "' + b"m" * 10_000 + b'"}'
    assert len(error_detail(long)) <= SNIPPET_CHARS
    leaky = b'{"message": "bad request Authorization: Basic dXNlcjpzZWNyZXQ= from https://u:pw@h/"}'
    detail = error_detail(leaky)
    assert "dXNlcjpzZWNyZXQ" not in detail and "pw@" not in detail


def test_a_transport_failure_quoted_in_retries_exhausted_is_redacted_and_bounded() -> None:
    exc = RetriesExhausted("https://h/x", 3, "ProxyError: http://user:pa/ss@proxy:3128 " + "x" * 1000)
    assert "pa/ss" not in str(exc) and len(exc.last) <= 300


def test_urls_in_text_keep_their_encoding_and_trailing_punctuation() -> None:
    text = "no page (https://h/api/v2/recordings?startTimeRange=1,2&limit=100&offset=0). Then https://h/x?a=%2F."
    assert Redactor().clean(text) == text
    assert redact_url("https://h/x?q=a%20b&X-Amz-Signature=s%2Fg") == "https://h/x?q=a%20b&X-Amz-Signature=***"
