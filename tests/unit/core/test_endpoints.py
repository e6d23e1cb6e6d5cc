"""Endpoint URLs: the operator's check and the worker's connection read a URL the same way, so a URL the
operator accepts reaches only a host on the installer's allowlist (cxbackup.core.endpoints,
controller.references.endpoint_problem, core.http.Urllib3Transport).

The property tests build hostile URLs out of pieces (user info, backslashes, '@', '#', '?', percent-encoding,
tabs and newlines, IPv6 brackets, trailing dots, upper case, ports, random noise); the last one sends every
URL through the worker's real transport with two loopback servers listening, an "allowed" one and an
"attacker" one, and checks that the attacker receives nothing.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import pytest
import urllib3
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cxbackup.controller.references import EndpointPolicy, endpoint_problem
from cxbackup.controller.settings import load_settings
from cxbackup.core.endpoints import (
    ENDPOINT_URL_PATTERN,
    EndpointError,
    HostAllowlist,
    parse_endpoint,
    parse_request_url,
)
from cxbackup.core.errors import ConfigurationError
from cxbackup.core.http import RefusedUrl, TransportError, Urllib3Transport

ALLOWED = "allowed.example"
POLICY = EndpointPolicy(allow_plain_http=True, vendor_hosts=(ALLOWED, "*.vendor.example"))

# -- the pieces hostile URLs are made of ----------------------------------------------------------------------
SCHEMES = ["https://", "http://", "HTTPS://", "https:/", "https:\\\\", "//", "https:///"]
USERINFO = ["", "user@", "user:pw@", f"{ALLOWED}@", f"{ALLOWED}:443@", "a%40b@", "@", ":@"]
HOSTS = [
    ALLOWED, "evil.example", "ALLOWED.Example", f"{ALLOWED}.", "api.vendor.example", "API.VENDOR.EXAMPLE",
    "vendor.example", "evilvendor.example", "api.vendor.example.evil.example", "127.0.0.1", "127.1", "0x7f.1",
    "2130706433", "[::1]", "[::ffff:127.0.0.1]", "[fe80::1%25eth0]", "allowed%2eexample", "allowed.example%00",
    "xn--tda.example", "ü.example", "allowed.example\t", "",
]  # fmt: skip
SEPARATORS = [
    "", "/", "@", "\\", "\\@", "\\\\", "#", "#@", "?", "?@", "%40", "%5C", "%2F", "\t", "\n", "\r\n", " ",
    ":", ";", ".", "/@", "/\\", "%",
]  # fmt: skip
PORTS = ["", ":443", ":8443", ":0", ":", ":65536", ":0443", ":99999", ": 443"]
NOISE = st.text(alphabet=st.sampled_from("aZ09./-_~:@\\#?%&=+ \t\n[]ü"), max_size=12)


@st.composite
def hostile_urls(draw: st.DrawFn) -> str:
    """A URL that may hide a second host behind a separator some parser stops at and another does not."""
    return "".join(
        [
            draw(st.sampled_from(SCHEMES)),
            draw(st.sampled_from(USERINFO)),
            draw(st.sampled_from(HOSTS)),
            draw(st.sampled_from(PORTS)),
            draw(st.sampled_from(SEPARATORS)),
            draw(st.sampled_from(HOSTS)),
            draw(st.sampled_from(PORTS)),
            draw(st.sampled_from(["", "/", "/api/v2", "/api/v2/"])),
            draw(NOISE),
        ]
    )


def _connects_to(url: str) -> tuple[str, int]:
    """The host and port urllib3's pool manager would open a connection to for `url`."""
    pool = urllib3.PoolManager().connection_from_url(url)
    return str(pool.host), int(pool.port or 0)


