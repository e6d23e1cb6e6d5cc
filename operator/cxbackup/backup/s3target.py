"""An S3 bucket + prefix as the backup target (the customer's own storage).

Files are objects `<targetS3Prefix><relative path>`. A writer spools to a local temporary file and
uploads it on commit(), so an object appears complete or not at all (an S3 PUT or multipart upload is
atomic) and a killed run leaves nothing under a final key; there are no temporary objects to clean up.
(Aborted multipart uploads are the bucket's lifecycle rule's business.)

Lock: the object `<prefix>.rcbs-lock-<i>-of-<N>` is created with a conditional PUT (`If-None-Match: *`),
holding the holder's pid/host/start and an expiry. While the run lasts a heartbeat thread renews the
expiry with `If-Match: <etag>`; release deletes the object. A lock whose expiry passed (its holder died
without releasing it) is taken over. A server without conditional writes (HTTP 501) degrades to a
best-effort check-then-write, with a warning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

import botocore.exceptions

from cxbackup.backup.errors import LockHeldError, TargetError
from cxbackup.backup.layout import check_relative_path
from cxbackup.backup.targets import LockHolder, TargetWriter

__all__ = ["S3BucketTarget"]

log = logging.getLogger(__name__)

LOCK_TTL_SECONDS = 600.0


def _code(exc: botocore.exceptions.ClientError) -> str:
    err = exc.response.get("Error", {})
    return str(err.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))


class _S3Writer:
    def __init__(self, target: S3BucketTarget, key: str) -> None:
        self._target = target
        self._key = key
        self._spool: IO[bytes] | None = tempfile.TemporaryFile(prefix="cxbackup-")  # noqa: SIM115
        self.bytes_written = 0

    def write(self, data: bytes) -> None:
        assert self._spool is not None, "writer already closed"
        self._spool.write(data)
        self.bytes_written += len(data)

    def commit(self) -> None:
        assert self._spool is not None, "writer already closed"
        spool, self._spool = self._spool, None
        try:
            spool.flush()
            spool.seek(0)
            self._target.client.upload_fileobj(spool, self._target.bucket, self._key)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise TargetError(f"upload to s3://{self._target.bucket}/{self._key} failed: {exc}") from exc
        finally:
            spool.close()

    def abort(self) -> None:
        if self._spool is not None:
            self._spool.close()
            self._spool = None


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
    ) -> None:
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.lstrip("/")
        self.description = f"s3://{bucket}/{self.prefix}"
        self._clock = clock
        self._ttl = lock_ttl

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
            raise TargetError(f"cannot check s3://{self.bucket}/{self.key(path)}: {exc}") from exc
        return int(head["ContentLength"])

    def exists(self, path: str, size: int | None = None) -> bool:
        actual = self.size_of(path)
        return actual is not None and (size is None or actual == size)

    def open_writer(self, path: str, *, sync_dir: bool = True) -> TargetWriter:
        return _S3Writer(self, self.key(path))

    def read_bytes(self, path: str) -> bytes:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self.key(path))["Body"]
            return bytes(body.read())
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise TargetError(f"cannot read s3://{self.bucket}/{self.key(path)}: {exc}") from exc

    def read_text(self, path: str) -> str | None:
        if self.size_of(path) is None:
            return None
        return self.read_bytes(path).decode("utf-8")

    def write_text_atomic(self, path: str, text: str) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self.key(path), Body=text.encode("utf-8"))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise TargetError(f"cannot write s3://{self.bucket}/{self.key(path)}: {exc}") from exc

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
        text = obj["Body"].read().decode("utf-8", "replace")
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
