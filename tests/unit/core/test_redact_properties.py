"""Redaction as a property: a generated secret, planted in every form a log line, an Event or status message
or an exception's text can carry it, never comes out of `Redactor.clean`, whole or in part.

Secrets are random strings of letters, digits and the characters that end or split a URL's parts
(`/ # ? @ : % + =`), or have the shape of base64 or hex keys and signatures; in JSON and Python literals
also quotes, backslashes, spaces and `, ; & { } [ ]`. They are planted in URL user info (any scheme,
`user:password`, `:password`, a token alone), in query and fragment parameters with secret-ish names (in
any letter case), in `Authorization` / `Proxy-Authorization` headers (`Basic`, `Bearer`,
`AWS4-HMAC-SHA256 ... Signature=`), in `X-Amz-Security-Token`, as `key=value`, `key: value`, in JSON
(nested, and as a string inside another JSON string) and in the repr of Python dicts; each once with a
Redactor that knows the secret (as the worker's does) and once with one that knows nothing. A secret
"survives" when any 4 characters of it in a row (or the whole, when shorter), as planted, are in the
cleaned text but were not in the text around it. What is not a secret stays: host, path, the other
parameters, key names, and whole ordinary messages (recording ids, timestamps, phone numbers).

Mutation testing (mutmut, see the development guide) runs these tests and `test_redact.py` against
`cxbackup/core/redact.py`; the mutants that survive, and why, are listed there.
"""

from __future__ import annotations

import base64
import json
import string
from collections.abc import Callable
from datetime import UTC, datetime
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from cxbackup.core.redact import Redactor, basic_token, redact_url, snippet

EXAMPLES = settings(max_examples=150, deadline=None)

_URL_SPECIALS = "/#?@:%+="
_LITERAL_SPECIALS = "\"'\\ ,;&{}[]"
_HOSTS = ["vendor.example", "s3.eu-west-1.amazonaws.com", "db.internal:5432", "10.0.0.7:6379", "[fd00::1]:8443"]
_PATHS = ["", "/", "/bucket/recordings/2026/rec-01.mp3", "/api/v2/recordings", "/db"]
_SCHEMES = ["http", "https", "s3", "ftp", "sftp", "postgres", "postgresql", "redis", "rediss", "mongodb+srv", "git+ssh"]
_USERS = st.text(alphabet=string.ascii_lowercase + string.digits + "._-", min_size=1, max_size=12)


def _shaped(alphabet: str) -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(alphabet=alphabet, min_size=8, max_size=40),
        st.binary(min_size=6, max_size=40).map(lambda b: base64.b64encode(b).decode()),
        st.binary(min_size=6, max_size=40).map(lambda b: base64.urlsafe_b64encode(b).decode().rstrip("=")),
        st.binary(min_size=4, max_size=32).map(bytes.hex),
    )


# For unquoted forms: the characters a value can hold without ending it.
secrets = _shaped(string.ascii_letters + string.digits + _URL_SPECIALS)
# For JSON and Python literals, where the value is quoted (and escaped).
literal_secrets = _shaped(string.ascii_letters + string.digits + _URL_SPECIALS + _LITERAL_SPECIALS)


def cased(name: str) -> st.SearchStrategy[str]:
    """`name` as written, lower, upper, or in a random mix of cases."""
    mixed = st.lists(st.booleans(), min_size=len(name), max_size=len(name)).map(
        lambda flips: "".join(c.upper() if f else c.lower() for c, f in zip(name, flips, strict=True))
    )
    return st.sampled_from([name, name.lower(), name.upper()]) | mixed


def names(choices: list[str]) -> st.SearchStrategy[str]:
    return st.sampled_from(choices).flatmap(cased)


QUERY_KEYS = names(
    [
        "password",
        "passwd",
        "client_secret",
        "access_token",
        "refresh_token",
        "id_token",
        "token",
        "X-Amz-Signature",
        "X-Amz-Credential",
        "X-Amz-Security-Token",
        "Signature",
        "sig",
        "api_key",
        "apikey",
        "key",
        "auth",
        "Authorization",
        "secret",
    ]
)
TEXT_KEYS = names(
    [
        "password",
        "passwd",
        "passphrase",
        "PGPASSWORD",
        "db_pass",
        "pwd",
        "client_secret",
        "clientSecret",
        "aws_secret_access_key",
        "SecretAccessKey",
        "AWS_SESSION_TOKEN",
        "access_token",
        "accessToken",
        "refresh_token",
        "X-Amz-Security-Token",
        "X-Amz-Signature",
        "X-Amz-Credential",
        "Credential",
        "credentials",
        "api_key",
        "api-key",
        "apiKey",
        "private_key",
        "access_key",
        "session_key",
        "secret",
        "token",
        "signature",
        "sig",
        "auth",
        "x-auth",
        "pass",
    ]
)


