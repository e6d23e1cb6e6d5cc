"""The vendor data API client with a fake transport: paging, overlap, retries, errors, secrets."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from cxbackup.core.retry import RetryPolicy
from cxbackup.export.errors import (
    ExportConfigError,
    SourceAuthError,
    SourceError,
    SourceNotFoundError,
    SourceUnavailableError,
)
from cxbackup.export.request import TimeRange
from cxbackup.export.source import ApiSource, HttpResponse, TransportError

RANGE = TimeRange(datetime(2026, 8, 24, tzinfo=UTC), datetime(2026, 8, 25, tzinfo=UTC))
PASSWORD = "pa55-w0rd!"

Handler = Callable[[str, dict[str, list[str]]], HttpResponse | Exception]


class FakeTransport:
    """Answers from a handler(path, query); records every URL and checks the Basic credentials."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.urls: list[str] = []

    def get(self, url: str, headers: Mapping[str, str]) -> HttpResponse:
        self.urls.append(url)
        assert headers["Authorization"] == "Basic " + base64.b64encode(f"gws:{PASSWORD}".encode()).decode()
        parts = urlsplit(url)
        answer = self.handler(parts.path, parse_qs(parts.query))
        if isinstance(answer, Exception):
            raise answer
        return answer


def ok(payload: Any) -> HttpResponse:
    return HttpResponse(200, {"content-type": "application/json"}, json.dumps(payload).encode())


def paged(items: list[dict[str, Any]], extra: dict[str, Any] | None = None) -> Handler:
    def handler(_path: str, query: dict[str, list[str]]) -> HttpResponse:
        assert query["startTimeRange"] == [f"{RANGE.start_ms},{RANGE.end_ms}"]
        offset, limit = int(query["offset"][0]), int(query["limit"][0])
        return ok({"total": len(items), "offset": offset, "items": items[offset : offset + limit], **(extra or {})})

    return handler


def client(handler: Handler, **kwargs: Any) -> tuple[ApiSource, FakeTransport, list[float]]:
    transport = FakeTransport(handler)
    sleeps: list[float] = []
    source = ApiSource(
        "http://vendor.example/api/v2/",
        "gws",
        PASSWORD,
        transport=transport,
        sleep=sleeps.append,
        retry=RetryPolicy(retries=3, base_delay=0.1, max_delay=1.0),
        **kwargs,
    )
    return source, transport, sleeps


def test_pages_until_total_with_a_small_overlap() -> None:
    items = [{"id": f"c{i}"} for i in range(23)]
    source, transport, _ = client(paged(items), page_size=8)
    got = [i for page in source.contact_history(RANGE) for i in page.items]
    assert got == items
    assert all(u.startswith("http://vendor.example/api/v2/contact-history?") for u in transport.urls)
    offsets = [int(parse_qs(urlsplit(u).query)["offset"][0]) for u in transport.urls]
    assert offsets == [0, 6, 12, 18]  # 8 per page, 2 overlapping


def test_an_item_removed_between_pages_is_not_skipped() -> None:
    items = [{"id": f"m{i}"} for i in range(12)]
    calls = [0]

    def handler(path: str, query: dict[str, list[str]]) -> HttpResponse | Exception:
        calls[0] += 1
        current = items if calls[0] == 1 else items[1:]  # retention removed m0 after the first page
        return paged(current)(path, query)

    source, _, _ = client(handler, page_size=6)
    got = [i["id"] for page in source.contact_history(RANGE) for i in page.items]
    assert got == [f"m{i}" for i in range(12)]


def test_chat_url_quotes_the_user_and_reads_retention() -> None:
    retention = {"days": 90, "oldestAvailable": "2026-05-27T00:15:00.000Z", "rangeOutsideRetention": True}
    source, transport, _ = client(paged([], {"retention": retention}))
    pages = list(source.chat_messages("a/b c", RANGE))
    assert transport.urls[0].startswith("http://vendor.example/api/v2/chat/users/a%2Fb%20c/messages?")
    assert len(pages) == 1 and pages[0].items == []
    r = pages[0].retention
    assert r is not None and (r.days, r.range_outside, r.range_truncated) == (90, True, False)
    assert r.oldest_available == datetime(2026, 5, 27, 0, 15, tzinfo=UTC)


def test_retries_on_throttling_server_errors_cut_bodies_and_connection_errors() -> None:
    answers: list[HttpResponse | Exception] = [
        HttpResponse(429, {"retry-after": "0.5"}, b"{}"),
        HttpResponse(503, {}, b"busy"),
        HttpResponse(200, {}, b'{"total": 1, "items": [{"id'),
        TransportError("ConnectionResetError: reset"),
    ]

    def handler(path: str, query: dict[str, list[str]]) -> HttpResponse | Exception:
        return answers.pop(0) if answers else ok({"total": 1, "offset": 0, "items": [{"id": "x"}]})

    sleeps: list[float] = []
    source = ApiSource(
        "http://vendor.example/api",
        "gws",
        PASSWORD,
        transport=FakeTransport(handler),
        sleep=sleeps.append,
        retry=RetryPolicy(retries=4, base_delay=0.1, max_delay=1.0),
    )
    assert [i for p in source.contact_history(RANGE) for i in p.items] == [{"id": "x"}]
    assert len(sleeps) == 4 and sleeps[0] >= 0.5  # Retry-After honoured


