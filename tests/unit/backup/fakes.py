"""In-memory stand-ins for the vendor API (an HttpTransport), the S3 media source, and a clock.

They follow VENDOR_API.md closely enough to run the real worker logic: pages sorted by (startTime, id),
FROM <= startTime < TO, offset/limit, Basic auth, scripted failures.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cxbackup.backup.errors import MediaMissingError, MediaSourceError
from cxbackup.backup.records import parse_metadata_time
from cxbackup.backup.s3source import Fetched, MediaRef
from cxbackup.backup.vendor_client import HttpResponse, StorageEntry, TransportError, VendorClient, VendorSettings
from cxbackup.core.times import to_ms

PREFIX = "https://gws.example.com/api/v2"
USER = "rcbs@customer_tenant.com"
PASSWORD = "s3cr3t-Pa55word"
NOW = datetime(2024, 5, 10, 12, 0, tzinfo=UTC)
NOW_MS = to_ms(NOW)
HOUR = 3_600_000
DAY = 86_400_000


def vtime(ms: int) -> str:
    """Epoch ms as the vendor writes it: 2021-07-21T16:49:00.000+0000."""
    dt = datetime.fromtimestamp(ms / 1000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}+0000"


def make_record(
    rec_id: str,
    start_ms: int,
    media: list[tuple[str, str]] | None = None,
    *,
    region: str = "usw1",
    partitions: list[str] | None = None,
    accessgroups: list[str] | None = None,
    hierarchy: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A record in the vendor's metadata format; media as (mediaId, type) pairs (default one mp3)."""
    if media is None:
        media = [(f"{rec_id}_voice.mp3.bin", "audio/mp3")]
    files = []
    for mid, mtype in media:
        params: dict[str, Any] = {"agentId": "103001", "username": "agent_103001"}
        if hierarchy is not None:
            params["agentHierarchy"] = hierarchy
        files.append(
            {
                "startTime": vtime(start_ms),
                "stopTime": vtime(start_ms + 37_000),
                "mediaId": mid,
                "type": mtype,
                "size": "1234",
                "parameters": params,
                "partitions": partitions or [],
                "accessgroups": accessgroups if accessgroups is not None else ["/"],
                "channels": 2,
            }
        )
    rec: dict[str, Any] = {
        "id": rec_id,
        "callerPhoneNumber": "+19059683343",
        "startTime": vtime(start_ms),
        "stopTime": vtime(start_ms + 37_000),
        "eventHistory": [],
        "mediaFiles": files,
        "region": region,
    }
    rec.update(extra or {})
    return rec


