"""GET with retries for the vendor's JSON APIs: one transport and one retry loop for the recording
client (vendor_client.py) and the export's contact and chat client (export/source.py).

    value = get_with_retries(transport, url, headers, handle, retry=..., rng=..., sleep=...)

`handle(response)` turns an answer into a value, raises its own error for an answer that will not get
better (401, 404, ...), or raises `RetryableAnswer` for one that may (a 200 with a cut or garbled body).
An error answer's body never goes into a message whole: `error_detail(body)` keeps its short code and
a bounded, redacted snippet of its `message` field (JSON bodies only).

Size: no answer is held in memory beyond a limit, `MAX_RESPONSE_BYTES` (64 MiB, far above a page of
1000 records; a client can be given another `max_body`). `Urllib3Transport` refuses a Content-Length
over it before reading, reads the body in chunks and decodes gzip and deflate itself, incrementally, so
that never more than the limit (plus one chunk) is decoded: a small compressed body that would inflate
to gigabytes fails as soon as its output passes the limit. `get_with_retries` applies the same limit to
whatever a transport returns. Exceeding it raises `ResponseTooLarge` (a `BadResponse`), which is not
retried (the same request would get the same answer) and names the URL (redacted) and the limit; each
client turns it into its own, non-retryable error.
Transport errors (connection refused or reset, timeout, short body) and statuses 408, 429 and 5xx are
retried too, with exponential backoff and jitter, honouring Retry-After. When the attempts run out,
`RetriesExhausted` carries the last reason; each client turns it into its own error.

Paging (both APIs page with limit/offset over a time range): consecutive pages overlap by a few items
(`next_offset`) and `RecentKeys` drops the repeats, so an item removed by retention (or added) between
two requests does not shift the offsets past an item never seen. `Pager` does both and checks that the
listing makes sense, raising `ListingError` (naming the problem, the offset and the total) instead of
paging forever or ending early:

- a page that echoes another offset than the one asked for (the offsets do not advance);
- an empty page before `total` (the listing would end early and silently miss items);
- the same page again for a later offset, or MAX_STALE_PAGES pages in a row with nothing new (a `total`
  that lies while the pages repeat);
- more pages than the first page's `total` allows at its page size, plus PAGE_SLACK pages and 10 %
  (a `total` that lies while pages keep coming, or keeps growing: only the first page's counts);
- a page with more items than were asked for (`limit`): the pages, not only the total, must be bounded;
- more new items than `max_items`, when the caller gives one (a per-run cap: a first `total` so large
  that the page budget bounds nothing, an endless listing).
"""

from __future__ import annotations

import io
import json
import logging
import random
import re
import ssl
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol, TypeVar

import urllib3

from cxbackup.core.endpoints import Endpoint, EndpointError, parse_request_url
from cxbackup.core.redact import Redactor, redact_url, snippet
from cxbackup.core.retry import RetryPolicy
from cxbackup.core.tls import CA_CERTIFICATES

__all__ = [
    "MAX_RESPONSE_BYTES",
    "MAX_STALE_PAGES",
    "PAGE_OVERLAP",
    "PAGE_SLACK",
    "RETRY_STATUS",
    "BadResponse",
    "HttpResponse",
    "HttpTransport",
    "ListingError",
    "Pager",
    "RecentKeys",
    "RefusedUrl",
    "ResponseTooLarge",
    "RetriesExhausted",
    "RetryableAnswer",
    "TransportError",
    "UntrustedCertificate",
    "Urllib3Transport",
    "checked_url",
    "error_detail",
    "get_with_retries",
    "next_offset",
    "retry_after",
]

log = logging.getLogger(__name__)

RETRY_STATUS = frozenset({408, 429}) | frozenset(range(500, 600))
PAGE_OVERLAP = 5
PAGE_SLACK = 3
"""Pages a listing may take beyond what its first `total` allows (plus 10 %): items added meanwhile."""
MAX_STALE_PAGES = 3
"""Pages in a row that bring nothing new before a listing is given up as not advancing."""
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""The largest body (after decoding) a client holds; a page of 1000 recordings is a few MB."""
_READ_CHUNK = 64 * 1024
_DECODE_PIECE = 1024 * 1024
_ACCEPT_ENCODING = "gzip, deflate"
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


class BadResponse(Exception):
    """The answer cannot be used and asking again will not help (not retried)."""


class ResponseTooLarge(BadResponse):
    """The body, decoded, is larger than the client's limit."""

    def __init__(self, shown_url: str, limit: int, what: str = "") -> None:
        detail = f" ({what})" if what else ""
        super().__init__(
            f"the answer of {shown_url} is larger than the limit of {limit} bytes{detail}; "
            "it was not read further and is not retried"
        )
        self.limit = limit


