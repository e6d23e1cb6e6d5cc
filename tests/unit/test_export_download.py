"""Getting an artifact back: checksum, decryption, safe extraction, manifest checks."""

from __future__ import annotations

import hashlib
import io
import json
import struct
import tracemalloc
import zipfile
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.x509.oid import NameOID

from cxbackup.certs import cms
from cxbackup.export.download import (
    MAX_MEMBERS,
    MAX_UNPACKED_BYTES,
    ArchiveLimits,
    check_member_name,
    download_artifact,
    extract_zip,
)
from cxbackup.export.errors import IntegrityError
from cxbackup.export.names import artifact_name
from cxbackup.export.store import ArtifactInfo, DirectoryStore

NOW = datetime(2026, 8, 25, tzinfo=UTC)
NAME = artifact_name("n", "gdprChat", NOW - timedelta(days=1), NOW, "20260825T000000Z", 1)


def key_and_cert() -> tuple[RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "k")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return key, cert


@pytest.fixture(scope="module")
def pair() -> tuple[RSAPrivateKey, x509.Certificate]:
    return key_and_cert()


def make_zip(
    files: dict[str, bytes], *, manifest: Mapping[str, object] | None = None, extra: dict[str, bytes] | None = None
) -> bytes:
    if manifest is None:
        manifest = {
            "kind": "CxbackupExportManifest",
            "files": [
                {"name": n, "bytes": len(d), "sha256": hashlib.sha256(d).hexdigest(), "records": d.count(b"\n")}
                for n, d in files.items()
            ],
        }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for name, data in {**files, **(extra or {})}.items():
            zf.writestr(name, data)
    return buf.getvalue()


FILES = {"chat-messages/u1.ndjson": b'{"id":"m1"}\n{"id":"m2"}\n'}


@pytest.mark.parametrize(
    "name", ["../x", "/etc/passwd", "a/../../x", "a\\..\\x", "C:x", "a//b", "./a", "", "a/", "a\x00b"]
)
def test_unsafe_member_names_are_refused(name: str) -> None:
    with pytest.raises(IntegrityError, match="unsafe"):
        check_member_name(name)


def test_safe_names_pass() -> None:
    assert check_member_name("chat-messages/u1.ndjson").parts == ("chat-messages", "u1.ndjson")


def test_extracts_and_verifies(tmp_path: Path) -> None:
    manifest, files = extract_zip(make_zip(FILES), tmp_path)
    assert manifest["kind"] == "CxbackupExportManifest"
    assert [(f.name, f.size, f.records) for f in files] == [
        ("manifest.json", len(json.dumps(manifest)), None),
        ("chat-messages/u1.ndjson", 24, 2),
    ]
    assert (tmp_path / "chat-messages/u1.ndjson").read_bytes() == FILES["chat-messages/u1.ndjson"]
    with pytest.raises(IntegrityError, match="exists already"):
        extract_zip(make_zip(FILES), tmp_path)
    extract_zip(make_zip(FILES), tmp_path, overwrite=True)


def test_path_traversal_in_the_archive_is_refused_before_writing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(IntegrityError, match="unsafe"):
        extract_zip(make_zip(FILES, extra={"../escape.txt": b"x"}), out)
    assert not (tmp_path / "escape.txt").exists() and not out.exists()


def test_manifest_mismatches_are_refused(tmp_path: Path) -> None:
    with pytest.raises(IntegrityError, match="disagree"):
        extract_zip(make_zip(FILES, extra={"unlisted.txt": b"x"}), tmp_path)
    bad = {
        "kind": "CxbackupExportManifest",
        "files": [{"name": "chat-messages/u1.ndjson", "bytes": 24, "sha256": "0" * 64}],
    }
    with pytest.raises(IntegrityError, match="does not match the manifest"):
        extract_zip(make_zip(FILES, manifest=bad), tmp_path)
    short = {**bad, "files": [{"name": "chat-messages/u1.ndjson", "bytes": 5, "sha256": "0" * 64}]}
    with pytest.raises(IntegrityError, match="is 24 bytes in the archive but 5 in the manifest"):
        extract_zip(make_zip(FILES, manifest=short), tmp_path)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == []  # no half-written files
    with pytest.raises(IntegrityError, match="not a cxbackup export manifest"):
        extract_zip(make_zip(FILES, manifest={"kind": "x"}), tmp_path)
    with pytest.raises(IntegrityError, match="not a zip"):
        extract_zip(b"PK nonsense", tmp_path)


def test_download_checks_the_stored_checksum_and_the_key(
    tmp_path: Path, pair: tuple[RSAPrivateKey, x509.Certificate]
) -> None:
    key, cert = pair
    store = DirectoryStore(tmp_path / "store")
    store.write(cms.encrypt(make_zip(FILES), cert), ArtifactInfo.new(NAME, NOW, 30))
    result = download_artifact(store, NAME, key, tmp_path / "out")
    assert [f.name for f in result.files] == ["manifest.json", "chat-messages/u1.ndjson"]
    other_key, _ = key_and_cert()
    with pytest.raises(IntegrityError, match="opens none of the recipients"):
        download_artifact(store, NAME, other_key, tmp_path / "out2")
    path = tmp_path / "store" / NAME
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="does not match its metadata"):
        download_artifact(store, NAME, key, tmp_path / "out3")
    assert not (tmp_path / "out3").exists()