def forms(secret: str, user: str = "u") -> list[str]:
    """How a secret shows in text: as it is, percent-encoded, escaped in a JSON or Python string, and
    base64 of itself and of `user:secret` (HTTP Basic)."""
    raw = secret.encode("utf-8", "surrogateescape")
    return [
        secret,
        quote(raw, safe=""),
        quote_plus(raw, safe=""),
        quote(raw),
        base64.b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
        base64.urlsafe_b64encode(raw).decode(),
        base64.urlsafe_b64encode(raw).decode().rstrip("="),
        json.dumps(secret)[1:-1],
        repr(secret)[1:-1],
        basic_token(user, secret),
    ]


def survivors(planted: list[str], cleaned: str, around: str, width: int = 4) -> list[str]:
    """The parts (`width` characters in a row, or the whole when shorter) of the planted strings that are
    in `cleaned` but not in `around`, the same text with nothing planted."""
    parts = set()
    for shown in planted:
        if len(shown) <= width:
            parts.add(shown)
        else:
            parts.update(shown[i : i + width] for i in range(len(shown) - width + 1))
    return sorted(p for p in parts if p in cleaned and p not in around)


def check(
    build: Callable[[str], str], secret: str, planted: list[str], known: bool, user: str = "u"
) -> tuple[str, str]:
    """Cleans `build(secret)` with a Redactor that knows the secret (and its Basic token) or knows
    nothing; fails when a part of a planted string survives. Returns the text and its cleaned form."""
    around = build("")
    text = build(secret)
    assume(secret not in around)
    redactor = Redactor([secret, basic_token(user, secret)]) if known else Redactor()
    cleaned = redactor.clean(text)
    left = survivors(planted, cleaned, around)
    assert not left, f"{left} survived in {cleaned!r} (from {text!r})"
    return text, cleaned


# ---- URLs -------------------------------------------------------------------------------------------------


@EXAMPLES
@given(
    secret=secrets,
    user=_USERS,
    scheme=st.sampled_from(_SCHEMES),
    host=st.sampled_from(_HOSTS),
    path=st.sampled_from(_PATHS),
    shape=st.sampled_from(["user:password", ":password", "token"]),
    context=st.sampled_from(["GET {} failed", "({}).", "'{}'", '{{"endpoint": "{}"}}', "<{}>", "{}"]),
    known=st.booleans(),
)
def test_user_info_of_any_scheme_goes_and_host_and_path_stay(
    secret: str, user: str, scheme: str, host: str, path: str, shape: str, context: str, known: bool
) -> None:
    userinfo = {"user:password": f"{user}:{{}}", ":password": ":{}", "token": "{}"}[shape]
    if shape == "token" and not known:
        # A token alone holding `/ ? #` reads as a path (`https://to/ken@host/`): only a known one goes.
        assume(not any(c in secret for c in "/?#"))
    url = f"{scheme}://{userinfo}@{host}{path}"
    _, cleaned = check(lambda s: context.format(url.format(s)), secret, [secret], known, user)
    assert f"{scheme}://{host}{path}" in cleaned
    assert "@" not in cleaned


@EXAMPLES
@given(
    secret=secrets,
    key=QUERY_KEYS,
    encode=st.sampled_from([lambda s: quote(s, safe=""), quote_plus, lambda s: s]),
    where=st.sampled_from(["?", "#"]),
    before=st.sampled_from(["", "limit=100&", "prefix=recordings%2F2026&"]),
    after=st.sampled_from(["", "&offset=0", "&X-Amz-Date=20261130T000000Z"]),
    known=st.booleans(),
)
def test_query_and_fragment_values_with_secret_names_are_masked(
    secret: str, key: str, encode: Callable[[str], str], where: str, before: str, after: str, known: bool
) -> None:
    value = encode(secret)
    url = "https://vendor.example/api/v2/recordings" + where + before + key + "={}" + after
    _, cleaned = check(lambda s: f"GET {url.format(encode(s) if s else '')} failed", secret, [value], known)
    if value == quote(secret, safe=""):  # encoded as a client sends it: nothing else changes
        assert f"https://vendor.example/api/v2/recordings{where}{before}{key}=" in cleaned
        assert after in cleaned
    assert redact_url(url.format(value)).startswith("https://vendor.example/")


