"""`cxbackup export` end to end against the emulator: directory and S3 stores, real openssl, round trips."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from cxbackup.certs import cms
from cxbackup.cli import main
from cxbackup.core.retry import RetryPolicy
from cxbackup.export import ApiSource, ArtifactInfo, DirectoryStore, ExportRequest, run_export
from cxbackup.export.names import artifact_name, format_iso
from cxbackup_dev.emulator import DatasetSpec, Emulator, EndpointFaults, FaultConfig
from cxbackup_dev.emulator.tenant import TenantKey, generate_tenant_key
from tests.integration.cli import run_cli

pytestmark = pytest.mark.integration

SPEC = DatasetSpec(
    seed=21, hours=6, recordings_per_hour=1, contacts_per_hour=12, chat_users=4, chat_messages_per_hour=5
)
OPENSSL = "/usr/bin/openssl"
BUCKET = "cdds-exports"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def emu(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with Emulator(SPEC, tmp_path_factory.mktemp("export-emulator"), media="none") as e:
        yield e


@pytest.fixture(scope="module")
def export_key(tmp_path_factory: pytest.TempPathFactory) -> TenantKey:
    """The customer's CDDS key pair (the certificate exports are encrypted to)."""
    d = tmp_path_factory.mktemp("export-key")
    # valid from before the fixed run times some tests use (2026-08-25) until long after today
    return generate_tenant_key(
        d / "cdds.key", d / "cdds.pem", common_name="CDDS export", now=datetime(2026, 8, 1, tzinfo=UTC)
    )


@pytest.fixture(scope="module")
def s3(emu: Emulator) -> Iterator[Any]:
    """A client of the emulator's real S3 server, with a bucket for the exports."""
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=emu.s3_endpoint,
        aws_access_key_id=emu.aws_access_key_id,
        aws_secret_access_key=emu.aws_secret_access_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}),
    )
    client.create_bucket(Bucket=BUCKET)
    yield client
    client.close()


