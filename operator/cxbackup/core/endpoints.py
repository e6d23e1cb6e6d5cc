"""Endpoint URLs: one syntax, one parser and one host match for the operator's check and the worker's connection.

A URL that two parsers read differently lets a resource pass a host check and send the vendor's credentials
elsewhere: for `https://evil.example\\@allowed.example/` Python's `urllib.parse` names the host
`allowed.example` while urllib3, which the worker connects with, connects to `evil.example`. So an endpoint
URL is accepted only in a form every URL parser reads the same way, and the one parse that decides is
urllib3's own (`urllib3.util.parse_url`), used by the operator's check and by the worker's connection:

    endpoint = parse_endpoint(url)              # EndpointError naming the problem, never echoing the URL
    endpoint.hostname                           # what the installer's allowlist is matched against
    HostAllowlist.parse(["api.example.com", "*.s3.amazonaws.com"]).allows(endpoint.hostname)

The syntax (`ENDPOINT_URL_PATTERN`, also the CRDs' `pattern`): `http://` or `https://` (lower case), a
host, an optional `:port`, an optional path. The host is a DNS name (ASCII letters, digits and `-`, labels
of at most 63 characters, the last one starting with a letter, no trailing dot), a dotted-quad IPv4 address
or an IPv6 address in brackets (no zone). The path is made of letters, digits and `._~!$&()*+,;=:/-`.
Refused, because parsers disagree on them or they have no business in an endpoint: user info (`@`),
backslashes, fragments (`#`), queries (`?`), percent-encoding (`%`), whitespace and control characters,
non-ASCII characters (a host in its `xn--` form is fine), an empty or out-of-range port, numeric host forms
other than a dotted quad (`0x7f.1`, `2130706433`). The worker's request URLs (`parse_request_url`) add
to an endpoint a query and percent-encoded path characters (the chat API's user id), never in the host.

After the pattern matched, urllib3 parses the URL and must find the same scheme, host (lower-cased) and
port, and no user info, query or fragment; an address is checked with `ipaddress`. The result, an
`Endpoint`, is what the worker's transport connects to (`core.http.Urllib3Transport`).

Host allowlists (the chart value `security.vendorHosts`): an entry is a host name, matched exactly (case
does not matter), an IP address, or `*.` and a name of at least two labels, which matches every name
ending in `.` and that name, at any depth (`*.example.com`: `api.example.com`, `a.b.example.com`; not
`example.com`, not `badexample.com`). An empty allowlist allows nothing.

The worker checks the allowlist again (`vendor_allowlist`, `check_vendor_host`): the operator gives every worker
pod the installer's list in CXBACKUP_VENDOR_HOSTS, and the worker refuses a vendor endpoint (the recording API,
the export source API, a vendor S3 endpoint override) whose host is not on it, before any credential is sent.
A worker run by hand, without the variable, has no allowlist.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

__all__ = [
    "DNS_NAME_PATTERN",
    "ENDPOINT_FORM",
    "ENDPOINT_URL_PATTERN",
    "HOST_PATTERN",
    "PATH_PATTERN",
    "PROXY_HOST_PATTERN",
    "VENDOR_HOSTS_ENV",
    "VENDOR_HOSTS_VALUE",
    "Endpoint",
    "EndpointError",
    "HostAllowlist",
    "HostNotAllowedError",
    "check_vendor_host",
    "host_pattern_problem",
    "parse_endpoint",
    "parse_request_url",
    "vendor_allowlist",
]

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_LAST_LABEL = r"[A-Za-z](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"  # starts with a letter: never read as a number
_DNS_NAME = rf"(?:{_LABEL}\.)*{_LAST_LABEL}"
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = rf"{_OCTET}(?:\.{_OCTET}){{3}}"
_IPV6 = r"\[[0-9A-Fa-f:.]{2,45}\]"
_HOST = rf"(?:{_DNS_NAME}|{_IPV4}|{_IPV6})"
_PATH_CHARS = r"A-Za-z0-9._~!$&()*+,;=:/-"

DNS_NAME_PATTERN = rf"^{_DNS_NAME}$"
"""A DNS name as endpoints may use it (see the module docstring)."""
HOST_PATTERN = rf"^{_HOST}$"
"""A host: a DNS name, a dotted-quad IPv4 address or a bracketed IPv6 address."""
ENDPOINT_URL_PATTERN = rf"^https?://{_HOST}(?::[0-9]{{1,5}})?(?:/[{_PATH_CHARS}]*)?$"
"""Every endpoint URL field of the CRDs (RE2, Rust regex and Python `re` read it alike: no look-around)."""
PATH_PATTERN = rf"^/[{_PATH_CHARS}]*$"
"""A path appended to an endpoint (gwsRecordingsUri, gwsSettingsUri)."""
PROXY_HOST_PATTERN = rf"^(?:https?://)?{_HOST}$"
"""A proxy's host, optionally with its scheme (the worker makes `http://host:port` of it)."""

