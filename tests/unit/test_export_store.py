"""Artifact stores (directory and S3 through a fake client) and the retention sweep."""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from cxbackup.export.errors import ArtifactExistsError, ArtifactNotFoundError, IntegrityError, StoreError
from cxbackup.export.names import artifact_name
from cxbackup.export.retention import SweepError, clean_staging, sweep
from cxbackup.export.store import (
    MAX_SIDECAR_BYTES,
    STAGING_DIR,
    ArtifactInfo,
    ArtifactStore,
    DirectoryStore,
    S3ArtifactStore,
    new_staging_id,
)

NOW = datetime(2026, 8, 25, 0, 15, tzinfo=UTC)
RUN = "20260825T001500Z"


def name(part: int, export: str = "nightly", run: str = RUN) -> str:
    return artifact_name(export, "contactHistory", NOW - timedelta(days=1), NOW, run, part)


def info(part: int, *, created: datetime = NOW, days: int = 30, export: str = "nightly") -> ArtifactInfo:
    return ArtifactInfo.new(name(part, export), created, days, export=export, type="contactHistory", run_id=RUN)


class FakeS3:
    """Just enough of a boto3 S3 client, in memory (objects: key -> (body, metadata))."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self.objects: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.fail_copy_after: int | None = None
        self.fail_delete: set[str] = set()

    def _check(self, bucket: str) -> None:
        assert bucket == self.bucket

    @staticmethod
    def _missing(op: str) -> ClientError:
        return ClientError({"Error": {"Code": "404", "Message": "Not Found"}}, op)

    def put_object(self, *, Bucket: str, Key: str, Body: bytes, Metadata: dict[str, str], **_: Any) -> None:
        self._check(Bucket)
        self.objects[Key] = (bytes(Body), dict(Metadata))

    def head_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        self._check(Bucket)
        if Key not in self.objects:
            raise self._missing("HeadObject")
        body, meta = self.objects[Key]
        return {"ContentLength": len(body), "Metadata": dict(meta)}

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        head = self.head_object(Bucket=Bucket, Key=Key)
        return {**head, "Body": io.BytesIO(self.objects[Key][0])}

    def copy_object(self, *, Bucket: str, Key: str, CopySource: dict[str, str], MetadataDirective: str) -> None:
        self._check(Bucket)
        assert MetadataDirective == "COPY"
        if self.fail_copy_after is not None:
            if self.fail_copy_after == 0:
                raise ClientError({"Error": {"Code": "InternalError", "Message": "boom"}}, "CopyObject")
            self.fail_copy_after -= 1
        self.objects[Key] = self.objects[CopySource["Key"]]

    def delete_object(self, *, Bucket: str, Key: str) -> None:
        self._check(Bucket)
        if Key in self.fail_delete:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "DeleteObject")
        self.objects.pop(Key, None)

    def delete_objects(self, *, Bucket: str, Delete: dict[str, Any]) -> None:
        for obj in Delete["Objects"]:
            self.delete_object(Bucket=Bucket, Key=obj["Key"])

    def get_paginator(self, op: str) -> FakeS3:
        assert op == "list_objects_v2"
        return self

    def paginate(self, *, Bucket: str, Prefix: str, Delimiter: str | None = None) -> Iterator[dict[str, Any]]:
        self._check(Bucket)
        contents, common = [], set()
        for key in sorted(self.objects):
            if not key.startswith(Prefix):
                continue
            rest = key[len(Prefix) :]
            if Delimiter and Delimiter in rest:
                common.add(Prefix + rest.split(Delimiter)[0] + Delimiter)
            else:
                contents.append({"Key": key, "Size": len(self.objects[key][0])})
        yield {"Contents": contents, "CommonPrefixes": [{"Prefix": p} for p in sorted(common)]}


@pytest.fixture(params=["directory", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> ArtifactStore:
    if request.param == "directory":
        return DirectoryStore(tmp_path / "exports")
    return S3ArtifactStore(FakeS3("bucket"), "bucket", "team/exports")


def put_foreign(store: ArtifactStore, key: str, body: bytes = b"not ours") -> None:
    """A file someone else put into the store."""
    if isinstance(store, DirectoryStore):
        path = store.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    else:
        assert isinstance(store, S3ArtifactStore)
        store.client.put_object(Bucket="bucket", Key=store.prefix + key, Body=body, Metadata={})


def foreign_present(store: ArtifactStore, key: str) -> bool:
    if isinstance(store, DirectoryStore):
        return (store.root / key).exists()
    assert isinstance(store, S3ArtifactStore)
    return store.prefix + key in store.client.objects


def test_write_list_get_delete(store: ArtifactStore) -> None:
    written = store.write(b"cms bytes", info(1))
    assert written.size == 9 and written.sha256 == hashlib.sha256(b"cms bytes").hexdigest()
    assert written.expires_at == NOW + timedelta(days=30)
    assert written.location.endswith("/" + name(1))
    (listed,) = store.list()
    assert listed == written
    data, got = store.get(name(1))
    assert data == b"cms bytes" and got == written
    with pytest.raises(ArtifactExistsError):
        store.write(b"other", info(1))
    assert store.get(name(1))[0] == b"cms bytes"
    assert store.delete(name(1)) == written
    assert store.list() == []
    with pytest.raises(ArtifactNotFoundError):
        store.get(name(1))


def test_record_mapping(store: ArtifactStore) -> None:
    written = store.write(b"x", info(1))
    record = written.to_record()
    assert record.model_dump(by_alias=True) == {
        "name": written.name,
        "size": 1,
        "sha256": written.sha256,
        "location": written.location,
        "createdAt": NOW,
        "expiresAt": NOW + timedelta(days=30),
        "expired": False,
    }


def test_staged_artifacts_are_invisible_until_published(store: ArtifactStore) -> None:
    staging = new_staging_id(RUN)
    store.stage(staging, b"one", info(1))
    store.stage(staging, b"two", info(2))
    assert store.list() == []
    assert store.staging_areas() == [staging]
    published = store.publish(staging)
    assert [p.name for p in published] == [name(1), name(2)]
    assert [a.name for a in store.list()] == [name(1), name(2)]
    assert store.staging_areas() == []
    assert store.get(name(2))[0] == b"two"


def test_discard_removes_only_that_staging_area(store: ArtifactStore) -> None:
    a, b = new_staging_id(RUN), new_staging_id(RUN)
    store.stage(a, b"one", info(1))
    store.stage(b, b"two", info(2))
    store.discard(a)
    assert store.staging_areas() == [b]
    assert [p.name for p in store.publish(b)] == [name(2)]
    store.discard(a)  # again: no error


def test_publish_never_overwrites(store: ArtifactStore) -> None:
    store.write(b"old", info(2))
    staging = new_staging_id(RUN)
    store.stage(staging, b"new1", info(1))
    store.stage(staging, b"new2", info(2))
    with pytest.raises(ArtifactExistsError):
        store.publish(staging)
    assert [a.name for a in store.list()] == [name(2)]
    assert store.get(name(2))[0] == b"old"


def test_s3_publish_failure_half_way_unpublishes() -> None:
    client = FakeS3("bucket")
    store = S3ArtifactStore(client, "bucket", "p")
    staging = new_staging_id(RUN)
    for part in (1, 2, 3):
        store.stage(staging, b"x" * part, info(part))
    client.fail_copy_after = 1
    with pytest.raises(StoreError, match="boom"):
        store.publish(staging)
    assert store.list() == []


def test_foreign_names_are_never_listed_read_or_deleted(store: ArtifactStore) -> None:
    put_foreign(store, "notes.txt")
    put_foreign(store, name(7))  # our name pattern, but no metadata of ours
    put_foreign(store, name(8))
    put_foreign(store, name(8) + ".json", json.dumps({"kind": "Something", "name": name(8)}).encode())
    store.write(b"ours", info(1))
    assert [a.name for a in store.list()] == [name(1)]
    for foreign in ("notes.txt", "../x", name(7), name(8)):
        with pytest.raises(ArtifactNotFoundError):
            store.delete(foreign)
    assert foreign_present(store, "notes.txt") and foreign_present(store, name(7)) and foreign_present(store, name(8))


def test_sweep_deletes_only_expired_artifacts_of_ours(store: ArtifactStore) -> None:
    old = store.write(b"old", info(1, created=NOW - timedelta(days=31)))
    edge = store.write(b"edge", info(2, created=NOW - timedelta(days=30)))  # expiresAt == now: due
    fresh = store.write(b"fresh", info(3, created=NOW - timedelta(days=29)))
    put_foreign(store, "report.pdf")
    put_foreign(store, name(4, export="other"))  # looks like ours, no metadata
    assert [a.name for a in sweep(store, NOW, dry_run=True)] == [old.name, edge.name]
    assert len(store.list()) == 3
    deleted = sweep(store, NOW)
    assert [(a.name, a.expired) for a in deleted] == [(old.name, True), (edge.name, True)]
    assert deleted[0].to_record().expired is True
    assert store.list() == [fresh]
    assert foreign_present(store, "report.pdf") and foreign_present(store, name(4, export="other"))
    assert sweep(store, NOW) == []


def test_sweep_goes_on_after_a_failed_delete() -> None:
    client = FakeS3("bucket")
    store = S3ArtifactStore(client, "bucket", "")
    for part in (1, 2):
        store.write(b"x", info(part, created=NOW - timedelta(days=40)))
    client.fail_delete.add(name(1))
    with pytest.raises(SweepError) as caught:
        sweep(store, NOW)
    assert [a.name for a in caught.value.deleted] == [name(2)]
    assert "AccessDenied" in str(caught.value)


def test_clean_staging_waits_a_day(store: ArtifactStore) -> None:
    stale = new_staging_id("20260823T000000Z")
    recent = new_staging_id("20260824T230000Z")
    store.stage(stale, b"a", info(1))
    store.stage(recent, b"b", info(2))
    put_foreign(store, f"{STAGING_DIR}/not-a-run/file")
    assert clean_staging(store, NOW, dry_run=True) == [stale]
    assert sorted(store.staging_areas()) == sorted([stale, recent])
    assert clean_staging(store, NOW) == [stale]
    assert store.staging_areas() == [recent]
    assert foreign_present(store, f"{STAGING_DIR}/not-a-run/file")


def test_directory_sidecar_and_damaged_metadata(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    written = store.write(b"data", info(1))
    sidecar = tmp_path / (name(1) + ".json")
    meta = json.loads(sidecar.read_text())
    assert meta["kind"] == "CxbackupExportArtifact" and meta["sha256"] == written.sha256
    assert meta["expiresAt"] == "2026-09-24T00:15:00Z"
    assert not list(tmp_path.glob(".*"))  # no temporary file left
    sidecar.write_text(json.dumps({**meta, "sha256": "zz"}))
    assert store.list() == []  # damaged metadata: not recognised, so never deleted either
    assert sweep(store, NOW + timedelta(days=365)) == []
    assert (tmp_path / name(1)).exists()


def test_s3_metadata_must_match_the_object() -> None:
    store = S3ArtifactStore(FakeS3("bucket"), "bucket", "exports/")
    store.write(b"four", info(1))
    key = store.prefix + name(1)
    body, meta = store.client.objects[key]
    store.client.objects[key] = (body + b"!", meta)  # replaced behind our back: size differs
    assert store.list() == []


def test_reads_are_bounded(store: ArtifactStore) -> None:
    """`get(name, max_bytes)` refuses more than the limit without reading on; a sidecar over 64 KiB is
    not read (not ours)."""
    store.write(b"x" * 5000, info(1))
    assert len(store.get(name(1), max_bytes=5000)[0]) == 5000
    with pytest.raises(IntegrityError, match="holds more than 4999 bytes; not read"):
        store.get(name(1), max_bytes=4999)
    if isinstance(store, DirectoryStore):
        sidecar = store.root / (name(1) + ".json")
        meta = json.loads(sidecar.read_text())
        sidecar.write_text(json.dumps({**meta, "padding": " " * (MAX_SIDECAR_BYTES + 1)}))
        assert store.list() == []
