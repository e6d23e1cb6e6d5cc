"""GET with retries for the vendor's JSON APIs: one transport and one retry loop for the recording
client (vendor_client.py) and the export's contact and chat client (export/source.py).

    value = get_with_retries(transport, url, headers, handle, retry=..., rng=..., sleep=...)

`handle(response)` turns an answer into a value, raises its own error for an answer that will not get
better (401, 404, ...), or raises `RetryableAnswer` for one that may (a 200 with a cut or garbled body).
An error answer's body never goes into a message whole: `error_detail(body)` keeps its short code and
a bounded, redacted snippet of its `message` field (JSON bodies only).
Transport errors (connection refused or reset, timeout, short body) and statuses 408, 429 and 5xx are
retried too, with exponential backoff and jitter, honouring Retry-After. When the attempts run out,
`RetriesExhausted` carries the last reason; each client turns it into its own error.

Paging (both APIs page with limit/offset over a time range): consecutive pages overlap by a few items
(`next_offset`) and `RecentKeys` drops the repeats, so an item removed by retention (or added) between
two requests does not shift the offsets past an item never seen.
"""

from __future__ import annotations

import json
import logging
import random
import re
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

import urllib3

from cxbackup.core.redact import Redactor, redact_url, snippet
from cxbackup.core.retry import RetryPolicy

__all__ = [
    "PAGE_OVERLAP",
    "RETRY_STATUS",
    "HttpResponse",
    "HttpTransport",
    "RecentKeys",
    "RetriesExhausted",
    "RetryableAnswer",
    "TransportError",
    "Urllib3Transport",
    "error_detail",
    "get_with_retries",
    "next_offset",
    "retry_after",
]

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))
PAGE_OVERLAP = 5
T = TypeVar("T")


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: Mapping[str, str]
    body: bytes


class TransportError(Exception):
    """The request did not produce a complete response (connection refused/reset, timeout, short body)."""


class RetryableAnswer(Exception):
    """Raised by a response handler: this answer may be better next time (the message says why)."""


class RetriesExhausted(Exception):
    def __init__(self, shown_url: str, attempts: int, last: str) -> None:
        last = snippet(last, 300)
        super().__init__(f"GET {shown_url} failed after {attempts} attempts: {last}")
        self.last = last


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
        return HttpResponse(status=resp.status, headers={k.lower(): v for k, v in resp.headers.items()}, body=body)

    def close(self) -> None:
        self._pool.clear()


_CODE = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def error_detail(body: bytes, redactor: Redactor | None = None) -> str:
    """What an error answer may add to a message: its short code (`code`, `errorCode` or `error`) and a
    snippet of its `message` (bounded, one line, redacted), from a JSON object only; "" otherwise."""
    try:
        data = json.loads(body[:65536])
    except (ValueError, UnicodeDecodeError):
        return ""
    if not isinstance(data, dict):
        return ""
    code = next(
        (str(data[k]) for k in ("code", "errorCode", "error") if isinstance(data.get(k), str) and _CODE.match(data[k])),
        "",
    )
    message = snippet(data["message"], redactor=redactor) if isinstance(data.get("message"), str) else ""
    return ": ".join(p for p in (code, message) if p)


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a Retry-After header (any case), when it is a number."""
    for name, value in headers.items():
        if name.lower() == "retry-after":
            try:
                return float(value)
            except ValueError:
                return None
    return None


def get_with_retries(
    transport: HttpTransport,
    url: str,
    headers: Mapping[str, str],
    handle: Callable[[HttpResponse], T],
    *,
    retry: RetryPolicy,
    rng: random.Random,
    sleep: Callable[[float], None],
) -> T:
    """See the module docstring. The URL is logged without credentials."""
    shown = redact_url(url)
    last = ""
    for attempt in range(retry.retries + 1):
        wait: float | None = None
        try:
            resp = transport.get(url, headers)
        except TransportError as exc:
            last = str(exc)
        else:
            if resp.status in RETRY_STATUS:
                last = f"HTTP {resp.status}"
                wait = retry_after(resp.headers)
            else:
                try:
                    return handle(resp)
                except RetryableAnswer as exc:
                    last = str(exc)
        if attempt < retry.retries:
            delay = retry.delay(attempt, rng, wait)
            log.debug("GET %s failed (%s); retry %d in %.2fs", shown, last, attempt + 1, delay)
            sleep(delay)
    raise RetriesExhausted(shown, retry.retries + 1, last)


def next_offset(offset: int, n: int, total: int) -> int | None:
    """The offset of the page after one of `n` items at `offset` (overlapping it by up to PAGE_OVERLAP
    items), or None when that page was the last."""
    if n == 0 or offset + n >= total:
        return None
    return offset + n - min(PAGE_OVERLAP, n // 4)


class RecentKeys:
    """The keys of the last two pages and the overlap: `fresh(key)` is False for a repeat."""

    def __init__(self, page_size: int) -> None:
        self._order: deque[str] = deque(maxlen=2 * page_size + PAGE_OVERLAP)
        self._keys: set[str] = set()

    def fresh(self, key: str) -> bool:
        if key in self._keys:
            return False
        if len(self._order) == self._order.maxlen:
            self._keys.discard(self._order[0])
        self._order.append(key)
        self._keys.add(key)
        return True