EXPLOITS = [
    "https://evil.example\\@allowed.example/",  # urllib.parse: allowed.example; urllib3: evil.example
    "https://evil.example\\\\@allowed.example/api/v2",
    "http://evil.example:8443\\@allowed.example/",
    "https://allowed.example@evil.example/",
    "https://evil.example#@allowed.example/",
    "https://evil.example?@allowed.example/",
    "https://evil.example%40allowed.example/",
    "https://evil.example\t@allowed.example/",
]


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(hostile_urls())
@example("https://evil.example\\@allowed.example/")
@example("https://allowed.example\\@evil.example/")
def test_an_accepted_url_is_read_alike_by_the_check_by_urllib3_and_by_urllib_parse(url: str) -> None:
    try:
        endpoint = parse_endpoint(url)
    except EndpointError as exc:
        assert str(exc) and url not in str(exc)  # a reason, never the URL itself
        return
    parsed = urllib3.util.parse_url(url)
    assert (parsed.host, parsed.port, parsed.auth, parsed.fragment) == (endpoint.host, endpoint.port, None, None)
    assert _connects_to(url)[0] == endpoint.hostname
    split = urlsplit(url)  # the parser the operator used before: it agrees too
    assert (split.hostname, split.port, split.username) == (endpoint.hostname, endpoint.port, None)
    assert re.fullmatch(ENDPOINT_URL_PATTERN, url), "the CRDs' pattern admits what the operator accepts"
    assert parse_request_url(url) == endpoint  # the worker's connection-time check agrees


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(hostile_urls())
@example("https://evil.example\\@allowed.example/")
@example("http://evil.example:8443\\@api.vendor.example/api/v2")
def test_a_vendor_url_the_operator_accepts_connects_only_to_an_allowed_host(url: str) -> None:
    if endpoint_problem("spec.source.gwsUriPrefix", url, POLICY, vendor=True) is not None:
        return
    host, _ = _connects_to(url)
    assert host == ALLOWED or host.endswith(".vendor.example"), (url, host)


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(hostile_urls())
def test_the_crd_pattern_and_the_operators_check_agree(url: str) -> None:
    """What the API server admits (the pattern; the CEL rules only name characters it already refuses), the
    operator accepts, but for a port out of range or a bracketed host that is no IPv6 address."""
    matched = re.fullmatch(ENDPOINT_URL_PATTERN, url) is not None
    try:
        parse_endpoint(url)
    except EndpointError as exc:
        assert not matched or re.search("port|IPv6|IPv4", str(exc)), (url, str(exc))
    else:
        assert matched


@pytest.mark.parametrize("url", EXPLOITS)
def test_urls_that_hide_a_second_host_are_refused_by_the_operator_and_by_the_worker(url: str) -> None:
    problem = endpoint_problem("spec.source.gwsUriPrefix", url, POLICY, vendor=True)
    assert problem is not None and problem.message.startswith("spec.source.gwsUriPrefix: the URL ")
    assert problem.reason == "InvalidSpec" and problem.invalid
    with pytest.raises(RefusedUrl, match="refused to connect"):
        Urllib3Transport().get(url, {"Authorization": "Basic c2VjcmV0"})


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("https://u:p@vendor.example/", "user info"),
        ("https://vendor.example\\api", "backslash"),
        ("https://vendor.example/api#x", "fragment"),
        ("https://vendor.example/api?x=1", "query"),
        ("https://vendor.example/a%2Fb", "percent-encoding"),
        ("https://vendor.example/a b", "whitespace"),
        ("https://vendor.example/a\nb", "whitespace"),
        ("https://vendör.example/", "non-ASCII"),
        ("https://vendor.example./", "is not of the form"),
        ("https://0x7f.1/", "is not of the form"),
        ("https://2130706433/", "is not of the form"),
        ("https://vendor.example:/", "is not of the form"),
        ("https://vendor.example:0/", "port 0"),
        ("https://vendor.example:65536/", "port 65536"),
        ("https://[::ffff:127.0.0.1]/", "IPv4-mapped"),
        ("https://[::1::2]/", "not an IPv6 address"),
        ("HTTPS://vendor.example/", "must start with https://"),
        ("ftp://vendor.example/", "must start with https://"),
        ("https:/vendor.example/", "must start with https://"),
        ("", "is empty"),
    ],
)
def test_each_refusal_says_what_is_wrong(url: str, says: str) -> None:
    with pytest.raises(EndpointError, match=re.escape(says)):
        parse_endpoint(url)


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("https://api.vendor.example/api/v2", "api.vendor.example", None),
        ("https://API.Vendor.Example:8443/api/v2/", "api.vendor.example", 8443),
        ("http://127.0.0.1:9000", "127.0.0.1", 9000),
        ("https://[::1]:8443/x", "::1", 8443),
        ("https://minio/", "minio", None),
        ("https://xn--vendr-jua.example/", "xn--vendr-jua.example", None),
        ("https://s3.eu-west-1.amazonaws.com", "s3.eu-west-1.amazonaws.com", None),
    ],
)
def test_plain_endpoints_are_accepted_as_urllib3_reads_them(url: str, host: str, port: int | None) -> None:
    endpoint = parse_endpoint(url)
    assert (endpoint.hostname, endpoint.port) == (host, port)
    assert _connects_to(url)[0] == host


