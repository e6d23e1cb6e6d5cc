"""The work a vendor's listing can cause is bounded: a run lists at most maxRecordingsPerRun recordings (by
default MAX_RECORDINGS_PER_DAY per day of the window) and fails naming the limit, without advancing its
checkpoint and without leaving anything half-written. The vendor here is an injected transport whose
listing never ends: every page brings fresh records, and its `total` is whatever the case needs."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from cxbackup.backup import window as window_module
from cxbackup.backup.config import Credentials, RcbsConfig
from cxbackup.backup.errors import ListingLimitError, VendorListingError
from cxbackup.backup.vendor_client import HttpResponse
from cxbackup.backup.window import RecordingWindow, recordings_limit
from cxbackup.backup.worker import run_backup
from cxbackup.core.http import ListingError, Pager

from .fakes import DAY, NOW, NOW_MS, PASSWORD, USER, FakeVendor, make_record

CREDS = Credentials(gws_username=USER, gws_password=PASSWORD)


class EndlessVendor(FakeVendor):
    """The recording API of a vendor whose listing never ends: each page holds `limit` records never seen
    before; `total` is `count_total` for the count request (limit=1) and `page_total(offset, limit)` for pages."""

    def __init__(self, count_total: int, page_total: str) -> None:
        super().__init__([])
        self.count_total = count_total
        self.page_total = page_total
        self.pages = 0

    def get(self, url: str, headers: Mapping[str, str]) -> HttpResponse:
        parts = urlsplit(url)
        if not parts.path.endswith("/recordings"):
            return super().get(url, headers)
        q = parse_qs(parts.query)
        lo = int(q["startTimeRange"][0].split(",")[0])
        limit, offset = int(q["limit"][0]), int(q["offset"][0])
        if limit == 1:
            total = self.count_total
        else:
            self.pages += 1
            total = 10**9 if self.page_total == "huge" else offset + 2 * limit  # "growing": always one more page
        records = [make_record(f"ENDLESS{offset + i:012d}", lo + (offset + i) % DAY) for i in range(limit)]
        body = {"total": total, "offset": offset, "recordings": records}
        return HttpResponse(200, {}, json.dumps(body).encode())


def run(tmp_path: Path, vendor: FakeVendor, **values: object) -> object:
    config = RcbsConfig.from_values(
        {
            "gwsUriPrefix": "https://gws.example.com/api/v2",
            "targetDir": str(tmp_path / "target"),
            "maxAge": 1,
            "metadataOnly": "true",
            "concurrency": 2,
            "retries": 0,
            **values,
        }
    )
    return run_backup(config, CREDS, now=NOW, vendor=vendor.client(), sleep=lambda _s: None)


def metadata_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("ENDLESS*.json") if p.is_file()]


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob(".*.part-*")]


def test_an_endless_listing_stops_at_max_recordings_per_run(tmp_path: Path) -> None:
    """The vendor says the window holds 50, then pages on with fresh records and a total of a billion: the
    run stops at maxRecordingsPerRun (250), fails naming the limit and the setting, leaves no temporary
    file and does not advance its checkpoint."""
    vendor = EndlessVendor(count_total=50, page_total="huge")
    summary = run(tmp_path, vendor, maxRecordingsPerRun=250, pageSize=100)
    root = tmp_path / "target"
    assert summary.error is not None, "the endless listing must fail the run"  # type: ignore[attr-defined]
    error: str = summary.error  # type: ignore[attr-defined]
    assert "more than 250" in error and "maxRecordingsPerRun=250" in error, error
    assert "spec.window.maxRecordingsPerRun" in error
    assert summary.exit_code == 5 and not summary.checkpoint_advanced  # type: ignore[attr-defined]
    assert not list(root.glob("last_recording_endtime*.txt"))
    assert vendor.pages <= 4  # three pages reach 250 (with the overlap), the fourth goes past it
    written = metadata_files(root)
    assert 0 < len(written) <= 250
    assert leftovers(root) == []
    for path in written:  # whatever was written is whole
        assert json.loads(path.read_text())["id"] == path.stem


def test_a_window_whose_total_is_over_the_limit_fails_before_the_first_page(tmp_path: Path) -> None:
    vendor = EndlessVendor(count_total=10**9, page_total="huge")
    summary = run(tmp_path, vendor, maxRecordingsPerRun=1000)
    error: str = summary.error  # type: ignore[attr-defined]
    assert "reports 1000000000 recordings" in error and "more than 1000" in error, error
    assert "maxRecordingsPerRun" in error
    assert vendor.pages == 0 and metadata_files(tmp_path / "target") == []
    assert not summary.checkpoint_advanced  # type: ignore[attr-defined]


def test_the_default_limit_comes_from_the_window_length(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without maxRecordingsPerRun a run may list MAX_RECORDINGS_PER_DAY per started day of its window."""
    assert recordings_limit(RecordingWindow(0, DAY)) == window_module.MAX_RECORDINGS_PER_DAY
    assert recordings_limit(RecordingWindow(0, DAY + 1)) == 2 * window_module.MAX_RECORDINGS_PER_DAY
    assert recordings_limit(RecordingWindow(NOW_MS, NOW_MS)) == window_module.MAX_RECORDINGS_PER_DAY
    assert recordings_limit(RecordingWindow(0, 30 * DAY), 5) == 5
    monkeypatch.setattr(window_module, "MAX_RECORDINGS_PER_DAY", 300)
    vendor = EndlessVendor(count_total=10, page_total="huge")
    summary = run(tmp_path, vendor, pageSize=100)
    error: str = summary.error  # type: ignore[attr-defined]
    assert "more than 300" in error and "maxRecordingsPerRun is not set: 300 per day of the window" in error, error
    assert len(metadata_files(tmp_path / "target")) <= 300
    assert not summary.checkpoint_advanced  # type: ignore[attr-defined]