def test_gives_up_after_the_retries_as_a_temporary_error() -> None:
    source, transport, sleeps = client(lambda _p, _q: HttpResponse(502, {}, b"bad gateway"))
    with pytest.raises(SourceUnavailableError, match="after 4 attempts: HTTP 502") as caught:
        list(source.contact_history(RANGE))
    assert caught.value.retryable and len(transport.urls) == 4 and len(sleeps) == 3


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (401, b"{}", SourceAuthError, "GWS_USERNAME/GWS_PASSWORD rejected"),
        (403, b"{}", SourceAuthError, "HTTP 403"),
        (404, b'{"message": "chat user \'u9\' not found"}', SourceNotFoundError, "chat user 'u9' not found"),
        (400, b'{"message": "whole-organisation chat exports are not supported"}', SourceError, "not supported"),
    ],
)
def test_permanent_errors_are_not_retried(status: int, body: bytes, error: type[Exception], message: str) -> None:
    source, transport, _ = client(lambda _p, _q: HttpResponse(status, {}, body))
    with pytest.raises(error, match=message) as caught:
        list(source.chat_messages("u9", RANGE))
    assert len(transport.urls) == 1
    assert PASSWORD not in str(caught.value) and "gws:" not in str(caught.value)
    assert PASSWORD not in repr(source)


def test_configuration_errors() -> None:
    with pytest.raises(ExportConfigError, match="GWS_USERNAME and GWS_PASSWORD"):
        ApiSource.from_env({"CXBACKUP_EXPORT_API": "http://x"})
    with pytest.raises(ExportConfigError, match="CXBACKUP_EXPORT_API"):
        ApiSource.from_env({"GWS_USERNAME": "u", "GWS_PASSWORD": "p"})
    with pytest.raises(ExportConfigError, match="http"):
        ApiSource("ftp://x", "u", "p")
    source = ApiSource.from_env({"GWS_USERNAME": "u", "GWS_PASSWORD": "p"}, "https://vendor.example/api")
    assert source.prefix == "https://vendor.example/api"


def test_error_answers_keep_a_code_and_a_short_clean_snippet_never_the_body() -> None:
    token = base64.b64encode(f"gws:{PASSWORD}".encode()).decode()
    echo = json.dumps(
        {
            "code": "BAD_RANGE",
            "message": f"rejected Authorization: Basic {token} for gws:{PASSWORD} " + "detail " * 200,
            "trace": "java.lang.IllegalStateException at com.vendor.internal.Secretive(Secretive.java:42)",
        }
    ).encode()
    html = b"<html><body><pre>stack trace: com.vendor.internal.Secretive</pre></body></html>" * 50
    for status, body, code in ((400, echo, "BAD_RANGE"), (500, html, "")):
        source, _, _ = client(lambda _p, _q, s=status, b=body: HttpResponse(s, {}, b))
        with pytest.raises(SourceError) as caught:
            list(source.contact_history(RANGE))
        text = str(caught.value)
        assert f"HTTP {status}" in text and code in text and len(text) < 400, text
        assert "Secretive" not in text and "<html>" not in text and "detail detail" not in text[-30:]
        assert PASSWORD not in text and token not in text


def test_a_listing_that_stops_making_sense_is_an_error_not_an_endless_loop() -> None:
    items = [{"id": f"c{i}"} for i in range(120)]

    def lying(_path: str, query: dict[str, list[str]]) -> HttpResponse:
        offset, limit = int(query["offset"][0]), int(query["limit"][0])
        served = min(offset, len(items) - limit)  # past the real end: the last page again
        return ok({"total": 10 * len(items), "offset": offset, "items": items[served : served + limit]})

    source, transport, _ = client(lying, page_size=50)
    with pytest.raises(SourceError, match=r"contact history\) returned the same page for offset \d+") as caught:
        list(source.contact_history(RANGE))
    assert not caught.value.retryable and len(transport.urls) < 10

    def stuck(_path: str, query: dict[str, list[str]]) -> HttpResponse:
        return ok({"total": 1000, "offset": 0, "items": items[:50]})  # ignores the offset

    source, transport, _ = client(stuck, page_size=50)
    with pytest.raises(SourceError, match="answered offset 0 to a request for offset 45: the offsets do not advance"):
        list(source.chat_messages("u1", RANGE))
    assert len(transport.urls) == 2