def test_request_urls_may_add_a_query_and_percent_encoded_path_characters_but_never_in_the_host() -> None:
    url = "https://api.vendor.example/api/v2/chat/users/a%2Fb%20c/messages?startTimeRange=1,2&limit=5&offset=0"
    assert (
        parse_request_url(url).request_uri
        == "/api/v2/chat/users/a%2Fb%20c/messages?startTimeRange=1,2&limit=5&offset=0"
    )
    for bad in ("https://api%2evendor.example/x", "https://api.vendor.example/x?a#b", "https://a@api.vendor.example/"):
        with pytest.raises(EndpointError):
            parse_request_url(bad)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("api.vendor.example", True),
        ("a.b.vendor.example", True),
        ("API.VENDOR.EXAMPLE", True),
        ("vendor.example", False),  # *.vendor.example names what is under it, not itself
        ("evilvendor.example", False),
        ("vendor.example.evil.example", False),
        ("allowed.example", True),
        ("www.allowed.example", False),  # an exact entry is exact
        ("10.0.0.1", True),
        ("::1", True),
        ("0:0::1", True),
        ("10.0.0.2", False),
    ],
)
def test_allowlist_entries_match_exactly_or_every_name_under_a_wildcard(host: str, allowed: bool) -> None:
    allowlist = HostAllowlist.parse(["*.vendor.example", "Allowed.Example", "10.0.0.1", "[::1]"])
    assert allowlist.allows(host) is allowed


def test_an_empty_allowlist_allows_nothing_and_bad_entries_stop_the_operator_naming_the_chart_value() -> None:
    assert not HostAllowlist.parse([]).allows("api.vendor.example")
    assert load_settings({}).endpoints.vendor_hosts == ()  # the chart's default
    for entry in ("*.com", "*", "https://api.vendor.example", "api.vendor.example:443", "vendor.example.", "a b"):
        with pytest.raises(ConfigurationError, match=r"security\.vendorHosts \(CXBACKUP_VENDOR_HOSTS\)"):
            load_settings({"CXBACKUP_VENDOR_HOSTS": f"api.vendor.example,{entry}"})


def test_with_no_vendor_hosts_every_vendor_endpoint_is_refused_naming_the_chart_value() -> None:
    problem = endpoint_problem(
        "spec.source.apiUriPrefix", "https://api.vendor.example/x", EndpointPolicy(), vendor=True
    )
    assert problem is not None and problem.reason == "EndpointNotAllowed"
    assert problem.message.startswith("spec.source.apiUriPrefix: host api.vendor.example is not allowed")
    assert "security.vendorHosts" in problem.message and "--set-json 'security.vendorHosts=[" in problem.message
    # the tenant's own bucket is not a vendor endpoint: only its syntax is checked
    assert (
        endpoint_problem("spec.target.s3.endpointUrl", "https://minio.internal", EndpointPolicy(), vendor=False) is None
    )
    own = endpoint_problem("spec.target.s3.endpointUrl", "https://k:s@minio.internal", EndpointPolicy(), vendor=False)
    assert own is not None and "user info" in own.message