def test_a_total_that_keeps_growing_is_bounded_by_the_first_page(tmp_path: Path) -> None:
    """Every page says there is one more page: the first page's total bounds the listing (its page budget),
    whatever the later pages claim, even with no maxRecordingsPerRun."""
    vendor = EndlessVendor(count_total=200, page_total="growing")
    summary = run(tmp_path, vendor, pageSize=100)
    error: str = summary.error  # type: ignore[attr-defined]
    assert "kept returning pages past total=200" in error, error
    assert vendor.pages <= 7
    assert not summary.checkpoint_advanced  # type: ignore[attr-defined]


def test_the_pager_refuses_a_page_larger_than_asked_for() -> None:
    pager = Pager("the recording API", 10)
    with pytest.raises(ListingError, match="returned 11 items at offset 0 for a page of at most 10"):
        pager.take(0, 1000, [f"k{i}" for i in range(11)])


def test_the_pager_counts_new_items_against_its_cap() -> None:
    pager = Pager("the recording API", 10, max_items=25, limit_hint="maxRecordingsPerRun=25")
    offset = 0
    with pytest.raises(ListingError, match=r"listed more than 25 items .*maxRecordingsPerRun=25"):
        for page in range(10):
            assert pager.offset is not None
            offset = pager.offset
            pager.take(offset, 10**9, [f"k{offset + i}" for i in range(10)])
            assert page < 3
    assert pager.offset is None and pager.items > 25


def test_the_limit_error_is_a_listing_error_that_is_not_retried() -> None:
    assert issubclass(ListingLimitError, VendorListingError)
    assert ListingLimitError.retryable is False and ListingLimitError.exit_code == 5


def test_the_operator_passes_max_recordings_per_run() -> None:
    from cxbackup.api.recordingbackup import RecordingBackup
    from cxbackup.controller.backup.manifests import backup_properties

    body = {
        "metadata": {"name": "rb", "namespace": "ns"},
        "spec": {
            "source": {"gwsUriPrefix": "https://vendor.example/api/v2", "gwsCredentials": {"name": "gws"}},
            "media": {"metadataOnly": True},
            "window": {"maxAge": 2, "maxRecordingsPerRun": 12345},
            "target": {"pvc": {"claimName": "backup"}},
        },
    }
    config = backup_properties(RecordingBackup.model_validate(body), RecordingWindow(0, DAY))
    assert config.max_recordings_per_run == 12345
    assert "maxRecordingsPerRun=12345" in config.to_properties()