# ---- headers ----------------------------------------------------------------------------------------------

AUTH_NAMES = names(["Authorization", "Proxy-Authorization"])
_AKID = "AKIAIOSFODNN7EXAMPLE"


def _sigv4(signature: str) -> str:
    return (
        f"AWS4-HMAC-SHA256 Credential={_AKID}/20261130/eu-west-1/s3/aws4_request, "
        f"SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}"
    )


SCHEMES: dict[str, Callable[[str, str], str]] = {
    "Basic": lambda user, s: f"Basic {basic_token(user, s)}" if s else "Basic ",
    "Bearer": lambda _u, s: f"Bearer {s}",
    "AWS4-HMAC-SHA256": lambda _u, s: _sigv4(s),
    "none": lambda _u, s: s,
}


def _header_block(name: str, value: str) -> str:
    return f"Host: vendor.example\r\n{name}: {value}\r\nX-Amz-Date: 20261130T000000Z\r\n"


def _header_dict(name: str, value: str) -> str:
    return repr({"Host": "vendor.example", name: value, "Accept": "application/json"})


def _header_bytes(name: str, value: str) -> str:
    return repr({"Host": b"vendor.example", name: value.encode(), "Accept": b"*/*"})


def _header_json(name: str, value: str) -> str:
    return json.dumps({"request": {"headers": {"Host": "vendor.example", name: value}}})


def _header_prose(name: str, value: str) -> str:
    return f"retrying GET https://vendor.example/x with {name}={value}"


PRESENTATIONS = [_header_block, _header_dict, _header_bytes, _header_json, _header_prose]


@EXAMPLES
@given(
    secret=secrets,
    user=_USERS,
    name=AUTH_NAMES,
    scheme=st.sampled_from(sorted(SCHEMES)),
    present=st.sampled_from(PRESENTATIONS),
    known=st.booleans(),
)
def test_authorization_values_are_masked_with_their_scheme_kept(
    secret: str,
    user: str,
    name: str,
    scheme: str,
    present: Callable[[str, str], str],
    known: bool,
) -> None:
    value = SCHEMES[scheme]
    planted = [secret, basic_token(user, secret)]
    _, cleaned = check(lambda s: present(name, value(user, s)), secret, planted, known, user)
    assert name in cleaned
    if scheme != "none" and not known:
        assert f"{scheme} ***" in cleaned
    if present is not _header_prose:
        assert "vendor.example" in cleaned


@EXAMPLES
@given(
    secret=secrets,
    name=names(["X-Amz-Security-Token", "X-Amz-Signature", "X-Auth-Token", "X-Api-Key"]),
    present=st.sampled_from(PRESENTATIONS),
    known=st.booleans(),
)
def test_secret_headers_are_masked(secret: str, name: str, present: Callable[[str, str], str], known: bool) -> None:
    _, cleaned = check(lambda s: present(name, s), secret, [secret], known)
    assert name in cleaned


@EXAMPLES
@given(token=secrets, word=st.sampled_from(["Basic", "basic", "Bearer", "BEARER"]), known=st.booleans())
def test_a_basic_or_bearer_token_is_masked_anywhere(token: str, word: str, known: bool) -> None:
    assume(not token.lower().startswith(("auth", "realm")))
    check(lambda s: f"the proxy refused {word} {s} (HTTP 407)", token, [token], known)


# ---- key=value, key: value, JSON, Python ------------------------------------------------------------------


