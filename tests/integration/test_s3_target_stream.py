"""The S3 backup target streams against a real S3 server (moto, in a child process, as the emulator runs
it): a 64 MiB object goes up as a multipart upload while it is written, with memory bounded by the part
size, appears only on commit, complete and intact; an aborted one leaves nothing behind."""

from __future__ import annotations

import base64
import hashlib
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cxbackup.backup.errors import TargetError
from cxbackup.backup.s3source import S3Options, make_s3_client
from cxbackup.backup.s3target import S3_PART_BYTES, S3BucketTarget
from cxbackup_dev.emulator.s3 import MotoProcess

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
BUCKET = "customer-backup"


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    moto = MotoProcess(tmp_path_factory.mktemp("moto") / "moto.log")
    moto.start()
    try:
        options = S3Options(
            access_key_id="AKIATESTTARGET",
            secret_access_key="test-secret",  # moto accepts any
            endpoint_url=moto.url,
            region="us-east-1",
            isolate_from_env=True,
        )
        client = make_s3_client(options)  # the client the worker builds for an S3 target
        client.create_bucket(Bucket=BUCKET)
        yield client
    finally:
        moto.stop()


def chunks(total: int, size: int = MiB) -> Iterator[bytes]:
    """`total` bytes as the worker writes them (1 MiB chunks), each chunk different, made on the fly."""
    for i in range(total // size):
        yield hashlib.sha256(i.to_bytes(8, "big")).digest() * (size // 32)


def uploads(client: Any, key: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = client.list_multipart_uploads(Bucket=BUCKET, Prefix=key).get("Uploads", [])
    return found


def stored_sha256(client: Any, key: str) -> str:
    digest = hashlib.sha256()
    body = client.get_object(Bucket=BUCKET, Key=key)["Body"]
    for piece in body.iter_chunks(MiB):
        digest.update(piece)
    return digest.hexdigest()


def test_a_64_mib_object_is_streamed_as_a_multipart_upload_with_bounded_memory(s3: Any) -> None:
    target = S3BucketTarget(s3, BUCKET, "rcbs")
    path = "2026/08/24/10/REC1/screen.mp4.bin"
    key = target.key(path)
    size = 64 * MiB
    expected = hashlib.sha256()
    s3.head_bucket(Bucket=BUCKET)  # the client is warmed up before memory is measured
    tracemalloc.start()
    try:
        writer = target.open_writer(path)
        for n, chunk in enumerate(chunks(size), start=1):
            writer.write(chunk)
            expected.update(chunk)
            if n == 3 * S3_PART_BYTES // MiB + 1:  # parts are on their way while the object is written
                (upload,) = uploads(s3, key)
                parts = s3.list_parts(Bucket=BUCKET, Key=key, UploadId=upload["UploadId"]).get("Parts", [])
                assert len(parts) == 3 and all(p["Size"] == S3_PART_BYTES for p in parts)
                assert target.size_of(path) is None  # nothing visible before commit
        assert writer.bytes_written == size
        writer.commit()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 4 * S3_PART_BYTES, f"peak {peak / MiB:.1f} MiB while uploading {size // MiB} MiB"
    head = s3.head_object(Bucket=BUCKET, Key=key)
    assert head["ContentLength"] == size and head["ETag"].strip('"').endswith(f"-{size // S3_PART_BYTES}")
    assert stored_sha256(s3, key) == expected.hexdigest()
    assert uploads(s3, key) == []


def test_an_aborted_or_failed_upload_leaves_nothing(s3: Any, tmp_path: Path) -> None:
    target = S3BucketTarget(s3, BUCKET, "rcbs")
    writer = target.open_writer("a/aborted.bin")
    for chunk in chunks(3 * S3_PART_BYTES):
        writer.write(chunk)
    assert len(uploads(s3, target.key("a/aborted.bin"))) == 1
    writer.abort()
    assert uploads(s3, target.key("a/aborted.bin")) == [] and target.size_of("a/aborted.bin") is None

    gone = S3BucketTarget(s3, "no-such-bucket", "rcbs")
    writer = gone.open_writer("b/failed.bin")
    with pytest.raises(TargetError, match=r"upload to s3://no-such-bucket/rcbs/b/failed\.bin failed: .*NoSuchBucket"):
        for chunk in chunks(2 * S3_PART_BYTES):
            writer.write(chunk)
    writer.abort()


def test_every_put_and_part_carries_its_content_md5(s3: Any) -> None:
    """S3 refuses bytes that do not match their Content-MD5: a small object is one PUT with it, and every
    part of a large one has its own."""
    sent: list[tuple[str, str | None]] = []

    def capture(request: Any, **_: Any) -> None:
        if request.method == "PUT":
            md5 = request.headers.get("Content-MD5")
            md5 = md5.decode() if isinstance(md5, bytes) else md5
            sent.append(("part" if "partNumber=" in request.url else "put", md5))

    s3.meta.events.register("before-send.s3", capture)
    try:
        target = S3BucketTarget(s3, BUCKET, "rcbs")
        writer = target.open_writer("c/REC.json")
        writer.write(b'{"id": "REC"}')
        writer.commit()
        writer = target.open_writer("c/REC.mp4.bin")
        for chunk in chunks(2 * S3_PART_BYTES + MiB):
            writer.write(chunk)
        writer.commit()
    finally:
        s3.meta.events.unregister("before-send.s3", capture)
    small = base64.b64encode(hashlib.md5(b'{"id": "REC"}', usedforsecurity=False).digest()).decode()
    assert sent[0] == ("put", small)
    assert [kind for kind, _ in sent[1:]] == ["part", "part", "part"] and all(md5 for _, md5 in sent[1:])
    assert s3.head_object(Bucket=BUCKET, Key=target.key("c/REC.mp4.bin"))["ContentLength"] == 2 * S3_PART_BYTES + MiB
