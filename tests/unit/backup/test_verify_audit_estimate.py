"""Verify mode, the audit, the disk estimate, the progress sinks and the command line."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from cxbackup.backup.audit import AuditReport, AuditStatus, iter_audit
from cxbackup.backup.config import Credentials, RcbsConfig
from cxbackup.backup.errors import MediaAuthError
from cxbackup.backup.estimate import estimate_disk
from cxbackup.backup.progress import LogProgressSink, RecordingResult, RecordingStatus
from cxbackup.backup.targets import LocalDirectoryTarget
from cxbackup.backup.vendor_client import StorageEntry
from cxbackup.backup.verify import run_verify
from cxbackup.backup.window import RecordingWindow
from cxbackup.cli import main

from .fakes import NOW_MS, PASSWORD, USER, FakeVendor
from .test_worker import World, dataset

CREDS = Credentials(gws_username=USER, gws_password=PASSWORD)


def cfg(**values: object) -> RcbsConfig:
    return RcbsConfig.from_values({"gwsUriPrefix": "https://gws.example.com/api/v2", **values})


def test_verify_prints_the_seed_lines(caplog: pytest.LogCaptureFixture) -> None:
    vendor = FakeVendor()
    checked: list[str] = []

    def lister(entry: StorageEntry) -> None:
        checked.append(entry.bucket)
        if entry.bucket.endswith("east-1"):
            raise MediaAuthError("S3 denied s3://stage-recordings-us-east-1/PoD_tenant_2034/: AccessDenied")

    with caplog.at_level(logging.INFO, logger="cxbackup"):
        result = run_verify(cfg(), CREDS, vendor=vendor.client(), lister=lister)
    assert not result.ok and [b.ok for b in result.buckets] == [True, False]
    assert checked == ["stage-recordings-us-west-1", "stage-recordings-us-east-1"]
    text = caplog.text
    assert "Checking for Key: PoD_tenant_2034/ Bucket: stage-recordings-us-west-1" in text
    assert "Successfully Verified Connection to stage-recordings-us-west-1/PoD_tenant_2034/" in text
    assert "Failed to Verify Connection to stage-recordings-us-east-1/PoD_tenant_2034/: S3 denied" in text
    assert run_verify(cfg(), CREDS, vendor=vendor.client(), lister=lambda e: None).ok
    assert vendor.requests and not any("recordings" in u for u in vendor.requests)  # downloads nothing


def test_verify_reports_rejected_gws_credentials(caplog: pytest.LogCaptureFixture) -> None:
    vendor = FakeVendor()
    with caplog.at_level(logging.INFO, logger="cxbackup"):
        result = run_verify(cfg(), CREDS, vendor=vendor.client(password="nope-nope"), lister=lambda e: None)
    assert not result.ok and not result.gws_ok
    assert "GWS_USERNAME/GWS_PASSWORD rejected by" in caplog.text and "nope-nope" not in caplog.text


def test_audit_classifies_each_recording(tmp_path: Path) -> None:
    world = World(tmp_path, dataset(12))
    world.run()
    recs = world.records
    for p in (world.root / world.paths(recs[0]).directory).iterdir():
        p.unlink()  # missing
    one = recs[1]["mediaFiles"][0]["mediaId"]
    (world.root / world.paths(recs[1]).media[one]).write_bytes(b"xx")  # size mismatch
    (world.root / world.paths(recs[2]).metadata).unlink()  # metadata missing
    bad = recs[4]["mediaFiles"][0]["mediaId"]

    def key_check(data: bytes, name: str) -> int:
        if name.endswith(bad):
            raise ValueError("DecryptError: no matching recipient")
        return 1234

    config = world.config(concurrency=3)
    entries = list(
        iter_audit(
            config,
            RecordingWindow(0, NOW_MS),
            world.vendor.client(),
            LocalDirectoryTarget(world.root),
            world.source,
            key_check=key_check,
        )
    )
    assert [e.recording_id for e in entries] == [r["id"] for r in recs]  # listing order kept
    status = {e.recording_id: e.status for e in entries}
    assert status[recs[0]["id"]] is AuditStatus.MISSING
    assert status[recs[1]["id"]] is AuditStatus.SIZE_MISMATCH
    assert status[recs[2]["id"]] is AuditStatus.METADATA_MISSING
    assert status[recs[4]["id"]] is AuditStatus.UNDECRYPTABLE
    assert sum(s is AuditStatus.OK for s in status.values()) == 8
    report = AuditReport(window=RecordingWindow(0, NOW_MS))
    for e in entries:
        report.add(e)
    assert not report.ok and report.counts["missing"] == 1 and report.checked == 12
    assert report.oldest_missing_start is not None


@pytest.mark.parametrize(
    ("calls", "duration", "screen", "bitrate", "expected"),
    [
        (1000, 300, False, None, 1000 * (1 + 300 * 32 / 8 / 1024)),
        (1000, 300, True, None, 1000 * (8 / 1024 + 300 * 256 / 8 / 1024)),
        (10, 60, False, 64, 10 * (1 + 60 * 64 / 8 / 1024)),
    ],
)
def test_estimate_numbers(calls: int, duration: int, screen: bool, bitrate: float | None, expected: float) -> None:
    est = estimate_disk(calls, duration, screen=screen, bitrate_kbps=bitrate, days=7)
    assert est.mb_per_day == pytest.approx(expected)
    assert est.total_mb == pytest.approx(7 * expected)
    assert f"{expected:,.2f} MB per day" in "\n".join(est.explain())


def test_estimate_command_prints_the_formula(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["estimate", "--calls-per-day", "1000", "--avg-duration", "300", "--days", "30"]) == 0
    out = capsys.readouterr().out
    assert "= 1000 x (1 + 300 x 32 / 8 / 1024)" in out
    assert "2,171.88 MB per day" in out and "For 30 days: 65,156.25 MB" in out
    assert main(["estimate", "--calls-per-day", "1", "--avg-duration", "1", "--days", "0"]) == 2


def test_log_sink_is_throttled(caplog: pytest.LogCaptureFixture) -> None:
    t = [0.0]
    sink = LogProgressSink(interval=10, clock=lambda: t[0])
    with caplog.at_level(logging.INFO, logger="cxbackup"):
        sink.on_start(100)
        for i in range(50):
            t[0] = i * 1.0
            sink.on_recording(RecordingResult(str(i), RecordingStatus.DOWNLOADED, files=2, bytes=1_000_000))
    lines = [r.message for r in caplog.records if r.message.startswith("Progress:")]
    assert len(lines) == 4
    assert lines[-1].startswith("Progress: 41/~100 recordings (41%) - 41 downloaded, 0 skipped, 0 failed")
    assert "MB/s" in lines[-1] and "recordings/s" in lines[-1]


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_download_command_config_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("GWS_USERNAME", "GWS_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    summary = tmp_path / "summary.json"
    cfg_path = write(tmp_path / "c.properties", "gwsUriPrefix=https://x/api\ntargetDir\n")
    assert main(["download", "-config", cfg_path, "--summary-file", str(summary), "--progress", "none"]) == 2
    err = capsys.readouterr().err
    assert f"{cfg_path}:2: 'targetDir' has no value" in err
    assert json.loads(summary.read_text())["result"] == "Failed"
    cfg_path = write(tmp_path / "d.properties", f"gwsUriPrefix=https://x/api\ntargetDir={tmp_path}/t\nmaxAg=3\n")
    assert main(["download", "--config", cfg_path, "--progress", "none"]) == 2  # no GWS_* in the environment
    err = capsys.readouterr().err
    assert "unknown property 'maxAg' ignored (did you mean 'maxAge'?)" in err
    assert "GWS_USERNAME and GWS_PASSWORD not set" in err
    assert main(["download", "-config", str(tmp_path / "missing.properties")]) == 2
    assert main(["verify", "s3", "-config", cfg_path]) == 2


def test_instance_id_override_from_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg_path = write(tmp_path / "c.properties", "gwsUriPrefix=https://x/api\ntargetDir=/t\ntotalRcbsInstances=4\n")
    assert main(["download", "-config", cfg_path, "--rcbs-instance-id", "4", "--progress", "none"]) == 2
    assert "rcbsInstanceId=4 must be in 0..3" in capsys.readouterr().err