@EXAMPLES
@given(
    secret=secrets,
    key=TEXT_KEYS,
    form=st.sampled_from(["{k}={v}", "{k} = {v}", "{k}: {v}", "{k}:{v}", "--{k}={v}", "{k}={v}&grant_type=x"]),
    context=st.sampled_from(["{}", "login failed ({}) for user bob", "config: {}\nnext: line", "a {} b"]),
    known=st.booleans(),
)
def test_values_of_secret_keys_are_masked_and_the_keys_stay(
    secret: str, key: str, form: str, context: str, known: bool
) -> None:
    _, cleaned = check(lambda s: context.format(form.format(k=key, v=s)), secret, [secret], known)
    assert key in cleaned
    if "next" in context:
        assert "next: line" in cleaned


def _nested(key: str, secret: str, user: str) -> dict[str, object]:
    return {
        "error": {"code": "Forbidden", "request": {"url": "https://vendor.example/x", key: secret}},
        "user": user,
        "items": [1, {"note": 'it\'s "fine"'}],
    }


LITERALS: dict[str, Callable[[dict[str, object]], str]] = {
    "json": json.dumps,
    "json, compact": lambda o: json.dumps(o, separators=(",", ":")),
    "json in a json string": lambda o: json.dumps({"message": json.dumps(o)}),
    "json in a python string": lambda o: repr(json.dumps(o)),
    "python dict": repr,
    "exception": lambda o: str(ValueError(o)),
    "python bytes": lambda o: repr({k: (v.encode() if isinstance(v, str) else v) for k, v in o.items()}),
}


@EXAMPLES
@given(
    secret=literal_secrets,
    key=TEXT_KEYS,
    user=_USERS,
    literal=st.sampled_from(sorted(LITERALS)),
    known=st.booleans(),
)
def test_secret_values_in_json_and_python_literals_are_masked(
    secret: str, key: str, user: str, literal: str, known: bool
) -> None:
    def build(s: str) -> str:
        obj = _nested(key, s, user)
        if literal == "python bytes":
            obj = {key: s, "user": user}
        return LITERALS[literal](obj)

    once, twice = json.dumps(secret)[1:-1], json.dumps(json.dumps(secret)[1:-1])[1:-1]
    planted = [secret, once, twice, repr(secret)[1:-1], repr(once)[1:-1], repr(secret.encode())[2:-1]]
    _, cleaned = check(build, secret, planted, known, user)
    assert key in cleaned and user in cleaned
    if literal != "python bytes":
        assert "vendor.example/x" in cleaned


# ---- known secrets ----------------------------------------------------------------------------------------


@EXAMPLES
@given(
    secret=st.text(min_size=4, max_size=30).filter(lambda s: "*" not in s),
    user=_USERS,
    noise=st.text(alphabet=string.ascii_letters + string.digits + " .,:;/-_=", max_size=12),
)
def test_a_known_secret_goes_in_every_encoding_the_redactor_promises(secret: str, user: str, noise: str) -> None:
    shown = forms(secret, user)
    text = noise.join(["error:", *shown, "end"])
    cleaned = Redactor([secret, basic_token(user, secret)]).clean(text)
    assert [f for f in shown if f in cleaned] == []
    assert cleaned.startswith("error:") and cleaned.endswith("end")


@EXAMPLES
@given(secret=st.text(max_size=3).filter(lambda s: "*" not in s))
def test_secrets_shorter_than_four_characters_are_not_masked_as_such(secret: str) -> None:
    # too short to tell from ordinary text: masking "abc" everywhere would destroy messages
    text = f"recording {secret} done"
    assert Redactor([secret, None, ""]).clean(text) == text


# ---- what is not a secret stays ---------------------------------------------------------------------------

# the vendor's recording ids: 32 characters (a 40-character word of base64 letters with upper case,
# lower case and digits would take the shape of an AWS secret key)
recording_ids = st.from_regex(r"[0-9]{18}[A-Z]{4}[0-9]{10}", fullmatch=True)
timestamps = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)).map(
    lambda d: d.replace(tzinfo=UTC).isoformat()
)
phones = st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True)
hexes = st.binary(min_size=20, max_size=32).map(bytes.hex)


