"""The subjectAccess export engine against a real backed-up folder: the layout written file by file as the
worker writes it (metadata, vendor-encrypted media), its index built by the real rebuild, real CMS."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cxbackup.backup.index import INDEX_DIR, rebuild_index
from cxbackup.backup.layout import FolderFormat, decrypted_name, recording_paths
from cxbackup.backup.records import Recording
from cxbackup.backup.search import SearchQuery, parse_phone, search_index
from cxbackup.backup.targets import LocalDirectoryTarget
from cxbackup.certs import cms
from cxbackup.certs.keyring import Keyring
from cxbackup.cli import main
from cxbackup.export import subject as subject_mod
from cxbackup.export.errors import ExportConfigError
from cxbackup.export.names import parse_artifact_name
from cxbackup.export.packaging import ExportPackager, PackedPart
from cxbackup.export.result import ExportResult
from cxbackup.export.store import DirectoryStore
from cxbackup.export.subject import SubjectAccessRequest, run_subject_export
from cxbackup_dev.emulator.dataset import Dataset, DatasetSpec
from cxbackup_dev.emulator.tenant import TenantKey, generate_tenant_key

FMT = FolderFormat.parse("yyyy/MM/dd/HH")
NOW = datetime(2026, 8, 25, 0, 15, tzinfo=UTC)
SPEC = DatasetSpec(hours=3, recordings_per_hour=8, screen_fraction=0.5, agents=4)


@dataclass
class Backup:
    root: Path
    records: list[dict[str, Any]]
    plaintext: dict[str, bytes]  # mediaId -> bytes before encryption
    tenant: TenantKey


@contextlib.contextmanager
def no_lock(label: str) -> Iterator[None]:
    yield


def write_backup(root: Path, tenant: TenantKey) -> Backup:
    """The tree the worker writes (layout.py): metadata as the API sent it, media as the vendor stores it."""
    ds = Dataset(SPEC)
    records = list(ds.iter_records())
    plaintext: dict[str, bytes] = {}
    for rec in records:
        raw = json.dumps(rec)
        paths = recording_paths(Recording.from_json(rec, raw), FMT)
        for media in rec["mediaFiles"]:
            data = ds.media_plaintext(media["mediaId"])
            plaintext[media["mediaId"]] = data
            file = root / paths.media[media["mediaId"]]
            file.parent.mkdir(parents=True, exist_ok=True)
            file.write_bytes(cms.encrypt(data, tenant.certificate, "AES-128"))
        (root / paths.metadata).write_text(raw, encoding="utf-8")
    rebuild_index(root, 1, lock=no_lock)
    return Backup(root, records, plaintext, tenant)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, TenantKey]:
    d = tmp_path_factory.mktemp("keys")
    (d / "tenant").mkdir()
    (d / "requester").mkdir()
    when = datetime(2026, 8, 1, tzinfo=UTC)
    return {
        "tenant": generate_tenant_key(d / "tenant" / "t.key", d / "tenant" / "t.pem", now=when),
        "requester": generate_tenant_key(d / "requester" / "r.key", d / "requester" / "r.pem", now=when),
    }


@pytest.fixture(scope="module")
def shared_backup(tmp_path_factory: pytest.TempPathFactory, keys: dict[str, TenantKey]) -> Backup:
    return write_backup(tmp_path_factory.mktemp("backup"), keys["tenant"])


@pytest.fixture
def backup(tmp_path: Path, keys: dict[str, TenantKey]) -> Backup:
    """A backup of this test's own (for tests that damage it)."""
    return write_backup(tmp_path / "backup", keys["tenant"])


def agent_of(rec: dict[str, Any]) -> str:
    return str(rec["mediaFiles"][0]["parameters"]["username"])


def export(
    backup: Backup, store_dir: Path, keys: dict[str, TenantKey], request: SubjectAccessRequest, **kwargs: Any
) -> ExportResult:
    return run_subject_export(
        request,
        LocalDirectoryTarget(backup.root, create=False),
        backup.root / INDEX_DIR,
        DirectoryStore(store_dir),
        keys["requester"].certificate,
        now=NOW,
        **kwargs,
    )