class UntrustedCertificate(BadResponse):
    """The server's TLS certificate failed verification: asking again will not help."""

    def __init__(self, shown_url: str, detail: str) -> None:
        super().__init__(
            f"the certificate of {shown_url} is not trusted ({detail}); if a private certificate authority signed "
            f"it, give that CA's certificate in {CA_CERTIFICATES} (the chart's security.caCertificates)"
        )


class RefusedUrl(BadResponse):
    """A URL the worker does not connect to (its syntax could be read two ways, or names a user): the same
    rules as the operator's check (`cxbackup.core.endpoints`), checked again at connection time."""


def checked_url(url: str) -> Endpoint:
    """`url` as the transport connects to it (`parse_request_url`), or RefusedUrl saying why."""
    try:
        return parse_request_url(url)
    except EndpointError as exc:
        raise RefusedUrl(f"refused to connect to {redact_url(url)!r}: the URL {exc}") from None


def _verification_failure(exc: BaseException) -> str | None:
    """The certificate verification error behind a urllib3 error, if that is what it is."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ssl.SSLCertVerificationError):
            return str(current.verify_message or current.reason or "verification failed")
        todo.extend([getattr(current, "reason", None), current.__cause__, current.__context__])
    return None


class _LimitedDecoder:
    """Decodes a Content-Encoding (identity, gzip, deflate) chunk by chunk, never producing more than
    `limit` bytes in all: zlib's `max_length` stops inflating one byte past the limit."""

    def __init__(self, encoding: str, limit: int, shown_url: str) -> None:
        self._limit = limit
        self._shown = shown_url
        self._total = 0
        self._fed = False
        codings = [c.strip().lower() for c in encoding.split(",") if c.strip() and c.strip().lower() != "identity"]
        if len(codings) > 1 or (codings and codings[0] not in ("gzip", "x-gzip", "deflate")):
            raise BadResponse(f"the answer of {shown_url} has an unsupported Content-Encoding {encoding[:40]!r}")
        self._coding = codings[0] if codings else ""
        self._zlib = self._new()

    def _new(self, raw_deflate: bool = False) -> zlib._Decompress | None:
        if self._coding in ("gzip", "x-gzip"):
            return zlib.decompressobj(16 + zlib.MAX_WBITS)
        if self._coding == "deflate":
            return zlib.decompressobj(-zlib.MAX_WBITS if raw_deflate else zlib.MAX_WBITS)
        return None

    def _count(self, data: bytes) -> bytes:
        self._total += len(data)
        if self._total > self._limit:
            raise ResponseTooLarge(self._shown, self._limit, "decoded" if self._coding else "")
        return data

    def feed(self, data: bytes, write: Callable[[bytes], object]) -> None:
        """Decode `data` and `write` the output, in pieces of at most _DECODE_PIECE bytes."""
        if self._zlib is None:
            write(self._count(data))
            return
        while data:
            d = self._zlib
            assert d is not None
            try:
                chunk = d.decompress(data, min(_DECODE_PIECE, self._limit - self._total + 1))
            except zlib.error:
                if self._coding == "deflate" and not self._fed:  # deflate sent raw, without the zlib header
                    self._fed = True
                    self._zlib = self._new(raw_deflate=True)
                    continue
                raise TransportError(f"the {self._coding} body is damaged") from None
            self._fed = True
            write(self._count(chunk))
            data = d.unconsumed_tail
            if d.eof:
                data = d.unused_data
                if not data or self._coding == "deflate":
                    break  # after the end of a deflate stream nothing counts
                self._zlib = self._new()  # gzip: the next member

    def finish(self, write: Callable[[bytes], object]) -> None:
        d = self._zlib
        if d is None:
            return
        write(self._count(d.flush(self._limit - self._total + 1)))
        if self._fed and not d.eof:
            raise TransportError(f"the {self._coding} body ends early")