@EXAMPLES
@given(rec=recording_ids, at=timestamps, phone=phones, digest=hexes, n=st.integers(0, 10**6))
def test_ordinary_messages_come_out_unchanged(rec: str, at: str, phone: str, digest: str, n: int) -> None:
    messages = [
        f"recording {rec} of {phone} at {at}: fetched {n} bytes, sha256 {digest}",
        f"GET https://vendor.example/api/v2/recordings?startTimeRange={n},{n + 1}&limit=100&offset=0 -> 429",
        f"cannot read s3://backups/recordings/{at[:10]}/{rec}.mp3: NoSuchKey: Key: 'recordings/{rec}.mp3'",
        f"listing https://s3.example/b?list-type=2&max-keys=1000&prefix=rec%2F{n} failed (HTTP 503).",
        f"aws_access_key_id={_AKID} AWSAccessKeyId={_AKID} author: Jane bypass=1 keyring: {n} keys",
        f'HTTP Basic authentication failed; WWW-Authenticate: Basic realm="vendor" at {at}',
        f'{{"code": "RATE_LIMITED", "message": "slow down", "retryAfter": {n}, "phone": "{phone}"}}',
        f"{{'id': '{rec}', 'startTime': '{at}', 'ani': '{phone}', 'Key': 'recordings/{rec}'}}",
        f"password=*** for user bob (see https://vendor.example/x?token=***). Then {rec}.",
        f"GET https://vendor.example/api/v2/users/bob@example.com/messages?limit={n} -> 404",
        f"HTTP Basic auth failed for the torchbearer relay at {at}; access-key-id=x access.key.id=y",
        f"https://vendor.example/x?monkey={n}&keys=2&keyring=3 ok",
    ]
    for message in messages:
        assert Redactor().clean(message) == message
        assert snippet(message, 10_000) == message


def test_masks_keep_the_structure_around_them() -> None:
    # exact outputs: the key, quotes, scheme and the text around a masked value are as they were
    sigv4 = f"Authorization: {_sigv4('fe5f80f77d5fa3beca038a248ff027d0445342fe2855ddc963176630326f1024')}"
    cases = {
        sigv4: "Authorization: AWS4-HMAC-SHA256 ***",
        "{'Authorization': b'Bearer a/b#c', 'Host': 'h'}": "{'Authorization': b'Bearer ***', 'Host': 'h'}",
        '{"password": "a\\"b", "user": "bob"}': '{"password": "***", "user": "bob"}',
        '{"msg": "{\\"token\\": \\"x\\\\\\"y\\", \\"n\\": 1}"}': '{"msg": "{\\"token\\": \\"***\\", \\"n\\": 1}"}',
        "{'password': 'it\\'s', 'user': 'bob'}": "{'password': '***', 'user': 'bob'}",
        'password: "unclosed, user: bob': 'password: "***',
        "token=abc def; secret=x, y": "token=*** def; secret=***, y",
        "client_secret: z&grant=1": "client_secret: ***&grant=1",
        '"credentials": {"user": "bob", "password": "pw"}': '"credentials": {"user": "bob", "password": "***"}',
        "(see https://h/x?token=1). password=p.": "(see https://h/x?token=***). password=***",
        "{Authorization: Bearer x} (Bearer y) [Basic z]": "{Authorization: Bearer ***} (Bearer ***) [Basic ***]",
        "Authorization: Basic x\nHost: h": "Authorization: Basic ***\nHost: h",
        "Authorization: Digest": "Authorization: ***",
        "1https://u:p@h/x _ftp://a:b@c/ 123://u:p@h": "1https://h/x _ftp://c/ 123://u:p@h",
    }
    for text, expected in cases.items():
        assert Redactor().clean(text) == expected, text
    assert redact_url("https://h/x?token=ab#cd") == "https://h/x?token=***#***"
    assert redact_url("https://h/x?limit=1#frag") == "https://h/x?limit=1#frag"
    assert redact_url("https://h/x#access_token=a&state=2") == "https://h/x#access_token=***&state=2"
    assert redact_url("https://u:p@[::1/x?a=b&") == "https://[::1/x?a=b&"  # no parser: nothing to refuse


KEY = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"  # the shape of an AWS secret access key

