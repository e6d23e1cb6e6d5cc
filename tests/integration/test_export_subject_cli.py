"""`cxbackup export run --type subjectAccess` as a user runs it: the emulator's recordings backed up by
`cxbackup download` (a folder, and an S3 bucket), exported for one subject, the artifacts decrypted with
the real `openssl cms -decrypt` and every file checked against the target and the manifest. The commands run
through the real entry point in this process (tests/integration/cli.py), the first export also as a process
of its own (`python -m cxbackup`)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import zipfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cxbackup.backup.layout import decrypted_name
from cxbackup.backup.search import parse_phone
from cxbackup_dev.emulator import Emulator
from cxbackup_dev.emulator.tenant import TenantKey, generate_tenant_key
from tests.integration.cli import run_cli, run_cli_process
from tests.integration.emulator_fixtures import target_bucket

from .test_backup_download import folder_of
from .test_export_cli import OPENSSL
from .test_search_cli import in_order

pytestmark = pytest.mark.integration

RUN = ["export", "run", "--type", "subjectAccess"]
DECRYPT = [OPENSSL, "cms", "-decrypt", "-inform", "DER", "-binary"]


@pytest.fixture(scope="module")
def requester(tmp_path_factory: pytest.TempPathFactory) -> TenantKey:
    """The key pair of whoever receives the export (the artifacts are encrypted to its certificate)."""
    d = tmp_path_factory.mktemp("requester")
    return generate_tenant_key(d / "dsar.key", d / "dsar.pem", common_name="Subject access desk")


@pytest.fixture(scope="module")
def backed_up(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The emulator's recordings (vendor-encrypted media) backed up into a folder, with its index."""
    work = tmp_path_factory.mktemp("subject")
    cfg = emulator.write_config(work / "config.properties", target_dir=work / "target")
    result = run_cli(["download", "-config", str(cfg), "--progress", "none"], emulator.env(), timeout=180)
    assert result.returncode == 0, result.stderr
    return work / "target"


