"""The one client of the vendor's data APIs an export reads: contact history and per-user chat messages.

Wire format (the vendor's contact and chat APIs, as docs/vendor-api.md describes them):

    GET {prefix}/contact-history?startTimeRange=FROM,TO&limit=N&offset=K
        -> {"total", "offset", "items": [<contact>, ...]}
    GET {prefix}/chat/users/{userId}/messages?startTimeRange=FROM,TO&limit=N&offset=K
        -> {"total", "offset", "items": [<message>, ...],
            "retention": {"days", "oldestAvailable", "rangeOutsideRetention", "rangeTruncated"}}

FROM <= t < TO in epoch milliseconds, items sorted by time. HTTP Basic authentication with
GWS_USERNAME / GWS_PASSWORD on every request (the password is never logged or put in a message).
429, 408, 5xx, connection errors and cut bodies are retried with exponential backoff and jitter
(Retry-After honoured); 401/403 raise SourceAuthError, 404 SourceNotFoundError, other answers
SourceError (with the status and the answer's short code and a bounded, redacted snippet of its
message, never the body: `core.http.error_detail`); running out of retries raises SourceUnavailableError.
No answer larger than `max_response_bytes` (MAX_RESPONSE_BYTES, 64 MiB, after gzip/deflate decoding) is
held: reading stops there and SourceError (not retried) names the URL and the limit.

Pages are fetched one at a time (`RecordSource` yields `SourcePage`s), so an export holds one page in
memory. Consecutive pages overlap by a few items and repeats (same id) are dropped, so an item removed
by retention, or added, between two requests does not shift the offsets past an item never seen. A
listing that stops making sense (a `total` that lies, offsets that do not advance, the same page again,
an empty page before the total: `core.http.Pager`) raises SourceError naming the problem; the export
fails and publishes nothing.

The HTTP transport (urllib3 by default) and the retry loop are cxbackup.core.http's, shared with the
recording client; tests hand in a fake transport.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote

from cxbackup.api import workerenv
from cxbackup.core.endpoints import (
    VENDOR_HOSTS_ENV,
    EndpointError,
    HostAllowlist,
    HostNotAllowedError,
    check_vendor_host,
    parse_endpoint,
    vendor_allowlist,
)
from cxbackup.core.http import (
    MAX_RESPONSE_BYTES,
    BadResponse,
    HttpResponse,
    HttpTransport,
    ListingError,
    Pager,
    RetriesExhausted,
    RetryableAnswer,
    TransportError,
    Urllib3Transport,
    error_detail,
    get_with_retries,
)
from cxbackup.core.redact import Redactor, basic_token, redact_url
from cxbackup.core.retry import RetryPolicy
from cxbackup.export.errors import (
    ExportConfigError,
    SourceAuthError,
    SourceError,
    SourceNotFoundError,
    SourceUnavailableError,
)
from cxbackup.export.request import TimeRange

__all__ = [
    "API_PREFIX_ENV",
    "ApiSource",
    "ChatRetention",
    "HttpResponse",
    "HttpTransport",
    "RecordSource",
    "SourcePage",
    "TransportError",
    "Urllib3Transport",
]

log = logging.getLogger(__name__)

API_PREFIX_ENV = workerenv.EXPORT_API
MAX_PAGE_SIZE = 1000


@dataclass(frozen=True)
class ChatRetention:
    """What the chat API says about the organisation's chat retention for one request."""

    days: int
    oldest_available: datetime | None
    range_outside: bool
    range_truncated: bool


@dataclass(frozen=True)
class SourcePage:
    """One page of items (duplicates of the previous page already removed)."""

    total: int
    offset: int
    items: list[dict[str, Any]]
    retention: ChatRetention | None = None
    echoed_offset: int | None = None  # the offset the answer names, when it names one


class RecordSource(Protocol):
    """Where an export's records come from (the vendor API, or a fake in tests)."""

    def contact_history(self, time_range: TimeRange) -> Iterator[SourcePage]: ...

    def chat_messages(self, user_id: str, time_range: TimeRange) -> Iterator[SourcePage]: ...