@pytest.fixture
def env(emu: Emulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment an export pod gets: vendor API + credentials, target S3 credentials."""
    values = {
        **emu.env(),
        "CXBACKUP_EXPORT_API": emu.gws_uri_prefix,
        "TARGET_AWS_ACCESS_KEY_ID": emu.aws_access_key_id,
        "TARGET_AWS_SECRET_ACCESS_KEY": emu.aws_secret_access_key,
        "TARGET_AWS_ENDPOINT_URL": emu.s3_endpoint,
    }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def span(emu: Emulator) -> tuple[str, str]:
    return (
        format_iso(datetime.fromtimestamp(emu.start_ms / 1000, UTC)),
        format_iso(datetime.fromtimestamp(emu.end_ms / 1000, UTC)),
    )


def openssl_decrypt(path: Path, key: Path, out: Path) -> None:
    """Both ways the vendor documents: `openssl cms` and `openssl smime`; each must give a valid zip."""
    for tool in ("cms", "smime"):
        target = out.with_suffix(f".{tool}.zip")
        proc = subprocess.run(
            [
                OPENSSL,
                tool,
                "-decrypt",
                "-inform",
                "DER",
                "-binary",
                "-inkey",
                str(key),
                "-in",
                str(path),
                "-out",
                str(target),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        assert proc.returncode == 0, f"openssl {tool}: {proc.stderr}"
        with zipfile.ZipFile(target) as zf:
            assert zf.testzip() is None
            assert "manifest.json" in zf.namelist()


def ndjson(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_contact_history_through_the_console_script_into_a_directory(
    emu: Emulator, export_key: TenantKey, env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start, end = span(emu)
    store, result_file = tmp_path / "pvc" / "exports", tmp_path / "termination-log"
    proc = subprocess.run(
        [sys.executable, "-m", "cxbackup", "export", "run", "--type", "contactHistory", "--from", start, "--to", end,
         "--cert", str(export_key.cert_path), "--store", str(store), "--name", "Nightly EU", "--part-size", "12000",
         "--result-file", str(result_file)],
        capture_output=True, text=True, env={**os.environ, **env}, cwd=REPO, check=False, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert emu.gws_password not in proc.stdout + proc.stderr
    result = json.loads(result_file.read_text())
    assert len(result_file.read_bytes()) <= 4096
    truth = list(emu.contacts.iter_items(emu.start_ms, emu.end_ms))
    assert result["state"] == "Succeeded" and result["records"] == len(truth) == 72
    listed = DirectoryStore(store).list()
    assert result["artifactCount"] == len(listed) >= 4
    assert [a["name"] for a in result["artifacts"]] == [a.name for a in listed]
    for a in listed:
        assert a.name.startswith("nightly-eu-contact-history-20210721T000000Z-20210721T060000Z-")
        assert f"{a.name}  {a.size} bytes  sha256 {a.sha256}  expires {format_iso(a.expires_at)}" in proc.stdout
        assert a.expires_at - a.created_at == timedelta(days=30)
        assert cms.inspect((store / a.name).read_bytes()).content_algorithm == "AES-256-CBC"
        openssl_decrypt(store / a.name, export_key.key_path, tmp_path / a.name)

    got: list[dict[str, Any]] = []
    csv_rows = 0
    for n, a in enumerate(listed, 1):
        out = tmp_path / "download" / f"part-{n}"
        code = main(
            ["export", "download", a.name, "--store", str(store), "--key", str(export_key.key_path), "--out", str(out)]
        )
        assert code == 0
        assert f"{a.name}: sha256 verified" in capsys.readouterr().out
        manifest = json.loads((out / "manifest.json").read_text())
        assert (manifest["part"], manifest["last"], manifest["export"]) == (n, n == len(listed), "Nightly EU")
        got += ndjson(out / "contact-history.ndjson")
        csv_rows += len((out / "contact-history.csv").read_text(encoding="utf-8").splitlines()) - 1
    assert got == truth  # the round trip gives back exactly what the emulator served
    assert csv_rows >= len(truth)  # (CSV cells may hold line breaks, so at least one line per contact)


def test_gdpr_chat_for_one_user_into_the_emulators_s3_with_aes128(
    emu: Emulator,
    export_key: TenantKey,
    env: dict[str, str],
    s3: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    start, end = span(emu)
    user = emu.chat.users[1].id
    store = f"s3://{BUCKET}/gdpr/"
    code = main(["export", "run", "--type", "gdprChat", "--user", user, "--from", start, "--to", end,
                 "--cert", str(export_key.cert_path), "--encryption", "AES-128", "--store", store,
                 "--name", "gdpr-request-7", "--retention-days", "7"])  # fmt: skip
    out = capsys.readouterr().out
    assert code == 0, out
    truth = list(emu.chat.messages(user, emu.start_ms, emu.end_ms))
    assert f"Succeeded, {len(truth)} records, 1 artifacts" in out

    assert main(["export", "list", "--store", store, "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    (artifact,) = listing["artifacts"]
    assert artifact["location"] == f"{store}{artifact['name']}" and artifact["expired"] is False
    assert artifact["records"] == len(truth) and artifact["last"] is True
    obj = s3.get_object(Bucket=BUCKET, Key="gdpr/" + artifact["name"])
    data = obj["Body"].read()
    assert (
        len(data) == artifact["size"]
        and json.loads(obj["Metadata"]["cxbackup-artifact"])["sha256"] == artifact["sha256"]
    )
    assert cms.inspect(data).content_algorithm == "AES-128-CBC"
    (tmp_path / "a.p7m").write_bytes(data)
    openssl_decrypt(tmp_path / "a.p7m", export_key.key_path, tmp_path / "a")

    out_dir = tmp_path / "out"
    assert main(["export", "download", artifact["name"], "--store", store, "--key", str(export_key.key_path),
                 "--out", str(out_dir)]) == 0  # fmt: skip
    assert ndjson(out_dir / "chat-messages" / f"{user}.ndjson") == truth
    assert all(m["senderId"] == user for m in truth)
    manifest = json.loads((out_dir / "manifest.json").read_text())
    assert manifest["users"] == [user] and manifest["type"] == "gdprChat"
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="gdpr/").get("Contents", [])]
    assert keys == ["gdpr/" + artifact["name"]]  # nothing left in staging


@pytest.mark.parametrize("kind", ["contactHistory-s3", "gdprChat-directory"])
def test_the_other_type_and_store_pairs_round_trip(
    kind: str,
    emu: Emulator,
    export_key: TenantKey,
    env: dict[str, str],
    s3: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    start, end = span(emu)
    type_, store_kind = kind.split("-")
    store = f"s3://{BUCKET}/pairs-{tmp_path.name}" if store_kind == "s3" else str(tmp_path / "pvc")
    user = emu.chat.users[2].id
    users = ["--user", user] if type_ == "gdprChat" else []
    assert main(["export", "run", "--type", type_, *users, "--from", start, "--to", end, "--name", "pairs",
                 "--cert", str(export_key.cert_path), "--store", store, "--part-size", "20000"]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["export", "list", "--store", store, "--json"]) == 0
    names = [a["name"] for a in json.loads(capsys.readouterr().out)["artifacts"]]
    assert names
    got: list[dict[str, Any]] = []
    for n, name in enumerate(names):
        out = tmp_path / f"out-{n}"
        assert main(["export", "download", name, "--store", store, "--key", str(export_key.key_path),
                     "--out", str(out)]) == 0  # fmt: skip
        member = "contact-history.ndjson" if type_ == "contactHistory" else f"chat-messages/{user}.ndjson"
        got += ndjson(out / member)
    if type_ == "contactHistory":
        assert got == list(emu.contacts.iter_items(emu.start_ms, emu.end_ms))
    else:
        assert got == list(emu.chat.messages(user, emu.start_ms, emu.end_ms))


def test_a_user_outside_chat_retention_gets_an_explained_empty_export(
    emu: Emulator, export_key: TenantKey, env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start, end = span(emu)
    user = emu.chat.users[0].id
    assert emu.chat.count_all(user) > 0  # there were messages; retention removed them
    now = datetime.fromtimestamp(emu.end_ms / 1000, UTC) + timedelta(days=120)
    emu.chat.set_retention(clock=lambda: now)
    try:
        code = main(["export", "run", "--type", "gdprChat", "--user", user, "--from", start, "--to", end,
                     "--cert", str(export_key.cert_path), "--store", str(tmp_path / "store"),
                     "--result-file", str(tmp_path / "result.json")])  # fmt: skip
    finally:
        emu.chat.clock = None
    out = capsys.readouterr().out
    assert code == 0
    oldest = (now - timedelta(days=90)).date().isoformat()
    note = (
        f"user {user}: the requested range is outside the chat retention period of 90 days (oldest available {oldest})"
    )
    assert "Succeeded, 0 records, 0 artifacts" in out and f"note: {note}" in out
    result = json.loads((tmp_path / "result.json").read_text())
    assert (result["state"], result["artifactCount"], result["notes"]) == ("Succeeded", 0, [note])
    assert DirectoryStore(tmp_path / "store").list() == []


def test_gdpr_chat_without_users_is_refused(
    emu: Emulator, export_key: TenantKey, env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start, end = span(emu)
    before = len(emu.request_log("chat"))
    code = main(["export", "run", "--type", "gdprChat", "--from", start, "--to", end, "--cert",
                 str(export_key.cert_path), "--store", str(tmp_path),
                 "--result-file", str(tmp_path / "r.json")])  # fmt: skip
    assert code == 2
    assert "whole-organisation chat exports are not supported" in capsys.readouterr().err
    assert len(emu.request_log("chat")) == before  # nothing was asked of the vendor
    result = json.loads((tmp_path / "r.json").read_text())
    assert (result["state"], result["reason"]) == ("Failed", "ExportConfigError")
    eleven = [a for i in range(11) for a in ("--user", f"u{i}")]
    assert main(["export", "run", "--type", "gdprChat", *eleven, "--last", "P1D", "--cert",
                 str(export_key.cert_path), "--store", str(tmp_path)]) == 2  # fmt: skip


def test_rejected_credentials_and_unknown_users_fail_without_artifacts(
    emu: Emulator,
    export_key: TenantKey,
    env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    start, end = span(emu)
    args = ["export", "run", "--type", "gdprChat", "--from", start, "--to", end,
            "--cert", str(export_key.cert_path), "--store", str(tmp_path / "store")]  # fmt: skip
    assert main([*args, "--user", "no-such-user"]) == 1
    assert "chat user 'no-such-user' not found" in capsys.readouterr().err
    monkeypatch.setenv("GWS_PASSWORD", "wrong-password-123")
    assert main([*args, "--user", emu.chat.users[0].id]) == 4
    captured = capsys.readouterr()
    assert "GWS_USERNAME/GWS_PASSWORD rejected" in captured.err
    assert "wrong-password-123" not in captured.out + captured.err
    assert not (tmp_path / "store").exists() or not any((tmp_path / "store").rglob("*.p7m"))


def test_faults_are_retried_and_a_dead_api_leaves_nothing(emu: Emulator, export_key: TenantKey, tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    start = datetime.fromtimestamp(emu.start_ms / 1000, UTC)
    request = ExportRequest("flaky", "contactHistory", start=start, end=start + timedelta(hours=3), part_size=4096)
    source = ApiSource(emu.gws_uri_prefix, emu.gws_username, emu.gws_password, page_size=10,
                       retry=RetryPolicy(retries=3, base_delay=0.01, max_delay=0.05))  # fmt: skip
    now = datetime(2026, 8, 25, tzinfo=UTC)
    emu.set_faults(FaultConfig({"contacts": EndpointFaults(fail_first=2, reset_rate=0.2, error_status=503)}, seed=4))
    try:
        ok = run_export(request, source, store, export_key.certificate, now=now)
        emu.set_faults(FaultConfig({"contacts": EndpointFaults(error_rate=1.0)}))
        failed = run_export(request, source, store, export_key.certificate, now=now + timedelta(seconds=1))
    finally:
        emu.set_faults(None)
        source.close()
    assert ok.state == "Succeeded", ok.error
    assert ok.records == 36 and emu.counters["contacts.errors"] >= 2
    assert (failed.state, failed.retryable, failed.reason) == ("Failed", True, "SourceUnavailableError")
    assert emu.gws_password not in failed.error
    assert store.list() == ok.artifacts and store.staging_areas() == []


@pytest.mark.parametrize("kind", ["directory", "s3"])
def test_sweep_deletes_only_expired_artifacts(
    kind: str,
    emu: Emulator,
    env: dict[str, str],
    s3: Any,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from cxbackup.export import open_store

    location = str(tmp_path / "store") if kind == "directory" else f"s3://{BUCKET}/sweep-{tmp_path.name}"
    store = open_store(location, endpoint_url=emu.s3_endpoint, access_key_id=emu.aws_access_key_id,
                       secret_access_key=emu.aws_secret_access_key)  # fmt: skip
    now = datetime.now(UTC).replace(microsecond=0)
    day = datetime(2026, 1, 1, tzinfo=UTC)

    def artifact(part: int, created: datetime) -> ArtifactInfo:
        name = artifact_name("swept", "contactHistory", day, day + timedelta(days=1), "20260102T000000Z", part)
        return ArtifactInfo.new(name, created, 30, export="swept", type="contactHistory", part=part)

    expired = store.write(b"old", artifact(1, now - timedelta(days=31)))
    kept = store.write(b"new", artifact(2, now - timedelta(days=1)))
    foreign = "customer-notes.txt"
    if kind == "directory":
        (tmp_path / "store" / foreign).write_text("not ours")
    else:
        s3.put_object(Bucket=BUCKET, Key=f"sweep-{tmp_path.name}/{foreign}", Body=b"not ours")
    try:
        assert main(["export", "sweep", "--store", location, "--dry-run"]) == 0
        assert f"would delete {expired.name}" in capsys.readouterr().out
        assert [a.name for a in store.list()] == [expired.name, kept.name]
        assert main(["export", "list", "--store", location]) == 0
        listing = capsys.readouterr().out
        assert f"{expired.name}  3 bytes" in listing and "EXPIRED" in listing
        assert main(["export", "sweep", "--store", location]) == 0
        assert f"deleted {expired.name}" in capsys.readouterr().out
        assert store.list() == [kept]
        if kind == "directory":
            assert (tmp_path / "store" / foreign).read_text() == "not ours"
        else:
            body = s3.get_object(Bucket=BUCKET, Key=f"sweep-{tmp_path.name}/{foreign}")["Body"]
            assert body.read() == b"not ours"
    finally:
        store.close()


def test_openssl_reads_what_the_engine_writes_with_both_ciphers(
    emu: Emulator, export_key: TenantKey, tmp_path: Path
) -> None:
    """The same export with AES-128 and AES-256, each part through openssl cms and openssl smime."""
    start = datetime.fromtimestamp(emu.start_ms / 1000, UTC)
    user = emu.chat.users[3].id
    algorithms: tuple[cms.Algorithm, ...] = ("AES-128", "AES-256")
    for n, algorithm in enumerate(algorithms):
        store = DirectoryStore(tmp_path / algorithm)
        request = ExportRequest("both", "gdprChat", start=start, end=start + timedelta(hours=6), users=(user,),
                                encryption=algorithm, part_size=2048)  # fmt: skip
        with ApiSource(emu.gws_uri_prefix, emu.gws_username, emu.gws_password) as source:
            result = run_export(
                request, source, store, export_key.certificate, now=datetime(2026, 8, 25, 0, 0, n, tzinfo=UTC)
            )
        assert result.succeeded and len(result.artifacts) >= 2
        messages: list[dict[str, Any]] = []
        for a in result.artifacts:
            path = tmp_path / algorithm / a.name
            assert cms.inspect(path.read_bytes()).content_algorithm == f"{algorithm}-CBC"
            openssl_decrypt(path, export_key.key_path, tmp_path / f"{algorithm}-{a.part}")
            with zipfile.ZipFile(tmp_path / f"{algorithm}-{a.part}.cms.zip") as zf:
                messages += [
                    json.loads(line) for line in io.TextIOWrapper(zf.open(f"chat-messages/{user}.ndjson"), "utf-8")
                ]
        assert messages == list(emu.chat.messages(user, emu.start_ms, emu.end_ms))


# ------------------------------------------------------------- certificates exports must not encrypt to


def unusable_certificate(kind: str, folder: Path) -> Path:
    """A 1024-bit certificate made with openssl, or (cryptography: openssl req cannot backdate) an expired
    one and one not valid yet."""
    if kind == "small":
        request = ["req", "-new", "-x509", "-key", "small.key", "-out", "small.pem", "-days", "30", "-subj", "/CN=S"]
        for args in (["genrsa", "-out", "small.key", "1024"], request):
            proc = subprocess.run([OPENSSL, *args], cwd=folder, capture_output=True, text=True, check=False)
            assert proc.returncode == 0, proc.stderr
        return folder / "small.pem"
    now = datetime.now(UTC)
    start, end = (now - timedelta(days=400), now - timedelta(days=35)) if kind == "expired" else (
        now + timedelta(days=2), now + timedelta(days=400))  # fmt: skip
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, kind)])
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    (folder / f"{kind}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return folder / f"{kind}.pem"


@pytest.mark.parametrize(
    ("kind", "problem"),
    [
        ("small", "certificate key is RSA 1024 bits; at least 2048 bits are required [KeyTooSmall]"),
        ("expired", "certificate expired on "),
        ("not-yet-valid", "certificate is not valid until "),
    ],
)
def test_a_certificate_cert_inspect_refuses_is_refused_before_anything_is_fetched(
    emu: Emulator, env: dict[str, str], tmp_path: Path, kind: str, problem: str
) -> None:
    cert = unusable_certificate(kind, tmp_path)
    inspect = main(["cert", "inspect", str(cert)])
    assert inspect == 1  # the rule set of cert inspect ...
    start, end = span(emu)
    before = len(emu.request_log())
    store, result_file = tmp_path / "store", tmp_path / "termination-log"
    for export_type, users in (("contactHistory", []), ("gdprChat", ["--user", emu.chat.users[0].id])):
        proc = run_cli(
            ["export", "run", "--type", export_type, *users, "--from", start, "--to", end, "--cert", str(cert),
             "--store", str(store), "--result-file", str(result_file)],
            env, cwd=REPO,
        )  # fmt: skip
        assert proc.returncode == 2, proc.stderr  # ... is the export's, with the configuration exit code
        assert "cxbackup export run: the encryption certificate cannot be used: " in proc.stderr
        assert problem in proc.stderr
        result = json.loads(result_file.read_text())
        assert (result["state"], result["reason"], result["artifactCount"]) == ("Failed", "ExportConfigError", 0)
        assert problem in result["error"]
    assert len(emu.request_log()) == before  # the vendor was asked nothing
    assert not store.exists()  # and nothing was written


def test_the_engine_refuses_such_a_certificate_too(emu: Emulator, tmp_path: Path) -> None:
    cert = cms.load_certificate(unusable_certificate("expired", tmp_path))
    store = DirectoryStore(tmp_path / "store")
    request = ExportRequest("old-cert", "contactHistory", last="P1D")
    before = len(emu.request_log())
    with ApiSource(emu.gws_uri_prefix, emu.gws_username, emu.gws_password) as source:
        result = run_export(request, source, store, cert)
    assert (result.state, result.reason, result.exit_code) == ("Failed", "ExportConfigError", 2)
    assert "certificate expired on" in (result.error or "") and "[Expired]" in (result.error or "")
    assert len(emu.request_log()) == before and store.list() == [] and store.staging_areas() == []
