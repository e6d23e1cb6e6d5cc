"""Run `cxbackup download` with proposed changes applied as monkeypatches (bench only; operator/ is unchanged).

    python bench/whatif.py PATCHES -- download -config FILE ...

PATCHES is a comma-separated list (or "none"):

- dirs:     LocalDirectoryTarget.resolve resolves the parent folder once (cached) instead of calling
            Path.resolve() (a realpath walk: one lstat per path component) for every file and check.
- dirsync:  one directory fsync per recording (after `<callUUID>.json`, the last rename in the folder)
            instead of one after every file; the files themselves are still fsynced.
- nofsync:  no fsync at all (what the peer tools do; not a proposal, a reference).
- urllib3:  GET media through a shared urllib3 pool with a presigned URL instead of botocore's
            get_object (signing stays botocore's; the request/response machinery goes).

The numbers tell how much each proposed change would gain, measured on the same data as the
throughput benchmark.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any


def _patch_dirs() -> None:
    from cxbackup.backup import targets
    from cxbackup.backup.errors import UnsafePathError

    original = targets.LocalDirectoryTarget.resolve

    @lru_cache(maxsize=4096)
    def _real_dir(root: Path, rel_dir: str) -> Path:
        full = (root / rel_dir).resolve()
        if not full.is_relative_to(root):
            raise UnsafePathError(f"{rel_dir!r} resolves outside the target ({full})")
        return full

    def resolve(self: Any, path: str) -> Path:
        rel = targets.check_relative_path(path)
        rel_dir, _, name = str(rel).rpartition("/")
        if not name or name in (".", ".."):
            return original(self, path)
        return _real_dir(self.root, rel_dir) / name

    targets.LocalDirectoryTarget.resolve = resolve  # type: ignore[method-assign]


def _patch_commit(*, dir_sync: bool, file_sync: bool) -> None:
    from cxbackup.backup import targets

    def commit(self: Any) -> None:
        f, self._file = self._file, None
        try:
            f.flush()
            if file_sync:
                os.fsync(f.fileno())
        finally:
            f.close()
        self._temp.replace(self._final)
        if dir_sync and self._final.name.endswith(".json"):
            targets._fsync_dir(self._final.parent)

    targets._LocalWriter.commit = commit  # type: ignore[method-assign]


def _patch_urllib3() -> None:
    import botocore.exceptions
    import urllib3

    from cxbackup.backup import s3source
    from cxbackup.backup.errors import MediaMissingError, SourceError

    pools: dict[int, urllib3.PoolManager] = {}
    lock = threading.Lock()

    class _Stream:
        def __init__(self, resp: Any, what: str) -> None:
            self._resp = resp
            self._what = what
            self.content_length = int(resp.headers.get("Content-Length", -1))
            etag = str(resp.headers.get("ETag", "")).strip('"').lower()
            self.md5_hex = etag if len(etag) == 32 and all(c in "0123456789abcdef" for c in etag) else None

        def chunks(self, size: int) -> Iterator[bytes]:
            try:
                yield from self._resp.stream(size)
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                raise SourceError(f"reading {self._what} failed: {exc}") from exc

        def close(self) -> None:
            self._resp.release_conn()

    signers: dict[tuple[int, str | None], Any] = {}

    def presigner(self: Any, ref: Any) -> Any:
        """A SigV4 client for presigning (botocore presigns S3 with SigV2 unless told otherwise)."""
        import boto3
        from botocore.config import Config

        key = (id(self), ref.aws_region)
        with lock:
            client = signers.get(key)
            if client is None:
                o = self._options
                client = signers[key] = boto3.session.Session().client(
                    "s3",
                    endpoint_url=o.endpoint_url,
                    aws_access_key_id=o.access_key_id,
                    aws_secret_access_key=o.secret_access_key,
                    aws_session_token=o.session_token,
                    region_name=o.region or ref.aws_region or "us-east-1",
                    config=Config(signature_version="s3v4", s3={"addressing_style": "path"}),
                )
        return client

    def open_(self: Any, ref: Any) -> Any:
        what = f"s3://{ref.bucket}/{ref.key}"
        client = presigner(self, ref)
        try:
            url = client.generate_presigned_url("get_object", Params={"Bucket": ref.bucket, "Key": ref.key})
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise s3source.classify_client_error(exc, what) from exc
        with lock:
            pool = pools.get(id(self))
            if pool is None:
                pool = pools[id(self)] = urllib3.PoolManager(maxsize=self._options.max_pool_connections)
        resp = pool.request("GET", url, preload_content=False, retries=False)
        if resp.status != 200:
            resp.release_conn()
            if resp.status == 404:
                raise MediaMissingError(f"{what}: not found")
            raise SourceError(f"{what}: HTTP {resp.status}")
        return _Stream(resp, what)

    s3source.S3MediaSource.open = open_  # type: ignore[method-assign]


def main() -> int:
    argv = sys.argv[1:]
    sep = argv.index("--")
    patches = {p for p in argv[0].split(",") if p and p != "none"} if sep > 0 else set()
    if "dirs" in patches:
        _patch_dirs()
    if "nofsync" in patches:
        _patch_commit(dir_sync=False, file_sync=False)
    elif "dirsync" in patches:
        _patch_commit(dir_sync=True, file_sync=True)
    if "urllib3" in patches:
        _patch_urllib3()
    if os.environ.get("BENCH_COUNT_CONNECTIONS"):
        import atexit

        import urllib3.connectionpool as cp

        made = [0]
        new_conn = cp.HTTPConnectionPool._new_conn

        def counting(self: Any) -> Any:
            made[0] += 1
            return new_conn(self)

        cp.HTTPConnectionPool._new_conn = counting  # type: ignore[method-assign]
        atexit.register(lambda: print(f"new HTTP connections: {made[0]}", file=sys.stderr))
    from cxbackup.cli import main as cli_main

    return cli_main(argv[sep + 1 :])


if __name__ == "__main__":
    sys.exit(main())
