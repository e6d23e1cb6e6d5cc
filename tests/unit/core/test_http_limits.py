"""Response size limits of the HTTP transport (cxbackup.core.http) against a local HTTP server: gzip and
deflate decoded incrementally, decompression bombs stopped at the limit with bounded memory, oversized
Content-Length refused before reading, and the clients' errors not retried."""

from __future__ import annotations

import contextlib
import gzip
import json
import random
import threading
import tracemalloc
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from cxbackup.backup.errors import VendorResponseError
from cxbackup.backup.vendor_client import VendorClient
from cxbackup.backup.window import RecordingWindow
from cxbackup.core.errors import EXIT_UNAVAILABLE
from cxbackup.core.http import (
    MAX_RESPONSE_BYTES,
    BadResponse,
    HttpResponse,
    ResponseTooLarge,
    TransportError,
    Urllib3Transport,
    get_with_retries,
)
from cxbackup.core.retry import RetryPolicy
from cxbackup.export.errors import SourceError
from cxbackup.export.request import TimeRange
from cxbackup.export.source import ApiSource

MiB = 1024 * 1024


def gzip_of_zeros(decoded: int, *, members: int = 1) -> bytes:
    """A gzip body of `decoded` zero bytes, in `members` gzip members (concatenated, as gzip allows)."""
    member = gzip.compress(bytes(decoded // members), compresslevel=9)
    return member * members


@dataclass
class Route:
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    status: int = 200


class LocalServer:
    """http.server in a thread on 127.0.0.1, answering fixed routes; counts requests per path."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.seen_headers: list[dict[str, str]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "local"
            routes: ClassVar[dict[str, Route]] = self.routes

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                outer.hits[path] += 1
                outer.seen_headers.append(dict(self.headers.items()))
                route = outer.routes.get(path, Route(b"{}", status=404))
                self.send_response(route.status)
                headers = {"Content-Length": str(len(route.body)), **route.headers}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(route.body)  # a client that stops reading is the point

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.handle_error = lambda *_a: None  # type: ignore[method-assign]  # clients that hang up
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def server() -> Iterator[LocalServer]:
    srv = LocalServer()
    srv.start()
    yield srv
    srv.stop()


PAGE = {"total": 2, "offset": 0, "recordings": [{"id": "A", "mediaFiles": []}, {"id": "B", "mediaFiles": []}]}


def test_gzip_and_deflate_pages_are_decoded_and_plain_ones_pass(server: LocalServer) -> None:
    page = json.dumps(PAGE).encode() * 1000  # a few hundred KB, well under the limit
    deflater = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    raw_deflate = deflater.compress(page) + deflater.flush()
    server.routes.update(
        {
            "/gzip": Route(gzip.compress(page), {"Content-Encoding": "gzip"}),
            "/deflate": Route(zlib.compress(page), {"Content-Encoding": "deflate"}),
            "/raw-deflate": Route(raw_deflate, {"Content-Encoding": "deflate"}),
            "/two-members": Route(gzip.compress(page[:999]) + gzip.compress(page[999:]), {"Content-Encoding": "gzip"}),
            "/plain": Route(page),
        }
    )
    transport = Urllib3Transport()
    for path in ("/gzip", "/deflate", "/raw-deflate", "/two-members", "/plain"):
        resp = transport.get(server.url + path, {})
        assert resp.status == 200 and resp.body == page, path
    assert all(h.get("Accept-Encoding") == "gzip, deflate" for h in server.seen_headers)


def test_a_gzip_bomb_stops_at_the_limit_with_bounded_memory(server: LocalServer) -> None:
    bomb = gzip_of_zeros(256 * MiB)  # about 250 KB on the wire
    assert len(bomb) < MiB
    server.routes["/bomb"] = Route(bomb, {"Content-Encoding": "gzip", "Content-Type": "application/json"})
    transport = Urllib3Transport(max_body=2 * MiB)
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge) as caught:
            transport.get(f"{server.url}/bomb?token=abc", {})  # a URL with user info is refused (test_endpoints)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    message = str(caught.value)
    assert f"{server.url}/bomb" in message and "2097152 bytes" in message and "decoded" in message
    assert "abc" not in message
    assert peak < 8 * MiB, f"peak {peak} bytes while refusing a 256 MiB body"
    assert isinstance(caught.value, BadResponse) and not isinstance(caught.value, TransportError)


def test_the_default_limit_stops_a_1_gib_bomb_from_1_mb_of_gzip(server: LocalServer) -> None:
    bomb = gzip_of_zeros(1024 * MiB, members=16)
    assert len(bomb) < 2 * MiB
    server.routes["/bomb"] = Route(bomb, {"Content-Encoding": "gzip"})
    transport = Urllib3Transport()
    tracemalloc.start()
    try:
        with pytest.raises(ResponseTooLarge, match=f"limit of {MAX_RESPONSE_BYTES} bytes"):
            transport.get(server.url + "/bomb", {})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MAX_RESPONSE_BYTES + 8 * MiB, f"peak {peak} bytes while refusing a 1 GiB body"


def test_a_declared_length_over_the_limit_is_refused_before_reading(server: LocalServer) -> None:
    server.routes["/big"] = Route(b"x" * (3 * MiB))
    with pytest.raises(ResponseTooLarge, match="Content-Length 3145728"):
        Urllib3Transport(max_body=MiB).get(server.url + "/big", {})


def test_a_cut_gzip_body_is_a_transport_error_and_unknown_encodings_are_refused(server: LocalServer) -> None:
    whole = gzip.compress(json.dumps(PAGE).encode() * 100)
    server.routes["/cut"] = Route(whole[: len(whole) // 2], {"Content-Encoding": "gzip"})
    server.routes["/br"] = Route(b"\x1b\x00", {"Content-Encoding": "br"})
    server.routes["/double"] = Route(gzip.compress(gzip.compress(b"{}")), {"Content-Encoding": "gzip, gzip"})
    transport = Urllib3Transport()
    with pytest.raises(TransportError, match="ends early"):
        transport.get(server.url + "/cut", {})
    for path in ("/br", "/double"):
        with pytest.raises(BadResponse, match="unsupported Content-Encoding"):
            transport.get(server.url + path, {})


def test_the_retry_loop_applies_the_limit_to_any_transport_and_does_not_retry() -> None:
    calls: list[str] = []

    class Big:
        def get(self, url: str, headers: Any) -> HttpResponse:
            calls.append(url)
            return HttpResponse(200, {}, b"x" * 1001)

    with pytest.raises(ResponseTooLarge):
        get_with_retries(
            Big(), "https://h/x", {}, lambda r: r.body, retry=RetryPolicy(retries=5), rng=random.Random(), sleep=id,
            max_body=1000,
        )  # fmt: skip
    assert len(calls) == 1


def test_the_clients_turn_a_bomb_into_a_non_retryable_error_naming_url_and_limit(server: LocalServer) -> None:
    bomb = gzip_of_zeros(32 * MiB)
    for path in ("/api/v2/recordings", "/api/v2/contact-history"):
        server.routes[path] = Route(bomb, {"Content-Encoding": "gzip"})
    vendor = VendorClient(
        settings_url=server.url + "/api/v2/me/settings/rcbs",
        recordings_url=server.url + "/api/v2/recordings",
        username="u",
        password="p4ssword",
        sleep=lambda _s: None,
        max_response_bytes=MiB,
    )
    with pytest.raises(VendorResponseError, match=r"/api/v2/recordings\?.*larger than the limit of 1048576") as info:
        list(vendor.iter_recordings(RecordingWindow(0, 1000)))
    assert not info.value.retryable and info.value.exit_code == EXIT_UNAVAILABLE
    assert server.hits["/api/v2/recordings"] == 1  # not retried

    source = ApiSource(server.url + "/api/v2", "u", "p4ssword", sleep=lambda _s: None, max_response_bytes=MiB)
    with pytest.raises(SourceError, match="larger than the limit of 1048576") as caught:
        list(source.contact_history(TimeRange(datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC))))
    assert not caught.value.retryable
    assert server.hits["/api/v2/contact-history"] == 1
