"""An S3 bucket + prefix as the backup target (the customer's own storage).

Files are objects `<targetS3Prefix><relative path>`. A writer streams: it buffers at most one part
(`part_size`, S3_PART_BYTES = 8 MiB) in memory and nothing on disk. An object that fits in one part is
one PUT on commit(); a larger one becomes a multipart upload whose parts are sent while the data comes
in, and which commit() completes. Either way the object appears complete or not at all (a PUT and the
completion of a multipart upload are atomic), only on commit(), so the worker still verifies the
source's size and MD5 before anything is visible, and a killed run leaves nothing under a final key.
Every PUT and part carries its Content-MD5, so S3 refuses bytes damaged on the way; a completed
multipart upload is checked with a HEAD against the bytes written. abort() aborts the multipart upload
(one a killed run left behind is the bucket's lifecycle rule's business: AbortIncompleteMultipartUpload).
Small reads (the state file, the lock) read at most MAX_SMALL_OBJECT_BYTES.

Object Lock (`targetS3ObjectLock`): each recording's objects (metadata and media) are written with
ObjectLockMode and ObjectLockRetainUntilDate = the recording's start + `retentionPeriod`, in the PUT or
when the multipart upload is created, so the version is immutable from the moment it exists. The state
file and the lock are rewritten and never locked. `check_object_lock` refuses a bucket without Object Lock
before anything is written.

Lock: the object `<prefix>.rcbs-lock-<i>-of-<N>` is created with a conditional PUT (`If-None-Match: *`),
holding the holder's pid/host/start and an expiry. While the run lasts a heartbeat thread renews the
expiry with `If-Match: <etag>`; release deletes the object. A lock whose expiry passed (its holder died
without releasing it) is taken over. A server without conditional writes (HTTP 501) degrades to a
best-effort check-then-write, with a warning.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import botocore.exceptions

from cxbackup.backup.errors import ConfigError, LockHeldError, TargetError
from cxbackup.backup.layout import check_relative_path
from cxbackup.backup.targets import FolderRemoval, LockHolder, TargetWriter, metadata_last
from cxbackup.core.redact import snippet

__all__ = ["MAX_SMALL_OBJECT_BYTES", "S3_PART_BYTES", "S3BucketTarget"]

log = logging.getLogger(__name__)

LOCK_TTL_SECONDS = 600.0
S3_PART_BYTES = 8 * 1024 * 1024
"""Part size of multipart uploads, and the most a writer holds in memory (S3's minimum part is 5 MiB)."""
MAX_PARTS = 10_000  # S3's limit: with 8 MiB parts, objects up to 78 GiB
MAX_SMALL_OBJECT_BYTES = 64 * 1024
"""The most read of the state file or the lock object (each is under 1 KB)."""
_BOTO_ERRORS = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


def _code(exc: botocore.exceptions.ClientError) -> str:
    err = exc.response.get("Error", {})
    return str(err.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


def _md5_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode("ascii")


class _S3Writer:
    """Streams one object (see the module docstring)."""

    def __init__(self, target: S3BucketTarget, key: str, part_size: int, retain_until: datetime | None = None) -> None:
        self._target = target
        self._key = key
        self._lock: dict[str, Any] = target.lock_arguments(retain_until)
        self._part_size = part_size
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []
        self._closed = False
        self.bytes_written = 0

    @property
    def _where(self) -> str:
        return f"s3://{self._target.bucket}/{self._key}"

    def _failed(self, what: str, exc: Exception) -> TargetError:
        return TargetError(f"{what} {self._where} failed: {snippet(str(exc), 300)}")

    def write(self, data: bytes) -> None:
        assert not self._closed, "writer already closed"
        self._buffer += data
        self.bytes_written += len(data)
        while len(self._buffer) >= self._part_size:
            part = bytes(self._buffer[: self._part_size])
            del self._buffer[: self._part_size]
            self._upload_part(part)

    def _upload_part(self, part: bytes) -> None:
        client, bucket = self._target.client, self._target.bucket
        try:
            if self._upload_id is None:
                created = client.create_multipart_upload(Bucket=bucket, Key=self._key, **self._lock)
                self._upload_id = str(created["UploadId"])
            number = len(self._parts) + 1
            if number > MAX_PARTS:
                raise TargetError(f"{self._where}: more than {MAX_PARTS} parts of {self._part_size} bytes")
            resp = client.upload_part(
                Bucket=bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=part,
                ContentMD5=_md5_b64(part),
            )
        except _BOTO_ERRORS as exc:
            raise self._failed("upload to", exc) from exc
        self._parts.append({"PartNumber": number, "ETag": resp["ETag"]})

    def commit(self) -> None:
        assert not self._closed, "writer already closed"
        client, bucket = self._target.client, self._target.bucket
        try:
            if self._upload_id is None:
                body = bytes(self._buffer)
                self._buffer = bytearray()
                try:
                    client.put_object(Bucket=bucket, Key=self._key, Body=body, ContentMD5=_md5_b64(body), **self._lock)
                except _BOTO_ERRORS as exc:
                    raise self._failed("upload to", exc) from exc
            else:
                if self._buffer:
                    part = bytes(self._buffer)
                    self._buffer = bytearray()
                    self._upload_part(part)
                try:
                    client.complete_multipart_upload(
                        Bucket=bucket, Key=self._key, UploadId=self._upload_id, MultipartUpload={"Parts": self._parts}
                    )
                    self._upload_id = None
                    stored = int(client.head_object(Bucket=bucket, Key=self._key)["ContentLength"])
                except _BOTO_ERRORS as exc:
                    raise self._failed("completing the upload to", exc) from exc
                if stored != self.bytes_written:
                    with contextlib.suppress(*_BOTO_ERRORS):
                        client.delete_object(Bucket=bucket, Key=self._key)
                    raise TargetError(f"{self._where}: stored {stored} bytes of the {self.bytes_written} written")
        except BaseException:
            self.abort()
            raise
        self._closed = True

    def abort(self) -> None:
        self._buffer = bytearray()
        self._closed = True
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is not None:
            with contextlib.suppress(*_BOTO_ERRORS):
                self._target.client.abort_multipart_upload(
                    Bucket=self._target.bucket, Key=self._key, UploadId=upload_id
                )


class S3BucketTarget:
    """Objects under `prefix` in `bucket`, through an injected boto3 S3 client."""

    def __init__(
        self,
        client: Any,
        bucket: str,
        prefix: str = "",
        *,
        clock: Callable[[], float] = time.time,
        lock_ttl: float = LOCK_TTL_SECONDS,
        part_size: int = S3_PART_BYTES,
        object_lock: str | None = None,
    ) -> None:
        if part_size < 5 * 1024 * 1024:
            raise ValueError("S3 parts are at least 5 MiB")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.part_size = part_size
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.lstrip("/")
        self.description = f"s3://{bucket}/{self.prefix}"
        self._clock = clock
        self._ttl = lock_ttl
        self.object_lock = object_lock
        """GOVERNANCE or COMPLIANCE: recordings are written under S3 Object Lock in this mode."""

    def lock_arguments(self, retain_until: datetime | None) -> dict[str, Any]:
        """The Object Lock arguments of a PUT or multipart upload of a recording retained until then."""
        if self.object_lock is None or retain_until is None:
            return {}
        return {"ObjectLockMode": self.object_lock, "ObjectLockRetainUntilDate": retain_until}

    def check_object_lock(self) -> None:
        """ConfigError unless the bucket has Object Lock enabled (a bucket gets it only when created)."""
        if self.object_lock is None:
            return
        failed = f"reading the Object Lock configuration of s3://{self.bucket} failed"
        try:
            conf = self.client.get_object_lock_configuration(Bucket=self.bucket)["ObjectLockConfiguration"]
            enabled = conf.get("ObjectLockEnabled") == "Enabled"
        except botocore.exceptions.ClientError as exc:
            if _code(exc) not in ("ObjectLockConfigurationNotFoundError", "InvalidRequest", "NotImplemented"):
                raise TargetError(f"{failed}: {snippet(str(exc), 300)}") from exc
            enabled = False
        except botocore.exceptions.BotoCoreError as exc:
            raise TargetError(f"{failed}: {snippet(str(exc), 300)}") from exc
        if not enabled:
            raise ConfigError(
                f"targetS3ObjectLock={self.object_lock}: the bucket {self.bucket} has no Object Lock; S3 enables it "
                "only when a bucket is created (aws s3api create-bucket --object-lock-enabled-for-bucket)"
            )

    def __repr__(self) -> str:
        return f"S3BucketTarget({self.description!r})"

    def key(self, path: str) -> str:
        return self.prefix + check_relative_path(path)

    def size_of(self, path: str) -> int | None:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.key(path))
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise TargetError(f"cannot check s3://{self.bucket}/{self.key(path)}: {_code(exc)}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise TargetError(f"cannot check s3://{self.bucket}/{self.key(path)}: {snippet(str(exc), 300)}") from exc
        return int(head["ContentLength"])

    def exists(self, path: str, size: int | None = None) -> bool:
        actual = self.size_of(path)
        return actual is not None and (size is None or actual == size)

    def open_writer(self, path: str, *, sync_dir: bool = True, retain_until: datetime | None = None) -> TargetWriter:
        return _S3Writer(self, self.key(path), self.part_size, retain_until)

    def read_bytes(self, path: str, max_bytes: int | None = None) -> bytes:
        """The object's bytes; TargetError, without reading on, when it holds more than `max_bytes`."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key(path))["Body"]
            try:
                data = bytes(body.read() if max_bytes is None else body.read(max_bytes + 1))
            finally:
                body.close()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise TargetError(f"cannot read s3://{self.bucket}/{self.key(path)}: {snippet(str(exc), 300)}") from exc
        if max_bytes is not None and len(data) > max_bytes:
            raise TargetError(f"s3://{self.bucket}/{self.key(path)} holds more than {max_bytes} bytes; not read")
        return data

    def download_to(self, path: str, dest: Path) -> bool:
        """Copy object `path` into the new local file `dest` (streamed, owner-only); False when there is no
        such object."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key(path))["Body"]
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise TargetError(f"cannot read s3://{self.bucket}/{self.key(path)}: {_code(exc)}") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise TargetError(f"cannot read s3://{self.bucket}/{self.key(path)}: {snippet(str(exc), 300)}") from exc
        try:
            fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                while chunk := body.read(1 << 20):
                    out.write(chunk)
        except _BOTO_ERRORS as exc:
            raise TargetError(f"reading s3://{self.bucket}/{self.key(path)} failed: {snippet(str(exc), 300)}") from exc
        finally:
            body.close()
        return True

    def list_folder(self, directory: str) -> dict[str, int]:
        """{name: size} of the objects directly under `directory`."""
        prefix = self.key(directory) + "/"
        found: dict[str, int] = {}
        try:
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=prefix, Delimiter="/"
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    found[str(obj["Key"])[len(prefix) :]] = int(obj["Size"])
        except _BOTO_ERRORS as exc:
            raise TargetError(f"cannot list s3://{self.bucket}/{prefix}: {snippet(str(exc), 300)}") from exc
        return found

    def iter_files(self) -> Iterator[tuple[str, int]]:
        """(path relative to the target, size) of every object under the prefix, in key order."""
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
                for obj in page.get("Contents", []):
                    yield str(obj["Key"])[len(self.prefix) :], int(obj["Size"])
        except _BOTO_ERRORS as exc:
            raise TargetError(f"cannot list {self.description}: {snippet(str(exc), 300)}") from exc

    def delete(self, path: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(path))
        except _BOTO_ERRORS as exc:
            raise TargetError(f"cannot delete s3://{self.bucket}/{self.key(path)}: {snippet(str(exc), 300)}") from exc

    def remove_folder(self, directory: str) -> FolderRemoval:
        """Delete every object under `directory/`, every version of it (a versioned bucket keeps old
        versions of a deleted key; a recording is gone only when they are gone too), the metadata file's
        last. A version S3 refuses to delete (Object Lock retention not over) is reported in `kept`."""
        if not directory.strip("/"):
            raise ValueError("refusing to remove the target's root")
        prefix = self.key(directory) + "/"
        versions: list[tuple[str, str | None, int]] = []
        try:
            pages = self.client.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=prefix)
            for page in pages:
                for v in page.get("Versions", []):
                    versions.append((str(v["Key"]), v.get("VersionId"), int(v.get("Size", 0))))
                for m in page.get("DeleteMarkers", []):
                    versions.append((str(m["Key"]), m.get("VersionId"), 0))
        except botocore.exceptions.ClientError as exc:
            if _code(exc) not in ("NotImplemented", "501"):
                raise TargetError(f"cannot list s3://{self.bucket}/{prefix}: {snippet(str(exc), 300)}") from exc
            versions = [(prefix + name, None, size) for name, size in self.list_folder(directory).items()]
        except botocore.exceptions.BotoCoreError as exc:
            raise TargetError(f"cannot list s3://{self.bucket}/{prefix}: {snippet(str(exc), 300)}") from exc
        names = metadata_last(directory, sorted({key[len(prefix) :] for key, _, _ in versions}))
        order = {name: i for i, name in enumerate(names)}
        versions.sort(key=lambda v: order[v[0][len(prefix) :]])
        meta_key = prefix + names[-1] if names else None
        # the metadata file's versions in a request of their own, after everything else is gone
        groups = [[v for v in versions if v[0] != meta_key], [v for v in versions if v[0] == meta_key]]
        files = removed = 0
        kept: list[str] = []
        for group in groups:
            for start in range(0, len(group), 1000):
                batch = group[start : start + 1000]
                sizes = {(k, vid): size for k, vid, size in batch}
                objects = [{"Key": k, **({"VersionId": vid} if vid else {})} for k, vid, _ in batch]
                try:
                    answer = self.client.delete_objects(Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True})
                except _BOTO_ERRORS as exc:
                    raise TargetError(
                        f"cannot delete under s3://{self.bucket}/{prefix}: {snippet(str(exc), 300)}"
                    ) from exc
                failed = {(str(e["Key"]), e.get("VersionId")): e for e in answer.get("Errors", [])}
                for (key, vid), size in sizes.items():
                    error = failed.get((key, vid)) or failed.get((key, None))
                    if error is None:
                        files += 1
                        removed += size
                    else:
                        kept.append(
                            f"{key[len(self.prefix) :]}: {error.get('Code')} {error.get('Message', '')}".strip()
                        )
            if kept:  # the metadata file stays while a media file could not be removed
                break
        return FolderRemoval(files, removed, tuple(kept))

    def read_text(self, path: str) -> str | None:
        if self.size_of(path) is None:
            return None
        return self.read_bytes(path, MAX_SMALL_OBJECT_BYTES).decode("utf-8")

    def write_text_atomic(self, path: str, text: str) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.key(path), Body=text.encode("utf-8"))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise TargetError(f"cannot write s3://{self.bucket}/{self.key(path)}: {snippet(str(exc), 300)}") from exc

    def remove_stale_temp(self, directory: str, only_for: str | None = None) -> int:
        return 0

    def scan_folder(self, directory: str) -> dict[str, int] | None:
        return None  # objects appear only whole (PUT on commit): nothing to clean; HEAD per file

    # -- lock -------------------------------------------------------------------------------------

    def _lock_body(self, holder: LockHolder) -> bytes:
        data = json.loads(holder.to_json())
        data["expires"] = self._clock() + self._ttl
        return json.dumps(data, sort_keys=True).encode()

    def _put_lock(self, key: str, holder: LockHolder, **conditions: str) -> str:
        resp = self.client.put_object(Bucket=self.bucket, Key=key, Body=self._lock_body(holder), **conditions)
        return str(resp.get("ETag", ""))

    def _current_lock(self, key: str) -> tuple[str, float] | None:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        body = obj["Body"]
        try:
            text = body.read(MAX_SMALL_OBJECT_BYTES).decode("utf-8", "replace")  # a longer one is not a lock of ours
        finally:
            body.close()
        try:
            expires = float(json.loads(text).get("expires", 0))
        except (ValueError, AttributeError, TypeError):
            expires = 0.0
        return text, expires

    def _acquire(self, key: str, holder: LockHolder) -> str:
        for _ in range(3):
            try:
                return self._put_lock(key, holder, IfNoneMatch="*")
            except botocore.exceptions.ClientError as exc:
                code = _code(exc)
                if code in ("501", "NotImplemented"):
                    log.warning("%s does not support conditional writes; the lock is best-effort", self.description)
                    if self._current_lock(key) is None:
                        return self._put_lock(key, holder)
                elif code not in ("412", "PreconditionFailed", "409", "ConditionalRequestConflict"):
                    raise
            current = self._current_lock(key)
            if current is None:
                continue
            text, expires = current
            if expires > self._clock():
                raise LockHeldError(
                    f"another instance is already running with target {self.description} and shard "
                    f"{holder.shard}: {LockHolder.describe_json(text)} holds s3://{self.bucket}/{key} "
                    f"(it expires unless renewed in {expires - self._clock():.0f}s)"
                )
            log.warning(
                "taking over the expired lock s3://%s/%s from %s", self.bucket, key, LockHolder.describe_json(text)
            )
            self.client.delete_object(Bucket=self.bucket, Key=key)
        raise LockHeldError(f"could not take the lock s3://{self.bucket}/{key}: it keeps changing")

    @contextlib.contextmanager
    def lock(self, name: str, holder: LockHolder) -> Iterator[None]:
        key = self.key(name)
        try:
            etag = self._acquire(key, holder)
        except botocore.exceptions.ClientError as exc:
            raise TargetError(f"cannot create the lock s3://{self.bucket}/{key}: {_code(exc)}") from exc
        stop = threading.Event()
        state = {"etag": etag}

        def renew() -> None:
            while not stop.wait(self._ttl / 3):
                try:
                    state["etag"] = self._put_lock(key, holder, IfMatch=state["etag"])
                except botocore.exceptions.ClientError as exc:
                    log.error("lost the lock s3://%s/%s (%s)", self.bucket, key, _code(exc))
                    return
                except botocore.exceptions.BotoCoreError as exc:
                    log.warning("could not renew the lock s3://%s/%s: %s", self.bucket, key, exc)

        thread = threading.Thread(target=renew, name="rcbs-lock-renew", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join(timeout=5)
            with contextlib.suppress(botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                self.client.delete_object(Bucket=self.bucket, Key=key)
