"""The search index: entries, the shard files, the worker's updates, crashes and the rebuild from the tree."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import stat
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cxbackup.backup import index as index_mod
from cxbackup.backup.errors import LockHeldError
from cxbackup.backup.index import (
    INDEX_DIR,
    IndexWriter,
    ShardIndex,
    entry_from_recording,
    index_files,
    rebuild_index,
)
from cxbackup.backup.layout import FolderFormat, recording_paths
from cxbackup.backup.records import Recording
from cxbackup.backup.search import SearchQuery, search_index
from cxbackup.backup.sharding import shard_of
from cxbackup.backup.targets import LocalDirectoryTarget, LockHolder
from cxbackup_dev.emulator.dataset import Dataset, DatasetSpec

from .fakes import NOW_MS
from .test_worker import World, dataset

FMT = FolderFormat.parse("yyyy/MM/dd/HH")


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path, dataset())


def emulator_records(n: int = 20) -> list[dict[str, Any]]:
    """Records as the emulator makes them (eventHistory, parameters, screen recordings)."""
    ds = Dataset(DatasetSpec(hours=2, recordings_per_hour=n // 2, seed=3, screen_fraction=0.5))
    return list(ds.iter_records())


def recording(rec: dict[str, Any]) -> Recording:
    return Recording.from_json(rec, json.dumps(rec))


def ids_in(root: Path, **criteria: Any) -> list[str]:
    return [m.id for m in search_index(root / INDEX_DIR, SearchQuery(limit=10_000, **criteria)).matches]


def rows(path: Path, sql: str) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


def test_an_entry_holds_numbers_people_groups_media_and_text() -> None:
    rec = next(r for r in emulator_records() if len(r["mediaFiles"]) == 2)
    voice, screen = rec["mediaFiles"]
    paths = recording_paths(recording(rec), FMT)
    entry = entry_from_recording(recording(rec), paths, {voice["mediaId"]})
    assert entry.id == rec["id"] and entry.caller == rec["callerPhoneNumber"]
    assert entry.dialed == rec["dialedPhoneNumber"]
    assert entry.stop_ms is not None and entry.start_ms is not None and entry.stop_ms > entry.start_ms
    assert rec["callerPhoneNumber"].lstrip("+") in entry.numbers
    assert voice["parameters"]["recordDN"].lstrip("+") in entry.numbers  # the agent's phone (eventHistory)
    assert voice["parameters"]["username"] in entry.names and voice["parameters"]["agentId"] in entry.names
    assert "unknown" not in entry.names  # the caller's placeholder user name
    assert entry.partitions == frozenset(voice["partitions"]) and entry.access_groups == frozenset(
        voice["accessgroups"]
    )
    media = {m.media_id: m for m in entry.media}
    assert media[voice["mediaId"]].name == voice["mediaId"] and media[voice["mediaId"]].size == int(voice["size"])
    assert media[screen["mediaId"]].name is None  # in the metadata, not backed up
    assert media[screen["mediaId"]].type == "video/mp4"
    assert voice["parameters"]["agentHierarchy"] in entry.text.split("\n")
    disposition = next(
        e["data"]["updated"]["DispositionCode"] for e in rec["eventHistory"] if "updated" in e.get("data", {})
    )
    assert disposition in entry.text.split("\n")
    assert entry.folder == paths.directory


def test_shard_file_is_private_and_upserts_only_what_changed(tmp_path: Path) -> None:
    recs = emulator_records()
    path = tmp_path / "shard-0-of-1.sqlite3"
    idx = ShardIndex(path)
    entries = [entry_from_recording(recording(r), recording_paths(recording(r), FMT), ()) for r in recs]
    assert idx.add(entries) == len(recs)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert idx.add(entries) == 0  # same metadata, same files: nothing to do
    changed = dict(recs[0], callerPhoneNumber="+15550001111")
    assert idx.add([entry_from_recording(recording(changed), recording_paths(recording(changed), FMT), ())]) == 1
    assert idx.count() == len(recs)
    idx.close()
    assert rows(path, "SELECT count(*) FROM numbers WHERE digits_rev = '11110005551'") == [(1,)]
    assert rows(path, f"SELECT caller FROM recordings WHERE id = '{recs[0]['id']}'") == [("+15550001111",)]  # noqa: S608
    assert rows(path, "SELECT count(*) FROM recordings") == [(len(recs),)]
    assert rows(path, "SELECT value FROM meta WHERE key = 'text'") == [("fts5",)]


def test_a_size_sqlite_cannot_store_is_indexed_as_unknown(tmp_path: Path) -> None:
    """Metadata may claim any size (10^20 bytes): the entry keeps the recording, without the size."""
    rec = json.loads(json.dumps(emulator_records()[0]))
    rec["mediaFiles"][0]["size"] = 10**20
    entry = entry_from_recording(recording(rec), recording_paths(recording(rec), FMT), ())
    assert entry.media[0].size is None
    idx = ShardIndex(tmp_path / "shard-0-of-1.sqlite3")
    assert idx.add([entry]) == 1
    idx.close()
    media_id = rec["mediaFiles"][0]["mediaId"]
    sizes = rows(tmp_path / "shard-0-of-1.sqlite3", f"SELECT size FROM media WHERE media_id = '{media_id}'")  # noqa: S608
    assert sizes == [(None,)]


def test_the_writer_commits_in_batches_and_stops_at_the_first_failure(tmp_path: Path) -> None:
    recs = emulator_records()
    entries = [entry_from_recording(recording(r), recording_paths(recording(r), FMT), ()) for r in recs]
    idx = ShardIndex(tmp_path / "shard-0-of-1.sqlite3")
    writer = IndexWriter(idx, every=5, seconds=3600)
    for e in entries[:7]:
        writer.add(e)
    writer.wait_idle()
    assert rows(idx.path, "SELECT count(*) FROM recordings") == [(5,)]  # one batch committed, 2 pending
    writer.add_entry(lambda: (_ for _ in ()).throw(ValueError("bad record")))
    writer.wait_idle()
    assert writer.error is not None and "bad record" in writer.error
    writer.add(entries[8])  # ignored once failed
    assert writer.close() == writer.error
    assert rows(idx.path, "SELECT count(*) FROM recordings") == [(5,)]


def test_the_writer_commits_on_time_and_downloads_never_wait_for_a_commit(tmp_path: Path) -> None:
    recs = emulator_records()
    entries = [entry_from_recording(recording(r), recording_paths(recording(r), FMT), ()) for r in recs]
    idx = ShardIndex(tmp_path / "shard-0-of-1.sqlite3")
    writer = IndexWriter(idx, every=1000, seconds=0.2)
    started = time.monotonic()
    for e in entries[:3]:
        writer.add(e)
    assert time.monotonic() - started < 0.1  # handed over, not committed, by the calling thread
    deadline = time.monotonic() + 10
    while rows(idx.path, "SELECT count(*) FROM recordings") != [(3,)] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rows(idx.path, "SELECT count(*) FROM recordings") == [(3,)]  # committed after `seconds`
    assert writer.close() is None and writer.added == 3


def test_the_backup_run_indexes_what_it_backed_up(world: World) -> None:
    summary, _ = world.run(world.config(partitions="/sales"))
    assert summary.ok and summary.downloaded == 8
    files = index_files(world.root / INDEX_DIR)
    assert [f.name for f in files] == ["shard-0-of-1.sqlite3"]
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((world.root / INDEX_DIR).stat().st_mode) == 0o700
    sales = [r["id"] for r in world.records if r["mediaFiles"][0]["partitions"] == ["/sales"]]
    assert sorted(ids_in(world.root)[:0] or ids_in(world.root, agents=("agent_103001",))) == sorted(sales)
    match = search_index(world.root / INDEX_DIR, SearchQuery(ids=(sales[0],))).matches[0]
    for m in match.media:
        assert m.path is not None and (world.root / m.path).is_file()
    assert (world.root / match.metadata).is_file()


def test_a_failed_recording_is_not_in_the_index_until_a_later_run_completes_it(world: World) -> None:
    victim = world.records[10]
    mid = victim["mediaFiles"][0]["mediaId"]
    data = world.source.objects.pop(mid)
    summary, _ = world.run()
    assert summary.failed == 1 and not summary.checkpoint_advanced
    indexed = ids_in(world.root, start_from=0)
    assert victim["id"] not in indexed and len(indexed) == 29
    world.source.objects[mid] = data
    summary2, _ = world.run()
    assert summary2.ok and victim["id"] in ids_in(world.root, start_from=0)


def test_a_crash_before_the_commit_is_repaired_by_the_next_run(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files complete but the batch not committed (the process died): the checkpoint did not move, so the
    next run covers the window, skips the complete recordings and indexes them."""

    def crash(self: IndexWriter) -> str | None:
        self._stop(commit=False)  # the pod is killed before the last batch is committed
        raise KeyboardInterrupt

    monkeypatch.setattr(IndexWriter, "close", crash)
    with pytest.raises(KeyboardInterrupt):
        world.run()
    assert not (world.root / "last_recording_endtime.txt").exists()
    assert ids_in(world.root, start_from=0) == []  # every file is there, nothing in the index yet
    monkeypatch.undo()
    summary, _ = world.run()
    assert summary.skipped == 30 and summary.ok
    assert len(ids_in(world.root, start_from=0)) == 30


