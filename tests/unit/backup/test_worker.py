"""The worker end to end against the fake vendor API, the fake S3 source and a real directory target."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from cxbackup.backup import targets
from cxbackup.backup.config import Credentials, RcbsConfig
from cxbackup.backup.errors import LockHeldError
from cxbackup.backup.index import INDEX_DIR
from cxbackup.backup.layout import FolderFormat, recording_paths
from cxbackup.backup.progress import RecordingResult, RecordingStatus, RunSummary
from cxbackup.backup.records import Recording
from cxbackup.backup.sharding import ShardAssignment
from cxbackup.backup.targets import LocalDirectoryTarget, LockHolder
from cxbackup.backup.window import RecordingWindow
from cxbackup.backup.worker import run_backup

from .fakes import (
    DAY,
    HOUR,
    NOW,
    NOW_MS,
    PASSWORD,
    USER,
    FakeFileMediaSource,
    FakeMediaSource,
    FakeVendor,
    make_record,
    media_bytes,
)

CREDS = Credentials(gws_username=USER, gws_password=PASSWORD)
FMT = FolderFormat.parse("yyyy/MM/dd/HH")


def dataset(n: int = 30) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        rid = f"{i:018d}LAES{i:010d}"
        media = [(f"{rid}_2024-05-09-00000001.mp3.bin", "audio/mp3")]
        if i % 3 == 0:
            media.append((f"W6x+Vq8f{i}_{rid}_screen", "video/mp4"))
        region = "use1" if i % 2 else "usw1"
        out.append(
            make_record(
                rid,
                NOW_MS - 40 * HOUR + i * 75 * 60_000,
                media,
                region=region,
                partitions=["/sales"] if i % 4 == 0 else ["/support"],
            )
        )
    return out


class Sink:
    def __init__(self) -> None:
        self.started: int | None = None
        self.results: list[RecordingResult] = []
        self.summary: RunSummary | None = None

    def on_start(self, total_estimate: int | None) -> None:
        self.started = total_estimate

    def on_recording(self, result: RecordingResult) -> None:
        self.results.append(result)

    def on_finish(self, summary: RunSummary) -> None:
        self.summary = summary


class World:
    def __init__(self, tmp_path: Path, records: list[dict[str, Any]], transfer: str = "stream") -> None:
        self.records = records
        self.vendor = FakeVendor(records)
        source_type = FakeFileMediaSource if transfer == "file" else FakeMediaSource
        self.source = source_type(self.vendor.settings)
        self.source.add_for(records)
        self.root = tmp_path / "target"

    def config(self, **values: object) -> RcbsConfig:
        base: dict[str, object] = {
            "gwsUriPrefix": "https://gws.example.com/api/v2",
            "targetDir": str(self.root),
            "maxAge": 3,
            "concurrency": 4,
            "retries": 3,
        }
        base.update(values)
        return RcbsConfig.from_values(base)

    def run(self, config: RcbsConfig | None = None, **kw: Any) -> tuple[RunSummary, Sink]:
        sink = Sink()
        summary = run_backup(
            config or self.config(),
            CREDS,
            now=kw.pop("now", NOW),
            sink=sink,
            vendor=self.vendor.client(),
            source=kw.pop("source", self.source),
            sleep=lambda _s: None,
            **kw,
        )
        assert sink.summary is summary
        return summary, sink

    def paths(self, rec: dict[str, Any]) -> Any:
        return recording_paths(Recording.from_json(rec, json.dumps(rec, indent=2)), FMT)

    def files(self) -> set[str]:
        """The backed-up tree: every file but the search index's (tested in test_index.py)."""
        return {
            str(p.relative_to(self.root))
            for p in self.root.rglob("*")
            if p.is_file() and p.relative_to(self.root).parts[0] != INDEX_DIR
        }


@pytest.fixture(params=["stream", "file"])
def world(tmp_path: Path, request: pytest.FixtureRequest) -> World:
    """Media streamed through Python (boto3's way) or written by the source into the temporary file
    (the CRT client's way): every worker test runs both."""
    return World(tmp_path, dataset(), request.param)


