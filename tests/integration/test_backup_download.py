"""`cxbackup download` against the vendor-cloud emulator: full backup, reruns, catch-up, media, faults, S3 target.

Every downloaded media file is decrypted with the tenant key and compared with the emulator's
plaintext; every metadata file is compared with the emulator's record.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from cxbackup.backup.config import Credentials, parse_properties
from cxbackup.backup.index import INDEX_DIR
from cxbackup.backup.progress import RunSummary
from cxbackup.backup.worker import run_backup
from cxbackup.certs.cms import decrypt_with_key, load_private_key
from cxbackup_dev.emulator import DatasetSpec, Emulator, EndpointFaults, FaultConfig, parse_time
from tests.integration.cli import run_cli, run_cli_process
from tests.integration.emulator_fixtures import target_bucket

pytestmark = pytest.mark.integration


def folder_of(record: Mapping[str, Any]) -> str:
    start = datetime.fromtimestamp(parse_time(record["startTime"]) / 1000, UTC)
    return f"{start:%Y/%m/%d/%H}/{record['id']}"


def get_count(emu: Emulator) -> int:
    """Successful media GETs (the CRT client asks for a range: 206)."""
    return sum(1 for r in emu.request_log("s3") if r.method == "GET" and r.status in (200, 206))


def check_target(
    emu: Emulator,
    root: Path,
    records: Iterable[Mapping[str, Any]],
    *,
    media_types: tuple[str, ...] = ("audio/mp3", "video/mp4"),
    metadata_only: bool = False,
) -> int:
    """Assert the target holds exactly these recordings, correct and complete; returns the media count."""
    key = load_private_key(emu.tenant_key_path)
    expected_files: set[str] = set()
    media_count = 0
    for rec in records:
        folder = folder_of(rec)
        meta = root / folder / f"{rec['id']}.json"
        assert json.loads(meta.read_text()) == rec, rec["id"]
        expected_files.add(f"{folder}/{rec['id']}.json")
        if metadata_only:
            continue
        for media in rec["mediaFiles"]:
            if media["type"] not in media_types:
                continue
            path = root / folder / media["mediaId"]
            assert decrypt_with_key(path.read_bytes(), key) == emu.media_plaintext(media["mediaId"]), path
            expected_files.add(f"{folder}/{media['mediaId']}")
            media_count += 1
    actual = {
        str(p.relative_to(root))
        for p in root.rglob("*")
        if p.is_file()
        and not p.name.startswith(("last_recording_endtime", ".rcbs-lock-"))
        and p.relative_to(root).parts[0] != INDEX_DIR  # the search index, tested in test_search_cli.py
    }
    assert actual == expected_files  # nothing else: no duplicates, no temporary files
    return media_count


def summary_of(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


@pytest.mark.parametrize("transfer", ["native", "crt", "boto3"])
def test_full_backup_then_a_second_run_downloads_nothing(emulator: Emulator, tmp_path: Path, transfer: str) -> None:
    """With the native transfer as a user runs it (`python -m cxbackup`, a process of its own); the other two
    transfers in this process."""
    run = run_cli_process if transfer == "native" else run_cli
    target = tmp_path / "target"
    summary_file = tmp_path / "summary.json"
    cfg = emulator.write_config(
        tmp_path / "config.properties", target_dir=target, concurrency=8, mediaTransfer=transfer
    )
    before = get_count(emulator)
    logged = len(emulator.request_log("s3"))
    result = run(["download", "-config", str(cfg), "--summary-file", str(summary_file)], emulator.env())
    assert result.returncode == 0, result.stderr
    records = list(emulator.records())
    media = check_target(emulator, target, records)
    assert get_count(emulator) - before == media
    # the CRT client asks for a range (206), the others for the whole object (200): the engine really differs
    statuses = {r.status for r in emulator.request_log("s3")[logged:] if r.method == "GET"}
    assert statuses == ({206} if transfer == "crt" else {200})
    native = "Media transfer: native" in result.stderr
    assert native == (transfer == "native")
    if native:  # the emulator's S3 (moto) keeps the CRC32 boto3 sends with each upload
        assert f"Media files verified: {media} by CRC32" in result.stderr
    s = summary_of(summary_file)
    assert (s["downloaded"], s["skipped"], s["failed"], s["total"]) == (len(records), 0, 0, len(records))
    assert s["result"] == "Succeeded" and s["encryptionFormat"] == "AES-128"
    assert (target / "last_recording_endtime.txt").read_text() == f"{emulator.end_ms}\n"
    line = (
        f"Finished handling current batch: (number downloaded files: {len(records)} + number of skipped files: 0 "
        f"+ number of failed download: 0) out of total: {len(records)}"
    )
    assert line in result.stderr
    assert emulator.gws_password not in result.stderr and emulator.aws_secret_access_key not in result.stderr

    before = get_count(emulator)
    result = run(["download", "--config", str(cfg), "--summary-file", str(summary_file)], emulator.env())
    assert result.returncode == 0, result.stderr
    s = summary_of(summary_file)
    assert (s["downloaded"], s["skipped"]) == (0, len(records))
    assert get_count(emulator) == before  # nothing fetched twice
    check_target(emulator, target, records)


def in_process(emu: Emulator, cfg: Path, env: Mapping[str, str] | None = None, **kw: Any) -> RunSummary:
    config = parse_properties(cfg.read_text(), str(cfg))
    return run_backup(config, Credentials.from_env(env if env is not None else emu.env()), **kw)


def test_metadata_only_needs_no_s3_credentials(emulator: Emulator, tmp_path: Path) -> None:
    cfg = emulator.write_config(tmp_path / "c.properties", target_dir=tmp_path / "t", metadataOnly=True)
    env = {k: v for k, v in emulator.env().items() if k.startswith("GWS_")}
    before = len(emulator.request_log("s3"))
    summary = in_process(emulator, cfg, env)
    assert summary.ok and summary.downloaded == len(list(emulator.records()))
    check_target(emulator, tmp_path / "t", emulator.records(), metadata_only=True)
    assert len(emulator.request_log("s3")) == before


def test_media_type_pattern_selects_video_only(emulator: Emulator, tmp_path: Path) -> None:
    cfg = emulator.write_config(tmp_path / "c.properties", target_dir=tmp_path / "t", mediaTypePattern="video/mp4")
    summary = in_process(emulator, cfg)
    screen = [r for r in emulator.records() if any(m["type"] == "video/mp4" for m in r["mediaFiles"])]
    assert 0 < len(screen) < len(list(emulator.records()))
    assert summary.ok and summary.downloaded == len(screen)
    assert summary.filtered == len(list(emulator.records())) - len(screen)
    check_target(emulator, tmp_path / "t", screen, media_types=("video/mp4",))


def test_agent_hierarchy_filter(emulator: Emulator, tmp_path: Path) -> None:
    cfg = emulator.write_config(tmp_path / "c.properties", target_dir=tmp_path / "t", agentHierarchy="/Company/Sales")
    summary = in_process(emulator, cfg)
    kept = [
        r
        for r in emulator.records()
        if any(m["parameters"].get("agentHierarchy", "").startswith("/Company/Sales/") for m in r["mediaFiles"])
    ]
    assert 0 < len(kept) < len(list(emulator.records()))
    assert summary.ok and summary.downloaded == len(kept)
    check_target(emulator, tmp_path / "t", kept)


@pytest.mark.parametrize("transfer", ["native", "crt", "boto3"])
def test_retries_survive_ten_percent_server_errors(emulator: Emulator, tmp_path: Path, transfer: str) -> None:
    faults = FaultConfig.uniform(
        EndpointFaults(error_rate=0.1, error_status=503, reset_rate=0.05, truncate_rate=0.05), seed=5
    )
    emulator.set_faults(faults)
    try:
        cfg = emulator.write_config(
            tmp_path / "c.properties", target_dir=tmp_path / "t", concurrency=6, mediaTransfer=transfer
        )
        summary = in_process(emulator, cfg)
        counters = emulator.counters
    finally:
        emulator.set_faults(None)
    assert summary.ok, summary.failures
    assert counters.get("s3.errors", 0) + counters.get("recordings.errors", 0) > 0
    assert counters.get("s3.resets", 0) + counters.get("s3.truncated", 0) > 0
    check_target(emulator, tmp_path / "t", emulator.records())


def test_a_recording_api_whose_total_lies_fails_the_run_without_checkpoint(emulator: Emulator, tmp_path: Path) -> None:
    """The emulator's `lying_total` fault: totals ten times too large, the last page served again past the
    real end. `cxbackup download` stops with exit 5 and an error naming the problem, writes no checkpoint,
    and the next run (without the fault) backs the window up."""
    cfg = emulator.write_config(tmp_path / "c.properties", target_dir=tmp_path / "t")
    summary_file = tmp_path / "summary.json"
    before = len(emulator.request_log("recordings"))
    emulator.set_faults(FaultConfig({"recordings": EndpointFaults(lying_total=True)}))
    try:
        result = run_cli(["download", "-config", str(cfg), "--summary-file", str(summary_file)], emulator.env(), 60)
        lied = emulator.counters.get("recordings.lying_total", 0)
    finally:
        emulator.set_faults(None)
    assert result.returncode == 5, result.stderr[-2000:]
    error = summary_of(summary_file)["error"]
    assert "the recording API kept returning pages with nothing new up to offset" in error, error
    assert "total=" in error and emulator.gws_password not in error
    assert lied > 0 and len(emulator.request_log("recordings")) - before < 30
    assert not list((tmp_path / "t").glob("last_recording_endtime*"))
    again = in_process(emulator, cfg)
    assert again.ok and again.checkpoint_advanced
    check_target(emulator, tmp_path / "t", emulator.records())


def test_s3_target(emulator: Emulator, tmp_path: Path) -> None:
    bucket = target_bucket(emulator)
    client, target_env = bucket.client, bucket.env
    cfg = bucket.config(tmp_path / "c.properties", "customer-backup", targetS3Prefix="rcbs/")
    summary = in_process(emulator, cfg, target_env)
    assert summary.ok and summary.downloaded == len(list(emulator.records()))
    keys = {
        o["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket="customer-backup")
        for o in page.get("Contents", [])
    }
    rec = next(emulator.records())
    assert f"rcbs/{folder_of(rec)}/{rec['id']}.json" in keys
    assert "rcbs/last_recording_endtime.txt" in keys
    assert "rcbs/.rcbs-lock-0-of-1" not in keys  # released
    again = in_process(emulator, cfg, target_env)
    assert again.ok and again.downloaded == 0 and again.skipped == summary.downloaded


def test_catch_up_after_downtime(make_emulator: Callable[..., Emulator], tmp_path: Path) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    # recordings from 3 days ago to 1 day ago; the last successful run was 3 days ago
    emu = make_emulator(DatasetSpec(seed=3, start=now - timedelta(hours=72), hours=48, recordings_per_hour=1))
    target = tmp_path / "t"
    target.mkdir()
    (target / "last_recording_endtime.txt").write_text(f"{emu.start_ms}\n")
    cfg = emu.write_config(tmp_path / "c.properties", target_dir=target, minAge=0, maxAge=1)
    summary = in_process(emu, cfg)
    assert summary.ok and summary.window.start_ms == emu.start_ms
    assert summary.downloaded == 48  # maxAge=1 alone would have found none
    check_target(emu, target, emu.records())
    stored = int((target / "last_recording_endtime.txt").read_text())
    assert stored == summary.window.end_ms > emu.end_ms


def test_audit_with_the_tenant_key(emulator: Emulator, tmp_path: Path) -> None:
    target = tmp_path / "t"
    cfg = emulator.write_config(tmp_path / "c.properties", target_dir=target)
    assert in_process(emulator, cfg).ok
    good = run_cli(["audit", "-config", str(cfg), "--key", str(emulator.tenant_key_path), "--json"], emulator.env())
    assert good.returncode == 0, good.stderr
    report = json.loads(good.stdout)
    assert report["checked"] == len(list(emulator.records())) == report["counts"]["ok"]

    records = list(emulator.records())
    missing, broken = records[0], records[1]
    for p in (target / folder_of(missing)).iterdir():
        p.unlink()
    media = target / folder_of(broken) / broken["mediaFiles"][0]["mediaId"]
    media.write_bytes(os.urandom(media.stat().st_size))  # same size, not CMS any more
    bad = run_cli(
        ["audit", "-config", str(cfg), "--key", str(emulator.tenant_key_path), "--problems-only"], emulator.env()
    )
    assert bad.returncode == 1
    assert f"missing          {missing['id']}" in bad.stdout
    assert f"undecryptable    {broken['id']}" in bad.stdout
    assert "missing: 1" in bad.stdout
