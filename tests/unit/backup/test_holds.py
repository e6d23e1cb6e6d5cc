"""Legal holds survive the loss of one file: holds.json and the hold records in the ledger, on a folder and
on an S3 target; a hold is lifted only by a recorded release; a sweep or an erasure deletes nothing while
the holds cannot be trusted; the keepFor guard of a deleting sweep."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cxbackup.backup.holds import (
    CLI_SOURCE,
    HOLDS_FILE,
    LEDGER_DIR,
    RECORD_PREFIX,
    HoldsDamagedError,
    parse_hold,
    read_hold_state,
    read_holds,
    release_holds,
    restore_holds,
    update_holds,
)
from cxbackup.backup.index import INDEX_DIR, ShardIndex
from cxbackup.backup.removal import MIN_KEEP_FOR, erase, keep_for_problem, sweep_shard
from cxbackup.backup.s3target import S3BucketTarget
from cxbackup.backup.search import SearchQuery
from cxbackup.backup.targets import BackupTarget, LocalDirectoryTarget, LockHolder
from cxbackup.core.times import parse_period

from .fakes import NOW
from .test_index import ids_in
from .test_removal import expired_ids, phone_dataset
from .test_targets import s3  # noqa: F401 - the moto fixture
from .test_worker import World, dataset

HOLDER = LockHolder.current("2026-11-30T12:00:00+00:00", "test")
SPEC = "RecordingBackup ns/rb"
"""The source a RecordingBackup's runs write their spec's holds under."""


def _records(target: BackupTarget) -> list[str]:
    lister = getattr(target, "list_folder")  # noqa: B009 - both targets have it
    return sorted(n for n in lister(LEDGER_DIR) if n.startswith(RECORD_PREFIX))


def _delete(target: BackupTarget, path: str) -> None:
    if isinstance(target, LocalDirectoryTarget):
        target.resolve(path).unlink()
    else:
        assert isinstance(target, S3BucketTarget)
        target.delete(path)


@pytest.fixture(params=["folder", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackupTarget]:
    if request.param == "folder":
        yield LocalDirectoryTarget(tmp_path / "t")
    else:
        client = request.getfixturevalue("s3")
        yield S3BucketTarget(client, "backup", "cc")


def test_every_set_and_release_is_recorded_and_the_records_give_the_holds_again(target: BackupTarget) -> None:
    update_holds(target, CLI_SOURCE, lambda cur: [*cur, parse_hold("id:abc", "case 17")], HOLDER)
    update_holds(target, SPEC, lambda _: [parse_hold("phone:+1 416 555 1001")], HOLDER)
    state = read_hold_state(target)
    assert state.problem is None and state.records == 2
    assert state.recorded.keys() == state.file.keys() if state.file else False
    released = release_holds(target, CLI_SOURCE, [("id", "abc")], "case 17 closed", HOLDER)
    assert [h.describe() for h in released] == ["id abc (case 17)"]
    assert [h.key() for h in read_holds(target).all()] == [("phone", "14165551001")]
    (last,) = _records(target)[-1:]
    lines = [json.loads(line) for line in (target.read_text(f"{LEDGER_DIR}/{last}") or "").splitlines()]
    assert lines[0]["kind"] == "hold" and lines[0]["note"] == "released: case 17 closed" and lines[0]["by"]
    assert lines[1] == {"action": "release", "source": "cli", "kind": "id", "value": "abc", "reason": "case 17",
                        "since": lines[1]["since"]}  # fmt: skip


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda t: _delete(t, HOLDS_FILE), id="deleted"),
        pytest.param(lambda t: t.write_text_atomic(HOLDS_FILE, ""), id="truncated"),
        pytest.param(lambda t: t.write_text_atomic(HOLDS_FILE, '{"sources": {"cli": [{"kind'), id="cut-short"),
        pytest.param(lambda t: t.write_text_atomic(HOLDS_FILE, "\x00garbage\n"), id="garbage"),
        pytest.param(lambda t: t.write_text_atomic(HOLDS_FILE, '["sources"]'), id="another-document"),
    ],
)
def test_a_lost_or_damaged_holds_file_is_a_problem_naming_the_file_and_the_fix(
    target: BackupTarget, damage: Callable[[BackupTarget], None]
) -> None:
    update_holds(target, SPEC, lambda _: [parse_hold("partition:/legal")], HOLDER)
    damage(target)
    state = read_hold_state(target)
    assert state.problem is not None and "holds.json" in state.problem
    assert "cxbackup hold restore" in state.problem and "nothing is deleted" in state.problem
    assert [h.key() for h in state.holds.all()] == [("partition", "/legal")]  # the records still give it
    with pytest.raises(HoldsDamagedError, match=r"holds\.json"):
        read_holds(target)
    # a run syncing its holds meanwhile records a new one in the ledger only, and never writes over the file
    before = target.read_text(HOLDS_FILE)
    update_holds(target, SPEC, lambda _: [parse_hold("partition:/legal"), parse_hold("id:new")], HOLDER)
    assert target.read_text(HOLDS_FILE) == before
    restored = restore_holds(target, HOLDER)
    assert {h.key() for h in restored.holds.all()} == {("partition", "/legal"), ("id", "new")}
    assert (restored.kept_damaged is not None) == (before is not None)
    assert read_hold_state(target).problem is None and {h.key() for h in read_holds(target).all()} == {
        ("partition", "/legal"), ("id", "new"),
    }  # fmt: skip


def test_a_valid_but_emptied_holds_file_or_a_lost_record_lifts_nothing(target: BackupTarget) -> None:
    update_holds(target, SPEC, lambda _: [parse_hold("partition:/legal")], HOLDER)
    update_holds(target, CLI_SOURCE, lambda _: [parse_hold("id:abc", "case")], HOLDER)
    target.write_text_atomic(HOLDS_FILE, json.dumps({"version": 1, "sources": {}}))  # an old or forged copy
    assert {h.key() for h in read_holds(target).all()} == {("partition", "/legal"), ("id", "abc")}
    restore_holds(target, HOLDER)
    for name in _records(target):  # every record lost: holds.json alone still holds them
        _delete(target, f"{LEDGER_DIR}/{name}")
    assert {h.key() for h in read_holds(target).all()} == {("partition", "/legal"), ("id", "abc")}


def test_a_hold_file_from_before_the_records_gets_its_records_at_the_next_sync(target: BackupTarget) -> None:
    old = {"version": 1, "sources": {"cli": [{"kind": "id", "value": "abc", "reason": "case", "since": "2025"}]}}
    target.write_text_atomic(HOLDS_FILE, json.dumps(old))
    assert read_hold_state(target).records == 0
    update_holds(target, SPEC, lambda _: [], HOLDER)  # a run of a backup with no hold in its spec
    assert read_hold_state(target).records == 1
    _delete(target, HOLDS_FILE)
    with pytest.raises(HoldsDamagedError, match="is missing, but the ledger records legal holds"):
        read_holds(target)


def test_an_unreadable_hold_record_stops_deletions(target: BackupTarget) -> None:
    update_holds(target, SPEC, lambda _: [parse_hold("partition:/legal")], HOLDER)
    (name,) = _records(target)
    target.write_text_atomic(f"{LEDGER_DIR}/{name}", '{"kind": "hold"}\n{"action": "set", "kind": "id"\n')
    with pytest.raises(HoldsDamagedError, match=rf"{name} line 2 cannot be read"):
        read_holds(target)


def test_a_hold_left_out_of_its_sources_list_is_kept_and_said_until_released(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    target = LocalDirectoryTarget(tmp_path)
    update_holds(target, SPEC, lambda _: [parse_hold("phone:+1 416 555 1001"), parse_hold("id:abc")], HOLDER)
    with caplog.at_level(logging.WARNING, "cxbackup.backup"):
        after = update_holds(target, SPEC, lambda _: [parse_hold("id:abc")], HOLDER)
    assert [h.key() for h in after] == [("phone", "14165551001"), ("id", "abc")]
    (said,) = [r.getMessage() for r in caplog.records if "is no longer in its list but is kept" in r.getMessage()]
    assert "phone ending 1001" in said and "cxbackup hold release --source 'RecordingBackup ns/rb'" in said
    assert "416555" not in said  # the number itself stays out of logs
    with pytest.raises(KeyError):
        release_holds(target, CLI_SOURCE, [("phone", "14165551001")], "wrong source", HOLDER)
    release_holds(target, SPEC, [("phone", "14165551001")], "case 44 closed", HOLDER)
    assert [h.key() for h in read_holds(target).all()] == [("id", "abc")]


def test_the_worker_keeps_a_hold_its_spec_no_longer_states_and_the_sweep_keeps_its_recordings(tmp_path: Path) -> None:
    world = World(tmp_path, dataset())
    world.run()
    with_hold = world.config(retentionPeriod="PT24H", retentionSweep="dry-run", legalHolds="partition:/sales",
                             legalHoldsSource=SPEC)  # fmt: skip
    world.run(with_hold)
    held = {r["id"] for r in world.records if r["mediaFiles"][0]["partitions"] == ["/sales"]} & expired_ids(world, 24)
    assert held
    # someone edits the RecordingBackup: the hold is gone from its spec, and the same run sweeps
    summary, _ = world.run(world.config(retentionPeriod="PT24H", retentionSweep="delete", legalHoldsSource=SPEC))
    assert summary.retention is not None and summary.retention.held == len(held) == 4
    for rec in world.records:
        assert (world.root / world.paths(rec).directory).exists() == (rec["id"] not in expired_ids(world, 24) - held), (
            rec["id"]
        )


@pytest.mark.parametrize("damage", ["deleted", "truncated", "garbage"])
def test_the_workers_sweep_deletes_nothing_while_the_holds_file_is_lost_or_damaged(tmp_path: Path, damage: str) -> None:
    world = World(tmp_path, dataset())
    world.run(world.config(legalHolds="partition:/sales", legalHoldsSource=SPEC))
    holds = world.root / HOLDS_FILE
    if damage == "deleted":
        holds.unlink()
    else:
        holds.write_text("" if damage == "truncated" else "not json at all")
    before = world.files()
    summary, _ = world.run(world.config(retentionPeriod="PT24H", retentionSweep="delete", legalHolds="partition:/sales",
                                        legalHoldsSource=SPEC))  # fmt: skip
    assert summary.retention is None and summary.ok
    error = summary.retention_error or ""
    assert f"{world.root}/{HOLDS_FILE}" in error and "cxbackup hold restore" in error
    assert world.files() == before


def test_sweep_and_erase_read_the_targets_holds_themselves(tmp_path: Path) -> None:
    """Whatever holds a caller passes (here none), the target's own are respected, and a lost holds file
    stops them before anything is deleted."""
    world = World(tmp_path, phone_dataset())
    world.run()
    target = LocalDirectoryTarget(world.root)
    subject = [r["id"] for r in world.records if r["callerPhoneNumber"].endswith("1001")]
    update_holds(target, CLI_SOURCE, lambda _: [parse_hold(f"id:{subject[0]}", "litigation")], HOLDER)
    index = ShardIndex(world.root / INDEX_DIR / "shard-0-of-1.sqlite3")
    query = SearchQuery(phones=("4165551001",), limit=1000)
    try:
        dry = erase(target, [index], query, (), request="DSAR-1", dry_run=True)
        assert [o.outcome for o in dry.outcomes if o.id == subject[0]] == ["held"]
        sweep = sweep_shard(target, index, keep_for="PT1S", period=parse_period("PT1S"), holds=(), now=NOW,
                            dry_run=True, label="0-of-1")  # fmt: skip
        assert sweep.held == 1
        (world.root / HOLDS_FILE).unlink()
        before = world.files()
        with pytest.raises(HoldsDamagedError, match=r"holds\.json is missing"):
            sweep_shard(target, index, keep_for="PT1S", period=parse_period("PT1S"), holds=(), now=NOW,
                        dry_run=False, label="0-of-1")  # fmt: skip
        with pytest.raises(HoldsDamagedError, match=r"holds\.json is missing"):
            erase(target, [index], query, (), request="DSAR-1", dry_run=False)
    finally:
        index.close()
    assert world.files() == before and set(subject) <= set(ids_in(world.root, start_from=0))
    assert not list((world.root / LEDGER_DIR).glob("erasure-*")) and not list((world.root / LEDGER_DIR).glob("ret*"))


def test_an_erasure_report_names_a_phone_hold_by_its_last_digits_only(tmp_path: Path) -> None:
    world = World(tmp_path, phone_dataset())
    world.run()
    target = LocalDirectoryTarget(world.root)
    update_holds(target, CLI_SOURCE, lambda _: [parse_hold("phone:+1 416 555 1001", "case 9")], HOLDER)
    index = ShardIndex(world.root / INDEX_DIR / "shard-0-of-1.sqlite3")
    try:
        report = erase(target, [index], SearchQuery(phones=("4165551001",), limit=100), (), request="R", dry_run=True)
    finally:
        index.close()
    details = {o.detail for o in report.outcomes}
    assert details == {"legal hold: phone ending 1001 (case 9)"}


NOW_UTC = datetime(2026, 11, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("keep_for", "vendor_days", "confirmed", "refused"),
    [
        ("P7D", 90, None, "shorter than retentionDays (90)"),
        ("P7D", 90, "P7D", "shorter than retentionDays (90)"),  # no confirmation undercuts the vendor
        ("P90D", 90, None, None),
        ("P7D", None, None, f"shorter than {MIN_KEEP_FOR} and retentionDays is not set"),
        ("P7M", None, None, f"shorter than {MIN_KEEP_FOR}"),
        ("PT2H", None, "PT3H", f"shorter than {MIN_KEEP_FOR}"),  # a confirmation of another duration
        ("PT2H", None, "pt2h", None),
        ("P1Y", None, None, None),
        ("P7Y", None, None, None),
    ],
)
def test_the_keep_for_guard_holds_with_or_without_the_vendors_retention(
    keep_for: str, vendor_days: int | None, confirmed: str | None, refused: str | None
) -> None:
    problem = keep_for_problem(keep_for, vendor_days, confirmed, now=NOW_UTC)
    assert (problem is None) == (refused is None), problem
    if refused is not None:
        assert problem is not None and refused in problem
