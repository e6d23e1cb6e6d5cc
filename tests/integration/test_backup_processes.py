"""`cxbackup download` as separate processes: 4 shards, kill -9 and rerun, the lock; verify mode (one run a
process of its own, the others through the real entry point in this process: tests/integration/cli.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from cxbackup.backup.index import INDEX_DIR
from cxbackup.backup.search import SearchQuery, search_index
from cxbackup.backup.targets import LocalDirectoryTarget, LockHolder
from cxbackup_dev.emulator import Emulator, EndpointFaults, FaultConfig
from tests.integration.cli import run_cli, run_cli_process
from tests.integration.test_backup_download import check_target, folder_of, get_count, summary_of

pytestmark = pytest.mark.integration


def test_four_shard_processes_cover_every_recording_once(emulator: Emulator, tmp_path: Path) -> None:
    target = tmp_path / "target"
    before = get_count(emulator)
    procs = []
    for i in range(4):
        cfg = emulator.write_config(
            tmp_path / f"config-{i}.properties",
            target_dir=target,
            totalRcbsInstances=4,
            rcbsInstanceId=i,
            concurrency=4,
            summaryFile=str(tmp_path / f"summary-{i}.json"),
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "cxbackup", "download", "-config", str(cfg), "--progress", "none"],
                env={**os.environ, **emulator.env()},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    for p in procs:
        _out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    records = list(emulator.records())
    media = check_target(emulator, target, records)
    assert get_count(emulator) - before == media  # every object fetched once, by one shard
    summaries = [summary_of(tmp_path / f"summary-{i}.json") for i in range(4)]
    assert sum(s["downloaded"] for s in summaries) == len(records)
    assert all(s["downloaded"] > 0 for s in summaries)
    assert [s["shard"] for s in summaries] == [{"index": i, "total": 4} for i in range(4)]
    assert sorted(p.name for p in target.glob("last_recording_endtime*")) == [
        f"last_recording_endtime-{i}-of-4.txt" for i in range(4)
    ]


def test_kill_9_mid_run_then_rerun(emulator: Emulator, tmp_path: Path) -> None:
    target = tmp_path / "target"
    cfg = emulator.write_config(tmp_path / "c.properties", target_dir=target, concurrency=2)
    emulator.set_faults(FaultConfig({"s3": EndpointFaults(latency_s=0.08)}))
    try:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cxbackup", "download", "-config", str(cfg), "--progress", "none"],
            env={**os.environ, **emulator.env()},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(list(target.rglob("*.json"))) < 3:
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        emulator.set_faults(None)
    assert proc.returncode == -signal.SIGKILL
    records = list(emulator.records())
    done_json = list(target.rglob("*.json"))
    assert 3 <= len(done_json) < len(records), "the kill did not land mid-run"
    assert not (target / "last_recording_endtime.txt").exists()  # no checkpoint for a broken run
    # every file under its final name is complete: media are the full objects, metadata parses
    complete_media = [
        p
        for p in target.rglob("*")
        if p.is_file() and not p.name.startswith(".") and p.suffix != ".json" and INDEX_DIR not in p.parts
    ]
    by_id = {m["mediaId"]: m for r in records for m in r["mediaFiles"]}
    from cxbackup.certs.cms import decrypt_with_key, load_private_key

    key = load_private_key(emulator.tenant_key_path)
    for p in complete_media:
        if p.name.startswith("last_recording_endtime"):
            continue
        assert decrypt_with_key(p.read_bytes(), key) == emulator.media_plaintext(by_id[p.name]["mediaId"])
    # the search index names only recordings whose files are complete (it may lag: at most one batch)
    indexed = {m.id for m in search_index(target / INDEX_DIR, SearchQuery(start_from=0, limit=1000)).matches}
    assert indexed <= {p.stem for p in done_json}

    # whatever temporary files the kill left, plant one more, as a crash in another folder of the window would
    unfinished = next(r for r in records if not (target / folder_of(r) / f"{r['id']}.json").exists())
    stale = target / folder_of(unfinished) / f".{unfinished['mediaFiles'][0]['mediaId']}.part-0badc0de"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"half a file")

    before = get_count(emulator)
    result = run_cli_process(["download", "-config", str(cfg), "--progress", "none"], emulator.env())
    assert result.returncode == 0, result.stderr
    media = check_target(emulator, target, records)  # nothing partial, no temporary files, no duplicates
    assert not stale.exists()
    assert get_count(emulator) - before == media - len(complete_media)  # finished files are not fetched again
    assert (target / "last_recording_endtime.txt").read_text() == f"{emulator.end_ms}\n"
    indexed = [m.id for m in search_index(target / INDEX_DIR, SearchQuery(start_from=0, limit=1000)).matches]
    assert sorted(indexed) == sorted(r["id"] for r in records)  # the rerun indexed what the kill left out


def test_a_second_instance_with_the_same_shard_refuses_to_start(emulator: Emulator, tmp_path: Path) -> None:
    target = tmp_path / "target"
    cfg = emulator.write_config(tmp_path / "c.properties", target_dir=target)
    holder = LockHolder(pid=os.getpid(), host="first-instance", started_at="2024-05-10T12:00:00", shard="0-of-1")
    with LocalDirectoryTarget(target).lock(".rcbs-lock-0-of-1", holder):
        result = run_cli_process(["download", "-config", str(cfg)], emulator.env())
    assert result.returncode == 3
    assert f"pid {os.getpid()} on first-instance" in result.stderr
    assert not list(target.rglob("*.json"))


def test_verify_mode_with_good_and_bad_credentials(emulator: Emulator, tmp_path: Path) -> None:
    cfg = emulator.write_config(tmp_path / "c.properties", target_dir=tmp_path / "t")
    before = Counter(r.endpoint for r in emulator.request_log())
    good = run_cli(["download", "-config", str(cfg), "-verify", "s3"], emulator.env())
    assert good.returncode == 0, good.stderr
    for entry in emulator.storage:
        assert f"Checking for Key: {entry.prefix} Bucket: {entry.bucket}" in good.stderr
        assert f"Successfully Verified Connection to {entry.bucket}/{entry.prefix}" in good.stderr
    after = Counter(r.endpoint for r in emulator.request_log())
    assert after["recordings"] == before["recordings"]  # verify downloads nothing
    assert not (tmp_path / "t").exists()

    bad_s3 = run_cli_process(
        ["verify", "s3", "-config", str(cfg)], {**emulator.env(), "AWS_SECRET_ACCESS_KEY": "wrong" * 8}
    )
    assert bad_s3.returncode == 1
    for entry in emulator.storage:
        assert f"Failed to Verify Connection to {entry.bucket}/{entry.prefix}: " in bad_s3.stderr
    assert "wrongwrong" not in bad_s3.stderr

    bad_gws = run_cli(["verify", "s3", "-config", str(cfg)], {**emulator.env(), "GWS_PASSWORD": "not-the-password"})
    assert bad_gws.returncode == 1
    assert "GWS_USERNAME/GWS_PASSWORD rejected by" in bad_gws.stderr
    assert "not-the-password" not in bad_gws.stderr