def test_an_index_that_cannot_be_written_fails_the_run_without_checkpoint(world: World) -> None:
    (world.root / INDEX_DIR).mkdir(parents=True)
    (world.root / INDEX_DIR / "shard-0-of-1.sqlite3").write_bytes(b"this is not a database" * 100)
    summary, _ = world.run()
    assert summary.downloaded == 30  # the backup itself goes on
    assert summary.error is not None and "search index" in summary.error and "cxbackup index" in summary.error
    assert summary.exit_code == 5 and not summary.checkpoint_advanced


def test_shards_write_their_own_files_and_search_merges_them(world: World) -> None:
    for i in range(3):
        assert world.run(world.config(totalRcbsInstances=3, rcbsInstanceId=i))[0].ok
    files = index_files(world.root / INDEX_DIR)
    assert [f.name for f in files] == [f"shard-{i}-of-3.sqlite3" for i in range(3)]
    for i, f in enumerate(files):
        for (rec_id,) in rows(f, "SELECT id FROM recordings"):
            assert shard_of(rec_id, 3) == i
    result = search_index(world.root / INDEX_DIR, SearchQuery(start_from=0, limit=7))
    assert result.total == 30 and len(result.matches) == 7
    starts = [m.start_ms for m in result.matches]
    assert starts == sorted(starts) and result.matches[0].id == world.records[0]["id"]