def _parse_time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _parse_page(body: bytes, offset: int) -> SourcePage:
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise RetryableAnswer(f"the body is not JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("items"), list) or not isinstance(data.get("total"), int):
        raise RetryableAnswer('the body is not a page {"total", "offset", "items"}')
    items = [i for i in data["items"] if isinstance(i, dict)]
    if len(items) != len(data["items"]):
        raise RetryableAnswer("a page item is not a JSON object")
    retention = None
    raw = data.get("retention")
    if isinstance(raw, dict):
        retention = ChatRetention(
            days=int(raw.get("days") or 0),
            oldest_available=_parse_time(raw.get("oldestAvailable")),
            range_outside=bool(raw.get("rangeOutsideRetention")),
            range_truncated=bool(raw.get("rangeTruncated")),
        )
    echoed = data.get("offset")
    return SourcePage(
        total=int(data["total"]),
        offset=offset,
        items=items,
        retention=retention,
        echoed_offset=echoed if isinstance(echoed, int) and not isinstance(echoed, bool) else None,
    )


class ApiSource:
    """Contact history and chat messages from the vendor's data APIs (see the module docstring)."""

    def __init__(
        self,
        api_uri_prefix: str,
        username: str,
        password: str,
        *,
        transport: HttpTransport | None = None,
        retry: RetryPolicy | None = None,
        page_size: int = 500,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
        vendor_hosts: HostAllowlist | None = None,
    ) -> None:
        try:  # the syntax the operator checked (the transport checks every request again)
            parse_endpoint(api_uri_prefix)
        except EndpointError as exc:
            raise ExportConfigError(f"the API URI prefix ({API_PREFIX_ENV}) {exc}") from None
        try:  # the installer's vendor hosts, when the operator started this pod (CXBACKUP_VENDOR_HOSTS)
            check_vendor_host(api_uri_prefix, vendor_hosts, f"the API URI prefix ({API_PREFIX_ENV})")
        except HostNotAllowedError as exc:
            raise ExportConfigError(str(exc)) from None
        if not username or not password:
            raise ExportConfigError("GWS_USERNAME and GWS_PASSWORD must be set for the vendor API")
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ExportConfigError(f"the page size must be between 1 and {MAX_PAGE_SIZE}")
        self.prefix = api_uri_prefix.rstrip("/")
        token = basic_token(username, password)
        self._headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}
        self._redactor = Redactor([password, token])
        self._max_body = max_response_bytes
        self._transport = transport or Urllib3Transport(max_body=max_response_bytes)
        self._retry = retry or RetryPolicy()
        self._page_size = page_size
        self._sleep = sleep
        self._rng = rng or random.Random()

    @classmethod
    def from_env(cls, env: Mapping[str, str], api_uri_prefix: str | None = None, **kwargs: Any) -> ApiSource:
        """A client with the prefix given or from CXBACKUP_EXPORT_API, credentials from GWS_USERNAME/PASSWORD; the
        prefix's host must be one of CXBACKUP_VENDOR_HOSTS when that is set (the operator sets it)."""
        prefix = api_uri_prefix or env.get(API_PREFIX_ENV, "")
        if not prefix:
            raise ExportConfigError(f"give the vendor API prefix (--api-uri-prefix or {API_PREFIX_ENV})")
        try:
            allowlist = vendor_allowlist(env.get(VENDOR_HOSTS_ENV))
        except HostNotAllowedError as exc:
            raise ExportConfigError(str(exc)) from None
        return cls(prefix, env.get("GWS_USERNAME", ""), env.get("GWS_PASSWORD", ""), vendor_hosts=allowlist, **kwargs)

    def __repr__(self) -> str:
        return f"ApiSource({redact_url(self.prefix)!r})"

    def close(self) -> None:
        """Close the transport's connections (when it has any)."""
        close = getattr(self._transport, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> ApiSource:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- requests ---------------------------------------------------------------------------------

    def _get_page(self, url: str, offset: int, what: str) -> SourcePage:
        shown = redact_url(url)

        def handle(resp: HttpResponse) -> SourcePage:
            if resp.status in (401, 403):
                raise SourceAuthError(f"GWS_USERNAME/GWS_PASSWORD rejected by {shown} (HTTP {resp.status})")
            detail = error_detail(resp.body, self._redactor) if resp.status != 200 else ""
            if resp.status == 404:
                raise SourceNotFoundError(f"{what}: {detail or 'not found'} (HTTP 404 from {shown})")
            if resp.status != 200:
                raise SourceError(f"{what}: {shown} answered HTTP {resp.status}" + (f" ({detail})" if detail else ""))
            return _parse_page(resp.body, offset)  # a cut or garbled body raises RetryableAnswer

        try:
            return get_with_retries(
                self._transport,
                url,
                self._headers,
                handle,
                retry=self._retry,
                rng=self._rng,
                sleep=self._sleep,
                max_body=self._max_body,
            )
        except RetriesExhausted as exc:
            raise SourceUnavailableError(self._redactor.clean(f"{what}: {exc}")) from None
        except BadResponse as exc:
            raise SourceError(self._redactor.clean(f"{what}: {exc}")) from None

    def _pages(self, base_url: str, time_range: TimeRange, what: str) -> Iterator[SourcePage]:
        pager = Pager(f"the vendor API ({what})", self._page_size)
        while pager.offset is not None:
            offset = pager.offset
            url = (
                f"{base_url}?startTimeRange={time_range.start_ms},{time_range.end_ms}"
                f"&limit={self._page_size}&offset={offset}"
            )
            page = self._get_page(url, offset, what)
            keys = [
                str(item["id"]) if item.get("id") is not None else json.dumps(item, sort_keys=True)
                for item in page.items
            ]
            try:
                new = pager.take(offset, page.total, keys, page.echoed_offset)
            except ListingError as exc:
                raise SourceError(self._redactor.clean(f"{exc} ({redact_url(url)})")) from None
            fresh = [item for item, is_new in zip(page.items, new, strict=True) if is_new]
            yield SourcePage(page.total, offset, fresh, page.retention)

    def contact_history(self, time_range: TimeRange) -> Iterator[SourcePage]:
        """Every contact of the range, one page at a time."""
        return self._pages(f"{self.prefix}/contact-history", time_range, "contact history")

    def chat_messages(self, user_id: str, time_range: TimeRange) -> Iterator[SourcePage]:
        """The chat messages `user_id` sent in the range, one page at a time (with retention facts)."""
        url = f"{self.prefix}/chat/users/{quote(user_id, safe='')}/messages"
        return self._pages(url, time_range, f"chat messages of user {user_id}")