_ENDPOINT = re.compile(rf"^(https?)://({_HOST})(?::([0-9]{{1,5}}))?((?:/[{_PATH_CHARS}]*)?)$")
_PCT = r"%[0-9A-Fa-f]{2}"
_REQUEST = re.compile(
    rf"^(https?)://({_HOST})(?::([0-9]{{1,5}}))?((?:/(?:[{_PATH_CHARS}]|{_PCT})*)?)((?:\?(?:[{_PATH_CHARS}?]|{_PCT})*)?)$"
)
_DNS = re.compile(DNS_NAME_PATTERN)
ENDPOINT_FORM = "http(s)://host[:port][/path] (host: a DNS name, an IPv4 address or an [IPv6] address)"


class EndpointError(ValueError):
    """A URL cxbackup does not connect to; the message says why (it never repeats the URL)."""


@dataclass(frozen=True)
class Endpoint:
    """An endpoint URL as urllib3 reads it (and connects to it)."""

    url: str
    scheme: str
    host: str
    """As urllib3 connects to it: lower case, an IPv6 address in brackets."""
    port: int | None
    request_uri: str
    """Path and query, what the request line carries ("/" for none)."""

    @property
    def hostname(self) -> str:
        """The host without brackets: what an allowlist is matched against."""
        return self.host[1:-1] if self.host.startswith("[") else self.host

    @property
    def origin(self) -> str:
        return f"{self.scheme}://{self.host}" + (f":{self.port}" if self.port is not None else "")


def _character_problem(url: str, *, request: bool) -> str | None:
    """The first character class that has no place in an endpoint URL, named."""
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        return "contains whitespace or a control character"
    if not url.isascii():
        return "contains a non-ASCII character (write a host in its xn-- form)"
    if "\\" in url:
        return "contains a backslash, which URL parsers read differently"
    if "@" in url:
        return "contains '@' (user info): credentials come only from Secrets, never from a URL"
    if "#" in url:
        return "has a fragment ('#')"
    if not request and "?" in url:
        return "has a query ('?')"
    if not request and "%" in url:
        return "contains percent-encoding ('%')"
    return None


def _parse(url: object, *, request: bool) -> Endpoint:
    if not isinstance(url, str) or not url:
        raise EndpointError("is empty")
    problem = _character_problem(url, request=request)
    if problem is not None:
        raise EndpointError(problem)
    if not url.startswith(("https://", "http://")):
        raise EndpointError("must start with https:// (or http:// where the installer allows plain HTTP)")
    match = (_REQUEST if request else _ENDPOINT).fullmatch(url)
    if match is None:
        raise EndpointError(f"is not of the form {ENDPOINT_FORM}")
    scheme, host, port_text = match.group(1), match.group(2).lower(), match.group(3)
    port = int(port_text) if port_text is not None else None
    if port is not None and not 1 <= port <= 65535:
        raise EndpointError(f"has port {port}, outside 1-65535")
    if host.startswith("["):
        try:
            address = ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise EndpointError("has a host in brackets that is not an IPv6 address") from None
        if address.ipv4_mapped is not None:
            raise EndpointError("has an IPv4-mapped IPv6 address; write the IPv4 address")
    try:
        parsed = parse_url(url)
    except LocationParseError:
        raise EndpointError(f"is not of the form {ENDPOINT_FORM}") from None
    # The client's own parse must read exactly what the pattern read (a defence in depth: it always does
    # for a URL the pattern accepts, which is what the property tests check).
    if (
        parsed.scheme != scheme
        or parsed.auth is not None
        or parsed.fragment is not None
        or (parsed.host or "").lower() != host
        or parsed.port != port
        or (parsed.query is not None and not request)
    ):
        raise EndpointError("is read differently by the HTTP client than by this check")
    return Endpoint(
        url=url, scheme=str(parsed.scheme), host=str(parsed.host), port=parsed.port, request_uri=parsed.request_uri
    )