@contextlib.contextmanager
def no_lock(label: str) -> Iterator[None]:
    yield


def target_lock(root: Path) -> Any:
    target = LocalDirectoryTarget(root)
    holder = LockHolder(pid=os.getpid(), host="h", started_at="now", shard="index")

    @contextlib.contextmanager
    def lock(label: str) -> Iterator[None]:
        with target.lock(f".rcbs-lock-{label}", holder):
            yield

    return lock


def test_rebuild_from_the_tree_matches_what_the_runs_wrote(world: World) -> None:
    for i in range(2):
        assert world.run(world.config(totalRcbsInstances=2, rcbsInstanceId=i))[0].ok
    before = {
        f.name: rows(f, "SELECT id, folder, digest FROM recordings ORDER BY id")
        for f in index_files(world.root / INDEX_DIR)
    }
    for f in index_files(world.root / INDEX_DIR):
        f.unlink()
    summary = rebuild_index(world.root, 2, lock=target_lock(world.root))
    assert summary.recordings == 30 and not summary.skipped
    after = {
        f.name: rows(f, "SELECT id, folder, digest FROM recordings ORDER BY id")
        for f in index_files(world.root / INDEX_DIR)
    }
    assert after == before  # the same entries, digests included
    assert [p.name for p in (world.root / INDEX_DIR).iterdir()] and not [
        p for p in (world.root / INDEX_DIR).iterdir() if p.name.startswith(".")
    ]


def test_rebuild_with_another_shard_count_replaces_the_old_files(world: World) -> None:
    assert world.run(world.config(totalRcbsInstances=1))[0].ok
    summary = rebuild_index(world.root, 3, lock=target_lock(world.root))
    assert summary.removed == ["shard-0-of-1.sqlite3"]
    assert [f.name for f in index_files(world.root / INDEX_DIR)] == [f"shard-{i}-of-3.sqlite3" for i in range(3)]
    assert len(ids_in(world.root, start_from=0)) == 30


