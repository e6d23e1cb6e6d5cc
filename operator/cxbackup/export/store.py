"""Where artifacts are kept: the `ArtifactStore` protocol, a directory (PVC) and an S3 bucket/prefix.

Every artifact has metadata (`ArtifactInfo`): name, size and SHA-256 of the stored (encrypted) bytes,
createdAt, expiresAt (createdAt + retentionDays), and the run it came from. A directory keeps it in a
sidecar `<name>.json` next to the file; S3 keeps it in the object's user metadata
(`x-amz-meta-cxbackup-artifact`, the same JSON). Size and SHA-256 are computed by the store from the
bytes it writes.

Recognised artifacts are the names `names.parse_artifact_name` accepts *with* valid metadata of ours;
`list`, `get`, `delete` and the retention sweep see nothing else, so a file someone else put into the
store is never listed, overwritten or deleted. Nothing is ever overwritten: writing over an existing
artifact raises ArtifactExistsError.

Publishing, so that a failed run leaves no partial artifacts: a run `stage`s each part under a staging
area of its own (`<root>/.cxbackup-staging/<staging id>/` or `<prefix>.cxbackup-staging/<staging id>/`)
and `publish`es them all at the end (a rename in a directory; a server-side copy, size check and
delete in S3); a failed run `discard`s its staging area. A run killed outright leaves only a staging
area, which `retention.clean_staging` removes a day later (the staging id starts with the run's start
stamp). If publishing itself fails half-way, the parts already published are deleted again.

- Directory: a file is written to a temporary name in the same directory, fsync'ed and renamed; the
  data file first, then its sidecar, so a sidecar always describes a complete file.
- S3: put, then a HEAD checks the stored size (the SDK checks the body's checksum on upload).

Reading is bounded: `get(name, max_bytes)` refuses an artifact holding more (IntegrityError) without
reading past the limit, and a sidecar over MAX_SIDECAR_BYTES (64 KiB) is not read (not ours).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

from cxbackup.api.exportjob import ArtifactRecord
from cxbackup.core.files import write_file
from cxbackup.core.redact import Redactor
from cxbackup.export.errors import (
    ArtifactExistsError,
    ArtifactNotFoundError,
    ExportConfigError,
    IntegrityError,
    StoreError,
)
from cxbackup.export.names import format_iso, parse_artifact_name, parse_stamp

__all__ = [
    "ARTIFACT_KIND",
    "MAX_SIDECAR_BYTES",
    "S3_METADATA_KEY",
    "SIDECAR_SUFFIX",
    "STAGING_DIR",
    "ArtifactInfo",
    "ArtifactStore",
    "DirectoryStore",
    "S3ArtifactStore",
    "new_staging_id",
    "open_store",
    "staging_started",
]

log = logging.getLogger(__name__)

ARTIFACT_KIND = "CxbackupExportArtifact"
SIDECAR_SUFFIX = ".json"
STAGING_DIR = ".cxbackup-staging"
S3_METADATA_KEY = "cxbackup-artifact"
_STAGING_ID_RE = re.compile(r"^(\d{8}T\d{6}Z)-[0-9a-f]{8}$")


def new_staging_id(run_id: str) -> str:
    """A staging area id for one run: the run id (its start stamp) and a random suffix."""
    return f"{run_id}-{secrets.token_hex(4)}"


def staging_started(staging_id: str) -> datetime | None:
    """When the run that owns a staging area started, or None when the id is not one of ours."""
    m = _STAGING_ID_RE.match(staging_id)
    return parse_stamp(m.group(1)) if m else None


def _parse_dt(value: object) -> datetime:
    if not isinstance(value, str):
        raise ValueError("not a time")
    dt = datetime.fromisoformat(value)
    if dt.tzinfo is None:
        raise ValueError("time without a timezone")
    return dt.astimezone(UTC)


@dataclass(frozen=True)
class ArtifactInfo:
    """One artifact and its metadata (maps onto api.exportjob.ArtifactRecord with `to_record`)."""

    name: str
    size: int
    sha256: str
    created_at: datetime
    expires_at: datetime
    location: str = ""
    export: str = ""
    type: str = ""
    run_id: str = ""
    part: int = 0
    last: bool = False
    records: int = 0
    expired: bool = False

    @classmethod
    def new(cls, name: str, created_at: datetime, retention_days: int, **fields: Any) -> ArtifactInfo:
        """Metadata for an artifact about to be stored; the store fills in size, sha256 and location."""
        created = created_at.astimezone(UTC)
        return cls(name, 0, "", created, created + timedelta(days=retention_days), **fields)

    def is_expired(self, now: datetime) -> bool:
        """Due for deletion: expiresAt <= now."""
        return self.expires_at <= now

    def metadata(self) -> dict[str, Any]:
        """The sidecar / object-metadata JSON."""
        return {
            "kind": ARTIFACT_KIND,
            "version": 1,
            "name": self.name,
            "size": self.size,
            "sha256": self.sha256,
            "createdAt": format_iso(self.created_at),
            "expiresAt": format_iso(self.expires_at),
            "export": self.export,
            "type": self.type,
            "runId": self.run_id,
            "part": self.part,
            "last": self.last,
            "records": self.records,
        }

    @classmethod
    def from_metadata(cls, data: object, *, location: str) -> ArtifactInfo:
        """Parse sidecar / object metadata; ValueError when it is not ours or is damaged."""
        if not isinstance(data, dict) or data.get("kind") != ARTIFACT_KIND:
            raise ValueError("not cxbackup artifact metadata")
        size, sha, part, records = data.get("size"), data.get("sha256"), data.get("part", 0), data.get("records", 0)
        if not isinstance(size, int) or size < 0 or not isinstance(part, int) or not isinstance(records, int):
            raise ValueError("bad size, part or record count")
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            raise ValueError("bad sha256")
        return cls(
            name=str(data.get("name", "")),
            size=size,
            sha256=sha,
            created_at=_parse_dt(data.get("createdAt")),
            expires_at=_parse_dt(data.get("expiresAt")),
            location=location,
            export=str(data.get("export", "")),
            type=str(data.get("type", "")),
            run_id=str(data.get("runId", "")),
            part=part,
            last=bool(data.get("last", False)),
            records=records,
        )

    def to_json(self) -> dict[str, Any]:
        """camelCase, as in status.artifacts plus the run facts."""
        out = self.metadata()
        del out["kind"], out["version"]
        out["location"] = self.location
        out["expired"] = self.expired
        return out

    def to_record(self) -> ArtifactRecord:
        """The ExportJob status.artifacts entry."""
        return ArtifactRecord(
            name=self.name,
            size=self.size,
            sha256=self.sha256,
            location=self.location,
            created_at=self.created_at,
            expires_at=self.expires_at,
            expired=self.expired,
        )


class ArtifactStore(Protocol):
    """Where artifacts live (see the module docstring). Every method raises StoreError on I/O failure."""

    location: str

    def write(self, data: bytes, info: ArtifactInfo) -> ArtifactInfo:
        """Store one artifact under `info.name` at once (ArtifactExistsError if it exists)."""
        ...

    def stage(self, staging_id: str, data: bytes, info: ArtifactInfo) -> ArtifactInfo:
        """Store a run's artifact in the run's staging area (invisible to `list`)."""
        ...

    def publish(self, staging_id: str) -> list[ArtifactInfo]:
        """Move everything staged under `staging_id` into place; all or nothing (by name order)."""
        ...

    def discard(self, staging_id: str) -> None:
        """Remove a staging area and everything in it (no error when it does not exist)."""
        ...

    def staging_areas(self) -> list[str]:
        """The staging ids present (of runs in progress or killed)."""
        ...

    def list(self) -> list[ArtifactInfo]:
        """Every recognised artifact, by name."""
        ...

    def info(self, name: str) -> ArtifactInfo:
        """One artifact's metadata (ArtifactNotFoundError unless it is a recognised artifact)."""
        ...

    def get(self, name: str, max_bytes: int | None = None) -> tuple[bytes, ArtifactInfo]:
        """An artifact's stored bytes and metadata; IntegrityError, without reading it all, when it holds
        more than `max_bytes`."""
        ...

    def delete(self, name: str) -> ArtifactInfo:
        """Delete a recognised artifact and its metadata; returns what was deleted."""
        ...

    def close(self) -> None:
        """Release connections (S3); the store is not used afterwards."""
        ...


