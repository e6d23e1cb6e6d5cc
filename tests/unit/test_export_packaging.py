"""Export packaging: NDJSON/CSV encoding, parts of bounded size, manifests, CMS encryption."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from cxbackup.certs import cms
from cxbackup.export.errors import ExportConfigError
from cxbackup.export.packaging import (
    CONTACT_CSV,
    CONTACT_CSV_COLUMNS,
    CONTACT_HEADERS,
    CONTACT_NDJSON,
    MANIFEST_NAME,
    ExportPackager,
    PackedPart,
    chat_member_names,
    check_certificate,
    contact_chunks,
    encrypt_part,
    ndjson_line,
)

NOW = datetime(2026, 8, 25, 0, 15, tzinfo=UTC)
BASE = {"kind": "CxbackupExportManifest", "version": 1, "export": "t", "type": "contactHistory"}


def _cert(key: Any, *, days: int = 30) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "export test")])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=days))
        .sign(key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def rsa_pair() -> tuple[RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key, _cert(key)


def contact(i: int, pad: int = 0) -> dict[str, Any]:
    return {
        "id": f"C{i:05d}",
        "type": "email",
        "direction": "inbound",
        "startTime": "2026-08-24T10:00:00.000+0000",
        "duration": i,
        "customer": {"id": f"CUST-{i}", "phone": "+1512******90", "email": "j***@example.com"},
        "agent": {"userName": "agent_103001", "employeeId": "103001"},
        "attachedData": {"Subject": 'Re: "x", y\nz ✓' + "p" * pad},
        "extra": [1, 2],
    }


def pack(records: list[dict[str, Any]], part_size: int, notes: list[str] | None = None) -> list[PackedPart]:
    parts: list[PackedPart] = []
    packager = ExportPackager(
        part_size=part_size,
        manifest_base=BASE,
        on_part=parts.append,
        created_at=NOW,
        headers=CONTACT_HEADERS,
        notes=notes if notes is not None else [],
        spool_memory=512,  # small, so spooling to disk is exercised too
    )
    for r in records:
        packager.add(contact_chunks(r))
    assert packager.finish() == len(parts)
    return parts


def read_part(part: PackedPart) -> tuple[dict[str, Any], dict[str, bytes]]:
    with zipfile.ZipFile(io.BytesIO(part.read_zip())) as zf:
        assert zf.testzip() is None
        infos = zf.infolist()
        assert infos[0].filename == MANIFEST_NAME
        assert all(i.compress_type == zipfile.ZIP_DEFLATED for i in infos)
        files = {i.filename: zf.read(i) for i in infos}
    return json.loads(files.pop(MANIFEST_NAME)), files


@pytest.fixture
def closing() -> Iterator[list[PackedPart]]:
    parts: list[PackedPart] = []
    yield parts
    for p in parts:
        p.close()


def test_records_are_split_into_bounded_parts_and_never_cut(closing: list[PackedPart]) -> None:
    records = [contact(i, pad=i % 7 * 40) for i in range(40)]
    limit = 4000
    closing += pack(records, limit)
    parts = closing
    assert len(parts) > 3
    assert [p.number for p in parts] == list(range(1, len(parts) + 1))
    assert [p.last for p in parts] == [False] * (len(parts) - 1) + [True]
    ndjson_back: list[dict[str, Any]] = []
    csv_back: list[dict[str, str]] = []
    for p in parts:
        manifest, files = read_part(p)
        assert p.uncompressed <= limit
        assert sum(len(b) for b in files.values()) == p.uncompressed == manifest["uncompressedBytes"]
        lines = files[CONTACT_NDJSON].decode().splitlines()
        ndjson_back += [json.loads(line) for line in lines]
        rows = list(csv.DictReader(io.StringIO(files[CONTACT_CSV].decode(), newline="")))
        assert len(rows) == len(lines) == p.records == manifest["records"]
        csv_back += rows
        # the next record would not have fitted: parts are filled, not closed early
        if not p.last:
            nxt = records[len(ndjson_back)]
            assert p.uncompressed + sum(len(d) for _, d in contact_chunks(nxt)) > limit
    assert ndjson_back == records  # every record once, whole, in order
    assert [r["id"] for r in csv_back] == [r["id"] for r in records]
    assert csv_back[3]["attachedData"] == json.dumps(
        records[3]["attachedData"], ensure_ascii=False, separators=(",", ":"), sort_keys=True
    )
    assert csv_back[3]["customer.phone"] == "+1512******90"


def test_a_record_larger_than_the_part_size_gets_a_part_of_its_own(closing: list[PackedPart]) -> None:
    records = [contact(0), contact(1, pad=5000), contact(2)]
    closing += pack(records, 2500)
    assert [p.records for p in closing] == [1, 1, 1]
    assert closing[1].uncompressed > 2500
    assert closing[0].uncompressed <= 2500 and closing[2].uncompressed <= 2500


def test_manifest_lists_every_file_with_its_sha256_and_the_notes(closing: list[PackedPart]) -> None:
    notes = ["first note"]
    closing += pack([contact(i) for i in range(3)], 1 << 20, notes)
    (part,) = closing
    manifest, files = read_part(part)
    assert manifest["export"] == "t" and manifest["type"] == "contactHistory"
    assert manifest["part"] == 1 and manifest["last"] is True
    assert manifest["createdAt"] == "2026-08-25T00:15:00Z"
    assert manifest["notes"] == ["first note"]
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) == set(files) == {CONTACT_NDJSON, CONTACT_CSV}
    for name, data in files.items():
        assert listed[name]["sha256"] == hashlib.sha256(data).hexdigest()
        assert listed[name]["bytes"] == len(data)
        assert listed[name]["records"] == 3
    assert files[CONTACT_CSV].startswith(",".join(CONTACT_CSV_COLUMNS).encode() + b"\r\n")


def test_no_records_no_part() -> None:
    assert pack([], 4096) == []


def test_chat_files_per_user_and_headers_count_toward_the_limit(closing: list[PackedPart]) -> None:
    members = chat_member_names(["u1", "../u2", "..\\u2"])
    assert members["u1"] == "chat-messages/u1.ndjson"
    assert members["../u2"] == "chat-messages/_u2.ndjson"
    assert members["..\\u2"] == "chat-messages/_u2-2.ndjson"
    packager = ExportPackager(part_size=10_000, manifest_base=BASE, on_part=closing.append, created_at=NOW)
    for user in ("u1", "../u2"):
        for i in range(3):
            packager.add([(members[user], ndjson_line({"id": f"{user}-{i}", "text": "é"}))], user_id=user)
    packager.finish()
    manifest, files = read_part(closing[0])
    assert {f["name"]: f.get("userId") for f in manifest["files"]} == {
        "chat-messages/u1.ndjson": "u1",
        "chat-messages/_u2.ndjson": "../u2",
    }
    assert files["chat-messages/u1.ndjson"].decode().count("\n") == 3


@settings(max_examples=25, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=900), min_size=0, max_size=30),
    limit=st.integers(min_value=1200, max_value=5000),
)
def test_splitting_invariants(sizes: list[int], limit: int) -> None:
    parts: list[PackedPart] = []
    records = [contact(i, pad=s) for i, s in enumerate(sizes)]
    try:
        parts = pack(records, limit)
        assert sum(p.records for p in parts) == len(records)
        header = len(CONTACT_HEADERS[CONTACT_CSV])
        for p in parts:
            assert p.records >= 1
            assert p.uncompressed <= limit or p.records == 1
            assert p.uncompressed > header
        back = [json.loads(line) for p in parts for line in read_part(p)[1][CONTACT_NDJSON].decode().splitlines()]
        assert back == records
    finally:
        for p in parts:
            p.close()


@pytest.mark.parametrize(("algorithm", "oid_name"), [("AES-128", "AES-128-CBC"), ("AES-256", "AES-256-CBC")])
def test_encrypted_part_decrypts_to_the_zip(
    rsa_pair: tuple[RSAPrivateKey, x509.Certificate], closing: list[PackedPart], algorithm: cms.Algorithm, oid_name: str
) -> None:
    key, cert = rsa_pair
    closing += pack([contact(1)], 4096)
    der = encrypt_part(closing[0], cert, algorithm)
    assert cms.inspect(der).content_algorithm == oid_name
    assert cms.decrypt(der, key, cert) == closing[0].read_zip()


def test_certificate_checks_are_those_of_cert_inspect(rsa_pair: tuple[RSAPrivateKey, x509.Certificate]) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(ExportConfigError, match=r"cannot be used: certificate key is EC .*not RSA.*\[NotRsa\]"):
        check_certificate(_cert(ec_key), NOW)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - must be refused
    with pytest.raises(ExportConfigError, match=r"RSA 1024 bits; at least 2048 bits are required \[KeyTooSmall\]"):
        check_certificate(_cert(small), NOW)
    cert = _cert(rsa_pair[0], days=2)
    check_certificate(cert, NOW)
    with pytest.raises(ExportConfigError, match=r"certificate expired on .* \[Expired\]"):
        check_certificate(cert, NOW + timedelta(days=3))
    with pytest.raises(ExportConfigError, match=r"not valid until .* \[NotYetValid\]"):
        check_certificate(cert, NOW - timedelta(days=2))