def test_full_backup_then_nothing_to_do(world: World, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cxbackup"):
        summary, sink = world.run()
    assert (summary.downloaded, summary.skipped, summary.failed, summary.total) == (30, 0, 0, 30)
    assert summary.ok and summary.exit_code == 0 and summary.checkpoint_advanced
    assert sink.started == 30 and len(sink.results) == 30
    assert summary.window == RecordingWindow(NOW_MS - 3 * DAY, NOW_MS)
    for rec in world.records:
        paths = world.paths(rec)
        text = (world.root / paths.metadata).read_text()
        assert text == json.dumps(rec, indent=2)  # exactly as the API sent it
        for m in rec["mediaFiles"]:
            assert (world.root / paths.media[m["mediaId"]]).read_bytes() == media_bytes(m["mediaId"])
    assert not [f for f in world.files() if "/." in f]  # no temporary files left
    assert (world.root / "last_recording_endtime.txt").read_text() == f"{NOW_MS}\n"
    assert (
        "Finished handling current batch: (number downloaded files: 30 + number of skipped files: 0 + " in caplog.text
    )
    assert (
        "Starting download recordings <from 05/07/2024 12:00:00 to 05/08/2024 12:00:00 UTC> Overall: 33%" in caplog.text
    )
    opens = sum(world.source.opens.values())
    if isinstance(world.source, FakeFileMediaSource):  # every object went straight into its file
        assert sum(world.source.downloads.values()) == opens == sum(len(r["mediaFiles"]) for r in world.records)
    # second run (resumes from the stored end time: an empty window) and a third one over the whole
    # window again: nothing is fetched twice
    summary2, _ = world.run()
    assert summary2.total == 0 and summary2.window.is_empty
    summary3, _ = world.run(world.config(skipLastRecordingCheck=True))
    assert (summary3.downloaded, summary3.skipped, summary3.failed) == (0, 30, 0)
    assert sum(world.source.opens.values()) == opens


def test_moved_away_and_damaged_files_are_fetched_again(world: World) -> None:
    world.run()
    moved = world.paths(world.records[3])
    for p in sorted((world.root / moved.directory).iterdir()):
        p.unlink()
    damaged = world.records[5]
    dpath = world.root / world.paths(damaged).media[damaged["mediaFiles"][0]["mediaId"]]
    dpath.write_bytes(b"short")
    gone = world.records[7]
    (world.root / world.paths(gone).metadata).unlink()
    world.source.opens.clear()
    summary, _ = world.run(world.config(skipLastRecordingCheck=True))
    assert (summary.downloaded, summary.skipped) == (3, 27)
    assert set(world.source.opens) == {m["mediaId"] for m in world.records[3]["mediaFiles"]} | {
        damaged["mediaFiles"][0]["mediaId"]
    }
    assert dpath.read_bytes() == media_bytes(damaged["mediaFiles"][0]["mediaId"])
    assert (world.root / world.paths(gone).metadata).exists()


def test_transient_faults_are_retried(world: World) -> None:
    ids = [m["mediaId"] for r in world.records[:4] for m in r["mediaFiles"][:1]]
    for mid, fault in zip(ids, ["truncate", "reset", "corrupt", "slowdown"], strict=True):
        world.source.faults[mid] = [fault, fault]
    summary, _ = world.run()
    assert summary.ok and summary.downloaded == 30
    for mid in ids:
        assert world.source.opens[mid] == 3
        path = next(world.root.rglob(mid))
        assert path.read_bytes() == media_bytes(mid)


def test_failures_are_listed_and_do_not_advance_the_checkpoint(world: World, caplog: pytest.LogCaptureFixture) -> None:
    victim = world.records[10]
    mid = victim["mediaFiles"][0]["mediaId"]
    data = world.source.objects.pop(mid)
    world.source.faults[world.records[11]["mediaFiles"][0]["mediaId"]] = ["truncate"] * 10
    with caplog.at_level(logging.INFO, logger="cxbackup"):
        summary, _ = world.run()
    assert (summary.downloaded, summary.failed) == (28, 2)
    assert not summary.ok and summary.exit_code == 1 and not summary.checkpoint_advanced
    reasons = dict(summary.failures)
    assert "not found in S3" in reasons[victim["id"]]
    assert "Content-Length" in reasons[world.records[11]["id"]]
    assert f"  {victim['id']}: " in caplog.text
    assert not (world.root / "last_recording_endtime.txt").exists()
    assert not (world.root / world.paths(victim).metadata).exists()  # metadata only after all media
    # the object appears, the faults stop: the next run covers the same window and completes it
    world.source.objects[mid] = data
    world.source.faults.clear()
    world.source.opens.clear()
    summary2, _ = world.run()
    assert (summary2.downloaded, summary2.skipped, summary2.failed) == (2, 28, 0)
    assert summary2.checkpoint_advanced
    assert (world.root / "last_recording_endtime.txt").read_text() == f"{NOW_MS}\n"


def test_checkpoint_catches_up_and_never_moves_back(world: World) -> None:
    world.root.mkdir()
    stored = NOW_MS - 10 * DAY
    (world.root / "last_recording_endtime.txt").write_text(f"{stored}\n")
    summary, _ = world.run()
    assert summary.window.start_ms == stored  # older than maxAge: catch up
    summary2, _ = world.run(world.config(windowStart=0, windowEnd=NOW_MS - DAY))
    assert summary2.ok and summary2.last_recording_end_time == NOW_MS  # not moved back
    assert (world.root / "last_recording_endtime.txt").read_text() == f"{NOW_MS}\n"


def test_metadata_only_needs_no_s3(world: World) -> None:
    summary, _ = world.run(world.config(metadataOnly=True), source=None)
    assert summary.downloaded == 30 and summary.metadata_only
    assert all(f.endswith(".json") for f in world.files() - {"last_recording_endtime.txt", ".rcbs-lock-0-of-1"})
    assert sum(world.source.opens.values()) == 0


def test_media_type_pattern_and_filters(world: World) -> None:
    summary, _ = world.run(world.config(mediaTypePattern="video/mp4"))
    assert summary.downloaded == 10 and summary.filtered == 20
    assert not [f for f in world.files() if f.endswith(".mp3.bin")]
    other = World(world.root.parent / "p", world.records)
    summary2, _ = other.run(other.config(partitions="/sales"))
    assert summary2.downloaded == 8 and summary2.filtered == 22


def test_shards_cover_every_recording_once(world: World) -> None:
    seen: list[str] = []
    for i in range(3):
        summary, sink = world.run(world.config(totalRcbsInstances=3, rcbsInstanceId=i))
        assert summary.ok
        seen.extend(r.recording_id for r in sink.results)
        assert (world.root / f"last_recording_endtime-{i}-of-3.txt").exists()
    assert sorted(seen) == sorted(r["id"] for r in world.records)
    assert not (world.root / "last_recording_endtime.txt").exists()


def test_a_second_instance_of_the_same_shard_refuses_to_start(world: World) -> None:
    target = LocalDirectoryTarget(world.root)
    holder = LockHolder(pid=999, host="other-host", started_at="then", shard="0-of-1")
    with target.lock(".rcbs-lock-0-of-1", holder), pytest.raises(LockHeldError, match="pid 999 on other-host"):
        world.run()
    assert world.vendor.requests == []


def test_leftover_temp_files_are_cleaned(world: World) -> None:
    rec = world.records[2]
    d = world.root / world.paths(rec).directory
    d.mkdir(parents=True)
    (d / f".{rec['mediaFiles'][0]['mediaId']}.part-deadbeef").write_bytes(b"half")
    (world.root / ".last_recording_endtime.txt.part-0000abcd").write_bytes(b"1")
    (world.root / ".last_recording_endtime-1-of-2.txt.part-0000abcd").write_bytes(b"1")  # another shard's
    world.run()
    assert sorted(p.name for p in world.root.glob(".last*")) == [".last_recording_endtime-1-of-2.txt.part-0000abcd"]
    assert sorted(p.name for p in d.iterdir()) == sorted(
        [f"{rec['id']}.json", *(m["mediaId"] for m in rec["mediaFiles"])]
    )


def test_listing_failure_stops_the_run_without_checkpoint(world: World) -> None:
    calls = {"n": 0}
    real_get = world.vendor.get

    def flaky(url: str, headers: Any) -> Any:
        calls["n"] += 1
        if calls["n"] > 3:  # count + first two chunks work, then the API is down for good
            from cxbackup.backup.vendor_client import HttpResponse

            return HttpResponse(503, {}, b"down")
        return real_get(url, headers)

    world.vendor.get = flaky  # type: ignore[method-assign]
    summary, _ = world.run()
    assert summary.error is not None and "HTTP 503" in summary.error
    assert summary.exit_code == 5 and not summary.checkpoint_advanced
    assert not (world.root / "last_recording_endtime.txt").exists()
    data = json.loads(summary.to_json())
    assert data["result"] == "Failed" and data["error"]


@pytest.mark.parametrize(
    ("fault", "problem"),
    [
        ("repeat", "the recording API returned the same page for offset"),
        ("stuck", "the recording API answered offset 0 to a request for offset"),
    ],
)
def test_a_listing_that_stops_making_sense_fails_the_run_without_checkpoint(
    world: World, fault: str, problem: str
) -> None:
    """A total that lies (the last page comes again and again) or offsets that do not advance: the run
    stops with an error naming the problem (exit 5) instead of paging forever, and the checkpoint stays."""
    world.vendor.listing_fault = fault
    summary, _ = world.run()
    assert summary.error is not None and problem in summary.error, summary.error
    assert summary.exit_code == 5 and not summary.ok and not summary.checkpoint_advanced
    assert not list(world.root.glob("last_recording_endtime*.txt"))
    assert len(world.vendor.requests) < 20  # a handful of pages per day chunk, not an endless loop
    world.vendor.listing_fault = None
    again, _ = world.run()  # the next run covers the same window again
    assert again.ok and again.checkpoint_advanced and again.total == 30


def test_a_page_over_the_size_limit_fails_the_run_without_checkpoint(world: World) -> None:
    summary = run_backup(
        world.config(),
        CREDS,
        now=NOW,
        sink=Sink(),
        vendor=world.vendor.client(max_response_bytes=4000),
        source=world.source,
        sleep=lambda _s: None,
    )
    assert summary.error is not None and "larger than the limit of 4000 bytes" in summary.error, summary.error
    assert summary.exit_code == 5 and not summary.checkpoint_advanced
    assert not list(world.root.glob("last_recording_endtime*.txt"))


def test_bad_records_fail_without_stopping_the_others(tmp_path: Path) -> None:
    recs = dataset(5)
    recs.append({"startTime": recs[0]["startTime"], "mediaFiles": []})  # no id
    w = World(tmp_path, recs)
    summary, _ = w.run()
    assert summary.downloaded == 5 and summary.failed == 1
    assert summary.failures[0][1] == "metadata record has no id"


def test_summary_json_fits_a_termination_message() -> None:
    s = RunSummary(shard=ShardAssignment(1, 4), window=RecordingWindow(0, NOW_MS), started_at=NOW)
    for i in range(500):
        s.add(RecordingResult(f"REC{i:028d}", RecordingStatus.FAILED, reason="S3 error: SlowDown " + "x" * 40))
    s.add(RecordingResult("ok", RecordingStatus.DOWNLOADED, files=2, bytes=10))
    text = s.to_json()
    assert len(text.encode()) <= 4096
    data = json.loads(text)
    assert data["failed"] == 500 and data["downloaded"] == 1 and data["total"] == 501
    assert data["failuresTruncated"] is True and 0 < len(data["failures"]) < 500
    assert data["shard"] == {"index": 1, "total": 4}
    assert s.closing_line() == (
        "Finished handling current batch: (number downloaded files: 1 + number of skipped files: 0 + "
        "number of failed download: 500) out of total: 501"
    )


def test_files_whose_s3_object_is_gone_are_kept(world: World) -> None:
    world.run()
    gone = world.records[6]["mediaFiles"][0]["mediaId"]
    del world.source.objects[gone]  # vendor retention deleted it; our copy is complete
    summary, _ = world.run(world.config(skipLastRecordingCheck=True))
    assert summary.ok and summary.skipped == 30


def test_downloads_run_concurrently_but_bounded(tmp_path: Path) -> None:
    w = World(tmp_path, dataset(30))
    w.source.open_delay = 0.01
    summary, _ = w.run(w.config(concurrency=3))
    assert summary.ok and summary.downloaded == 30
    assert w.source.max_in_flight == 3


def test_one_folder_fsync_per_downloaded_recording(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[Path] = []
    lock = threading.Lock()

    def record(folder: Path) -> None:
        with lock:
            synced.append(folder)

    monkeypatch.setattr(targets, "_fsync_dir", record)
    summary, _ = world.run()
    assert summary.downloaded == 30
    recording_folders = [p for p in synced if p != world.root]  # the root: the state file
    assert sorted(recording_folders) == sorted(world.root / world.paths(r).directory for r in world.records)