def unpack(store_dir: Path, result: ExportResult, key: TenantKey) -> list[tuple[dict[str, Any], dict[str, bytes]]]:
    """(manifest, {member: bytes}) of every part, decrypted with the requester's key."""
    parts = []
    for info in result.artifacts:
        data = cms.decrypt((store_dir / info.name).read_bytes(), key.key, key.certificate)
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            members = {n: zf.read(n) for n in zf.namelist()}
        parts.append((json.loads(members.pop("manifest.json")), members))
    return parts


def check_manifest(manifest: dict[str, Any], members: dict[str, bytes]) -> None:
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) == set(members)
    for name, data in members.items():
        assert listed[name]["bytes"] == len(data)
        assert listed[name]["sha256"] == hashlib.sha256(data).hexdigest()


def expected_ids(backup: Backup, **criteria: Any) -> list[str]:
    found = search_index(backup.root / INDEX_DIR, SearchQuery(limit=10_000, **criteria))
    return [m.id for m in found.matches]


def test_an_agents_recordings_are_packed_as_stored_with_their_metadata(
    shared_backup: Backup, keys: dict[str, TenantKey], tmp_path: Path
) -> None:
    agent = agent_of(shared_backup.records[0])
    ids = expected_ids(shared_backup, agents=(agent,))
    assert len(ids) >= 3
    result = export(shared_backup, tmp_path, keys, SubjectAccessRequest("dsar-1", agents=(agent.upper(),)))
    assert result.succeeded, result.error
    assert result.records == len(ids) and len(result.artifacts) == 1
    assert parse_artifact_name(result.artifacts[0].name) is not None
    assert result.artifacts[0].name.startswith("dsar-1-subject-access-19700101T000000Z-20260825T001500Z-")
    [(manifest, members)] = unpack(tmp_path, result, keys["requester"])
    check_manifest(manifest, members)
    assert manifest["type"] == "subjectAccess" and manifest["records"] == len(ids)
    assert manifest["subject"] == {"phoneNumbers": 0, "agents": 1}
    assert manifest["media"] == "as stored"
    by_id = {r["id"]: r for r in shared_backup.records}
    expected: set[str] = set()
    for rid in ids:
        rec = by_id[rid]
        paths = recording_paths(Recording.from_json(rec, json.dumps(rec)), FMT)
        meta = f"recordings/{rid}/{rid}.json"
        expected.add(meta)
        assert members[meta] == (shared_backup.root / paths.metadata).read_bytes()
        for media in rec["mediaFiles"]:
            name = f"recordings/{rid}/{media['mediaId']}"
            expected.add(name)
            assert members[name] == (shared_backup.root / paths.media[media["mediaId"]]).read_bytes()
    assert set(members) == expected
    assert [a.name for a in DirectoryStore(tmp_path).list()] == [result.artifacts[0].name]


def test_decrypted_media_phone_numbers_and_the_time_range(
    shared_backup: Backup, keys: dict[str, TenantKey], tmp_path: Path
) -> None:
    recs = shared_backup.records
    phones = (parse_phone(recs[1]["callerPhoneNumber"]), parse_phone(recs[9]["callerPhoneNumber"]))
    start = datetime.fromtimestamp(Recording.from_json(recs[0], "{}").start_ms / 1000, UTC)  # type: ignore[operator]
    ids = expected_ids(shared_backup, phones=phones)
    assert {recs[1]["id"], recs[9]["id"]} <= set(ids)
    keyring = Keyring.from_directory(keys["tenant"].key_path.parent)
    request = SubjectAccessRequest("dsar-2", phones=phones, start=start, end=NOW, decrypt_media=True)
    result = export(shared_backup, tmp_path, keys, request, keyring=keyring)
    assert result.succeeded, result.error
    [(manifest, members)] = unpack(tmp_path, result, keys["requester"])
    check_manifest(manifest, members)
    assert manifest["media"] == "decrypted" and manifest["subject"] == {"phoneNumbers": 2, "agents": 0}
    assert manifest["range"]["from"] == start.strftime("%Y-%m-%dT%H:%M:%SZ")
    by_id = {r["id"]: r for r in recs}
    for rid in ids:
        for media in by_id[rid]["mediaFiles"]:
            name = f"recordings/{rid}/{decrypted_name(media['mediaId'], media['type'])}"
            assert members[name] == shared_backup.plaintext[media["mediaId"]]
    # nothing that leaves the run in clear holds a number
    text = json.dumps(manifest) + result.to_json() + "".join(result.notes)
    for phone in phones:
        assert phone not in text and phone[-4:] not in text.replace(result.run_id, "")