# Exact outputs, for what a property cannot pin down: where a masked value ends, what stays around it.
EXACT = {
    # Authorization: the scheme stays, the value to the line's end, a quote, `&` or `}` goes
    "Authorization: Basic x\r\nHost: h": "Authorization: Basic ***\r\nHost: h",
    "Authorization:\tBearer\tx y": "Authorization:\tBearer\t***",
    "Authorization: Negotiate a": "Authorization: Negotiate ***",
    "Authorization: NTLM a": "Authorization: NTLM ***",
    "Authorization: Digest a": "Authorization: Digest ***",
    "Authorization: AWS AKIA:sig": "Authorization: AWS ***",
    "Authorization: token a": "Authorization: token ***",
    "Authorization: OAuth a": "Authorization: OAuth ***",
    "Authorization: a b": "Authorization: ***",
    "{Authorization: }": "{Authorization: }",
    "?authorization=a&b=1": "?authorization=***&b=1",
    "x.Authorization: a": "x.Authorization: ***",
    "'Authorization': 'Digest a b'": "'Authorization': 'Digest ***'",
    # free-standing tokens end at whitespace, quotes, `< > , ; ) ] }`
    "Bearer\tx": "Bearer\t***",
    "(Bearer a)[Basic b]{Bearer c}<Bearer d>": "(Bearer ***)[Basic ***]{Bearer ***}<Bearer ***>",
    "`Bearer e` 'Basic f' \"Basic g\"": "`Bearer ***` 'Basic ***' \"Basic ***\"",
    "Bearer h,i Bearer j;k": "Bearer ***,i Bearer ***;k",
    "Basic realmless": "Basic ***",
    "'Authorization': 'Bearer\tx'": "'Authorization': 'Bearer\t***'",
    "'Authorization': 'Bearer  y'": "'Authorization': 'Bearer  ***'",
    "Authorization: Bearer  x": "Authorization: Bearer  ***",
    "Authorization: Basicx": "Authorization: ***",
    "'Authorization': 'Basicx'": "'Authorization': '***'",
    "Authorization: Basic a\"b Authorization: Basic c'd": "Authorization: Basic ***\"b Authorization: Basic ***'d",
    "Bearer  x Bearer a<b": "Bearer  *** Bearer ***<b",
    "Basicbond Bearer ,x": "Basicbond Bearer ,x",
    "token=***.": "token=***.",
    "password=&x password=": "password=&x password=",
    "x://u:p@h/ https://a/x<ftp://u:p@b/ https://a/x>ftp://u:p@b/": "x://h/ https://a/x<ftp://b/ https://a/x>ftp://b/",
    "https://h/x?token=a?": "https://h/x?token=***?",
    f"X{KEY} 9{KEY}": f"X{KEY} 9{KEY}",
    "k " + "/+" * 10 + "aB3" + "x" * 17 + " k " + "+/" * 10 + "Ab3" + "x" * 17 + " k": "k *** k *** k",
    "k " + "/+" * 10 + "3aB" + "x" * 17 + " k": "k *** k",
    # key=value: the key stays, the value ends at whitespace, a quote or `& , ; } ]`
    'password=a"b': 'password=***"b',
    "password=a'b": "password=***'b",
    "password=a&b=1": "password=***&b=1",
    "password=a,b password=a;b": "password=***,b password=***;b",
    "password=a}b password=a]b": "password=***}b password=***]b",
    "password\t=\tx": "password\t=\t***",
    "password=[a] token={b}": "password=[a] token={b}",
    '{"password": "", "user": "bob"}': '{"password": "***", "user": "bob"}',
    "db.password=a x-api-key: b my.api.key=c session-key=d session.key=e pass=f auth=g sig=h": (
        "db.password=*** x-api-key: *** my.api.key=*** session-key=*** session.key=*** pass=*** auth=*** sig=***"
    ),
    "access-key=a access.key=b": "access-key=*** access.key=***",
    # a value masked already stays as it is, with the sentence's punctuation after it
    "token=***). token=***, token=***: token=***! token=***? token=***": (
        "token=***). token=***, token=***: token=***! token=***? token=***"
    ),
    "token=***\" token=***' token=***& token=***; token=***} token=***]": (
        "token=***\" token=***' token=***& token=***; token=***} token=***]"
    ),
    "token=***x": "token=***",
    # URLs end at whitespace, quotes and `< > backtick`; trailing punctuation is not part of them
    "'https://a/x','ftp://u:p@b/' \"https://c/x\",\"ftp://u:p@d/\"": "'https://a/x','ftp://b/' \"https://c/x\",\"ftp://d/\"",
    "<https://e/x>,<ftp://u:p@f/> `https://g/x`,`ftp://u:p@h/`": "<https://e/x>,<ftp://f/> `https://g/x`,`ftp://h/`",
    "https://u:p@h/x) https://u:p@h/x. https://u:p@h/x, https://u:p@h/x; https://u:p@h/x: https://u:p@h/x!": (
        "https://h/x) https://h/x. https://h/x, https://h/x; https://h/x: https://h/x!"
    ),
    "https://u:p@h/x? https://u:p@h/x] https://u:p@h/x}": "https://h/x? https://h/x] https://h/x}",
    "HTTPS://U:P@H/x Z9+.-a://u:p@h/": "HTTPS://H/x Z9+.-a://h/",
    # the shape of an AWS secret key: 40 characters of base64 with upper case, lower case and digits, alone
    f"k {KEY} k": "k *** k",
    f"x{KEY} {KEY}x /{KEY} +{KEY} ={KEY} {KEY}= {KEY}/ {KEY}+": (
        f"x{KEY} {KEY}x /{KEY} +{KEY} ={KEY} {KEY}= {KEY}/ {KEY}+"
    ),
    "k " + "a1" * 20 + " " + "A1" * 20 + " " + "aA" * 20 + " k": "k "
    + "a1" * 20
    + " "
    + "A1" * 20
    + " "
    + "aA" * 20
    + " k",
    "k " + "9" * 38 + "aZ k " + "aZ" + "9" * 38 + " k " + "/+" * 19 + "a1 k": "k *** k *** k " + "/+" * 19 + "a1 k",
    "k " + "Aa/" * 13 + "1 k " + "aZ+" * 13 + "1 k": "k *** k *** k",
}