def test_rebuild_skips_unreadable_metadata_and_ignores_partial_files(world: World) -> None:
    assert world.run()[0].ok
    broken = world.paths(world.records[3])
    (world.root / broken.metadata).write_text("{not json")
    partial = world.paths(world.records[4])
    (world.root / partial.metadata).unlink()  # a recording whose metadata never got written: not complete
    (world.root / partial.directory / f".{world.records[4]['id']}.json.part-0123abcd").write_text("{}")
    summary = rebuild_index(world.root, 1, lock=no_lock)
    assert summary.recordings == 28
    assert [p for p, _ in summary.skipped] == [broken.metadata]
    indexed = ids_in(world.root, start_from=0)
    assert world.records[3]["id"] not in indexed and world.records[4]["id"] not in indexed


def test_rebuild_refuses_while_a_backup_run_holds_a_lock_and_replaces_nothing(world: World) -> None:
    assert world.run()[0].ok
    before = (world.root / INDEX_DIR / "shard-0-of-1.sqlite3").read_bytes()
    other = LocalDirectoryTarget(world.root)
    holder = LockHolder(pid=999, host="worker-pod", started_at="then", shard="0-of-1")
    with other.lock(".rcbs-lock-0-of-1", holder), pytest.raises(LockHeldError, match="worker-pod"):
        rebuild_index(world.root, 1, lock=target_lock(world.root))
    assert (world.root / INDEX_DIR / "shard-0-of-1.sqlite3").read_bytes() == before
    assert sorted(p.name for p in (world.root / INDEX_DIR).iterdir()) == ["shard-0-of-1.sqlite3"]


def test_a_journal_left_by_a_crashed_writer_is_rolled_back_before_a_rebuild_replaces_the_file(tmp_path: Path) -> None:
    recs = dataset(5)
    root = tmp_path / "t"
    small = World(tmp_path, recs)
    small.root = root
    assert small.run()[0].ok
    stale = root / INDEX_DIR / "shard-0-of-1.sqlite3-journal"
    stale.write_bytes(b"")  # an empty journal is not hot; the rebuild still removes it
    rebuild_index(root, 1, lock=no_lock)
    assert not stale.exists()
    assert len(ids_in(root, start_from=0)) == 5


def test_readers_never_write(world: World) -> None:
    assert world.run()[0].ok
    path = index_files(world.root / INDEX_DIR)[0]
    db = index_mod.open_readonly(path)
    with pytest.raises(sqlite3.OperationalError):
        db.execute("DELETE FROM recordings")
    db.close()


def test_metadata_only_runs_index_media_without_paths(world: World) -> None:
    assert world.run(world.config(metadataOnly=True), source=None)[0].ok
    match = search_index(world.root / INDEX_DIR, SearchQuery(ids=(world.records[0]["id"],))).matches[0]
    assert match.media and all(m.path is None for m in match.media)
    assert (match.start_ms or 0) < NOW_MS


def test_a_skipped_recording_is_indexed_from_the_metadata_in_the_tree(world: World) -> None:
    """The vendor's record changed since the backup (the files did not): the entry describes the tree."""
    assert world.run()[0].ok
    for f in (world.root / INDEX_DIR).iterdir():
        f.unlink()
    world.vendor.records[5] = dict(world.records[5], callerPhoneNumber="+15550009999")
    (world.root / "last_recording_endtime.txt").unlink()  # the same window again
    summary, _ = world.run()
    assert summary.skipped == 30
    match = search_index(world.root / INDEX_DIR, SearchQuery(ids=(world.records[5]["id"],))).matches[0]
    assert match.caller == world.records[5]["callerPhoneNumber"]
    assert ids_in(world.root, phones=("5550009999",)) == []