# -- real connections --------------------------------------------------------------------------------------------


@dataclass
class Recorder:
    """An HTTP server on a loopback address that records every request it receives."""

    address: str
    requests: list[tuple[str, str]] = field(default_factory=list)
    hits: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                outer.requests.append((self.path, self.headers.get("Authorization", "")))
                body = b"{}"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((self.address, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[Recorder, Recorder]]:
    """The vendor ("allowed", 127.0.0.1) and an attacker (127.0.0.2), both on loopback."""
    allowed, attacker = Recorder("127.0.0.1"), Recorder("127.0.0.2")
    try:
        yield allowed, attacker
    finally:
        allowed.stop()
        attacker.stop()


LOOPBACK_POLICY = EndpointPolicy(allow_plain_http=True, vendor_hosts=("127.0.0.1",))
LOOPBACK_HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.2.", "127.1", "2130706434", "localhost", "[::1]", "127.0.0.1."]
LOOPBACK_PORTS = [":{A}", ":{B}", ""]


@st.composite
def hostile_loopback_urls(draw: st.DrawFn) -> str:
    return "".join(
        [
            draw(st.sampled_from(["http://", "HTTP://", "http:\\\\", "http:/"])),
            draw(st.sampled_from(["", "u:p@", "127.0.0.1@", "127.0.0.1:{A}@"])),
            draw(st.sampled_from(LOOPBACK_HOSTS)),
            draw(st.sampled_from(LOOPBACK_PORTS)),
            draw(st.sampled_from(SEPARATORS)),
            draw(st.sampled_from(LOOPBACK_HOSTS)),
            draw(st.sampled_from(LOOPBACK_PORTS)),
            draw(st.sampled_from(["", "/", "/api/v2"])),
        ]
    )


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(hostile_loopback_urls())
@example("http://127.0.0.2:{B}\\@127.0.0.1:{A}/api/v2")  # urllib.parse: 127.0.0.1; urllib3: 127.0.0.2
@example("http://127.0.0.1:{A}/api/v2")
def test_the_attacker_receives_nothing_for_any_url_the_operator_accepts(
    servers: tuple[Recorder, Recorder], template: str
) -> None:
    allowed, attacker = servers
    url = template.replace("{A}", str(allowed.port)).replace("{B}", str(attacker.port))
    secret = {"Authorization": "Basic dXNlcjpzM2NyZXQ="}
    transport = Urllib3Transport(timeout=5.0)
    try:
        # 1. what the operator lets through reaches the vendor, never the attacker
        if endpoint_problem("spec.source.gwsUriPrefix", url, LOOPBACK_POLICY, vendor=True) is None:
            seen, heard = len(attacker.requests), len(allowed.requests)
            try:
                transport.get(url, secret)
            except TransportError:  # an allowed host, but a port nobody listens on
                assert len(allowed.requests) == heard
            else:
                assert allowed.requests[heard:] == [(parse_request_url(url).request_uri, secret["Authorization"])]
            assert len(attacker.requests) == seen, url
        # 2. whatever the operator says, the worker connects only to the host and port of its own check
        try:
            checked = parse_request_url(url)
        except EndpointError:
            checked = None
        seen = len(attacker.requests)
        try:
            transport.get(url, secret)
        except RefusedUrl:
            assert checked is None
        except TransportError:
            assert checked is not None
        if len(attacker.requests) > seen:
            assert checked is not None and (checked.hostname, checked.port) == ("127.0.0.2", attacker.port), url
    finally:
        transport.close()