def test_small_parts_keep_each_recording_whole(
    shared_backup: Backup, keys: dict[str, TenantKey], tmp_path: Path
) -> None:
    agent = agent_of(shared_backup.records[0])
    ids = expected_ids(shared_backup, agents=(agent,))
    result = export(shared_backup, tmp_path, keys, SubjectAccessRequest("dsar-3", agents=(agent,), part_size=1024))
    assert result.succeeded, result.error
    parts = unpack(tmp_path, result, keys["requester"])
    assert len(parts) == len(ids)  # every recording is over 1 KiB: one per part
    assert [m["part"] for m, _ in parts] == list(range(1, len(ids) + 1))
    assert [m["last"] for m, _ in parts] == [False] * (len(ids) - 1) + [True]
    for (manifest, members), rid in zip(parts, ids, strict=True):
        check_manifest(manifest, members)
        assert {n.split("/")[1] for n in members} == {rid}


def test_a_part_never_holds_more_files_than_a_download_accepts(tmp_path: Path) -> None:
    parts: list[PackedPart] = []
    packager = ExportPackager(
        part_size=10**9, manifest_base={}, on_part=parts.append, created_at=NOW, max_files=5, spool_dir=tmp_path
    )
    for n in range(4):
        files = [packager.spool_file(f"r{n}/{i}") for i in range(2)]
        for f in files:
            f.write(b"x" * 10)
        packager.add_files(files)
    packager.finish()
    assert [[f.name for f in p.files] for p in parts] == [
        ["r0/0", "r0/1", "r1/0", "r1/1"],
        ["r2/0", "r2/1", "r3/0", "r3/1"],
    ]
    assert [p.records for p in parts] == [2, 2]
    for p in parts:
        p.close()


def test_no_match_succeeds_without_an_artifact_and_explains_without_the_number(
    shared_backup: Backup, keys: dict[str, TenantKey], tmp_path: Path
) -> None:
    result = export(shared_backup, tmp_path, keys, SubjectAccessRequest("dsar-4", phones=("99990000111",)))
    assert result.succeeded and result.artifacts == [] and result.exit_code == 0
    [note] = result.notes
    assert note.startswith("No recording matches the subject's 1 phone number; the index holds 24 recordings")
    assert "9999" not in note and "9999" not in result.to_json()
    assert DirectoryStore(tmp_path).list() == []
    later = export(
        shared_backup,
        tmp_path,
        keys,
        SubjectAccessRequest("dsar-4", agents=("nobody",), start=datetime(2026, 1, 1, tzinfo=UTC)),
    )
    assert later.succeeded and later.notes[0].startswith("No recording matches: --from is after the last")


def damage_first(backup: Backup, agent: str) -> tuple[str, Path, dict[str, Any]]:
    """(recording id, its first media file, its media entry) of the agent's first recording."""
    rid = expected_ids(backup, agents=(agent,))[0]
    rec = next(r for r in backup.records if r["id"] == rid)
    paths = recording_paths(Recording.from_json(rec, json.dumps(rec)), FMT)
    media = rec["mediaFiles"][0]
    return rid, backup.root / paths.media[media["mediaId"]], media