def media_bytes(media_id: str, size: int = 3000) -> bytes:
    seed = hashlib.sha256(media_id.encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


class FakeVendor:
    """The recording API as an HttpTransport (pass it to VendorClient(transport=...))."""

    def __init__(self, records: list[dict[str, Any]] | None = None, storage: list[StorageEntry] | None = None) -> None:
        self.records: list[dict[str, Any]] = list(records or [])
        self.storage = storage or [
            StorageEntry("usw1", "us-west-1", "stage-recordings-us-west-1", "PoD_tenant_2034/"),
            StorageEntry("use1", "us-east-1", "stage-recordings-us-east-1", "PoD_tenant_2034/"),
        ]
        self.username = USER
        self.password = PASSWORD
        self.script: deque[int | str] = deque()  # statuses or "reset" / "garbage" answered first
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self.retry_after: str | None = None
        self.on_page: Any = None  # callback(offset) before answering a recordings page
        # a server whose total lies ("repeat": past the real end it serves the last page again, as if it
        # clamped the offset) or whose offsets do not advance ("stuck": it always serves the first page)
        self.listing_fault: str | None = None

    def client(self, **kwargs: Any) -> VendorClient:
        defaults: dict[str, Any] = {
            "settings_url": f"{PREFIX}/me/settings/rcbs",
            "recordings_url": f"{PREFIX}/recordings",
            "username": USER,
            "password": PASSWORD,
            "transport": self,
            "sleep": lambda _s: None,
        }
        defaults.update(kwargs)
        return VendorClient(**defaults)

    def _auth_ok(self, headers: Mapping[str, str]) -> bool:
        expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return headers.get("Authorization") == f"Basic {expected}"

    def get(self, url: str, headers: Mapping[str, str]) -> HttpResponse:
        with self.lock:
            self.requests.append(url)
            scripted = self.script.popleft() if self.script else None
        if scripted == "reset":
            raise TransportError("ProtocolError: connection reset by peer")
        if scripted == "garbage":
            return HttpResponse(200, {}, b'{"total": 3, "recordings": [{"id": "x"')
        if isinstance(scripted, int):
            hdrs = {"Retry-After": self.retry_after} if self.retry_after else {}
            return HttpResponse(scripted, hdrs, b'{"message": "scripted"}')
        if not self._auth_ok(headers):
            return HttpResponse(401, {}, b'{"statusCode": 401}')
        parts = urlsplit(url)
        if parts.path.endswith("/me/settings/rcbs"):
            body = {
                "tenant": "PoD_tenant_2034",
                "storage": [
                    {"region": e.region, "awsRegion": e.aws_region, "bucket": e.bucket, "prefix": e.prefix}
                    for e in self.storage
                ],
            }
            return HttpResponse(200, {}, json.dumps(body).encode())
        if parts.path.endswith("/recordings"):
            q = parse_qs(parts.query)
            lo, hi = (int(x) for x in q["startTimeRange"][0].split(","))
            limit = min(int(q.get("limit", ["100"])[0]), 1000)
            offset = int(q.get("offset", ["0"])[0])
            if self.on_page is not None:
                self.on_page(offset)
            with self.lock:
                matching = sorted(
                    (r for r in self.records if lo <= parse_metadata_time(r["startTime"]) < hi),
                    key=lambda r: (parse_metadata_time(r["startTime"]), r.get("id", "")),
                )
            total, served = len(matching), offset
            if self.listing_fault == "repeat" and matching:
                total, served = 10 * len(matching) + limit, min(offset, max(0, len(matching) - limit))
            elif self.listing_fault == "stuck" and matching:
                total, served, offset = 10 * len(matching) + limit, 0, 0
            page = matching[served : served + limit]
            # pretty-printed records, like the vendor's sample, to exercise raw-text preservation
            recs = ",\n  ".join(json.dumps(r, indent=2) for r in page)
            text = f'{{"total": {total}, "offset": {offset}, "recordings": [\n  {recs}\n]}}'
            return HttpResponse(200, {}, text.encode())
        return HttpResponse(404, {}, b"{}")

    @property
    def settings(self) -> VendorSettings:
        return VendorSettings("PoD_tenant_2034", tuple(self.storage))


@dataclass
class _Stream:
    data: bytes
    content_length: int
    md5_hex: str | None
    cut_at: int | None = None
    chunk_error: bool = False
    closed: bool = False

    def chunks(self, size: int) -> Iterator[bytes]:
        end = len(self.data) if self.cut_at is None else self.cut_at
        for i in range(0, end, size):
            yield self.data[i : min(i + size, end)]
        if self.chunk_error:
            raise MediaSourceError("reading failed: ResponseStreamingError: connection reset")

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeMediaSource:
    """Media objects by mediaId; `faults[media_id]` = list of 'truncate'/'reset'/'corrupt'/'slowdown' to apply first."""

    settings: VendorSettings
    objects: dict[str, bytes] = field(default_factory=dict)
    faults: dict[str, list[str]] = field(default_factory=dict)
    opens: Counter[str] = field(default_factory=Counter)
    heads: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    in_flight: int = 0
    max_in_flight: int = 0
    open_delay: float = 0.0

    def locate(self, region: str | None, media_id: str) -> MediaRef:
        entry = self.settings.storage_for(region)
        return MediaRef(media_id, entry.bucket, entry.prefix + media_id, entry.aws_region)

    def size(self, ref: MediaRef) -> int:
        with self.lock:
            self.heads[ref.media_id] += 1
        if ref.media_id not in self.objects:
            raise MediaMissingError(f"s3://{ref.bucket}/{ref.key} not found in S3 (404)")
        return len(self.objects[ref.media_id])

    def open(self, ref: MediaRef) -> _Stream:
        with self.lock:
            self.opens[ref.media_id] += 1
            pending = self.faults.get(ref.media_id, [])
            fault = pending.pop(0) if pending else None
        if ref.media_id not in self.objects:
            raise MediaMissingError(f"s3://{ref.bucket}/{ref.key} not found in S3 (404)")
        data = self.objects[ref.media_id]
        with self.lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        time.sleep(self.open_delay)
        with self.lock:
            self.in_flight -= 1
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest()
        if fault == "slowdown":
            raise MediaSourceError("S3 error: SlowDown Please reduce your request rate.")
        if fault == "truncate":
            return _Stream(data, len(data), md5, cut_at=len(data) // 2)
        if fault == "reset":
            return _Stream(data, len(data), md5, cut_at=len(data) // 3, chunk_error=True)
        if fault == "corrupt":
            return _Stream(bytes([data[0] ^ 0xFF]) + data[1:], len(data), md5)
        return _Stream(data, len(data), md5)

    def add_for(self, records: list[dict[str, Any]], size: int = 3000) -> None:
        for rec in records:
            for m in rec["mediaFiles"]:
                self.objects[m["mediaId"]] = media_bytes(m["mediaId"], size)


@dataclass
class FakeFileMediaSource(FakeMediaSource):
    """A FakeMediaSource that also writes objects straight into a file, as the CRT S3 client does
    (`download_to`); the same faults apply (a truncated body leaves a short file, a corrupt one a file
    whose MD5 differs, a reset raises)."""

    downloads: Counter[str] = field(default_factory=Counter)

    def download_to(self, ref: MediaRef, path: str) -> Fetched:
        stream = self.open(ref)
        with self.lock:
            self.downloads[ref.media_id] += 1
        try:
            with open(path, "wb") as f:  # the CRT truncates the file it is given
                for chunk in stream.chunks(1 << 16):
                    f.write(chunk)
        finally:
            stream.close()
        return Fetched(stream.content_length, stream.md5_hex)
