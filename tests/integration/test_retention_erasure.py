"""Retention sweep, legal holds and erasure through the real CLI, on a folder target and on a real S3 server.

`cxbackup download` backs up the emulator's recordings; then `cxbackup hold`, `cxbackup retention`,
`cxbackup erase`, `cxbackup search` and `cxbackup audit` run as a user runs them: through the real entry
point in this process (tests/integration/cli.py), and `hold`, `retention`, `erase` and `audit` each at least
once as a process of their own (`python -m cxbackup`). The S3 cases use the emulator's S3 server (moto),
which keeps object versions and implements Object Lock.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from pathlib import Path
from typing import Any

import pytest

from cxbackup.backup.holds import LEDGER_DIR
from cxbackup_dev.emulator import Emulator, parse_time
from tests.integration.cli import run_cli, run_cli_process
from tests.integration.emulator_fixtures import target_bucket
from tests.integration.test_backup_download import folder_of
from tests.integration.test_search_cli import recording, write_tree

pytestmark = pytest.mark.integration


def cli(*args: str, env: dict[str, str] | None = None, process: bool = False) -> Any:
    """`cxbackup ARGS` in this process, or with `process=True` as a process of its own."""
    return (run_cli_process if process else run_cli)(list(args), env or {}, timeout=120)


def by_start(emulator: Emulator) -> list[dict[str, Any]]:
    return sorted(emulator.records(), key=lambda r: (parse_time(r["startTime"]), r["id"]))


def keep_for_splitting(records: list[dict[str, Any]], n_old: int) -> str:
    """An ISO 8601 duration that makes exactly the `n_old` oldest recordings expired (the cut half-way
    between two starts, minutes apart, so the seconds until the command runs do not matter)."""
    cut = (parse_time(records[n_old - 1]["startTime"]) + parse_time(records[n_old]["startTime"])) / 2
    return f"PT{math.ceil(time.time() - cut / 1000)}S"


def ids_found(args: list[str], env: dict[str, str] | None = None) -> list[str]:
    out = cli("search", *args, "--from", "1970-01-01", "--json", "--limit", "1000", env=env)
    assert out.returncode == 0, out.stderr
    return [r["id"] for r in json.loads(out.stdout)["recordings"]]


def test_holds_then_a_dry_run_then_the_sweep_on_a_folder(emulator: Emulator, tmp_path: Path) -> None:
    target = tmp_path / "target"
    cfg = emulator.write_config(tmp_path / "c.properties", target_dir=target)
    assert cli("download", "-config", str(cfg), "--progress", "none", env=emulator.env()).returncode == 0
    records = by_start(emulator)
    old = records[:10]
    held = old[2]
    keep = keep_for_splitting(records, 10)

    added = cli("hold", "add", "--target", str(target), f"id:{held['id']}", "--reason", "case 2026-44", process=True)
    assert added.returncode == 0, added.stderr
    listed = cli("hold", "list", "--target", str(target))
    assert f"id:{held['id']}" in listed.stdout and "case 2026-44" in listed.stdout

    before = sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
    dry = cli("retention", "--target", str(target), "--keep-for", keep, process=True)
    assert dry.returncode == 0, dry.stderr
    assert "Dry run" in dry.stdout and "9 recordings" in dry.stdout
    assert "; 1 recording past retention kept by legal holds (1 legal hold in force)." in dry.stdout
    assert sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()) == before

    swept = cli(
        "retention", "--target", str(target), "--keep-for", keep, "--delete", "--confirm-keep-for", keep, "--json"
    )
    assert swept.returncode == 0, swept.stderr
    doc = json.loads(swept.stdout)
    assert (doc["deleted"], doc["held"], doc["failed"], doc["dryRun"]) == (9, 1, 0, False)
    gone = {r["id"] for r in old} - {held["id"]}
    for rec in records:
        assert (target / folder_of(rec)).exists() == (rec["id"] not in gone), rec["id"]
    assert set(ids_found(["--target", str(target)])) == {r["id"] for r in records} - gone
    (ledger,) = (target / LEDGER_DIR).glob("retention-*.jsonl")
    lines = [json.loads(line) for line in ledger.read_text().splitlines()]
    assert {row["id"] for row in lines[1:]} == gone and lines[0]["keepFor"] == keep
    assert not any(r["callerPhoneNumber"] in ledger.read_text() for r in records)

    # the audit tells the sweep's deletions from losses
    audit = cli("audit", "-config", str(cfg), "--json", env=emulator.env(), process=True)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    counts = json.loads(audit.stdout)["counts"]
    assert (counts["expired"], counts["missing"], counts["ok"]) == (9, 0, len(records) - 9)

    # a hold that is released (with a reason, recorded in the ledger) no longer keeps it
    released = cli("hold", "release", "--target", str(target), f"id:{held['id']}", "--reason", "case 2026-44 closed")
    assert released.returncode == 0, released.stderr
    (record,) = [p for p in (target / LEDGER_DIR).glob("hold-*.jsonl") if "release" in p.read_text()]
    assert "case 2026-44 closed" in record.read_text()
    again = cli(
        "retention", "--target", str(target), "--keep-for", keep, "--delete", "--confirm-keep-for", keep, "--json"
    )
    assert json.loads(again.stdout)["deleted"] == 1 and not (target / folder_of(held)).exists()


def test_erasure_on_a_folder_refuses_held_and_the_next_backup_never_takes_them_back(
    emulator: Emulator, tmp_path: Path
) -> None:
    target = tmp_path / "target"
    cfg = emulator.write_config(tmp_path / "c.properties", target_dir=target)
    assert cli("download", "-config", str(cfg), "--progress", "none", env=emulator.env()).returncode == 0
    records = by_start(emulator)
    agent = records[0]["mediaFiles"][0]["parameters"]["username"]  # the subject: an agent of several calls
    subject = [r for r in records if r["mediaFiles"][0]["parameters"]["username"] == agent]
    subject_ids = set(ids_found(["--target", str(target), "--agent", agent]))
    assert {r["id"] for r in subject} <= subject_ids and len(subject_ids) >= 3
    held = sorted(subject_ids)[0]
    assert cli("hold", "add", "--target", str(target), f"id:{held}", "--reason", "litigation").returncode == 0

    dry = cli("erase", "--target", str(target), "--agent", agent, "--request", "DSAR-117", process=True)
    assert dry.returncode == 0, dry.stderr
    assert "Dry run" in dry.stdout and f"{len(subject_ids) - 1} to-erase, 1 held" in dry.stdout
    assert all((target / folder_of(r)).exists() for r in subject)
    subject = [r for r in records if r["id"] in subject_ids]

    # the same dry run as a RecordingErasure's pod runs it: the subject from a file, the result as JSON
    (tmp_path / "subject").write_text(f"# DSAR-117\nagent:{agent}\n")
    result_file = tmp_path / "result.json"
    as_pod = cli("erase", "--target", str(target), "--subject-file", str(tmp_path / "subject"), "--request",
                 "DSAR-117", "--result-file", str(result_file))  # fmt: skip
    assert as_pod.returncode == 0, as_pod.stderr
    result = json.loads(result_file.read_text())
    assert (result["dryRun"], result["toErase"], result["held"], result["erased"]) == (
        True, len(subject_ids) - 1, 1, 0,
    )  # fmt: skip
    assert result["recordings"][0] == {"id": held, "startTime": result["recordings"][0]["startTime"],
                                       "outcome": "held", "detail": f"legal hold: id {held} (litigation)"}  # fmt: skip
    assert {r["id"] for r in result["recordings"]} == subject_ids and agent not in result_file.read_text()

    done = cli("erase", "--target", str(target), "--agent", agent, "--request", "DSAR-117", "--execute", "--json")
    assert done.returncode == 6, done.stderr  # done except what legal holds keep
    report = json.loads(done.stdout)
    assert report["counts"] == {"erased": len(subject_ids) - 1, "held": 1}
    erased = subject_ids - {held}
    assert not erased & set(ids_found(["--target", str(target)]))
    assert ids_found(["--target", str(target), "--agent", agent]) == [held]
    ledger = (target / report["ledger"]).read_text()
    assert agent not in ledger and "DSAR-117" in ledger
    assert not any(r["callerPhoneNumber"] in ledger for r in subject)

    # the vendor still has them: a backup of the whole window again does not bring them back
    rerun = cli("download", "-config", str(cfg), "--progress", "none", env=emulator.env())
    assert rerun.returncode == 0, rerun.stderr
    for rec in records:
        assert (target / folder_of(rec)).exists() == (rec["id"] not in erased), rec["id"]
    audit = cli("audit", "-config", str(cfg), "--json", env=emulator.env())
    counts = json.loads(audit.stdout)["counts"]
    assert audit.returncode == 0 and (counts["erased"], counts["missing"]) == (len(erased), 0)

    nobody = cli("erase", "--target", str(target), "--phone", "+1 000 000 0000", "--request", "DSAR-118")
    assert nobody.returncode == 0, nobody.stderr
    assert nobody.stdout.startswith("No recording matches the subject's 1 phone number(s); the index holds")
    assert "Nothing to erase" in nobody.stdout and "0000" not in nobody.stdout
    late = cli("erase", "--target", str(target), "--agent", agent, "--from", "2100-01-01", "--request", "R")
    assert late.returncode == 0 and "--from is after the last indexed recording" in late.stdout


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["erase", "--request", "R"], "give the subject"),
        (["erase", "--phone", "12", "--request", "R"], "--phone"),
        (["erase", "--phone", "+16475550000"], "--request"),
        (["erase", "--subject-file", "/nonexistent", "--request", "R"], "--subject-file"),
        (["retention"], "--keep-for"),
        (["retention", "--keep-for", "7 years"], "--keep-for"),
        (["hold", "add", "name:bob", "--reason", "x"], "HOLD"),
        (["hold", "add", "id:abc"], "--reason"),
        (["hold", "remove", "id:never-set", "--reason", "x"], "no such hold"),
        (["hold", "release", "id:abc"], "--reason"),
        (["retention", "--keep-for", "P90D", "--delete"], "--confirm-keep-for P90D"),
        (["retention", "--keep-for", "P90D", "--delete", "--confirm-keep-for", "P9D"], "--confirm-keep-for P90D"),
    ],
)
def test_bad_input_exits_2_naming_the_option(tmp_path: Path, args: list[str], named: str) -> None:
    (tmp_path / "t").mkdir()
    where = ["--target", str(tmp_path / "t")]
    full = [*args[:2], *where, *args[2:]] if args[0] == "hold" else [args[0], *where, *args[1:]]
    out = cli(*full)
    assert out.returncode == 2, out.stdout + out.stderr
    assert named in out.stderr


def test_s3_erasure_removes_every_version_and_object_lock_refuses_early_deletion(
    emulator: Emulator, tmp_path: Path
) -> None:
    bucket = target_bucket(emulator)
    client, env = bucket.client, bucket.env
    client.create_bucket(Bucket="versioned-backup")
    client.put_bucket_versioning(Bucket="versioned-backup", VersioningConfiguration={"Status": "Enabled"})
    cfg = emulator.write_config(
        tmp_path / "v.properties", targetS3Bucket="versioned-backup", targetS3EndpointUrl=emulator.s3_endpoint
    )
    assert cli("download", "-config", str(cfg), "--progress", "none", env=env).returncode == 0
    records = by_start(emulator)
    victim = records[4]
    prefix = folder_of(victim) + "/"
    # a second version of its metadata, as a rewrite would leave: erasure must remove both
    meta_key = f"{prefix}{victim['id']}.json"
    client.put_object(Bucket="versioned-backup", Key=meta_key, Body=json.dumps(victim).encode())
    assert len(client.list_object_versions(Bucket="versioned-backup", Prefix=prefix)["Versions"]) >= 3
    out = cli("erase", "-config", str(cfg), "--id", victim["id"], "--request", "DSAR-9", "--execute", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    left = client.list_object_versions(Bucket="versioned-backup", Prefix=prefix)
    assert not left.get("Versions") and not left.get("DeleteMarkers")
    assert victim["id"] not in ids_found(["-config", str(cfg)], env=env)
    assert any(k["Key"].startswith(f"{LEDGER_DIR}/erasure-") for k in client.list_objects_v2(
        Bucket="versioned-backup", Prefix=f"{LEDGER_DIR}/")["Contents"])  # fmt: skip
    rerun = cli("download", "-config", str(cfg), "--progress", "none", env=env)
    assert rerun.returncode == 0 and "Versions" not in client.list_object_versions(
        Bucket="versioned-backup", Prefix=prefix
    )

    # under Object Lock (compliance, seven years) nothing is deleted early: the erasure fails, says why,
    # and the recording stays whole and in the index
    client.create_bucket(Bucket="locked-erase", ObjectLockEnabledForBucket=True)
    locked = emulator.write_config(
        tmp_path / "l.properties",
        targetS3Bucket="locked-erase",
        targetS3EndpointUrl=emulator.s3_endpoint,
        retentionPeriod="P7Y",
        targetS3ObjectLock="COMPLIANCE",
    )
    assert cli("download", "-config", str(locked), "--progress", "none", env=env).returncode == 0
    refused = cli("erase", "-config", str(locked), "--id", victim["id"], "--request", "DSAR-10", "--execute", env=env)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "failed" in refused.stdout and "AccessDenied" in refused.stdout
    head = client.head_object(Bucket="locked-erase", Key=meta_key)
    assert head["ContentLength"] > 0 and head["ObjectLockRetainUntilDate"] > dt.datetime.now(dt.UTC)
    assert victim["id"] in ids_found(["-config", str(locked)], env=env)


def test_holds_and_the_sweep_on_an_s3_target(emulator: Emulator, tmp_path: Path) -> None:
    bucket = target_bucket(emulator)
    client, env = bucket.client, bucket.env
    client.create_bucket(Bucket="swept-backup")
    cfg = emulator.write_config(
        tmp_path / "s.properties", targetS3Bucket="swept-backup", targetS3Prefix="cc/",
        targetS3EndpointUrl=emulator.s3_endpoint,
    )  # fmt: skip
    assert cli("download", "-config", str(cfg), "--progress", "none", env=env).returncode == 0
    records = by_start(emulator)
    held = records[0]
    added = cli("hold", "add", "-config", str(cfg), f"id:{held['id']}", "--reason", "case 7", env=env)
    assert added.returncode == 0, added.stderr
    listed = cli("hold", "list", "-config", str(cfg), "--json", env=env)
    assert json.loads(listed.stdout)["cli"][0]["value"] == held["id"]
    keep = keep_for_splitting(records, 5)
    swept = cli(
        "retention", "-config", str(cfg), "--keep-for", keep, "--delete", "--confirm-keep-for", keep, "--json", env=env
    )
    assert swept.returncode == 0, swept.stderr
    assert (json.loads(swept.stdout)["deleted"], json.loads(swept.stdout)["held"]) == (4, 1)
    keys = {o["Key"] for o in client.list_objects_v2(Bucket="swept-backup", Prefix="cc/")["Contents"]}
    for i, rec in enumerate(records):
        present = any(k.startswith(f"cc/{folder_of(rec)}/") for k in keys)
        assert present == (i >= 5 or rec["id"] == held["id"]), rec["id"]
    assert any(k.startswith(f"cc/{LEDGER_DIR}/retention-") for k in keys)
    assert f"cc/{LEDGER_DIR}/holds.json" in keys
    assert not any(k.endswith(".holds-lock") for k in keys)  # released


def _files(target: Path) -> list[str]:
    return sorted(p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file() and "index" not in p.parts)


def test_held_recordings_survive_a_lost_damaged_or_emptied_holds_file_and_a_hold_gone_from_the_spec(
    emulator: Emulator, tmp_path: Path
) -> None:
    """Every way one file or one edit could lift a hold: holds.json deleted, truncated, replaced by garbage, and
    the hold removed from the backup's own list (as a RecordingBackup's run writes it). The sweep and the erasure
    fail clearly (exit 5, naming the file and `cxbackup hold restore`) and delete nothing; after the restore the
    sweep keeps the held recordings; only a release with a reason lifts a hold."""
    target = tmp_path / "target"
    source = "RecordingBackup cc/recordings"
    records = by_start(emulator)
    old = records[:10]
    by_spec, by_cli = old[2], old[5]
    keep = keep_for_splitting(records, 10)
    with_hold = emulator.write_config(tmp_path / "held.properties", target_dir=target,
                                      legalHolds=f"id:{by_spec['id']}", legalHoldsSource=source)  # fmt: skip
    assert cli("download", "-config", str(with_hold), "--progress", "none", env=emulator.env()).returncode == 0
    assert cli("hold", "add", "--target", str(target), f"id:{by_cli['id']}", "--reason", "case 7").returncode == 0
    holds_file = target / LEDGER_DIR / "holds.json"
    sweep = ["retention", "--target", str(target), "--keep-for", keep, "--delete", "--confirm-keep-for", keep, "--json"]

    for damage in ("deleted", "truncated", "garbage"):
        if damage == "deleted":
            holds_file.unlink()
        else:
            holds_file.write_text("" if damage == "truncated" else '{"sources": {"cli": [{"kind": "id", "va')
        before = _files(target)
        swept = cli(*sweep)
        assert swept.returncode == 5, (damage, swept.stdout, swept.stderr)
        assert f"{holds_file}" in swept.stderr and "cxbackup hold restore" in swept.stderr, swept.stderr
        erased = cli("erase", "--target", str(target), "--id", by_cli["id"], "--id", old[0]["id"], "--request", "R-1",
                     "--execute")  # fmt: skip
        assert erased.returncode == 5 and "holds.json" in erased.stderr, erased.stdout + erased.stderr
        listed = cli("hold", "list", "--target", str(target))
        assert listed.returncode == 5 and by_spec["id"] in listed.stdout and by_cli["id"] in listed.stdout
        assert _files(target) == before, damage  # nothing deleted, nothing written over the damaged file
        restored = cli("hold", "restore", "--target", str(target))
        assert restored.returncode == 0, restored.stderr
        assert "2 hold(s)" in restored.stdout

    # the backup's list no longer states its hold (an edit of the RecordingBackup), and the same run sweeps
    without = emulator.write_config(tmp_path / "edited.properties", target_dir=target, legalHoldsSource=source,
                                    retentionPeriod=keep, retentionSweep="delete")  # fmt: skip
    run = cli("download", "-config", str(without), "--progress", "none", env=emulator.env())
    assert run.returncode == 0, run.stderr
    assert "is no longer in its list but is kept" in run.stdout + run.stderr
    gone = {r["id"] for r in old} - {by_spec["id"], by_cli["id"]}
    for rec in records:
        assert (target / folder_of(rec)).exists() == (rec["id"] not in gone), rec["id"]

    # only a deliberate release lifts it, and the next sweep may then delete it
    wrong = cli("hold", "release", "--target", str(target), f"id:{by_spec['id']}", "--reason", "closed")
    assert wrong.returncode == 2 and "sources with holds: 'RecordingBackup cc/recordings', 'cli'" in wrong.stderr
    released = cli("hold", "release", "--target", str(target), "--source", source, f"id:{by_spec['id']}",
                   "--reason", "case 44 closed")  # fmt: skip
    assert released.returncode == 0, released.stderr
    again = cli(*sweep)
    assert again.returncode == 0 and json.loads(again.stdout)["deleted"] == 1, again.stdout + again.stderr
    assert not (target / folder_of(by_spec)).exists() and (target / folder_of(by_cli)).exists()


def test_erase_exit_codes_tell_all_erased_from_some_held_from_some_failed(tmp_path: Path) -> None:
    """0: every recording found was erased; 6: all but those legal holds keep (the request is not done until
    they are released and the erasure runs again); 1: some could not be erased, whatever else happened."""
    target = tmp_path / "target"
    a, b, c = "+16475550101", "+16475550202", "+16475550303"
    subjects = {"A1": a, "A2": a, "B1": b, "B2": b, "C1": c, "C2": c}
    write_tree(target, [recording(rec_id, n, caller=phone) for n, (rec_id, phone) in enumerate(subjects.items())])
    for rec_id in ("A2", "B2"):
        assert cli("hold", "add", "--target", str(target), f"id:{rec_id}", "--reason", "case 9").returncode == 0
    (target / "2026/11/29/10/B1/stray").mkdir()  # a recording folder holds only files: B1 cannot be erased

    def erase(phone: str, *more: str) -> Any:
        return cli("erase", "--target", str(target), "--phone", phone, "--request", "DSAR-7", *more)

    dry = erase(a)
    assert dry.returncode == 0 and "1 to-erase, 1 held" in dry.stdout, dry.stdout + dry.stderr  # nothing done yet
    held = erase(a, "--execute")
    assert held.returncode == 6, held.stdout + held.stderr
    assert "1 erased, 1 held" in held.stdout
    assert held.stdout.rstrip().endswith(
        "Not complete: 1 recording under a legal hold was not erased; run this erasure again once the hold is "
        "released (`cxbackup hold release`)."
    )
    assert not (target / "2026/11/29/10/A1").exists() and (target / "2026/11/29/10/A2").exists()
    again = erase(a, "--execute", "--exit-zero-when-held", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["counts"] == {"held": 1}, again.stdout + again.stderr

    failed = erase(b, "--execute", "--json")
    assert failed.returncode == 1, failed.stdout + failed.stderr  # a failure outranks a hold
    assert json.loads(failed.stdout)["counts"] == {"failed": 1, "held": 1}
    assert (target / "2026/11/29/10/B1").exists() and (target / "2026/11/29/10/B2").exists()

    done = erase(c, "--execute")
    assert done.returncode == 0 and "2 erased." in done.stdout and "Not complete" not in done.stdout, done.stdout
    # once the hold is released, the same request finishes
    released = cli("hold", "release", "--target", str(target), "id:A2", "--reason", "case 9 closed")
    assert released.returncode == 0, released.stderr
    finished = erase(a, "--execute")
    assert finished.returncode == 0 and "1 erased." in finished.stdout, finished.stdout + finished.stderr