def parse_endpoint(url: object) -> Endpoint:
    """An endpoint URL of a resource or a configuration (no query): see the module docstring."""
    return _parse(url, request=False)


def parse_request_url(url: object) -> Endpoint:
    """A URL the worker requests: an endpoint plus percent-encoded path characters and a query."""
    return _parse(url, request=True)


def host_pattern_problem(entry: str) -> str | None:
    """Why `entry` cannot be an allowlist entry (None when it can)."""
    text = entry.strip().lower()
    name = text[2:] if text.startswith("*.") else text
    if text.startswith("*."):
        if not _DNS.fullmatch(name) or "." not in name:
            return f"{entry!r}: a wildcard is '*.' and a DNS name of at least two labels, e.g. *.example.com"
        return None
    if _DNS.fullmatch(name):
        return None
    try:
        ipaddress.ip_address(name[1:-1] if name.startswith("[") and name.endswith("]") else name)
    except ValueError:
        return f"{entry!r} is not a host name, an IP address or *.domain (no scheme, port, path or trailing dot)"
    return None


def _normal(host: str) -> str:
    host = host.strip().lower()
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


@dataclass(frozen=True)
class HostAllowlist:
    """The hosts an endpoint may use (see the module docstring); empty: none."""

    entries: tuple[str, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> HostAllowlist:
        """The allowlist of `entries`, checked; ValueError naming the first one that is not a host pattern."""
        checked = []
        for entry in entries:
            problem = host_pattern_problem(entry)
            if problem is not None:
                raise ValueError(problem)
            checked.append(entry.strip().lower() if entry.strip().startswith("*.") else _normal(entry))
        return cls(tuple(checked))

    def allows(self, hostname: str) -> bool:
        host = _normal(hostname)
        for entry in self.entries:
            if entry.startswith("*."):
                if host.endswith(entry[1:]) and _DNS.fullmatch(host):
                    return True
            elif host == entry:
                return True
        return False


VENDOR_HOSTS_ENV = "CXBACKUP_VENDOR_HOSTS"
"""The installer's vendor hosts, comma-separated: the operator's setting (from the chart), and what it gives every
worker pod so that the worker checks them again. Unset in a worker run by hand: no allowlist applies."""
VENDOR_HOSTS_VALUE = "security.vendorHosts"
"""The chart value that names the vendor hosts."""


class HostNotAllowedError(ValueError):
    """A vendor endpoint whose host is not on the installer's allowlist, or an allowlist that is not one; the
    message names the host, the setting and the chart value (never the URL's path)."""


def vendor_allowlist(text: str | None) -> HostAllowlist | None:
    """The allowlist of CXBACKUP_VENDOR_HOSTS' value `text`; None when the variable is not set (no allowlist
    applies); set but empty allows no host. HostNotAllowedError naming the variable for an entry that is not a
    host pattern."""
    if text is None:
        return None
    try:
        return HostAllowlist.parse(h for h in text.split(",") if h.strip())
    except ValueError as exc:
        raise HostNotAllowedError(f"{VENDOR_HOSTS_ENV} ({VENDOR_HOSTS_VALUE}): {exc}") from None


def check_vendor_host(url: str, allowlist: HostAllowlist | None, setting: str) -> None:
    """Refuse the vendor endpoint `url` (named `setting` in messages) when `allowlist` is set and does not allow
    its host: HostNotAllowedError; EndpointError when `url` is no endpoint at all."""
    if allowlist is None:
        return
    host = parse_endpoint(url).hostname
    if not allowlist.allows(host):
        allowed = ", ".join(allowlist.entries) or "none"
        raise HostNotAllowedError(
            f"{setting}: the host {host!r} is not one of the vendor hosts the installer allows ({allowed}; chart "
            f"value {VENDOR_HOSTS_VALUE}, given to this pod as {VENDOR_HOSTS_ENV}); no vendor credential is sent to it"
        )