def assert_failed_naming(result: ExportResult, rid: str, reason: str, store_dir: Path, *words: str) -> None:
    assert result.state == "Failed" and result.exit_code == 1 and result.reason == reason
    assert f"recording {rid}" in result.error
    for word in words:
        assert word in result.error
    assert result.artifacts == [] and DirectoryStore(store_dir).list() == []
    staging = store_dir / ".cxbackup-staging"
    assert not staging.exists() or not any(staging.iterdir())


def test_a_missing_media_file_fails_naming_the_recording(
    backup: Backup, keys: dict[str, TenantKey], tmp_path: Path
) -> None:
    agent = agent_of(backup.records[0])
    rid, file, _ = damage_first(backup, agent)
    file.unlink()
    store = tmp_path / "store"
    result = export(backup, store, keys, SubjectAccessRequest("dsar-5", agents=(agent,)))
    assert_failed_naming(result, rid, "BackupContentError", store, "not in the backup target", "cxbackup index")


def test_a_size_the_index_does_not_expect_fails_as_stored_and_decrypted(
    backup: Backup, keys: dict[str, TenantKey], tmp_path: Path
) -> None:
    agent = agent_of(backup.records[0])
    rid, file, media = damage_first(backup, agent)
    size = int(media["size"])
    file.write_bytes(cms.encrypt(b"y" * (size + 100), keys["tenant"].certificate, "AES-128"))
    store = tmp_path / "store"
    result = export(backup, store, keys, SubjectAccessRequest("dsar-6", agents=(agent,)))
    assert_failed_naming(result, rid, "BackupContentError", store, f"the index recorded {size}")
    keyring = Keyring.from_directory(keys["tenant"].key_path.parent)
    request = SubjectAccessRequest("dsar-6", agents=(agent,), decrypt_media=True)
    result = export(backup, store, keys, request, keyring=keyring)
    assert_failed_naming(result, rid, "BackupContentError", store, f"decrypts to {size + 100} bytes")


def test_media_the_keyring_cannot_decrypt_fails_naming_the_recording(
    shared_backup: Backup, keys: dict[str, TenantKey], tmp_path: Path
) -> None:
    agent = agent_of(shared_backup.records[0])
    rid = expected_ids(shared_backup, agents=(agent,))[0]
    wrong = Keyring.from_directory(keys["requester"].key_path.parent)
    request = SubjectAccessRequest("dsar-7", agents=(agent,), decrypt_media=True)
    result = export(shared_backup, tmp_path, keys, request, keyring=wrong)
    assert_failed_naming(result, rid, "BackupContentError", tmp_path, "cannot be decrypted", "no key in the keyring")


def test_more_matches_than_one_search_returns_fail_instead_of_a_silent_subset(
    shared_backup: Backup, keys: dict[str, TenantKey], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    agent = agent_of(shared_backup.records[0])
    monkeypatch.setattr(subject_mod, "MAX_LIMIT", len(expected_ids(shared_backup, agents=(agent,))))
    result = export(shared_backup, tmp_path, keys, SubjectAccessRequest("dsar-8", agents=(agent,)))
    assert result.state == "Failed" and result.exit_code == 2 and "--from/--to" in result.error
    assert DirectoryStore(tmp_path).list() == []


def test_an_unreadable_index_is_unavailable(keys: dict[str, TenantKey], tmp_path: Path) -> None:
    root = tmp_path / "backup"
    (root / INDEX_DIR).mkdir(parents=True)
    (root / INDEX_DIR / "shard-0-of-1.sqlite3").write_bytes(b"not a database" * 100)
    backup = Backup(root, [], {}, keys["tenant"])
    result = export(backup, tmp_path / "store", keys, SubjectAccessRequest("dsar-9", agents=("a",)))
    assert result.state == "Failed" and result.exit_code == 5 and result.reason == "BackupUnavailableError"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "needs the subject: --phone NUMBER and/or --agent NAME"),
        ({"phones": ("12",)}, "--phone: value 1 is not the digits of a phone number"),
        ({"agents": (" ",)}, "--agent: an empty name matches nothing"),
        ({"agents": ("a",), "start": NOW, "end": NOW}, "--from must be before --to"),
        ({"agents": ("a",), "part_size": 10}, "the part size must be at least"),
    ],
)
def test_requests_are_checked_naming_the_option(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ExportConfigError, match=message.replace("(", r"\(")):
        SubjectAccessRequest("dsar", **kwargs)