class RetriesExhausted(Exception):
    def __init__(self, shown_url: str, attempts: int, last: str) -> None:
        last = snippet(last, 300)
        super().__init__(f"GET {shown_url} failed after {attempts} attempts: {last}")
        self.last = last


class HttpTransport(Protocol):
    """Performs one GET; raises TransportError for network-level failures."""

    def get(self, url: str, headers: Mapping[str, str]) -> HttpResponse: ...


class Urllib3Transport:
    """urllib3 pool (or proxy pool); bodies are read in chunks up to `max_body` bytes (decoded), decoded
    here (gzip, deflate), and checked against Content-Length. Every URL is checked first with the rules
    the operator checked it with (`checked_url`, RefusedUrl: user info, backslashes, fragments, ...) and
    the connection goes to the host and port of that very parse; redirects are never followed."""

    def __init__(
        self,
        proxy_url: str | None = None,
        *,
        pool_size: int = 4,
        timeout: float = 60.0,
        max_body: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.max_body = max_body
        t = urllib3.Timeout(connect=min(10.0, timeout), read=timeout)
        # No retries and no redirects here: get_with_retries retries, and an answer is never followed elsewhere.
        retries = urllib3.Retry(total=0, redirect=0, raise_on_redirect=False, raise_on_status=False)
        self._retries = retries
        self._proxied = bool(proxy_url)
        self._pool: urllib3.PoolManager = (
            urllib3.ProxyManager(proxy_url, maxsize=pool_size, timeout=t, retries=retries)
            if proxy_url
            else urllib3.PoolManager(maxsize=pool_size, timeout=t, retries=retries)
        )

    def get(self, url: str, headers: Mapping[str, str]) -> HttpResponse:
        endpoint = checked_url(url)
        sent = dict(headers)
        if not any(k.lower() == "accept-encoding" for k in sent):
            sent["Accept-Encoding"] = _ACCEPT_ENCODING
        try:
            resp = self._open(endpoint, sent)
            try:
                body = self._read(resp, redact_url(url))
            except BaseException:
                resp.close()  # the rest of the body is not read: the connection cannot be reused
                raise
            finally:
                resp.release_conn()
        except urllib3.exceptions.HTTPError as exc:
            untrusted = _verification_failure(exc)
            if untrusted is not None:
                raise UntrustedCertificate(redact_url(url), untrusted) from None
            raise TransportError(f"{type(exc).__name__}: {exc}") from exc
        return HttpResponse(status=resp.status, headers={k.lower(): v for k, v in resp.headers.items()}, body=body)

    def _open(self, endpoint: Endpoint, headers: Mapping[str, str]) -> urllib3.BaseHTTPResponse:
        """GET `endpoint` on a connection to the host and port it was checked for: the pool is chosen from
        the checked parse, not from the URL text read again. Only plain HTTP through a proxy sends the
        whole URL (the proxy then picks the host; urllib3 reads it with the same parse_url)."""
        sent = dict(headers)
        if self._proxied and endpoint.scheme == "http":
            return self._pool.urlopen(
                "GET", endpoint.url, redirect=False, headers=sent, retries=self._retries,
                preload_content=False, decode_content=False,
            )  # fmt: skip
        pool = self._pool.connection_from_host(endpoint.host, port=endpoint.port, scheme=endpoint.scheme)
        return pool.urlopen(
            "GET", endpoint.request_uri, redirect=False, assert_same_host=False, headers=sent, retries=self._retries,
            preload_content=False, decode_content=False,
        )  # fmt: skip

    def _read(self, resp: urllib3.BaseHTTPResponse, shown: str) -> bytes:
        declared_text = resp.headers.get("Content-Length")
        declared = int(declared_text) if declared_text and declared_text.strip().isdigit() else None
        if declared is not None and declared > self.max_body:
            raise ResponseTooLarge(shown, self.max_body, f"Content-Length {declared}")
        decoder = _LimitedDecoder(resp.headers.get("Content-Encoding", ""), self.max_body, shown)
        body = io.BytesIO()
        raw = 0
        for chunk in resp.stream(_READ_CHUNK, decode_content=False):
            raw += len(chunk)
            if raw > self.max_body:
                raise ResponseTooLarge(shown, self.max_body)
            decoder.feed(chunk, body.write)
        if declared is not None and raw != declared:
            raise TransportError(f"short body: {raw} of {declared} bytes")
        decoder.finish(body.write)
        return body.getvalue()

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
    max_body: int = MAX_RESPONSE_BYTES,
) -> T:
    """See the module docstring. The URL is logged without credentials. BadResponse (from the transport
    or for a body over `max_body`) is raised at once."""
    shown = redact_url(url)
    last = ""
    for attempt in range(retry.retries + 1):
        wait: float | None = None
        try:
            resp = transport.get(url, headers)
        except TransportError as exc:
            last = str(exc)
        else:
            if len(resp.body) > max_body:
                raise ResponseTooLarge(shown, max_body)
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


