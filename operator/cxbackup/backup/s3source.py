"""The vendor's S3 storage as a source of media objects (boto3).

A media file of a record is the object `{prefix}{mediaId}` in the storage entry whose region equals the
record's region (else the first entry), as listed by the settings endpoint. Objects are CMS
enveloped-data; they are copied as they are.

Clients: one per AWS region, with the endpoint (`awsEndpointUrl` / AWS_ENDPOINT_URL, path-style
addressing when set), the proxy (awsProxyHost/awsProxyPort), payload signing (usePayloadSigning) and
botocore's standard retry mode (throttling, 5xx, connection errors) for the request itself. Errors
after the response headers (a reset or truncated body) surface while reading the stream and are
retried by the worker (`worker.copy_media`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import botocore.exceptions  # light (10 ms); boto3 itself is imported when a client is made

from cxbackup.backup.errors import MediaAuthError, MediaMissingError, MediaSourceError, RcbsError
from cxbackup.backup.vendor_client import StorageEntry, VendorSettings
from cxbackup.core.redact import snippet

__all__ = [
    "FINAL_CODES",
    "Fetched",
    "FileMediaSource",
    "MediaRef",
    "MediaSource",
    "MediaStream",
    "S3MediaSource",
    "S3Options",
    "classify_client_error",
    "classify_status",
    "make_s3_client",
    "md5_from_etag",
]

_AUTH_CODES = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken", "403"}
)
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
_MISSING_BUCKET = frozenset({"NoSuchBucket"})
FINAL_CODES = frozenset(c for c in _AUTH_CODES | _MISSING_CODES | _MISSING_BUCKET if not c.isdigit())
"""S3 error codes `classify_status` makes final (not retried), for a client that retries on its own."""


@dataclass(frozen=True)
class MediaRef:
    """Where one media object lives."""

    media_id: str
    bucket: str
    key: str
    aws_region: str | None


class MediaStream(Protocol):
    """An open media object: headers known, body read in chunks."""

    content_length: int
    md5_hex: str | None  # the body's MD5 when the server gives one (ETag of a plain PUT, Content-MD5)

    def chunks(self, size: int) -> Iterator[bytes]: ...

    def close(self) -> None: ...


class MediaSource(Protocol):
    def locate(self, region: str | None, media_id: str) -> MediaRef: ...

    def size(self, ref: MediaRef) -> int: ...

    def open(self, ref: MediaRef) -> MediaStream: ...


@dataclass(frozen=True)
class Fetched:
    """What the server said about an object downloaded into a file."""

    content_length: int  # -1 when the response had none
    md5_hex: str | None  # as MediaStream.md5_hex


@runtime_checkable
class FileMediaSource(MediaSource, Protocol):
    """A source that can write an object straight into a local file (crtsource.CrtS3MediaSource)."""

    def download_to(self, ref: MediaRef, path: str) -> Fetched: ...


@dataclass(frozen=True)
class S3Options:
    """How to reach an S3 service."""

    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    proxy_url: str | None = None
    payload_signing: bool = False
    max_pool_connections: int = 16
    max_attempts: int = 4
    # The target's client must not pick up the vendor's AWS_* keys or AWS_ENDPOINT_URL from the
    # environment (the worker's environment holds the vendor's): with isolate_from_env, missing keys
    # come from the rest of boto3's chain (IRSA, instance profile, config files) and a missing endpoint
    # means AWS.
    isolate_from_env: bool = False

    def __repr__(self) -> str:
        return f"S3Options(endpoint_url={self.endpoint_url!r}, region={self.region!r})"


def make_s3_client(options: S3Options, region: str | None = None) -> Any:
    """A boto3 S3 client for `options` (region argument overrides options.region when that is None).

    boto3 is imported here, not with the module: it costs about 0.3 s of CPU at start-up, and a backup
    whose media go through the CRT client into a folder needs it only to HEAD objects already there.
    """
    import boto3
    import botocore.config
    import botocore.session

    s3_conf: dict[str, Any] = {"payload_signing_enabled": options.payload_signing}
    if options.endpoint_url:
        s3_conf["addressing_style"] = "path"
    conf = botocore.config.Config(
        retries={"max_attempts": options.max_attempts, "mode": "standard"},
        max_pool_connections=options.max_pool_connections,
        proxies={"http": options.proxy_url, "https": options.proxy_url} if options.proxy_url else None,
        s3=s3_conf,
        connect_timeout=10,
        read_timeout=60,
        # Checksums only when the operation needs one: works with S3-compatible servers that
        # predate the flexible checksum headers.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        ignore_configured_endpoint_urls=True if options.isolate_from_env else None,
    )
    core = botocore.session.get_session()
    if options.isolate_from_env and not options.access_key_id:
        core.get_component("credential_provider").remove("env")
    session = boto3.session.Session(
        aws_access_key_id=options.access_key_id,
        aws_secret_access_key=options.secret_access_key,
        aws_session_token=options.session_token,
        botocore_session=core,
    )
    return session.client(
        "s3",
        region_name=options.region or region or "us-east-1",
        endpoint_url=options.endpoint_url,
        config=conf,
    )


def classify_status(status: int | str, code: str, message: str, what: str) -> RcbsError:
    """Map an S3 error response (HTTP status, S3 error code, message) to our error tree; of the
    server's message only a bounded, redacted snippet is kept."""
    status = str(status or "")
    code = snippet(code, 64)
    message = snippet(message or code or status)
    if code in _AUTH_CODES or status == "403":
        return MediaAuthError(f"S3 denied {what}: {code or status} {message}".strip())
    if code in _MISSING_CODES or status == "404":
        return MediaMissingError(f"{what} not found in S3 ({code or status})")
    if code in _MISSING_BUCKET:
        e = MediaSourceError(f"{what}: bucket does not exist ({code})")
        e.retryable = False
        return e
    return MediaSourceError(f"S3 error for {what}: {code or status} {message}".strip())