MAX_SIDECAR_BYTES = 64 * 1024
"""The largest metadata sidecar read (a real one is under 1 KB); a larger one is not ours."""


def _too_large(name: str, location: str, max_bytes: int) -> IntegrityError:
    return IntegrityError(f"{name} in {location} holds more than {max_bytes} bytes; not read")


def _checked(name: str) -> str:
    if parse_artifact_name(name) is None:
        raise ArtifactNotFoundError(f"{name!r} is not the name of a cxbackup export artifact")
    return name


def _completed(info: ArtifactInfo, data: bytes, location: str) -> ArtifactInfo:
    _checked(info.name)
    return replace(info, size=len(data), sha256=hashlib.sha256(data).hexdigest(), location=location)


# ----------------------------------------------------------------------------------------- directory


class DirectoryStore:
    """Artifacts as files in a directory (a PVC mount, with an optional sub-path)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.location = str(self.root)

    def __repr__(self) -> str:
        return f"DirectoryStore({self.location!r})"

    @contextlib.contextmanager
    def _io(self, what: str) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise StoreError(f"{what} in {self.location}: {exc.strerror or exc}") from exc

    def _staging(self, staging_id: str) -> Path:
        if staging_started(staging_id) is None:
            raise ValueError(f"not a staging id: {staging_id!r}")
        return self.root / STAGING_DIR / staging_id

    @staticmethod
    def _write_file(path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_file(path, data, mode=0o640, replace=True)

    def _put(self, folder: Path, data: bytes, info: ArtifactInfo) -> ArtifactInfo:
        info = _completed(info, data, str(self.root / info.name))
        self._write_file(folder / info.name, data)
        sidecar = json.dumps(info.metadata(), indent=2).encode() + b"\n"
        self._write_file(folder / (info.name + SIDECAR_SUFFIX), sidecar)
        return info

    def _exists(self, name: str) -> bool:
        return (self.root / name).exists() or (self.root / (name + SIDECAR_SUFFIX)).exists()

    def write(self, data: bytes, info: ArtifactInfo) -> ArtifactInfo:
        with self._io(f"cannot write {info.name}"):
            if self._exists(info.name):
                raise ArtifactExistsError(f"{info.name} exists already in {self.location}")
            return self._put(self.root, data, info)

    def stage(self, staging_id: str, data: bytes, info: ArtifactInfo) -> ArtifactInfo:
        with self._io(f"cannot stage {info.name}"):
            return self._put(self._staging(staging_id), data, info)

    def _read_info(self, folder: Path, name: str) -> ArtifactInfo | None:
        if parse_artifact_name(name) is None or not (folder / name).is_file():
            return None
        try:
            with (folder / (name + SIDECAR_SUFFIX)).open("rb") as fh:
                raw = fh.read(MAX_SIDECAR_BYTES + 1)
            if len(raw) > MAX_SIDECAR_BYTES:
                return None
            info = ArtifactInfo.from_metadata(json.loads(raw), location=str(self.root / name))
        except (OSError, ValueError):
            return None
        return info if info.name == name else None

    def publish(self, staging_id: str) -> list[ArtifactInfo]:
        folder = self._staging(staging_id)
        with self._io("cannot publish"):
            if not folder.is_dir():
                return []
            names = sorted(p.name for p in folder.iterdir() if parse_artifact_name(p.name))
            infos = [i for i in (self._read_info(folder, n) for n in names) if i is not None]
            clash = [i.name for i in infos if self._exists(i.name)]
            if clash:
                raise ArtifactExistsError(f"{clash[0]} exists already in {self.location}; nothing was published")
            done: list[ArtifactInfo] = []
            try:
                for info in infos:
                    (folder / info.name).replace(self.root / info.name)
                    (folder / (info.name + SIDECAR_SUFFIX)).replace(self.root / (info.name + SIDECAR_SUFFIX))
                    done.append(info)
            except OSError:
                for info in done:
                    (self.root / info.name).unlink(missing_ok=True)
                    (self.root / (info.name + SIDECAR_SUFFIX)).unlink(missing_ok=True)
                raise
        self.discard(staging_id)
        return infos

    def discard(self, staging_id: str) -> None:
        folder = self._staging(staging_id)
        with self._io(f"cannot remove the staging area {staging_id}"):
            if folder.is_dir():
                shutil.rmtree(folder)
            with contextlib.suppress(OSError):
                folder.parent.rmdir()  # only when empty

    def staging_areas(self) -> list[str]:
        base = self.root / STAGING_DIR
        with self._io("cannot list the staging areas"):
            if not base.is_dir():
                return []
            return sorted(p.name for p in base.iterdir() if p.is_dir() and staging_started(p.name) is not None)

    def list(self) -> list[ArtifactInfo]:
        with self._io("cannot list artifacts"):
            if not self.root.is_dir():
                return []
            names = sorted(p.name for p in self.root.iterdir() if parse_artifact_name(p.name))
        return [i for i in (self._read_info(self.root, n) for n in names) if i is not None]

    def info(self, name: str) -> ArtifactInfo:
        info = self._read_info(self.root, _checked(name))
        if info is None:
            raise ArtifactNotFoundError(f"no artifact {name} in {self.location}")
        return info

    def get(self, name: str, max_bytes: int | None = None) -> tuple[bytes, ArtifactInfo]:
        info = self.info(name)
        with self._io(f"cannot read {name}"), (self.root / name).open("rb") as fh:
            data = fh.read() if max_bytes is None else fh.read(max_bytes + 1)
        if max_bytes is not None and len(data) > max_bytes:
            raise _too_large(name, self.location, max_bytes)
        return data, info

    def delete(self, name: str) -> ArtifactInfo:
        info = self.info(name)
        with self._io(f"cannot delete {name}"):
            (self.root / name).unlink(missing_ok=True)
            (self.root / (name + SIDECAR_SUFFIX)).unlink(missing_ok=True)
        return info

    def close(self) -> None:
        pass


# ----------------------------------------------------------------------------------------------- S3


def _code(exc: Exception) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        err = response.get("Error", {})
        return str(err.get("Code") or response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
    return ""


class S3ArtifactStore:
    """Artifacts as objects `<prefix><name>` in a bucket, through an injected boto3 S3 client."""

    def __init__(self, client: Any, bucket: str, prefix: str = "", *, redactor: Redactor | None = None) -> None:
        prefix = prefix.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.location = f"s3://{bucket}/{prefix}"
        self._redactor = redactor or Redactor()

    def __repr__(self) -> str:
        return f"S3ArtifactStore({self.location!r})"

    @contextlib.contextmanager
    def _io(self, what: str) -> Iterator[None]:
        import botocore.exceptions

        try:
            yield
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            detail = self._redactor.clean(str(exc))
            raise StoreError(f"{what} in {self.location}: {detail}") from None

    def _key(self, name: str) -> str:
        return self.prefix + name

    def _staging_prefix(self, staging_id: str) -> str:
        if staging_started(staging_id) is None:
            raise ValueError(f"not a staging id: {staging_id!r}")
        return f"{self.prefix}{STAGING_DIR}/{staging_id}/"

    def _head(self, key: str) -> dict[str, Any] | None:
        import botocore.exceptions

        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return head

    def _info_of(self, name: str, head: dict[str, Any] | None) -> ArtifactInfo | None:
        if head is None or parse_artifact_name(name) is None:
            return None
        raw = (head.get("Metadata") or {}).get(S3_METADATA_KEY)
        try:
            info = ArtifactInfo.from_metadata(json.loads(raw or ""), location=self.location + name)
        except ValueError:
            return None
        if info.name != name or int(head.get("ContentLength", -1)) != info.size:
            return None
        return info

    def _put(self, key: str, data: bytes, info: ArtifactInfo) -> ArtifactInfo:
        info = _completed(info, data, self.location + info.name)
        meta = json.dumps(info.metadata(), separators=(",", ":"), ensure_ascii=True)
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=data,
            Metadata={S3_METADATA_KEY: meta},
            ContentType="application/pkcs7-mime",
        )
        head = self._head(key)
        stored = -1 if head is None else int(head.get("ContentLength", -1))
        if stored != len(data):
            with contextlib.suppress(Exception):
                self.client.delete_object(Bucket=self.bucket, Key=key)
            raise StoreError(f"{key}: stored size {stored} differs from the {len(data)} bytes written")
        return info

    def write(self, data: bytes, info: ArtifactInfo) -> ArtifactInfo:
        with self._io(f"cannot write {info.name}"):
            if self._head(self._key(_checked(info.name))) is not None:
                raise ArtifactExistsError(f"{info.name} exists already in {self.location}")
            return self._put(self._key(info.name), data, info)

    def stage(self, staging_id: str, data: bytes, info: ArtifactInfo) -> ArtifactInfo:
        with self._io(f"cannot stage {info.name}"):
            return self._put(self._staging_prefix(staging_id) + _checked(info.name), data, info)

    def _keys(self, prefix: str) -> Iterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
            for obj in page.get("Contents", []) or []:
                yield str(obj["Key"])

    def publish(self, staging_id: str) -> list[ArtifactInfo]:
        staging = self._staging_prefix(staging_id)
        with self._io("cannot publish"):
            names = sorted(k[len(staging) :] for k in self._keys(staging) if parse_artifact_name(k[len(staging) :]))
            infos = [i for i in (self._info_of(n, self._head(staging + n)) for n in names) if i is not None]
            clash = [i.name for i in infos if self._head(self._key(i.name)) is not None]
            if clash:
                raise ArtifactExistsError(f"{clash[0]} exists already in {self.location}; nothing was published")
            done: list[ArtifactInfo] = []
            try:
                for info in infos:
                    self.client.copy_object(
                        Bucket=self.bucket,
                        Key=self._key(info.name),
                        CopySource={"Bucket": self.bucket, "Key": staging + info.name},
                        MetadataDirective="COPY",
                    )
                    done.append(info)
                    if self._info_of(info.name, self._head(self._key(info.name))) is None:
                        raise StoreError(f"{info.name}: the published copy does not match the staged artifact")
            except BaseException:
                for info in done:
                    with contextlib.suppress(Exception):
                        self.client.delete_object(Bucket=self.bucket, Key=self._key(info.name))
                raise
        self.discard(staging_id)
        return infos

    def discard(self, staging_id: str) -> None:
        staging = self._staging_prefix(staging_id)
        with self._io(f"cannot remove the staging area {staging_id}"):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=staging):
                keys = [{"Key": obj["Key"]} for obj in page.get("Contents", []) or []]
                if keys:
                    self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": keys, "Quiet": True})

    def staging_areas(self) -> list[str]:
        base = f"{self.prefix}{STAGING_DIR}/"
        out: list[str] = []
        with self._io("cannot list the staging areas"):
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=base, Delimiter="/"):
                for common in page.get("CommonPrefixes", []) or []:
                    staging_id = str(common["Prefix"])[len(base) :].rstrip("/")
                    if staging_started(staging_id) is not None:
                        out.append(staging_id)
        return sorted(out)

    def list(self) -> list[ArtifactInfo]:
        with self._io("cannot list artifacts"):
            names = sorted(
                k[len(self.prefix) :] for k in self._keys(self.prefix) if parse_artifact_name(k[len(self.prefix) :])
            )
            return [i for i in (self._info_of(n, self._head(self._key(n))) for n in names) if i is not None]

    def info(self, name: str) -> ArtifactInfo:
        with self._io(f"cannot read {name}"):
            info = self._info_of(name, self._head(self._key(_checked(name))))
        if info is None:
            raise ArtifactNotFoundError(f"no artifact {name} in {self.location}")
        return info

    def get(self, name: str, max_bytes: int | None = None) -> tuple[bytes, ArtifactInfo]:
        info = self.info(name)
        with self._io(f"cannot read {name}"):
            resp = self.client.get_object(Bucket=self.bucket, Key=self._key(name))
            body = resp["Body"]
            try:
                if max_bytes is not None and int(resp.get("ContentLength", -1)) > max_bytes:
                    raise _too_large(name, self.location, max_bytes)
                data = body.read() if max_bytes is None else body.read(max_bytes + 1)
            finally:
                body.close()
        if max_bytes is not None and len(data) > max_bytes:
            raise _too_large(name, self.location, max_bytes)
        return bytes(data), info

    def delete(self, name: str) -> ArtifactInfo:
        info = self.info(name)
        with self._io(f"cannot delete {name}"):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(name))
        return info

    def close(self) -> None:
        close = getattr(self.client, "close", None)
        if callable(close):
            close()


# ------------------------------------------------------------------------------------------ factory


def open_store(
    location: str,
    *,
    endpoint_url: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    region: str | None = None,
) -> ArtifactStore:
    """A store from `DIR` or `s3://BUCKET/PREFIX` (boto3 client with the given endpoint and keys;
    without keys, boto3's own chain: environment, config files, instance roles)."""
    if not location.startswith("s3://"):
        if "://" in location:
            raise ExportConfigError(f"the store must be a directory or s3://BUCKET/PREFIX, not {location!r}")
        if ".." in location.replace("\\", "/").split("/"):
            raise ExportConfigError(f"the store {location!r} must not contain a '..' segment: name the folder itself")
        return DirectoryStore(Path(location))
    bucket, _, prefix = location[len("s3://") :].partition("/")
    if not bucket:
        raise ExportConfigError(f"no bucket in {location!r} (s3://BUCKET/PREFIX)")
    import boto3
    from botocore.config import Config

    session = boto3.session.Session()
    client = session.client(
        "s3",
        endpoint_url=endpoint_url or None,
        aws_access_key_id=access_key_id or None,
        aws_secret_access_key=secret_access_key or None,
        region_name=region or session.region_name or "us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 6, "mode": "standard"}),
    )
    return S3ArtifactStore(client, bucket, prefix, redactor=Redactor([secret_access_key]))
