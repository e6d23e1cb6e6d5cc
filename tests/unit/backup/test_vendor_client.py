"""The recording API client against a fake transport: auth, retries, paging, settings, redaction."""

from __future__ import annotations

import base64

import pytest

from cxbackup.backup.errors import VendorApiError, VendorAuthError, VendorListingError
from cxbackup.backup.window import RecordingWindow
from cxbackup.core.redact import Redactor, redact_url
from cxbackup.core.retry import RetryPolicy

from .fakes import DAY, HOUR, NOW_MS, PASSWORD, PREFIX, USER, FakeVendor, make_record


def records(n: int, start: int = NOW_MS - DAY, step: int = 60_000) -> list[dict[str, object]]:
    return [make_record(f"REC{i:05d}", start + i * step) for i in range(n)]


def test_basic_auth_and_settings() -> None:
    vendor = FakeVendor()
    seen: list[dict[str, str]] = []
    real_get = vendor.get

    def spy(url: str, headers: dict[str, str]) -> object:
        seen.append(dict(headers))
        return real_get(url, headers)

    vendor.get = spy  # type: ignore[method-assign,assignment]
    settings = vendor.client().settings()
    assert seen[0]["Authorization"] == "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert [e.bucket for e in settings.storage] == ["stage-recordings-us-west-1", "stage-recordings-us-east-1"]
    assert settings.storage_for("use1").bucket == "stage-recordings-us-east-1"
    assert settings.storage_for("nowhere").bucket == "stage-recordings-us-west-1"
    assert settings.storage_for(None).bucket == "stage-recordings-us-west-1"


def test_wrong_password_is_a_clear_error_without_the_password() -> None:
    vendor = FakeVendor()
    client = vendor.client(password="wrong-password")
    with pytest.raises(VendorAuthError) as info:
        client.settings()
    assert str(info.value) == f"GWS_USERNAME/GWS_PASSWORD rejected by {PREFIX}/me/settings/rcbs (HTTP 401)"
    assert "wrong-password" not in str(info.value)
    assert len(vendor.requests) == 1  # never retried


def test_retries_429_5xx_resets_and_garbled_bodies_with_backoff() -> None:
    vendor = FakeVendor(records(3))
    vendor.script.extend([429, 503, "reset", "garbage", 500])
    vendor.retry_after = "3"
    sleeps: list[float] = []
    client = vendor.client(sleep=sleeps.append, retry=RetryPolicy(retries=6, base_delay=0.1, max_delay=5))
    page = client.page(RecordingWindow(0, NOW_MS), 0)
    assert len(page.recordings) == 3
    assert len(sleeps) == 5
    assert sleeps[0] >= 3  # Retry-After honoured
    assert all(0 < s <= 5 for s in sleeps)


def test_gives_up_after_the_retries() -> None:
    vendor = FakeVendor()
    vendor.script.extend([503] * 10)
    client = vendor.client(retry=RetryPolicy(retries=2))
    with pytest.raises(VendorApiError, match="failed after 3 attempts: HTTP 503"):
        client.settings()
    assert len(vendor.requests) == 3


def test_other_statuses_fail_at_once() -> None:
    vendor = FakeVendor()
    vendor.script.append(404)
    with pytest.raises(VendorApiError, match="HTTP 404"):
        vendor.client().settings()


def test_paging_streams_every_record_once_with_the_seed_query() -> None:
    recs = records(250)
    vendor = FakeVendor(recs)
    client = vendor.client(page_size=100)
    window = RecordingWindow(NOW_MS - 2 * DAY, NOW_MS)
    got = [r.id for r in client.iter_recordings(window)]
    assert got == [r["id"] for r in recs]
    assert vendor.requests[0] == (
        f"{PREFIX}/recordings?startTimeRange={window.start_ms},{window.end_ms}&limit=100&offset=0"
    )
    offsets = [int(u.rsplit("offset=", 1)[1]) for u in vendor.requests]
    assert offsets == [0, 95, 190]  # pages overlap by 5
    assert client.count(window) == 250


def test_paging_survives_deletions_between_pages() -> None:
    recs = records(300)
    vendor = FakeVendor(recs)

    def retention(offset: int) -> None:  # the vendor deletes the 3 oldest before each later page
        if offset:
            with vendor.lock:
                del vendor.records[:3]

    vendor.on_page = retention
    got = [r.id for r in vendor.client(page_size=100).iter_recordings(RecordingWindow(0, NOW_MS))]
    expected = [r["id"] for r in recs]
    # offsets shift down by 3 per page; the overlap still sees every record, once
    assert got == expected


def test_window_bounds_are_half_open() -> None:
    recs = [make_record("A", 1000), make_record("B", 2000), make_record("C", 3000)]
    client = FakeVendor(recs).client()
    assert [r.id for r in client.iter_recordings(RecordingWindow(1000, 3000))] == ["A", "B"]
    assert list(client.iter_recordings(RecordingWindow(5, 5))) == []


def test_redaction() -> None:
    url = "https://user:pw@s3.example.com/b/k?X-Amz-Signature=abc&X-Amz-Credential=AKIA/x&prefix=p&max-keys=1"
    cleaned = redact_url(url)
    assert "pw" not in cleaned and "abc" not in cleaned and "AKIA" not in cleaned
    assert "prefix=p" in cleaned and cleaned.startswith("https://s3.example.com/b/k?")
    r = Redactor(["pa55word-xyz", None, ""])
    assert r.clean("login pa55word-xyz at https://a:b@h/p") == "login *** at https://h/p"


def test_hour_constant_sanity() -> None:
    assert HOUR * 24 == DAY


def test_error_answers_are_not_copied_into_the_error() -> None:
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    vendor = FakeVendor()
    real_get = vendor.get
    body = (
        b'{"code": "TENANT_SUSPENDED", "message": "echo: Authorization: Basic ' + token.encode() + b'", '
        b'"internal": "db=postgres://svc:hunter2@db.vendor.internal/rec"}'
    ) + b" " * 5000

    def answer(url: str, headers: dict[str, str]) -> object:
        if "settings" in url:
            from cxbackup.backup.vendor_client import HttpResponse

            return HttpResponse(409, {}, body)
        return real_get(url, headers)

    vendor.get = answer  # type: ignore[method-assign,assignment]
    with pytest.raises(VendorApiError) as info:
        vendor.client().settings()
    text = str(info.value)
    assert "HTTP 409" in text and "TENANT_SUSPENDED" in text
    assert token not in text and "hunter2" not in text and "postgres" not in text and len(text) < 300


@pytest.mark.parametrize(
    ("fault", "problem"),
    [
        ("repeat", r"the recording API returned the same page for offset \d+ as for offset \d+ \(total=1100\)"),
        ("stuck", r"the recording API answered offset 0 to a request for offset 95: the offsets do not advance"),
    ],
)
def test_a_listing_that_stops_making_sense_ends_with_an_error(fault: str, problem: str) -> None:
    vendor = FakeVendor(records(100))
    vendor.listing_fault = fault
    with pytest.raises(VendorListingError, match=problem) as info:
        list(vendor.client(page_size=100).iter_recordings(RecordingWindow(0, NOW_MS)))
    assert len(vendor.requests) <= 5
    assert f"{PREFIX}/recordings?startTimeRange=0," in str(info.value)  # which listing, without credentials
    assert info.value.exit_code == 5