# -- size budgets -----------------------------------------------------------------------------------

MiB = 1024 * 1024


def declare_size(data: bytes, member: str, size: int) -> bytes:
    """The zip with `member`'s uncompressed size in the central directory replaced by `size` (what a
    crafted archive can claim, whatever its data)."""
    out = bytearray(data)
    at = out.find(b"PK\x01\x02")
    while at >= 0:
        name_len = struct.unpack_from("<H", out, at + 28)[0]
        if bytes(out[at + 46 : at + 46 + name_len]) == member.encode():
            struct.pack_into("<I", out, at + 24, size)
            return bytes(out)
        at = out.find(b"PK\x01\x02", at + 46)
    raise AssertionError(f"{member} not in the zip")


def deflated_zip(files: dict[str, bytes], manifest: Mapping[str, object] | None = None) -> bytes:
    if manifest is None:
        manifest = {
            "kind": "CxbackupExportManifest",
            "files": [{"name": n, "bytes": len(d), "sha256": hashlib.sha256(d).hexdigest()} for n, d in files.items()],
        }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        for n, d in files.items():
            zf.writestr(n, d)
    return buf.getvalue()


def written(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_a_zip_bomb_is_refused_from_its_directory_before_anything_is_inflated(tmp_path: Path) -> None:
    bomb = deflated_zip({"contact-history.ndjson": bytes(256 * MiB)})  # honest headers, 256 MiB of zeros
    assert len(bomb) < MiB
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError, match=r"declares more than 67108864 bytes uncompressed .*nothing"):
            extract_zip(bomb, tmp_path / "out", limits=ArchiveLimits(max_unpacked_bytes=64 * MiB))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MiB and written(tmp_path / "out") == []
    # the default budget (4 GiB) against members whose headers claim 4 GiB each
    small = deflated_zip({"a.ndjson": b"{}\n", "b.ndjson": b"{}\n"})
    claims = declare_size(declare_size(small, "a.ndjson", 0xFFFF_FFF0), "b.ndjson", 0xFFFF_FFF0)
    with pytest.raises(IntegrityError, match=f"declares more than {MAX_UNPACKED_BYTES} bytes"):
        extract_zip(claims, tmp_path / "out")
    assert written(tmp_path / "out") == []


def test_a_manifest_of_100_mb_is_refused_without_reading_it(tmp_path: Path) -> None:
    manifest = {"kind": "CxbackupExportManifest", "files": [], "notes": [" " * (100 * 1000 * 1000)]}
    big = deflated_zip({}, manifest)
    assert len(big) < 2 * MiB
    tracemalloc.start()
    try:
        with pytest.raises(
            IntegrityError, match=r"manifest.json declares 1000000\d\d bytes, over the limit of 4194304"
        ):
            extract_zip(big, tmp_path / "out")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * MiB and written(tmp_path / "out") == []
    # a small manifest whose header claims 100 MB is refused the same way
    claims = declare_size(deflated_zip(FILES), "manifest.json", 100 * 1000 * 1000)
    with pytest.raises(IntegrityError, match=r"manifest\.json declares 100000000 bytes"):
        extract_zip(claims, tmp_path / "out")


def test_too_many_members_are_refused(tmp_path: Path) -> None:
    files = {f"chat-messages/u{i}.ndjson": b"" for i in range(MAX_MEMBERS)}
    with pytest.raises(IntegrityError, match=f"holds {MAX_MEMBERS + 1} files, over the limit of {MAX_MEMBERS}"):
        extract_zip(deflated_zip(files), tmp_path / "out")
    assert written(tmp_path / "out") == []


def test_an_artifact_over_the_limit_is_not_read(
    tmp_path: Path, pair: tuple[RSAPrivateKey, x509.Certificate], monkeypatch: pytest.MonkeyPatch
) -> None:
    key, cert = pair
    store = DirectoryStore(tmp_path / "store")
    stored = store.write(cms.encrypt(make_zip(FILES), cert), ArtifactInfo.new(NAME, NOW, 30))
    reads: list[str] = []
    real_get = store.get
    monkeypatch.setattr(store, "get", lambda *a, **kw: reads.append("get") or real_get(*a, **kw))
    with pytest.raises(IntegrityError, match=rf"{stored.size} bytes, over the limit of 100 bytes"):
        download_artifact(store, NAME, key, tmp_path / "out", limits=ArchiveLimits(max_artifact_bytes=100))
    assert reads == [] and written(tmp_path / "out") == []
    # a file replaced by a larger one (metadata unchanged) is read no further than the limit
    (tmp_path / "store" / NAME).write_bytes(b"x" * (10 * MiB))
    with pytest.raises(IntegrityError, match="holds more than 2000000 bytes"):
        store.get(NAME, max_bytes=2_000_000)