def test_plaintext_size_range_bounds_every_length(keys: dict[str, TenantKey]) -> None:
    for n in (0, 1, 15, 16, 17, 31, 32, 1000):
        for alg in ("AES-128", "AES-256"):
            low, high = cms.plaintext_size_range(cms.encrypt(b"z" * n, keys["tenant"].certificate, alg)) or (-1, -1)
            assert low <= n <= high and high - low == 15


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["export", "run", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--phone", "555 call me"], "--phone: value 1 is not a phone number"),
        (["--phone", "5550100999"], "give --backup-target or --backup-config"),
        (["--agent", "a", "--backup-target", "missing"], "--backup-target missing: no such folder"),
        (["--agent", "a", "--user", "u1", "--backup-target", "."], "--user applies to gdprChat"),
        (["--agent", "a", "--last", "P1D", "--backup-target", "."], "--last does not apply"),
        (["--agent", "a", "--decrypt-media", "--backup-target", "."], "--decrypt-media and --keyring go together"),
        (["--agent", "a", "--from", "yesterday", "--backup-target", "."], "--from: 'yesterday' is not a time"),
        (["--subject-file", "subject.txt", "--backup-target", "."], "line 2 is not `phone:<number>`"),
        (["--subject-file", "missing.txt", "--backup-target", "."], "--subject-file missing.txt: cannot be read"),
        (["--subject-file", "empty.txt", "--backup-target", "."], "names no phone number and no agent"),
    ],
)
def test_the_cli_refuses_bad_input_naming_the_option_and_never_the_number(
    args: list[str],
    named: str,
    keys: dict[str, TenantKey],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)  # relative folders are in the test's own
    (tmp_path / "subject.txt").write_text("phone:+1 555 0100 999\nfax:555 0100 998\n")
    (tmp_path / "empty.txt").write_text("# nobody\n\n")
    result_file = tmp_path / "result.json"
    cert = str(keys["requester"].cert_path)
    code, _, err = run_cli(
        ["--type", "subjectAccess", *args, "--cert", cert, "--store", str(tmp_path), "--result-file", str(result_file)],
        capsys,
    )
    assert code == 2 and named in err, err
    assert "555" not in err and "555" not in result_file.read_text()


def test_the_cli_refuses_subject_options_on_other_types(
    keys: dict[str, TenantKey], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cert = str(keys["requester"].cert_path)
    api = ["--api-uri-prefix", "http://127.0.0.1:9"]
    code, _, err = run_cli(
        ["--type", "contactHistory", "--last", "P1D", "--agent", "a", "--cert", cert, "--store", str(tmp_path), *api],
        capsys,
    )
    assert code == 2 and "--agent applies only to --type subjectAccess" in err


def test_the_cli_explains_an_empty_result_and_a_folder_without_an_index(
    shared_backup: Backup, keys: dict[str, TenantKey], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--type", "subjectAccess", "--cert", str(keys["requester"].cert_path), "--store", str(tmp_path / "s")]
    code, out, err = run_cli([*base, "--phone", "+44 20 7946 0999", "--backup-target", str(shared_backup.root)], capsys)
    assert code == 0, err
    assert "0 records, 0 artifacts" in out and "No recording matches the subject's 1 phone number" in out
    assert "7946" not in out + err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run_cli([*base, "--agent", "a", "--backup-target", str(empty)], capsys)
    assert code == 2 and "has no search index; build it from the backed-up tree with `cxbackup index" in err
