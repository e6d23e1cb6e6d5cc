"""Retention sweep, legal holds, erasure and the ledger, on a folder target written by real backup runs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from cxbackup.backup.errors import LockHeldError, TargetError
from cxbackup.backup.holds import (
    CLI_SOURCE,
    HOLDS_FILE,
    HOLDS_LOCK,
    LEDGER_DIR,
    Hold,
    parse_hold,
    read_holds,
    update_holds,
)
from cxbackup.backup.index import INDEX_DIR, ShardIndex
from cxbackup.backup.removal import erase, erased_ids, write_ledger
from cxbackup.backup.search import SearchQuery
from cxbackup.backup.targets import LocalDirectoryTarget, LockHolder

from .fakes import HOUR, NOW_MS, make_record
from .test_index import ids_in
from .test_worker import World, dataset

HOLDER = LockHolder.current("2024-05-10T12:00:00+00:00", "test")


def phone_dataset(n: int = 12) -> list[dict[str, Any]]:
    """Recordings of three callers, one every 3 hours up to 36 hours ago."""
    return [
        make_record(
            f"{i:018d}LAES{i:010d}",
            NOW_MS - 36 * HOUR + i * 3 * HOUR,
            partitions=["/sales"] if i % 4 == 0 else ["/support"],
            extra={"callerPhoneNumber": f"+1 416 555 {1000 + i % 3:04d}"},
        )
        for i in range(n)
    ]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path, dataset())


def expired_ids(world: World, hours: int) -> set[str]:
    return {
        r["id"] for r in world.records if NOW_MS - 40 * HOUR + int(r["id"][:18]) * 75 * 60_000 < NOW_MS - hours * HOUR
    }


def ledger(world: World, kind: str) -> list[list[dict[str, Any]]]:
    folder = world.root / LEDGER_DIR
    return [[json.loads(line) for line in p.read_text().splitlines()] for p in sorted(folder.glob(f"{kind}-*.jsonl"))]


def test_a_dry_run_counts_and_names_the_expired_recordings_and_deletes_nothing(world: World) -> None:
    world.run()
    before = world.files()
    summary, _ = world.run(world.config(retentionPeriod="PT24H", retentionSweep="dry-run"))
    sweep = summary.retention
    assert sweep is not None and summary.retention_error is None
    expired = expired_ids(world, 24)
    assert len(expired) == 13  # started 40 h .. 25 h ago
    assert (sweep.dry_run, sweep.expired, sweep.held, sweep.deleted) == (True, 13, 0, 0)
    assert {i for i, _ in sweep.examples} <= expired and len(sweep.examples) == 13
    assert world.files() == before
    assert not (world.root / LEDGER_DIR).exists() or not list((world.root / LEDGER_DIR).glob("retention-*"))
    assert summary.to_dict()["retention"]["expired"] == 13


def test_the_sweep_deletes_exactly_the_expired_unheld_recordings_from_tree_and_index(world: World) -> None:
    world.run()
    config = world.config(retentionPeriod="PT24H", retentionSweep="delete", legalHolds="partition:/sales")
    summary, _ = world.run(config)
    sweep = summary.retention
    assert sweep is not None
    held = {r["id"] for r in world.records if r["mediaFiles"][0]["partitions"] == ["/sales"]} & expired_ids(world, 24)
    gone = expired_ids(world, 24) - held
    assert (sweep.deleted, sweep.held, sweep.failed) == (len(gone), len(held), 0) == (9, 4, 0)
    assert sweep.deleted_bytes > 0
    for rec in world.records:
        folder = world.root / world.paths(rec).directory
        assert folder.exists() == (rec["id"] not in gone), rec["id"]
    assert set(ids_in(world.root, start_from=0)) == {r["id"] for r in world.records} - gone
    (entries,) = ledger(world, "retention")
    assert entries[0]["kind"] == "retention" and entries[0]["keepFor"] == "PT24H" and entries[0]["recordings"] == 9
    assert {e["id"] for e in entries[1:]} == gone
    assert all(e["deletedAt"] and e["files"] >= 2 and "callerPhoneNumber" not in e for e in entries[1:])
    # the hold the configuration set is in the target for every other tool
    assert [h.describe() for h in read_holds(LocalDirectoryTarget(world.root)).all()] == ["partition /sales"]
    again, _ = world.run(config)
    assert again.retention is not None and (again.retention.deleted, again.retention.held) == (0, 4)


def test_a_crash_between_removing_folders_and_the_index_is_finished_by_the_next_sweep(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world.run()
    config = world.config(retentionPeriod="PT24H", retentionSweep="delete")
    real_remove = ShardIndex.remove

    def crash(self: ShardIndex, ids: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ShardIndex, "remove", crash)
    summary, _ = world.run(config)
    assert summary.retention is None and "retention sweep failed" in (summary.retention_error or "")
    assert summary.ok  # the backup itself is complete; the sweep's failure is reported on its own
    gone = expired_ids(world, 24)
    assert all(not (world.root / world.paths(r).directory).exists() for r in world.records if r["id"] in gone)
    assert gone <= set(ids_in(world.root, start_from=0))  # the entries stayed
    monkeypatch.setattr(ShardIndex, "remove", real_remove)
    again, _ = world.run(config)
    assert again.retention is not None and again.retention.deleted == len(gone)
    assert not gone & set(ids_in(world.root, start_from=0))
    recorded = [e["id"] for f in ledger(world, "retention") for e in f[1:]]
    assert set(recorded) == gone  # recorded by each attempt that removed folders: never missed


def test_a_damaged_holds_file_stops_the_sweep_instead_of_ignoring_the_holds(world: World) -> None:
    world.run()
    (world.root / LEDGER_DIR).mkdir(mode=0o700)
    (world.root / HOLDS_FILE).write_text("{not json")
    before = world.files()
    summary, _ = world.run(world.config(retentionPeriod="PT24H", retentionSweep="delete"))
    assert summary.retention is None and "holds.json cannot be read" in (summary.retention_error or "")
    assert world.files() == before


def test_holds_are_kept_per_source_and_a_source_only_adds_to_its_own(tmp_path: Path) -> None:
    target = LocalDirectoryTarget(tmp_path)
    update_holds(target, CLI_SOURCE, lambda cur: [*cur, parse_hold("id:abc", "case 17")], HOLDER)
    update_holds(target, "RecordingBackup ns/a", lambda _: [parse_hold("phone:+1 416 555 1001")], HOLDER)
    update_holds(target, "RecordingBackup ns/a", lambda _: [parse_hold("partition:/sales")], HOLDER)
    holds = read_holds(target)
    assert [h.describe() for h in holds.sources[CLI_SOURCE]] == ["id abc (case 17)"]
    # the phone hold the source no longer states is not lifted by leaving it out
    assert [h.describe() for h in holds.sources["RecordingBackup ns/a"]] == ["phone 14165551001", "partition /sales"]
    assert holds.sources[CLI_SOURCE][0].since  # when it was set
    with pytest.raises(ValueError, match="is not a hold"):
        parse_hold("name:bob")
    with pytest.raises(ValueError, match="fewer than 4 digits"):
        parse_hold("phone:12")
    assert Hold("phone", "4165551001").query().phones == ("4165551001",)


def test_erasure_records_first_removes_refuses_held_and_later_runs_never_download_again(tmp_path: Path) -> None:
    world = World(tmp_path, phone_dataset())
    world.run()
    target = LocalDirectoryTarget(world.root)
    subject = [r for r in world.records if r["callerPhoneNumber"].endswith("1001")]
    held_id = subject[0]["id"]
    update_holds(target, CLI_SOURCE, lambda _: [Hold("id", held_id, "litigation")], HOLDER)
    index_path = world.root / INDEX_DIR / "shard-0-of-1.sqlite3"
    query = SearchQuery(phones=("4165551001",), limit=100_000)
    index = ShardIndex(index_path)
    try:
        dry = erase(target, [index], query, read_holds(target).all(), request="DSAR-1", dry_run=True)
        assert {o.outcome for o in dry.outcomes} == {"to-erase", "held"} and dry.ledger is None
        assert len(dry.outcomes) == len(subject) == 4
        report = erase(target, [index], query, read_holds(target).all(), request="DSAR-1", dry_run=False)
    finally:
        index.close()
    assert report.count("erased") == 3 and report.count("held") == 1
    erased = {r["id"] for r in subject[1:]}
    for rec in world.records:
        assert (world.root / world.paths(rec).directory).exists() == (rec["id"] not in erased)
    assert not erased & set(ids_in(world.root, start_from=0))
    ((header, *rows),) = ledger(world, "erasure")
    assert header["request"] == "DSAR-1" and header["completedAt"]
    assert {r["id"]: r["outcome"] for r in rows} == {held_id: "held", **dict.fromkeys(erased, "erased")}
    text = (world.root / report.ledger).read_text() if report.ledger else ""
    assert "416" not in text and "1001" not in text  # ids and times only
    assert erased_ids(target) == erased
    # a run over the whole window again: the vendor still lists them, the backup does not take them back
    summary, _ = world.run(world.config(windowStart=NOW_MS - 3 * 86_400_000, windowEnd=NOW_MS))
    assert summary.erased == 3 and summary.ok
    assert all(not (world.root / world.paths(r).directory).exists() for r in subject[1:])


def test_a_sweep_deleting_does_not_back_up_what_is_already_past_its_retention(tmp_path: Path) -> None:
    world = World(tmp_path, phone_dataset())
    summary, _ = world.run(world.config(retentionPeriod="PT24H", retentionSweep="delete"))
    started = {r["id"]: NOW_MS - 36 * HOUR + i * 3 * HOUR for i, r in enumerate(world.records)}
    old = {i for i, s in started.items() if s < NOW_MS - 24 * HOUR}
    assert summary.filtered == len(old) == 4 and summary.downloaded == 8
    assert not old & set(ids_in(world.root, start_from=0))
    assert summary.retention is not None and summary.retention.expired == 0


def test_remove_folder_stays_inside_the_target(tmp_path: Path) -> None:
    target = LocalDirectoryTarget(tmp_path / "t")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("x")
    (tmp_path / "t" / "link").symlink_to(outside)
    with pytest.raises(TargetError, match="outside the target"):
        target.remove_folder("link")
    with pytest.raises(TargetError, match="root"):
        target.remove_folder("")
    assert (outside / "keep.txt").exists()


def test_an_administrators_command_leaves_ledger_files_the_worker_user_can_open(tmp_path: Path) -> None:
    """Run as root (as the tests are) on a volume the worker's user writes: what the command creates gets
    the owner of the backup runs' lock file, or the worker could not read the erasures or take the lock."""
    if os.geteuid() != 0:
        pytest.fail("this test needs root, as `make test` runs on the project's machines")
    target = LocalDirectoryTarget(tmp_path)
    (tmp_path / ".rcbs-lock-0-of-1").write_text("")
    os.chown(tmp_path / ".rcbs-lock-0-of-1", 10001, 10001)
    update_holds(target, CLI_SOURCE, lambda _: [parse_hold("id:abc", "case")], HOLDER)
    write_ledger(target, f"{LEDGER_DIR}/erasure-x.jsonl", {"kind": "erasure"}, [{"id": "abc"}])
    for path in (
        tmp_path / LEDGER_DIR,
        tmp_path / HOLDS_FILE,
        tmp_path / HOLDS_LOCK,
        tmp_path / LEDGER_DIR / "erasure-x.jsonl",
    ):
        assert (path.stat().st_uid, path.stat().st_gid) == (10001, 10001), path