def classify_client_error(exc: Exception, what: str) -> RcbsError:
    """Map a botocore error to our error tree (message without secrets: botocore puts none in it)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "")
        return classify_status(status, str(err.get("Code", "")), str(err.get("Message") or ""), what)
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return MediaAuthError(f"no S3 credentials for {what}")
    return MediaSourceError(f"S3 transfer of {what} failed: {type(exc).__name__}: {snippet(str(exc), 300)}")


def md5_from_etag(etag: object, sse: object, sse_customer: object) -> str | None:
    """The body's MD5 when the ETag is one: a plain (not multipart) upload without SSE-KMS or SSE-C."""
    value = str(etag or "").strip('"').lower()
    if len(value) == 32 and all(c in "0123456789abcdef" for c in value) and sse != "aws:kms" and not sse_customer:
        return value
    return None


class _S3Stream:
    def __init__(self, response: dict[str, Any], what: str) -> None:
        self._body = response["Body"]
        self._what = what
        self.content_length = int(response.get("ContentLength", -1))
        self.md5_hex = md5_from_etag(
            response.get("ETag"), response.get("ServerSideEncryption"), response.get("SSECustomerAlgorithm")
        )

    def chunks(self, size: int) -> Iterator[bytes]:
        try:
            yield from self._body.iter_chunks(size)
        except (botocore.exceptions.BotoCoreError, OSError, ValueError) as exc:
            raise MediaSourceError(f"reading {self._what} failed: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        # closing a broken connection must not mask the real error
        with contextlib.suppress(Exception):
            self._body.close()


class S3MediaSource:
    """Media objects in the vendor's buckets, located through the settings' storage entries."""

    def __init__(self, settings: VendorSettings, options: S3Options) -> None:
        self._settings = settings
        self._options = options
        self._clients: dict[str | None, Any] = {}
        self._lock = threading.Lock()

    def client_for(self, entry: StorageEntry) -> Any:
        region = self._options.region or entry.aws_region
        with self._lock:
            if region not in self._clients:
                self._clients[region] = make_s3_client(self._options, region)
            return self._clients[region]

    def region_of(self, ref: MediaRef) -> str:
        """The region requests for `ref` are signed for."""
        return self._options.region or ref.aws_region or "us-east-1"

    def locate(self, region: str | None, media_id: str) -> MediaRef:
        entry = self._settings.storage_for(region)
        return MediaRef(
            media_id=media_id, bucket=entry.bucket, key=entry.prefix + media_id, aws_region=entry.aws_region
        )

    def _client(self, ref: MediaRef) -> Any:
        for entry in self._settings.storage:
            if entry.bucket == ref.bucket:
                return self.client_for(entry)
        return self.client_for(self._settings.storage[0])

    def size(self, ref: MediaRef) -> int:
        what = f"s3://{ref.bucket}/{ref.key}"
        try:
            head = self._client(ref).head_object(Bucket=ref.bucket, Key=ref.key)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise classify_client_error(exc, what) from exc
        return int(head["ContentLength"])

    def open(self, ref: MediaRef) -> MediaStream:
        what = f"s3://{ref.bucket}/{ref.key}"
        try:
            response = self._client(ref).get_object(Bucket=ref.bucket, Key=ref.key)
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise classify_client_error(exc, what) from exc
        return _S3Stream(response, what)
