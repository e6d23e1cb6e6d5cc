"""Immutable backups: recordings written to an S3 target under S3 Object Lock, against a real S3 server.

The emulator's S3 (moto behind the emulator's proxy) implements Object Lock: a bucket created with it
keeps each object version until its retain-until date, refusing deletion of that version.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import botocore.exceptions
import isodate
import pytest

from cxbackup.core.errors import EXIT_CONFIG
from cxbackup_dev.emulator import Emulator, parse_time
from tests.integration.cli import run_cli
from tests.integration.emulator_fixtures import target_bucket
from tests.integration.test_backup_download import folder_of

pytestmark = pytest.mark.integration


def test_every_recording_object_is_locked_until_its_retention_end(emulator: Emulator, tmp_path: Path) -> None:
    client = target_bucket(emulator).client
    client.create_bucket(Bucket="locked-backup", ObjectLockEnabledForBucket=True)
    cfg = emulator.write_config(
        tmp_path / "c.properties",
        targetS3Bucket="locked-backup",
        targetS3Prefix="rcbs/",
        targetS3EndpointUrl=emulator.s3_endpoint,
        retentionPeriod="P7Y",
        targetS3ObjectLock="COMPLIANCE",
    )
    proc = run_cli(["download", "-config", str(cfg)], target_bucket(emulator).env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    checked = 0
    for rec in emulator.records():
        start = dt.datetime.fromtimestamp(parse_time(rec["startTime"]) / 1000, dt.UTC)
        until = start + isodate.parse_duration("P7Y")
        keys = [f"rcbs/{folder_of(rec)}/{rec['id']}.json"]
        keys += [
            o["Key"]
            for o in client.list_objects_v2(Bucket="locked-backup", Prefix=f"rcbs/{folder_of(rec)}/")["Contents"]
            if not o["Key"].endswith(".json")
        ]
        for key in keys:
            head = client.head_object(Bucket="locked-backup", Key=key)
            assert head["ObjectLockMode"] == "COMPLIANCE", key
            assert abs((head["ObjectLockRetainUntilDate"] - until).total_seconds()) < 1, (key, until)
            checked += 1
    assert checked > len(list(emulator.records()))  # metadata and media
    # the state file is rewritten every run: never locked
    state = client.head_object(Bucket="locked-backup", Key="rcbs/last_recording_endtime.txt")
    assert "ObjectLockMode" not in state

    # nobody, the operator included, deletes a locked version before its time
    rec = next(emulator.records())
    key = f"rcbs/{folder_of(rec)}/{rec['id']}.json"
    version = client.head_object(Bucket="locked-backup", Key=key)["VersionId"]
    with pytest.raises(botocore.exceptions.ClientError) as refused:
        client.delete_object(Bucket="locked-backup", Key=key, VersionId=version)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert client.head_object(Bucket="locked-backup", Key=key, VersionId=version)["ContentLength"] > 0


def test_a_bucket_without_object_lock_is_refused_before_anything_is_written(emulator: Emulator, tmp_path: Path) -> None:
    client = target_bucket(emulator).client
    client.create_bucket(Bucket="plain-backup")
    cfg = emulator.write_config(
        tmp_path / "c.properties",
        targetS3Bucket="plain-backup",
        targetS3EndpointUrl=emulator.s3_endpoint,
        retentionPeriod="P30D",
        targetS3ObjectLock="GOVERNANCE",
    )
    proc = run_cli(["download", "-config", str(cfg)], target_bucket(emulator).env)
    assert proc.returncode == EXIT_CONFIG, proc.stderr[-2000:]
    assert "targetS3ObjectLock=GOVERNANCE" in proc.stderr and "plain-backup has no Object Lock" in proc.stderr
    assert client.list_objects_v2(Bucket="plain-backup").get("KeyCount", 0) == 0


@pytest.mark.parametrize(
    ("properties", "message"),
    [
        ({"targetS3ObjectLock": "COMPLIANCE"}, "targetS3ObjectLock needs targetS3Bucket and retentionPeriod"),
        ({"retentionPeriod": "seven years"}, "retentionPeriod: 'seven years' is not an ISO 8601 duration"),
        ({"retentionPeriod": "P0D"}, "retentionPeriod: 'P0D': the duration must be longer than zero"),
        ({"targetS3ObjectLock": "FOREVER", "retentionPeriod": "P1Y"}, "targetS3ObjectLock"),
    ],
)
def test_bad_retention_settings_exit_2_naming_the_property(
    emulator: Emulator, tmp_path: Path, properties: dict[str, str], message: str
) -> None:
    cfg = emulator.write_config(tmp_path / "c.properties", target_dir=tmp_path / "t", **properties)
    proc = run_cli(["download", "-config", str(cfg)], emulator.env(), timeout=60)
    assert proc.returncode == EXIT_CONFIG, proc.stderr[-2000:]
    assert message in proc.stderr, proc.stderr[-2000:]