def test_exact_outputs() -> None:
    for text, expected in EXACT.items():
        assert Redactor().clean(text) == expected, text
    for url, expected in {
        "https://@host/x": "https://host/x",
        "https://to@ken@host/x": "https://host/x",
        "https://h/x?token=a?b=1": "https://h/x?token=***",
        "https://h/x#token=a#b=1": "https://h/x#token=***",
        "https://h/x?token=ab=cd": "https://h/x?token=***",
        "https://h/x#token=2;b=3": "https://h/x#token=***;b=3",
    }.items():
        assert redact_url(url) == expected, url


def test_known_secrets_longest_first_and_in_every_escape() -> None:
    assert Redactor(["bcde", "abcdef"]).clean("(abcdef)") == "(***)"
    tricky = "a b/c'd\"e\\f"
    redactor = Redactor([tricky])
    for shown in (
        quote(tricky, safe=""),
        quote_plus(tricky, safe=""),
        quote(tricky),
        json.dumps(tricky)[1:-1],
        repr(tricky)[1:-1],
    ):
        assert redactor.clean(f"({shown})") == "(***)", shown
    assert base64.b64encode(b"secreW") == b"c2VjcmVX"  # ends in "X": the padding is all that may go
    assert Redactor(["secreW"]).clean("(c2VjcmVX)") == "(***)"
    # base64 and its URL-safe form differ where base64 has `+` or `/`
    assert Redactor(["~~~secreW"]).clean("(fn5+c2VjcmVX) (fn5-c2VjcmVX)") == "(***) (***)"


def test_snippets_exactly() -> None:
    assert snippet("a\x00b\nc\x85d\u2028e\u2029f\x7fg  h") == "a b c d e f g h"
    assert snippet("x" * 10, 10) == "x" * 10
    assert snippet("x" * 11, 10) == "x" * 9 + "…"


@pytest.mark.parametrize("letters", ["PWDA", "XPWD", "PASS", "AUTH", "SIGN", "TOKE"])
def test_a_recording_id_whose_letters_spell_a_secrets_name_is_not_taken_for_one(letters: str) -> None:
    # a vendor id is 18 digits, 4 capitals, 10 digits; in a path before `:` it reads like `name: value`
    rec = f"{'0' * 18}{letters}{'0' * 10}"
    message = f"cannot read s3://backups/recordings/2026-12-08/{rec}.mp3: NoSuchKey: Key: 'recordings/{rec}.mp3'"
    assert Redactor().clean(message) == message
    assert Redactor().clean(f"{rec}: done") == f"{rec}: done"
    # while the names themselves still are
    assert Redactor().clean("userPwd: hunter22 db_pass=hunter22 auth: hunter22") == (
        "userPwd: *** db_pass=*** auth: ***"
    )