def test_a_replaced_entry_leaves_no_match_behind(tmp_path: Path) -> None:
    rec = emulator_records()[0]
    word = "Zanzibar"
    (tmp_path / INDEX_DIR).mkdir()
    idx = ShardIndex(tmp_path / INDEX_DIR / "shard-0-of-1.sqlite3")
    first = dict(rec, callType=word)
    idx.add([entry_from_recording(recording(first), recording_paths(recording(first), FMT), ())])
    assert ids_in(tmp_path, text=word) == [rec["id"]]
    idx.add([entry_from_recording(recording(rec), recording_paths(recording(rec), FMT), ())])
    idx.close()
    assert ids_in(tmp_path, text=word) == []
    result = search_index(tmp_path / INDEX_DIR, SearchQuery(text=word))
    assert result.total == 0
    assert ids_in(tmp_path, text=rec["callType"]) == [rec["id"]]
    path = tmp_path / INDEX_DIR / "shard-0-of-1.sqlite3"
    assert rows(path, f"SELECT count(*) FROM recording_text WHERE recording_text MATCH '{word}'") == [(0,)]  # noqa: S608


def test_removed_entries_leave_nothing_in_the_file(tmp_path: Path) -> None:
    """What an erasure needs: after `remove`, not a byte of the recording's entry is in the index file."""
    recs = emulator_records()
    victim = dict(recs[3], callType="Zanzibar77", callerPhoneNumber="+4915112345678")
    recs[3] = victim
    path = tmp_path / "shard-0-of-1.sqlite3"
    idx = ShardIndex(path)
    idx.add([entry_from_recording(recording(r), recording_paths(recording(r), FMT), ()) for r in recs])
    data = path.read_bytes().lower()
    assert b"zanzibar77" in data and victim["id"].lower().encode() in data
    assert idx.remove([victim["id"], "not-indexed"]) == 1
    idx.close()
    data = path.read_bytes().lower()
    for trace in (b"zanzibar77", victim["id"].lower().encode(), b"4915112345678", b"8765432115194"):
        assert trace not in data, trace
    assert not path.with_name(path.name + "-journal").exists()
    assert rows(path, "SELECT count(*) FROM recordings") == [(len(recs) - 1,)]


def test_search_refuses_a_file_a_crashed_writer_left_and_the_next_writer_repairs_it(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    from cxbackup.cli import main

    assert world.run()[0].ok
    path = index_files(world.root / INDEX_DIR)[0]
    # a writer in the middle of a large transaction (its changes spilled into the file), then "killed":
    # the file and its hot journal are copied as they are at that moment
    scratch = world.root.parent / "scratch"
    scratch.mkdir()
    (scratch / path.name).write_bytes(path.read_bytes())
    db = sqlite3.connect(scratch / path.name, isolation_level=None)
    db.execute("PRAGMA cache_size=5")
    db.execute("BEGIN IMMEDIATE")
    db.executemany("INSERT INTO meta VALUES (?, ?)", [(f"k{i}", "x" * 800) for i in range(3000)])
    journal = scratch / f"{path.name}-journal"
    assert journal.exists()
    crashed_db = (scratch / path.name).read_bytes()
    crashed_journal = journal.read_bytes()
    db.execute("ROLLBACK")
    db.close()
    path.write_bytes(crashed_db)
    path.with_name(f"{path.name}-journal").write_bytes(crashed_journal)

    assert main(["search", "--target", str(world.root), "--agent", "agent_103001"]) == 5
    err = capsys.readouterr().err
    assert "a backup run stopped while writing it" in err and "cxbackup index" in err
    assert path.with_name(f"{path.name}-journal").exists()  # the search wrote nothing
    (world.root / "last_recording_endtime.txt").unlink()
    assert world.run()[0].ok  # the shard's next run opens the file for writing: SQLite rolls the journal back
    assert main(["search", "--target", str(world.root), "--agent", "agent_103001"]) == 0
    assert "30 matches" in capsys.readouterr().out


@pytest.fixture
def bucket(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="backup")
        yield client


def s3_index(client: Any, tmp_path: Path, key: str = "rcbs/.cxbackup-index/shard-0-of-1.sqlite3") -> Path:
    local = tmp_path / "copy" / INDEX_DIR / key.rpartition("/")[2]
    local.parent.mkdir(parents=True, exist_ok=True)
    local.write_bytes(client.get_object(Bucket="backup", Key=key)["Body"].read())
    return local.parent.parent


def test_an_s3_target_gets_its_index_as_one_object_per_shard(world: World, bucket: Any, tmp_path: Path) -> None:
    from cxbackup.backup.s3target import S3BucketTarget

    target = S3BucketTarget(bucket, "backup", "rcbs")
    summary, _ = world.run(target=target)
    assert summary.ok and summary.downloaded == 30
    assert len(ids_in(s3_index(bucket, tmp_path), start_from=0)) == 30
    # a later run with the copy: nothing lost, the new recordings added
    world.vendor.records.append(dataset(31)[30])
    world.source.add_for(world.vendor.records[30:])
    bucket.delete_object(Bucket="backup", Key="rcbs/last_recording_endtime.txt")
    summary2, _ = world.run(target=target)
    assert summary2.ok and (summary2.downloaded, summary2.skipped) == (1, 30)
    assert len(ids_in(s3_index(bucket, tmp_path / "2"), start_from=0)) == 31


def test_an_index_upload_that_fails_fails_the_run_and_keeps_the_last_object(
    world: World, bucket: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cxbackup.backup.errors import TargetError
    from cxbackup.backup.s3target import S3BucketTarget

    target = S3BucketTarget(bucket, "backup", "rcbs")
    assert world.run(target=target)[0].ok
    before = bucket.get_object(Bucket="backup", Key="rcbs/.cxbackup-index/shard-0-of-1.sqlite3")["Body"].read()
    bucket.delete_object(Bucket="backup", Key="rcbs/last_recording_endtime.txt")
    real = S3BucketTarget.open_writer

    def failing(self: S3BucketTarget, path: str, *, sync_dir: bool = True) -> Any:
        if path.startswith(INDEX_DIR):
            raise TargetError("upload refused")
        return real(self, path, sync_dir=sync_dir)

    monkeypatch.setattr(S3BucketTarget, "open_writer", failing)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))  # where the local copy goes
    summary, _ = world.run(target=target)
    assert summary.skipped == 30 and summary.error is not None and "upload refused" in summary.error
    assert not summary.checkpoint_advanced and summary.exit_code == 5
    after = bucket.get_object(Bucket="backup", Key="rcbs/.cxbackup-index/shard-0-of-1.sqlite3")["Body"].read()
    assert after == before
    assert list(scratch.iterdir()) == []  # the local copy is gone