@pytest.fixture(scope="module")
def keyring(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tenant's recording key and certificate, as a saved keyring folder."""
    d = tmp_path_factory.mktemp("keyring")
    shutil.copy(emulator.tenant_key_path, d / "tenant.key")
    shutil.copy(emulator.tenant_cert_path, d / "tenant.crt")
    return d


def export_run(
    args: list[str], requester: TenantKey, store: Path, env: Mapping[str, str] | None = None, *, process: bool = False
) -> Any:
    result_file = store.parent / f"{store.name}-result.json"
    proc = (run_cli_process if process else run_cli)(
        [*RUN, *args, "--cert", str(requester.cert_path), "--store", str(store), "--result-file", str(result_file)],
        env or {},
        timeout=180,
    )
    return proc, json.loads(result_file.read_text(encoding="utf-8"))


def openssl_unpack(artifact: Path, key: Path, out: Path) -> tuple[dict[str, Any], dict[str, bytes]]:
    """Decrypt with `openssl cms -decrypt` and unzip: (manifest, {member: bytes}), every member checked
    against the manifest's size and SHA-256."""
    zipped = out / (artifact.name + ".zip")
    proc = subprocess.run(
        [*DECRYPT, "-inkey", str(key), "-in", str(artifact), "-out", str(zipped)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    with zipfile.ZipFile(zipped) as zf:
        assert zf.testzip() is None
        members = {n: zf.read(n) for n in zf.namelist()}
    manifest = json.loads(members.pop("manifest.json"))
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) == set(members)
    for name, data in members.items():
        assert listed[name]["bytes"] == len(data) and listed[name]["sha256"] == hashlib.sha256(data).hexdigest()
    return manifest, members


def unpack_all(result: dict[str, Any], store: Path, key: Path, out: Path) -> dict[str, bytes]:
    members: dict[str, bytes] = {}
    for artifact in result["artifacts"]:
        manifest, files = openssl_unpack(store / artifact["name"], key, out)
        assert manifest["type"] == "subjectAccess"
        assert not set(files) & set(members)
        members.update(files)
    return members


def test_an_agents_recordings_as_stored_through_the_cli_and_openssl(
    backed_up: Path, emulator: Emulator, requester: TenantKey, tmp_path: Path
) -> None:
    records = list(emulator.records())
    user = records[3]["mediaFiles"][0]["parameters"]["username"]
    expected = [r for r in records if r["mediaFiles"][0]["parameters"]["username"] == user]
    store = tmp_path / "store"
    args = ["--agent", user, "--backup-target", str(backed_up), "--name", "dsar"]
    proc, result = export_run(args, requester, store, process=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("export dsar (subjectAccess) [1970-01-01T00:00:00Z, ")
    assert result["state"] == "Succeeded" and result["records"] == len(expected) and result["artifactCount"] == 1
    members = unpack_all(result, store, requester.key_path, tmp_path)
    names = set()
    for rec in expected:
        folder = backed_up / folder_of(rec)
        files = sorted(folder.iterdir())
        assert len(files) == 1 + len(rec["mediaFiles"])  # the metadata and every media file
        for file in files:
            names.add(f"recordings/{rec['id']}/{file.name}")
            assert members[f"recordings/{rec['id']}/{file.name}"] == file.read_bytes()
    assert set(members) == names
    assert {n.split("/")[1] for n in names} == set(in_order(expected))
    # the other export commands take it as it is
    listed = run_cli(["export", "list", "--store", str(store), "--json"], {})
    assert [a["name"] for a in json.loads(listed.stdout)["artifacts"]] == [result["artifacts"][0]["name"]]
    out = tmp_path / "downloaded"
    name = result["artifacts"][0]["name"]
    got = run_cli(
        ["export", "download", name, "--store", str(store), "--key", str(requester.key_path), "--out", str(out)], {}
    )
    assert got.returncode == 0, got.stderr
    assert {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} == {*names, "manifest.json"}


def test_one_callers_media_decrypted_and_the_number_nowhere_in_clear(
    backed_up: Path, emulator: Emulator, requester: TenantKey, keyring: Path, tmp_path: Path
) -> None:
    records = list(emulator.records())
    phone = records[7]["callerPhoneNumber"]
    expected = [r for r in records if parse_phone(r["callerPhoneNumber"]).endswith(parse_phone(phone))]
    store = tmp_path / "store"
    args = ["--phone", phone, "--backup-target", str(backed_up), "--decrypt-media", "--keyring", str(keyring)]
    proc, result = export_run(args, requester, store)
    assert proc.returncode == 0, proc.stderr
    assert result["records"] >= len(expected) >= 1
    members = unpack_all(result, store, requester.key_path, tmp_path)
    for rec in expected:
        folder = backed_up / folder_of(rec)
        for media in rec["mediaFiles"]:
            stored = folder / media["mediaId"]
            plain = tmp_path / "plain"
            done = subprocess.run(
                [*DECRYPT, "-inkey", str(emulator.tenant_key_path), "-in", str(stored), "-out", str(plain)],
                capture_output=True,
                check=False,
            )
            assert done.returncode == 0, done.stderr
            name = f"recordings/{rec['id']}/{decrypted_name(media['mediaId'], media['type'])}"
            assert members[name] == plain.read_bytes() and len(members[name]) == int(media["size"])
    digits = parse_phone(phone)[-7:]
    assert digits not in proc.stdout + proc.stderr + json.dumps(result)


def test_media_that_does_not_decrypt_fails_naming_the_recording_and_stores_nothing(
    backed_up: Path, emulator: Emulator, requester: TenantKey, tmp_path: Path
) -> None:
    rec = next(iter(emulator.records()))
    wrong = tmp_path / "wrong-keyring"
    wrong.mkdir()
    shutil.copy(requester.key_path, wrong / "other.key")
    store = tmp_path / "store"
    args = ["--phone", rec["callerPhoneNumber"], "--backup-target", str(backed_up), "--decrypt-media"]
    proc, result = export_run([*args, "--keyring", str(wrong)], requester, store)
    assert proc.returncode == 1
    assert result["state"] == "Failed" and result["reason"] == "BackupContentError"
    assert f"recording {rec['id']}" in proc.stderr and "cannot be decrypted" in proc.stderr
    listed = run_cli(["export", "list", "--store", str(store), "--json"], {})
    assert json.loads(listed.stdout)["artifacts"] == []


def test_an_s3_target_through_its_config(emulator: Emulator, requester: TenantKey, tmp_path: Path) -> None:
    bucket = target_bucket(emulator)
    client, target_env = bucket.client, bucket.env
    cfg = bucket.config(tmp_path / "c.properties", "subject-backup", targetS3Prefix="rcbs/")
    backup = run_cli(["download", "-config", str(cfg), "--progress", "none"], target_env, timeout=180)
    assert backup.returncode == 0, backup.stderr
    records = list(emulator.records())
    user = records[5]["mediaFiles"][0]["parameters"]["username"]
    expected = [r for r in records if r["mediaFiles"][0]["parameters"]["username"] == user]
    start = datetime.fromtimestamp(emulator.start_ms / 1000, UTC).isoformat()
    store = tmp_path / "store"
    args = ["--agent", user, "--backup-config", str(cfg), "--from", start]
    proc, result = export_run(args, requester, store, target_env)
    assert proc.returncode == 0, proc.stderr
    assert result["records"] == len(expected)
    members = unpack_all(result, store, requester.key_path, tmp_path)
    for rec in expected:
        key = f"rcbs/{folder_of(rec)}"
        assert (
            members[f"recordings/{rec['id']}/{rec['id']}.json"]
            == client.get_object(Bucket="subject-backup", Key=f"{key}/{rec['id']}.json")["Body"].read()
        )
        for media in rec["mediaFiles"]:
            body = client.get_object(Bucket="subject-backup", Key=f"{key}/{media['mediaId']}")["Body"].read()
            assert members[f"recordings/{rec['id']}/{media['mediaId']}"] == body
    # a bucket that cannot be reached is "unavailable": exit 5, nothing stored
    bad = {**target_env, "TARGET_AWS_SECRET_ACCESS_KEY": "wrong-secret"}
    denied, result = export_run(["--agent", user, "--backup-config", str(cfg)], requester, tmp_path / "s2", bad)
    assert denied.returncode == 5, denied.stderr
    assert result["state"] == "Failed"


def test_an_s3_target_and_an_s3_store_are_each_reached_at_their_own_endpoint(
    emulator: Emulator, requester: TenantKey, tmp_path: Path
) -> None:
    """The operator's export pod: one set of TARGET_AWS_* credentials (one Secret for the backup bucket and
    the store), the store's endpoint in TARGET_AWS_ENDPOINT_URL and the backup bucket's in the config
    (targetS3EndpointUrl). The backup is read from the emulator's S3 and the artifacts land in another S3
    server: neither endpoint is used for the other's bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    bucket = target_bucket(emulator)
    cfg = bucket.config(tmp_path / "c.properties", "subject-endpoints", targetS3Prefix="rcbs/")
    backup = run_cli(["download", "-config", str(cfg), "--progress", "none"], bucket.env, timeout=180)
    assert backup.returncode == 0, backup.stderr
    records = list(emulator.records())
    user = records[2]["mediaFiles"][0]["parameters"]["username"]
    expected = [r for r in records if r["mediaFiles"][0]["parameters"]["username"] == user]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        store_endpoint = f"http://{host}:{port}"
        key_id, secret = bucket.env["TARGET_AWS_ACCESS_KEY_ID"], bucket.env["TARGET_AWS_SECRET_ACCESS_KEY"]
        store_client = boto3.client(
            "s3", endpoint_url=store_endpoint, region_name="us-east-1", aws_access_key_id=key_id,
            aws_secret_access_key=secret,
        )  # fmt: skip
        store_client.create_bucket(Bucket="dsar-exports")
        result_file = tmp_path / "result.json"
        pod_env = {  # what the operator's Job sets
            "TARGET_AWS_ACCESS_KEY_ID": key_id,
            "TARGET_AWS_SECRET_ACCESS_KEY": secret,
            "TARGET_AWS_ENDPOINT_URL": store_endpoint,
        }
        args = ["--agent", user, "--backup-config", str(cfg), "--cert", str(requester.cert_path)]
        proc = run_cli(
            [*RUN, *args, "--store", "s3://dsar-exports/out", "--result-file", str(result_file)], pod_env, timeout=180
        )
        assert proc.returncode == 0, proc.stderr
        result = json.loads(result_file.read_text(encoding="utf-8"))
        assert result["records"] == len(expected) and result["artifacts"]
        stored = [o["Key"] for o in store_client.list_objects_v2(Bucket="dsar-exports").get("Contents", [])]
        assert {f"out/{a['name']}" for a in result["artifacts"]} <= set(stored)
    finally:
        server.stop()
    on_emulator = {b["Name"] for b in bucket.client.list_buckets().get("Buckets", [])}
    assert "dsar-exports" not in on_emulator and "subject-endpoints" in on_emulator
