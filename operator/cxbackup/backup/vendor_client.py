"""The one client of the vendor's recording web services (GWS): settings and recording metadata.

Wire format (docs/vendor-api.md):

    GET {gwsUriPrefix}{gwsSettingsUri}                       -> {"tenant", "storage": [...]}
    GET {gwsUriPrefix}{gwsRecordingsUri}?startTimeRange=FROM,TO&limit=N&offset=K
                                                             -> {"total", "offset", "recordings": [...]}

HTTP Basic authentication on every request; urllib3 (no `requests`), optionally through an HTTP proxy
(gwsProxyHost/gwsProxyPort). The URLs must have the one syntax the operator checked them in
(`cxbackup.core.endpoints`): ConfigError here, and the transport checks each request again and connects
to the host of that same parse. 429, 5xx, connection errors and unreadable bodies are retried with
exponential backoff and jitter (Retry-After honoured; the loop and transport are cxbackup.core.http's);
401/403 raise VendorAuthError "GWS_USERNAME/GWS_PASSWORD rejected by <url>" (the password never
appears anywhere). Other error answers raise VendorApiError with the status and the answer's short
code and a bounded, redacted snippet of its message (`core.http.error_detail`), never the body. No
answer larger than `max_response_bytes` (MAX_RESPONSE_BYTES, 64 MiB, after gzip/deflate decoding) is
held: reading stops there and VendorResponseError (not retried) names the URL and the limit.

Listing streams: `iter_recordings(window)` fetches one page at a time. Consecutive pages overlap by a
few records and repeats are dropped, so a recording deleted by retention (or added) between two page
requests does not shift the offsets past a record that was never seen. A listing that stops making
sense (a `total` that lies, offsets that do not advance, the same page again, an empty page before the
total, a page larger than asked for: `core.http.Pager`) raises VendorListingError naming the problem
instead of paging forever or ending early; more records than the caller's `max_items` (the run's
maxRecordingsPerRun) raise ListingLimitError. Either way the run fails without advancing its checkpoint.

The HTTP transport is injected (`HttpTransport`); tests pass a fake one.
"""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from cxbackup.backup.errors import (
    ConfigError,
    ListingLimitError,
    VendorApiError,
    VendorAuthError,
    VendorListingError,
    VendorResponseError,
)
from cxbackup.backup.records import Recording, RecordingsPage, parse_recordings_page
from cxbackup.backup.window import RecordingWindow
from cxbackup.core.endpoints import EndpointError, parse_endpoint
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

