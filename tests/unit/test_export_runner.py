"""run_export with a fake source and a directory store: parts, publishing, failures, notes, result JSON."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.x509.oid import NameOID

from cxbackup.certs import cms
from cxbackup.core.redact import Redactor
from cxbackup.export.errors import SourceAuthError, SourceUnavailableError, StoreError
from cxbackup.export.names import parse_artifact_name
from cxbackup.export.request import ExportRequest, TimeRange
from cxbackup.export.result import ExportResult
from cxbackup.export.runner import run_export
from cxbackup.export.source import ChatRetention, SourcePage
from cxbackup.export.store import ArtifactInfo, DirectoryStore

NOW = datetime(2026, 8, 25, 0, 15, tzinfo=UTC)
DAY = datetime(2026, 8, 24, tzinfo=UTC)


@pytest.fixture(scope="module")
def keypair() -> tuple[RSAPrivateKey, x509.Certificate]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cdds")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return key, cert


class FakeSource:
    """Pages from lists; `fail_after` pages, then `failure` is raised."""

    def __init__(
        self,
        contacts: list[dict[str, Any]] | None = None,
        chat: dict[str, list[dict[str, Any]]] | None = None,
        retention: dict[str, ChatRetention] | None = None,
        *,
        page_size: int = 7,
        fail_after: int | None = None,
        failure: Exception | None = None,
    ) -> None:
        self.contacts = contacts or []
        self.chat = chat or {}
        self.retention = retention or {}
        self.page_size = page_size
        self.fail_after = fail_after
        self.failure = failure or SourceUnavailableError("GET http://api/contact-history failed: HTTP 503")
        self.pages = 0
        self.ranges: list[TimeRange] = []

    def _pages(self, items: list[dict[str, Any]], retention: ChatRetention | None) -> Iterator[SourcePage]:
        for offset in range(0, max(len(items), 1), self.page_size):
            if self.fail_after is not None and self.pages >= self.fail_after:
                raise self.failure
            self.pages += 1
            yield SourcePage(len(items), offset, items[offset : offset + self.page_size], retention)

    def contact_history(self, time_range: TimeRange) -> Iterator[SourcePage]:
        self.ranges.append(time_range)
        return self._pages(self.contacts, None)

    def chat_messages(self, user_id: str, time_range: TimeRange) -> Iterator[SourcePage]:
        self.ranges.append(time_range)
        return self._pages(self.chat.get(user_id, []), self.retention.get(user_id))


class Sink:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def progress(self, records: int, what: str) -> None:
        self.events.append(("progress", (records, what)))

    def part_stored(self, info: ArtifactInfo) -> None:
        self.events.append(("part", info.name))

    def note(self, text: str) -> None:
        self.events.append(("note", text))


class Clock:
    def __init__(self) -> None:
        self.t = NOW

    def __call__(self) -> datetime:
        self.t += timedelta(seconds=1)
        return self.t


def contacts(n: int) -> list[dict[str, Any]]:
    return [{"id": f"C{i:04d}", "type": "voice", "note": "x" * (i % 5 * 30)} for i in range(n)]


def read_records(store: DirectoryStore, key: RSAPrivateKey, member: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for info in store.list():
        data, _ = store.get(info.name)
        with zipfile.ZipFile(io.BytesIO(cms.decrypt_with_key(data, key))) as zf:
            if member in zf.namelist():
                out += [json.loads(line) for line in zf.read(member).decode().splitlines()]
    return out


def test_contact_history_in_parts_published_together(
    tmp_path: Path, keypair: tuple[RSAPrivateKey, x509.Certificate]
) -> None:
    key, cert = keypair
    store = DirectoryStore(tmp_path / "store")
    records = contacts(50)
    source = FakeSource(records)
    sink, clock = Sink(), Clock()
    request = ExportRequest("Nightly", "contactHistory", last="P1D", part_size=2048, retention_days=3)
    result = run_export(request, source, store, cert, now=NOW, sink=sink, clock=clock)
    assert result.state == "Succeeded", result.error
    assert source.ranges == [TimeRange(DAY + timedelta(minutes=15), NOW)]
    assert result.records == 50 and result.run_id == "20260825T001500Z"
    assert len(result.artifacts) > 2
    assert [a.part for a in result.artifacts] == list(range(1, len(result.artifacts) + 1))
    assert [a.last for a in result.artifacts] == [False] * (len(result.artifacts) - 1) + [True]
    assert sum(a.records for a in result.artifacts) == 50
    assert store.list() == result.artifacts
    assert store.staging_areas() == []
    first = result.artifacts[0]
    parsed = parse_artifact_name(first.name)
    assert parsed is not None and parsed.export == "nightly" and parsed.run_id == result.run_id
    assert first.created_at == NOW + timedelta(seconds=1)  # stamped by the clock when written
    assert first.expires_at == first.created_at + timedelta(days=3)
    assert [e for e in sink.events if e[0] == "part"] == [("part", a.name) for a in result.artifacts]
    assert read_records(store, key, "contact-history.ndjson") == records
    assert result.completion_time is not None and result.completion_time > NOW


def test_a_failure_leaves_no_artifact(tmp_path: Path, keypair: tuple[RSAPrivateKey, x509.Certificate]) -> None:
    store = DirectoryStore(tmp_path)
    source = FakeSource(contacts(60), fail_after=5)
    sink = Sink()
    request = ExportRequest("n", "contactHistory", start=DAY, end=NOW, part_size=1024)
    result = run_export(request, source, store, keypair[1], now=NOW, sink=sink)
    assert any(e[0] == "part" for e in sink.events)  # parts had been staged when it failed
    assert result.state == "Failed" and result.retryable and result.reason == "SourceUnavailableError"
    assert "HTTP 503" in result.error
    assert result.artifacts == [] and store.list() == [] and store.staging_areas() == []
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def test_unexpected_errors_and_store_errors_fail_cleanly(
    tmp_path: Path, keypair: tuple[RSAPrivateKey, x509.Certificate]
) -> None:
    store = DirectoryStore(tmp_path)
    request = ExportRequest("n", "contactHistory", start=DAY, end=NOW, part_size=1024)
    result = run_export(request, FakeSource(contacts(30), fail_after=3, failure=RuntimeError("bug")), store, keypair[1])
    assert (result.state, result.reason, result.retryable) == ("Failed", "InternalError", False)
    assert result.error == "unexpected error: RuntimeError: bug"
    assert store.staging_areas() == []

    class BrokenStore(DirectoryStore):
        def stage(self, staging_id: str, data: bytes, info: ArtifactInfo) -> ArtifactInfo:
            raise StoreError("disk full")

    result = run_export(request, FakeSource(contacts(30)), BrokenStore(tmp_path), keypair[1], now=NOW)
    assert (result.state, result.reason, result.retryable, result.error) == ("Failed", "StoreError", True, "disk full")


def test_secrets_are_redacted_from_errors(tmp_path: Path, keypair: tuple[RSAPrivateKey, x509.Certificate]) -> None:
    failure = SourceAuthError("rejected by http://user:hunter22@api/x?sig=abc with hunter22")
    request = ExportRequest("n", "contactHistory", start=DAY, end=NOW)
    result = run_export(
        request,
        FakeSource(contacts(3), fail_after=0, failure=failure),
        DirectoryStore(tmp_path),
        keypair[1],
        now=NOW,
        redactor=Redactor(["hunter22"]),
    )
    assert result.reason == "SourceAuthError" and not result.retryable
    assert "hunter22" not in result.error and "abc" not in result.error
    assert "hunter22" not in result.to_json()


def test_gdpr_chat_per_user_files_and_retention_notes(
    tmp_path: Path, keypair: tuple[RSAPrivateKey, x509.Certificate]
) -> None:
    key, cert = keypair
    store = DirectoryStore(tmp_path)
    oldest = datetime(2026, 5, 27, 0, 15, tzinfo=UTC)
    msgs = [{"id": f"m{i}", "senderId": "u1", "text": f"hello {i}"} for i in range(9)]
    source = FakeSource(
        chat={"u1": msgs, "u3": msgs[:2]},
        retention={
            "u1": ChatRetention(90, oldest, False, False),
            "u2": ChatRetention(90, oldest, True, False),
            "u3": ChatRetention(90, oldest, False, True),
        },
    )
    request = ExportRequest("gdpr", "gdprChat", start=DAY - timedelta(days=200), end=NOW, users=("u1", "u2", "u3"))
    sink = Sink()
    result = run_export(request, source, store, cert, now=NOW, sink=sink)
    assert result.succeeded and result.records == 11
    assert result.user_records == {"u1": 9, "u2": 0, "u3": 2}
    assert result.notes == [
        "user u2: the requested range is outside the chat retention period of 90 days (oldest available 2026-05-27)",
        "user u3: messages before 2026-05-27T00:15:00Z are outside the chat retention period of 90 days "
        "and are not in the export",
    ]
    assert [e[1] for e in sink.events if e[0] == "note"] == result.notes
    assert read_records(store, key, "chat-messages/u1.ndjson") == msgs
    assert read_records(store, key, "chat-messages/u3.ndjson") == msgs[:2]
    data, _ = store.get(result.artifacts[0].name)
    with zipfile.ZipFile(io.BytesIO(cms.decrypt_with_key(data, key))) as zf:
        manifest = json.loads(zf.read("manifest.json"))
    assert manifest["users"] == ["u1", "u2", "u3"] and manifest["notes"] == result.notes
    assert manifest["range"] == {"from": "2026-02-05T00:00:00Z", "to": "2026-08-25T00:15:00Z"}


def test_an_empty_export_succeeds_without_artifacts_and_says_why(
    tmp_path: Path, keypair: tuple[RSAPrivateKey, x509.Certificate]
) -> None:
    oldest = datetime(2026, 5, 27, tzinfo=UTC)
    source = FakeSource(retention={"u1": ChatRetention(90, oldest, True, False)})
    request = ExportRequest(
        "gdpr", "gdprChat", start=DAY - timedelta(days=400), end=DAY - timedelta(days=300), users=("u1",)
    )
    result = run_export(request, source, DirectoryStore(tmp_path), keypair[1], now=NOW)
    assert result.succeeded and result.empty and result.artifacts == []
    assert result.explanation == (
        "user u1: the requested range is outside the chat retention period of 90 days (oldest available 2026-05-27)"
    )
    contacts_result = run_export(
        ExportRequest("c", "contactHistory", start=DAY, end=NOW),
        FakeSource(),
        DirectoryStore(tmp_path),
        keypair[1],
        now=NOW,
    )
    assert contacts_result.empty
    assert contacts_result.explanation == "no contacts in the range [2026-08-24T00:00:00Z, 2026-08-25T00:15:00Z)"
    assert list(tmp_path.iterdir()) == []


def test_result_json_fits_a_termination_message_and_reads_back(
    tmp_path: Path, keypair: tuple[RSAPrivateKey, x509.Certificate]
) -> None:
    store = DirectoryStore(tmp_path)
    request = ExportRequest("big", "contactHistory", start=DAY, end=NOW, part_size=1024)
    result = run_export(request, FakeSource(contacts(120)), store, keypair[1], now=NOW)
    assert len(result.artifacts) >= 20
    text = result.to_json()
    assert len(text.encode()) <= 4096
    doc = json.loads(text)
    assert doc["artifactCount"] == len(result.artifacts) and doc["records"] == 120
    assert doc["artifactsOmitted"] == len(result.artifacts) - len(doc["artifacts"]) > 0
    assert doc["bytes"] == sum(a.size for a in result.artifacts)
    back = ExportResult.from_json(text)
    kept = result.artifacts[: len(back.artifacts)]
    assert [(a.name, a.size, a.sha256, a.location, a.created_at, a.expires_at) for a in back.artifacts] == [
        (a.name, a.size, a.sha256, a.location, a.created_at, a.expires_at) for a in kept
    ]
    assert back.range == result.range and back.state == "Succeeded"
    record = result.to_run_record("big-29123")
    assert record.model_dump(by_alias=True, exclude_none=True) == {
        "jobName": "big-29123",
        "startTime": NOW,
        "completionTime": result.completion_time,
        "state": "Succeeded",
        "records": 120,
        "artifacts": len(result.artifacts),
        "error": "",
        "message": "",
    }
    assert [r.name for r in result.artifact_records()] == [a.name for a in result.artifacts]


def test_result_json_shortens_notes_and_errors_last() -> None:
    result = ExportResult("n", "gdprChat", "20260825T001500Z", NOW, users=tuple(f"user-{i:03d}" for i in range(10)))
    result.notes = [f"note {i}: " + "é" * 400 for i in range(30)]
    result.fail("x" * 9000, retryable=True, reason="SourceUnavailableError")
    doc = json.loads(text := result.to_json())
    assert len(text.encode()) <= 4096
    assert doc["notesOmitted"] > 0 and all(len(n) <= 200 for n in doc["notes"])
    assert doc["state"] == "Failed" and doc["reason"] == "SourceUnavailableError" and doc["retryable"] is True
    assert len(doc["users"]) == 10


def test_a_failed_result_drops_its_artifacts_and_carries_the_exit_code() -> None:
    artifact = ArtifactInfo(name="a.zip.p7m", size=3, sha256="0" * 64, created_at=NOW, expires_at=NOW)
    result = ExportResult("n", "contactHistory", "20260825T001500Z", NOW, artifacts=[artifact], state="Succeeded")
    assert result.exit_code == 0
    result.fail("the Job failed", retryable=True, reason="JobFailed")
    assert (result.artifacts, result.exit_code) == ([], 1)
    result.fail_by(SourceAuthError("rejected"), "rejected")
    assert (result.reason, result.retryable, result.exit_code) == ("SourceAuthError", False, 4)
