"""The one client of the vendor's recording web services (GWS): settings and recording metadata.

Wire format: ../../../../shared VENDOR_API.md, i.e.

    GET {gwsUriPrefix}{gwsSettingsUri}                       -> {"tenant", "storage": [...]}
    GET {gwsUriPrefix}{gwsRecordingsUri}?startTimeRange=FROM,TO&limit=N&offset=K
                                                             -> {"total", "offset", "recordings": [...]}

HTTP Basic authentication on every request; urllib3 (no `requests`), optionally through an HTTP proxy
(gwsProxyHost/gwsProxyPort). 429, 5xx, connection errors and unreadable bodies are retried with
exponential backoff and jitter (Retry-After honoured); 401/403 raise VendorAuthError
"GWS_USERNAME/GWS_PASSWORD rejected by <url>" (the password never appears anywhere).

Listing streams: `iter_recordings(window)` fetches one page at a time. Consecutive pages overlap by a
few records and repeats are dropped, so a recording deleted by retention (or added) between two page
requests does not shift the offsets past a record that was never seen.

The HTTP transport is injected (`HttpTransport`); tests pass a fake one.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import urllib3

from cxbackup.backup.errors import ConfigError, VendorApiError, VendorAuthError
from cxbackup.backup.records import Recording, RecordingsPage, parse_recordings_page
from cxbackup.backup.redact import redact_url
from cxbackup.backup.retry import RetryPolicy
from cxbackup.backup.window import RecordingWindow

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

_PAGE_OVERLAP = 5
_RETRY_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


class TransportError(Exception):
    """The request did not produce a complete response (connection refused/reset, timeout, short body)."""


class HttpTransport(Protocol):
    """Performs one GET; raises TransportError for network-level failures."""

    def get(self, url: str, headers: Mapping[str, str]) -> HttpResponse: ...


class Urllib3Transport:
    """urllib3 pool (or proxy pool); bodies are read fully and checked against Content-Length."""

    def __init__(self, proxy_url: str | None = None, *, pool_size: int = 4, timeout: float = 60.0) -> None:
        t = urllib3.Timeout(connect=min(10.0, timeout), read=timeout)
        retries = urllib3.Retry(total=0, redirect=3, raise_on_redirect=False, raise_on_status=False)
        self._pool: urllib3.PoolManager = (
            urllib3.ProxyManager(proxy_url, maxsize=pool_size, timeout=t, retries=retries)
            if proxy_url
            else urllib3.PoolManager(maxsize=pool_size, timeout=t, retries=retries)
        )

    def get(self, url: str, headers: Mapping[str, str]) -> HttpResponse:
        try:
            resp = self._pool.request("GET", url, headers=dict(headers), preload_content=False)
            try:
                body = resp.read(decode_content=True, cache_content=False)
                declared = resp.headers.get("Content-Length")
                if declared is not None and not resp.headers.get("Content-Encoding") and len(body) != int(declared):
                    raise TransportError(f"short body: {len(body)} of {declared} bytes")
            finally:
                resp.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        return HttpResponse(status=resp.status, headers=dict(resp.headers), body=body)


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


def _retry_after(headers: Mapping[str, str]) -> float | None:
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return float(value)
            except ValueError:
                return None
    return None


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
    ) -> None:
        if not username or not password:
            raise ConfigError("GWS_USERNAME and GWS_PASSWORD must be set")
        self.settings_url = settings_url
        self.recordings_url = recordings_url
        token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
        self._headers = {"Authorization": f"Basic {token}", "Accept": "application/json"}
        self._transport = transport or Urllib3Transport(proxy_url)
        self._retry = retry or RetryPolicy()
        self._page_size = page_size
        self._sleep = sleep
        self._rng = rng or random.Random()

    def __repr__(self) -> str:
        return f"VendorClient({redact_url(self.recordings_url)!r})"

    # -- requests ---------------------------------------------------------------------------------

    def _get(self, url: str, parse: Callable[[bytes], object]) -> object:
        shown = redact_url(url)
        last = ""
        for attempt in range(self._retry.retries + 1):
            retry_after: float | None = None
            try:
                resp = self._transport.get(url, self._headers)
            except TransportError as exc:
                last = f"{exc}"
            else:
                if resp.status in (401, 403):
                    raise VendorAuthError(f"GWS_USERNAME/GWS_PASSWORD rejected by {shown} (HTTP {resp.status})")
                if resp.status == 200:
                    try:
                        return parse(resp.body)
                    except VendorApiError as exc:
                        last = str(exc)  # a cut or garbled body: worth another try
                elif resp.status in _RETRY_STATUS:
                    last = f"HTTP {resp.status}"
                    retry_after = _retry_after(resp.headers)
                else:
                    snippet = resp.body[:200].decode("utf-8", "replace")
                    raise VendorApiError(f"{shown} answered HTTP {resp.status}: {snippet}")
            if attempt < self._retry.retries:
                delay = self._retry.delay(attempt, self._rng, retry_after)
                log.debug("GET %s failed (%s); retry %d in %.2fs", shown, last, attempt + 1, delay)
                self._sleep(delay)
        raise VendorApiError(f"GET {shown} failed after {self._retry.retries + 1} attempts: {last}")

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

    def iter_recordings(self, window: RecordingWindow) -> Iterator[Recording]:
        """Every recording of the window, one page in memory at a time (see the module docstring)."""
        if window.is_empty:
            return
        offset = 0
        recent: deque[str] = deque(maxlen=2 * self._page_size + _PAGE_OVERLAP)
        recent_set: set[str] = set()
        while True:
            page = self.page(window, offset)
            for rec in page.recordings:
                key = rec.id or rec.raw_json
                if key in recent_set:
                    continue
                if len(recent) == recent.maxlen:
                    recent_set.discard(recent[0])
                recent.append(key)
                recent_set.add(key)
                yield rec
            n = len(page.recordings)
            if n == 0 or offset + n >= page.total:
                return
            offset += n - min(_PAGE_OVERLAP, n - 1)