def test_an_interrupted_run_commits_what_is_complete_and_cleans_up(
    world: World, bucket: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cxbackup.backup.s3target import S3BucketTarget

    pages: list[int] = []

    def stop(offset: int) -> None:
        pages.append(offset)
        if len(pages) % 4 == 0:  # the count, then a page a day: Ctrl-C while listing the window's last day
            raise KeyboardInterrupt

    world.vendor.on_page = stop
    with pytest.raises(KeyboardInterrupt):
        world.run()
    indexed = set(ids_in(world.root, start_from=0))
    complete = {p.stem for p in world.root.rglob("*.json")}
    assert 0 < len(indexed) < 30 and indexed == complete  # committed on the way out, only what is complete
    # an S3 target: nothing is uploaded, the local copy is removed
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with pytest.raises(KeyboardInterrupt):
        world.run(target=S3BucketTarget(bucket, "backup", "rcbs"))
    assert "Contents" not in bucket.list_objects_v2(Bucket="backup", Prefix="rcbs/.cxbackup-index/")
    assert list(scratch.iterdir()) == []


def test_rebuild_of_a_bucket_matches_what_the_runs_wrote(world: World, bucket: Any, tmp_path: Path) -> None:
    from cxbackup.backup.index import rebuild_object_index
    from cxbackup.backup.s3target import S3BucketTarget

    target = S3BucketTarget(bucket, "backup", "rcbs")
    for i in range(2):
        assert world.run(world.config(totalRcbsInstances=2, rcbsInstanceId=i), target=target)[0].ok
    key = "rcbs/.cxbackup-index/shard-{}-of-2.sqlite3"
    before = {i: rows(s3_index(bucket, tmp_path / f"b{i}", key.format(i)) / INDEX_DIR / f"shard-{i}-of-2.sqlite3",
                      "SELECT id, folder, digest FROM recordings ORDER BY id") for i in range(2)}  # fmt: skip
    broken = world.paths(world.records[7]).metadata
    bucket.put_object(Bucket="backup", Key=f"rcbs/{broken}", Body=b"{not json")
    bucket.put_object(Bucket="backup", Key="rcbs/.hidden/X/X.json", Body=b"{}")  # hidden folders are not read
    for i in range(2):
        bucket.delete_object(Bucket="backup", Key=key.format(i))
    bucket.put_object(Bucket="backup", Key="rcbs/.cxbackup-index/shard-0-of-1.sqlite3", Body=b"old layout")

    summary = rebuild_object_index(target, 2, lock=target_lock_s3(target), workers=4)
    assert summary.recordings == 29 and [p for p, _ in summary.skipped] == [broken]
    assert summary.removed == ["shard-0-of-1.sqlite3"]
    after = {i: rows(s3_index(bucket, tmp_path / f"a{i}", key.format(i)) / INDEX_DIR / f"shard-{i}-of-2.sqlite3",
                     "SELECT id, folder, digest FROM recordings ORDER BY id") for i in range(2)}  # fmt: skip
    victim = world.records[7]["id"]
    assert {i: [r for r in rows_ if r[0] != victim] for i, rows_ in before.items()} == after
    listed = bucket.list_objects_v2(Bucket="backup", Prefix="rcbs/.cxbackup-index/")["Contents"]
    assert sorted(o["Key"] for o in listed) == [key.format(0), key.format(1)]


def test_rebuild_of_a_bucket_refuses_while_a_run_holds_a_lock(world: World, bucket: Any) -> None:
    from cxbackup.backup.index import rebuild_object_index
    from cxbackup.backup.s3target import S3BucketTarget

    target = S3BucketTarget(bucket, "backup", "rcbs")
    assert world.run(target=target)[0].ok
    before = bucket.get_object(Bucket="backup", Key="rcbs/.cxbackup-index/shard-0-of-1.sqlite3")["Body"].read()
    holder = LockHolder(pid=999, host="worker-pod", started_at="then", shard="0-of-1")
    with target.lock(".rcbs-lock-0-of-1", holder), pytest.raises(LockHeldError, match="worker-pod"):
        rebuild_object_index(S3BucketTarget(bucket, "backup", "rcbs"), 1, lock=target_lock_s3(target))
    after = bucket.get_object(Bucket="backup", Key="rcbs/.cxbackup-index/shard-0-of-1.sqlite3")["Body"].read()
    assert after == before


def target_lock_s3(target: Any) -> Any:
    holder = LockHolder(pid=os.getpid(), host="h", started_at="now", shard="index")

    @contextlib.contextmanager
    def lock(label: str) -> Iterator[None]:
        with target.lock(f".rcbs-lock-{label}", holder):
            yield

    return lock


def test_search_names_the_owner_of_an_index_it_may_not_read(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cxbackup.cli import main
    from cxbackup.commands import search as search_cmd

    assert world.run()[0].ok
    monkeypatch.setattr(search_cmd.os, "access", lambda path, mode: False)  # as another user (tests run as root)
    assert main(["search", "--target", str(world.root), "--agent", "agent_103001"]) == 2
    err = capsys.readouterr().err
    assert "is readable by its owner only" in err and f"user id {os.getuid()}" in err


def test_a_shard_without_an_index_file_but_with_a_checkpoint_indexes_what_earlier_runs_backed_up(
    world: World,
) -> None:
    """After an upgrade from a version without the index (or a lost index file), the shard's next run indexes
    the recordings already in the target, once, before its own; another shard's recordings stay out."""
    config = world.config(totalRcbsInstances=2, rcbsInstanceId=0)
    assert world.run(config)[0].ok
    path = world.root / INDEX_DIR / "shard-0-of-2.sqlite3"
    expected = sorted(r["id"] for r in world.records if shard_of(r["id"], 2) == 0)
    assert sorted(ids_in(world.root, start_from=0)) == expected
    path.unlink()  # as an upgrade finds it: the tree and the checkpoint, no index
    summary, _ = world.run(config)
    assert summary.ok and summary.downloaded == 0  # the window after the checkpoint is empty
    assert sorted(ids_in(world.root, start_from=0)) == expected
    assert summary.index_recordings == len(expected)