__all__ = [
    "HttpResponse",
    "HttpTransport",
    "StorageEntry",
    "TransportError",
    "Urllib3Transport",
    "VendorClient",
    "VendorSettings",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StorageEntry:
    """One S3 location of the tenant's media (from the settings endpoint)."""

    region: str
    aws_region: str | None
    bucket: str
    prefix: str


@dataclass(frozen=True)
class VendorSettings:
    tenant: str | None
    storage: tuple[StorageEntry, ...]

    def storage_for(self, region: str | None) -> StorageEntry:
        """The entry whose region equals the record's region, else the first entry."""
        if not self.storage:
            raise VendorApiError("the settings endpoint lists no storage entries")
        for entry in self.storage:
            if region is not None and entry.region == region:
                return entry
        return self.storage[0]


def _parse_settings(body: bytes, url: str) -> VendorSettings:
    try:
        data = json.loads(body)
        storage = tuple(
            StorageEntry(
                region=str(s.get("region", "")),
                aws_region=s.get("awsRegion") or None,
                bucket=str(s["bucket"]),
                prefix=str(s.get("prefix", "")),
            )
            for s in data.get("storage", [])
        )
        tenant = data.get("tenant")
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VendorApiError(f"settings from {url} are not in the documented format ({exc})") from exc
    return VendorSettings(tenant=tenant if isinstance(tenant, str) else None, storage=storage)


class VendorClient:
    """Settings and recording pages from the recording web services."""

    def __init__(
        self,
        *,
        settings_url: str,
        recordings_url: str,
        username: str,
        password: str,
        transport: HttpTransport | None = None,
        proxy_url: str | None = None,
        retry: RetryPolicy | None = None,
        page_size: int = 100,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        if not username or not password:
            raise ConfigError("GWS_USERNAME and GWS_PASSWORD must be set")
        for url, made_of in ((settings_url, "gwsSettingsUri"), (recordings_url, "gwsRecordingsUri")):
            try:  # the transport checks every request again; this names the setting before any request
                parse_endpoint(url)
            except EndpointError as exc:
                raise ConfigError(f"the URL of gwsUriPrefix and {made_of} {exc}") from None
        self.settings_url = settings_url
        self.recordings_url = recordings_url
        token = basic_token(username, password)
        self._headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}
        self._redactor = Redactor([password, token])
        self._max_body = max_response_bytes
        self._transport = transport or Urllib3Transport(proxy_url, max_body=max_response_bytes)
        self._retry = retry or RetryPolicy()
        self._page_size = page_size
        self._sleep = sleep
        self._rng = rng or random.Random()

    def __repr__(self) -> str:
        return f"VendorClient({redact_url(self.recordings_url)!r})"

    # -- requests ---------------------------------------------------------------------------------

    def _get(self, url: str, parse: Callable[[bytes], object]) -> object:
        shown = redact_url(url)

        def handle(resp: HttpResponse) -> object:
            if resp.status in (401, 403):
                raise VendorAuthError(f"GWS_USERNAME/GWS_PASSWORD rejected by {shown} (HTTP {resp.status})")
            if resp.status != 200:
                detail = error_detail(resp.body, self._redactor)
                raise VendorApiError(f"{shown} answered HTTP {resp.status}" + (f" ({detail})" if detail else ""))
            try:
                return parse(resp.body)
            except VendorApiError as exc:
                raise RetryableAnswer(str(exc)) from None  # a cut or garbled body: worth another try

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
            raise VendorApiError(self._redactor.clean(str(exc))) from None
        except BadResponse as exc:
            raise VendorResponseError(self._redactor.clean(str(exc))) from None

    def settings(self) -> VendorSettings:
        """The tenant's S3 storage entries (also proves the GWS credentials work)."""
        result = self._get(self.settings_url, lambda body: _parse_settings(body, redact_url(self.settings_url)))
        assert isinstance(result, VendorSettings)
        return result

    def page_url(self, window: RecordingWindow, limit: int, offset: int) -> str:
        return f"{self.recordings_url}?startTimeRange={window.start_ms},{window.end_ms}&limit={limit}&offset={offset}"

    def page(self, window: RecordingWindow, offset: int, limit: int | None = None) -> RecordingsPage:
        url = self.page_url(window, limit or self._page_size, offset)

        def parse(body: bytes) -> RecordingsPage:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise VendorApiError(f"page is not UTF-8 ({exc})") from exc
            return parse_recordings_page(text)

        result = self._get(url, parse)
        assert isinstance(result, RecordingsPage)
        return result

    def count(self, window: RecordingWindow) -> int:
        """How many recordings the window holds (one small request)."""
        if window.is_empty:
            return 0
        return self.page(window, 0, limit=1).total

    def iter_recordings(
        self, window: RecordingWindow, *, max_items: int | None = None, limit_hint: str = ""
    ) -> Iterator[Recording]:
        """Every recording of the window, one page in memory at a time (see the module docstring); more
        than `max_items` new records raise ListingLimitError (with `limit_hint` saying which setting)."""
        if window.is_empty:
            return
        pager = Pager("the recording API", self._page_size, max_items=max_items, limit_hint=limit_hint)
        while pager.offset is not None:
            offset = pager.offset
            page = self.page(window, offset)
            try:
                fresh = pager.take(offset, page.total, [rec.id or rec.raw_json for rec in page.recordings], page.offset)
            except ListingError as exc:
                shown = redact_url(self.page_url(window, self._page_size, offset))
                error = ListingLimitError if max_items is not None and pager.items > max_items else VendorListingError
                raise error(f"{exc} ({shown})") from None
            yield from (rec for rec, new in zip(page.recordings, fresh, strict=True) if new)