class ListingError(Exception):
    """A paged listing stopped making sense (see the module docstring); the message names the problem."""


class Pager:
    """The offsets of one paged listing (`offset`, None when done) and the checks of every page.

    pager = Pager("the recording API", page_size)
    while pager.offset is not None:
        offset = pager.offset
        page = fetch(offset)
        fresh = pager.take(offset, page.total, [key(item) for item in page.items], page.echoed_offset)
        yield from (item for item, new in zip(page.items, fresh) if new)
    """

    def __init__(
        self, api: str, page_size: int, *, slack: int = PAGE_SLACK, max_items: int | None = None, limit_hint: str = ""
    ) -> None:
        self.offset: int | None = 0
        self.items = 0
        """New items taken so far."""
        self._api = api
        self._page_size = page_size
        self._max_items = max_items
        self._limit_hint = limit_hint
        self._recent = RecentKeys(page_size)
        self._slack = slack
        self._pages = 0
        self._budget: int | None = None
        self._first_total = 0
        self._stale = 0
        self._previous: tuple[int, list[str]] | None = None

    def _fail(self, problem: str) -> ListingError:
        self.offset = None
        return ListingError(f"{self._api} {problem}")

    def take(self, offset: int, total: int, keys: list[str], echoed_offset: int | None = None) -> list[bool]:
        """Check the page asked for at `offset` (its `total`, its items' keys, the offset it names) and
        move on; returns which items are new. Raises ListingError when the listing makes no sense."""
        n = len(keys)
        self._pages += 1
        if echoed_offset is not None and echoed_offset != offset:
            raise self._fail(
                f"answered offset {echoed_offset} to a request for offset {offset}: the offsets do not advance"
            )
        if total < 0:
            raise self._fail(f"answered total={total} at offset {offset}")
        if n > self._page_size:
            raise self._fail(
                f"returned {n} items at offset {offset} for a page of at most {self._page_size}: its pages are "
                "not bounded by the limit asked for"
            )
        if n == 0 and offset < total:
            raise self._fail(
                f"returned an empty page at offset {offset} although total={total}: the listing ends early"
            )
        fresh = [self._recent.fresh(k) for k in keys]
        self.items += sum(fresh)
        if self._max_items is not None and self.items > self._max_items:
            hint = f"; {self._limit_hint}" if self._limit_hint else ""
            raise self._fail(
                f"listed more than {self._max_items} items by offset {offset} (total={total}): more than the "
                f"limit of this listing{hint}"
            )
        following = next_offset(offset, n, total)
        if self._pages == 1:
            self._first_total = total
            if following is not None:
                expected = 1 + -(-(total - n) // (following - offset))
                self._budget = expected + self._slack + expected // 10
        if following is not None:
            if self._previous is not None and self._previous[1] == keys:
                raise self._fail(
                    f"returned the same page for offset {offset} as for offset {self._previous[0]} (total={total}): "
                    "its pages do not advance"
                )
            self._stale = 0 if any(fresh) else self._stale + 1
            if self._stale >= MAX_STALE_PAGES:
                raise self._fail(
                    f"kept returning pages with nothing new up to offset {offset} ({self._stale} in a row, "
                    f"total={total}): its total does not match its pages"
                )
            if self._budget is not None and self._pages >= self._budget:
                raise self._fail(
                    f"kept returning pages past total={self._first_total} at offset {offset} "
                    f"({self._pages} pages; at most {self._budget} expected)"
                )
        self._previous = (offset, keys)
        self.offset = following
        return fresh