def test_syncing_unchanged_holds_takes_no_lock(tmp_path: Path) -> None:
    """Every shard of every run syncs its backup's holds: with nothing to change, no lock is taken (a
    held lock does not stop it), so shards starting together do not queue."""
    target = LocalDirectoryTarget(tmp_path)
    holds = [parse_hold("partition:/legal")]
    update_holds(target, "RecordingBackup ns/rb", lambda _: holds, HOLDER)
    before = (tmp_path / HOLDS_FILE).stat().st_mtime_ns
    with target.lock(HOLDS_LOCK, HOLDER):  # another writer holds it
        assert [h.describe() for h in update_holds(target, "RecordingBackup ns/rb", lambda _: holds, HOLDER)] == [
            "partition /legal"
        ]
    assert (tmp_path / HOLDS_FILE).stat().st_mtime_ns == before
    with target.lock(HOLDS_LOCK, HOLDER), pytest.raises(LockHeldError):  # a change waits for the lock
        update_holds(target, "RecordingBackup ns/rb", lambda _: [parse_hold("id:x")], HOLDER, wait=0.3,
                     sleep=lambda _s: None)  # fmt: skip


def test_an_unreadable_erasure_ledger_stops_the_run_instead_of_downloading_erased_recordings(tmp_path: Path) -> None:
    world = World(tmp_path, phone_dataset())
    assert world.run()[0].ok
    (world.root / LEDGER_DIR).mkdir(mode=0o700)
    (world.root / LEDGER_DIR / "erasure-20261130T000000Z-request-abc123.jsonl").write_text(
        '{"kind": "erasure"}\n{"id": "x", "outcome": "erased"}\nnot json\n'
    )
    with pytest.raises(TargetError, match=r"erasure-20261130T000000Z-request-abc123.jsonl line 3 cannot be read"):
        world.run()
