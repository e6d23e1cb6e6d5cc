"""Media downloads through the AWS Common Runtime's S3 client (awscrt): the bytes go from the socket to
the file in native code, so Python (and its GIL) stays out of the byte path.

`CrtS3MediaSource` is an `S3MediaSource` (boto3 for HEAD and for streaming into an S3 target) that can
also `download_to(ref, path)`: one GET, written by the CRT straight into `path` (the target's temporary
file); the worker then checks the file's size against Content-Length and its MD5 against the ETag,
fsyncs and renames (worker.copy_media).

Addressing follows boto3's: with an endpoint (awsEndpointUrl / AWS_ENDPOINT_URL) path-style requests to
that host, else virtual-hosted `<bucket>.s3.<region>.amazonaws.com` over TLS (path-style for a bucket
name that is not a DNS label). Keys are percent-encoded once (S3's SigV4 rule), so keys with `+`, spaces
or non-ASCII characters are signed as the server reads them.

TLS: the system's trust store, or the CA bundle named by AWS_CA_BUNDLE (as boto3 reads it). The CRT's S3
client has no HTTP proxy support in its Python binding: with awsProxyHost, `select_media_transfer`
picks boto3.

Failures map to the same errors as boto3's (`s3source.classify_status`): 403 -> MediaAuthError,
404 -> MediaMissingError, other statuses and connection errors -> retryable MediaSourceError, failures to
write the file -> TargetError. The CRT writes an object part by part (the part size follows the
number of downloads in flight, see `crt_sizing`: 8 MiB down to 256 KiB); a download whose file has not
grown for `stall_seconds` (120) is cancelled and retried like a reset connection.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Literal

from cxbackup.backup.errors import ConfigError, MediaSourceError, RcbsError, TargetError
from cxbackup.backup.s3source import Fetched, MediaRef, S3MediaSource, S3Options, classify_status, md5_from_etag
from cxbackup.backup.vendor_client import VendorSettings
from cxbackup.core.tls import CA_CERTIFICATES

__all__ = ["CrtS3MediaSource", "CrtSizing", "MediaTransfer", "crt_available", "crt_sizing", "select_media_transfer"]

log = logging.getLogger(__name__)

MediaTransfer = Literal["auto", "crt", "boto3"]

_ERROR_CODE = re.compile(rb"<Code>([^<]{1,100})</Code>")
_ERROR_MESSAGE = re.compile(rb"<Message>([^<]{1,500})</Message>")  # classify_status keeps a short snippet
_DNS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
# CRT errors about the local file, not the network: the target's problem.
_FILE_ERRORS = ("AWS_ERROR_FILE", "AWS_ERROR_NO_SPACE", "AWS_ERROR_NO_PERMISSION", "AWS_ERROR_MAX_FDS_EXCEEDED")

# How the CRT S3 client is sized (see `crt_sizing`). Its own rules (aws-c-s3): every GET it starts holds
# one part buffer (part_size bytes, whatever the object's size) out of a pool of memory_limit less
# CRT_RESERVED_BYTES, which it keeps for itself (connections, bookkeeping) and never hands out; it opens
# throughput_target_gbps / 0.4 connections; an object larger than a part is fetched as parallel ranged
# GETs of one part each. Left at a fixed 256 MiB / 8 MiB parts / 10 Gbps, that admitted 16 GETs at
# once whatever `concurrency` said: on a link with a 80 ms round trip, the download took the round
# trips of 16 GETs at a time.
CRT_RESERVED_BYTES = 128 << 20
CRT_MIN_MEMORY_LIMIT = 256 << 20  # the least the CRT accepts
# Part buffers of all GETs in flight together, at any concurrency: the memory the downloads may hold.
BUFFER_BUDGET_BYTES = CRT_MIN_MEMORY_LIMIT - CRT_RESERVED_BYTES
MAX_PART_BYTES = 8 << 20  # the CRT's own default part size
MIN_PART_BYTES = 256 << 10  # a voice file (100-200 KB) still fits one GET
REQUESTS_PER_DOWNLOAD = 2  # GETs in flight per download slot: room for the ranged parts of large objects
_GBPS_PER_CONNECTION = 0.4  # the CRT's ratio of throughput target to connections


@dataclass(frozen=True)
class CrtSizing:
    """What the CRT S3 client is told, derived from the number of downloads in flight."""

    requests: int  # GETs (whole objects or ranges) in flight at most, each on its own connection
    part_bytes: int
    memory_limit: int
    throughput_target_gbps: float

    @property
    def buffer_bytes(self) -> int:
        """The most the part buffers can hold at once."""
        return self.memory_limit - CRT_RESERVED_BYTES


def crt_sizing(downloads: int) -> CrtSizing:
    """Size the CRT client so that `downloads` objects (the worker's `concurrency`: one download per
    thread) can be in flight at once, each with room for REQUESTS_PER_DOWNLOAD GETs, within a fixed
    budget of part buffers (BUFFER_BUDGET_BYTES, 128 MiB): the part size shrinks as downloads grow,
    from 8 MiB (up to 8 downloads) to 256 KiB (256, the most `concurrency` allows), and an object larger
    than a part is fetched as parallel ranged GETs. So the memory limit stays 256 MiB, of which at most
    128 MiB are part buffers, at every concurrency; only past 256 downloads would it grow (256 KiB per
    GET).

    The connections follow the requests: throughput target = requests x 0.4 Gbps (the CRT's ratio; once
    the memory limit is given, the target sets nothing else)."""
    requests = max(1, downloads) * REQUESTS_PER_DOWNLOAD
    part = BUFFER_BUDGET_BYTES // requests
    part = max(MIN_PART_BYTES, min(MAX_PART_BYTES, part & ~0xFFFF))  # whole 64 KiB
    memory = max(CRT_MIN_MEMORY_LIMIT, CRT_RESERVED_BYTES + requests * part)
    return CrtSizing(requests, part, memory, round(requests * _GBPS_PER_CONNECTION, 1))


_shared_lock = threading.Lock()
_shared_bootstrap: Any = None


def crt_available() -> bool:
    """True when awscrt (with its S3 client) can be imported."""
    try:
        import awscrt.s3  # noqa: F401
    except ImportError:
        return False
    return True


def select_media_transfer(requested: MediaTransfer, options: S3Options) -> Literal["crt", "boto3"]:
    """Which engine downloads media: `crt` or `boto3` as requested, `auto` = crt unless it cannot do
    what the configuration asks (a proxy, awscrt missing)."""
    if requested == "boto3":
        return "boto3"
    reasons = []
    if options.proxy_url:
        reasons.append("awsProxyHost is set (the CRT S3 client has no proxy support)")
    if not crt_available():
        reasons.append("awscrt is not installed")
    if requested == "crt" and reasons:
        raise ConfigError(f"mediaTransfer=crt cannot be used: {'; '.join(reasons)}; use auto or boto3")
    if reasons:
        log.info("Media transfer: boto3 (%s)", "; ".join(reasons))
        return "boto3"
    return "crt"


def _bootstrap() -> Any:
    """One event loop group (one thread per core) and resolver for the process."""
    global _shared_bootstrap
    from awscrt.io import ClientBootstrap, DefaultHostResolver, EventLoopGroup

    with _shared_lock:
        if _shared_bootstrap is None:
            elg = EventLoopGroup(0)
            _shared_bootstrap = ClientBootstrap(elg, DefaultHostResolver(elg))
        return _shared_bootstrap


@dataclass(frozen=True)
class _Address:
    host: str
    path: str


class _Progress:
    """Headers (from the CRT's callback) and the time the file last grew (polled while waiting: a
    per-chunk progress callback would take the GIL for every chunk)."""

    def __init__(self) -> None:
        self.status = 0
        self.headers: dict[str, str] = {}
        self.last = time.monotonic()
        self.size = -1

    def on_headers(self, status_code: int, headers: list[tuple[str, str]], **_: Any) -> None:
        self.status = status_code
        self.headers = {k.lower(): v for k, v in headers}
        self.last = time.monotonic()

    def stalled(self, path: str, limit: float) -> bool:
        """True when neither headers nor file growth were seen for `limit` seconds."""
        try:
            size = os.stat(path).st_size  # noqa: PTH116 - polled; a Path object per poll buys nothing
        except OSError:
            size = -1
        now = time.monotonic()
        if size != self.size:
            self.size, self.last = size, now
        return now - self.last > limit


class CrtS3MediaSource(S3MediaSource):
    """`S3MediaSource` plus `download_to`, which fetches through the CRT S3 client."""

    def __init__(
        self,
        settings: VendorSettings,
        options: S3Options,
        *,
        stall_seconds: float = 120.0,
        downloads: int = 16,
    ) -> None:
        """`downloads`: how many objects the caller fetches at once (the worker's `concurrency`); the
        CRT client is sized for them (`crt_sizing`)."""
        super().__init__(settings, options)
        self._crt_clients: dict[str, Any] = {}
        self._crt_lock = threading.Lock()
        self.stall_seconds = stall_seconds
        self.sizing = crt_sizing(downloads)
        endpoint = options.endpoint_url
        self._endpoint = urllib.parse.urlsplit(endpoint) if endpoint else None

    def _crt_client(self, region: str) -> Any:
        from awscrt import s3
        from awscrt.auth import AwsCredentialsProvider

        with self._crt_lock:
            client = self._crt_clients.get(region)
            if client is None:
                opts = self._options
                if not (opts.access_key_id and opts.secret_access_key):
                    raise MediaSourceError("the CRT S3 client needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
                creds = AwsCredentialsProvider.new_static(
                    opts.access_key_id, opts.secret_access_key, opts.session_token
                )
                tls = self._endpoint is None or self._endpoint.scheme.lower() == "https"
                client = s3.S3Client(
                    tls_connection_options=_tls_options() if tls else None,
                    bootstrap=_bootstrap(),
                    region=region,
                    credential_provider=creds,
                    tls_mode=s3.S3RequestTlsMode.ENABLED if tls else s3.S3RequestTlsMode.DISABLED,
                    throughput_target_gbps=self.sizing.throughput_target_gbps,
                    part_size=self.sizing.part_bytes,
                    memory_limit=self.sizing.memory_limit,
                    connect_timeout_ms=10_000,
                    # one retry policy for every download: the worker's (`retries`, with backoff)
                    retry_config=s3.S3RetryConfig(retry_mode=s3.S3RetryMode.NONE),
                )
                self._crt_clients[region] = client
            return client

    def address(self, ref: MediaRef) -> _Address:
        """Host header and request path of `ref` (boto3's addressing: path-style with an endpoint)."""
        key = urllib.parse.quote(ref.key, safe="/~")
        if self._endpoint is not None:
            base = self._endpoint.path.rstrip("/")
            return _Address(self._endpoint.netloc, f"{base}/{urllib.parse.quote(ref.bucket, safe='')}/{key}")
        region = self.region_of(ref)
        if _DNS_BUCKET.match(ref.bucket):
            return _Address(f"{ref.bucket}.s3.{region}.amazonaws.com", f"/{key}")
        return _Address(f"s3.{region}.amazonaws.com", f"/{urllib.parse.quote(ref.bucket, safe='')}/{key}")

    def download_to(self, ref: MediaRef, path: str) -> Fetched:
        """GET `ref` into the existing file `path` (truncated and written by the CRT)."""
        from awscrt import s3
        from awscrt.exceptions import AwsCrtError
        from awscrt.http import HttpHeaders, HttpRequest

        what = f"s3://{ref.bucket}/{ref.key}"
        client = self._crt_client(self.region_of(ref))
        addr = self.address(ref)
        request = HttpRequest("GET", addr.path, HttpHeaders([("Host", addr.host)]))
        progress = _Progress()
        try:
            meta = client.make_request(
                type=s3.S3RequestType.GET_OBJECT,
                request=request,
                recv_filepath=path,
                on_headers=progress.on_headers,
            )
        except (RuntimeError, AwsCrtError) as exc:
            raise _classify(exc, what, path) from exc
        future = meta.finished_future
        while True:
            try:
                future.result(timeout=1.0)
                break
            except TimeoutError:
                if progress.stalled(path, self.stall_seconds):
                    meta.cancel()
                    _wait_quietly(future)
                    raise MediaSourceError(f"{what}: no data for {self.stall_seconds:.0f}s; cancelled") from None
            except AwsCrtError as exc:
                raise _classify(exc, what, path) from exc
        h = progress.headers
        length = h.get("content-length")
        return Fetched(
            content_length=int(length) if length and length.isdigit() else -1,
            md5_hex=md5_from_etag(
                h.get("etag"), h.get("x-amz-server-side-encryption"),
                h.get("x-amz-server-side-encryption-customer-algorithm"),
            ),
        )  # fmt: skip


def _tls_options() -> Any:
    """TLS with the CA bundle in AWS_CA_BUNDLE when set (else None: the system trust store)."""
    from awscrt.io import ClientTlsContext, TlsContextOptions

    bundle = os.environ.get("AWS_CA_BUNDLE")
    if not bundle:
        return None
    opts = TlsContextOptions()
    try:
        opts.override_default_trust_store_from_path(None, bundle)
    except Exception as exc:
        raise ConfigError(f"AWS_CA_BUNDLE {bundle}: cannot read the CA bundle ({exc})") from exc
    return ClientTlsContext(opts).new_connection_options()


def _wait_quietly(future: Any) -> None:
    with contextlib.suppress(Exception):  # the cancellation's own error is expected
        future.result(timeout=30)


_TLS_NEGOTIATION = "AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE"


def _classify(exc: BaseException, what: str, path: str) -> RcbsError:
    status = getattr(exc, "status_code", None)
    if status:
        body = getattr(exc, "body", None) or b""
        code = _ERROR_CODE.search(body)
        message = _ERROR_MESSAGE.search(body)
        return classify_status(
            status,
            code[1].decode("utf-8", "replace") if code else "",
            message[1].decode("utf-8", "replace") if message else "",
            what,
        )
    name = str(getattr(exc, "name", "") or "")
    text = f"{name}: {getattr(exc, 'message', '')}" if name else str(exc)
    if any(name.startswith(p) for p in _FILE_ERRORS) or any(p in text for p in _FILE_ERRORS):
        return TargetError(f"writing {path} failed: {text}")
    if name == _TLS_NEGOTIATION:
        # almost always a certificate the trust store does not hold: the same on every attempt
        error = MediaSourceError(
            f"S3 transfer of {what} failed: {text}; if the endpoint's certificate is signed by a private "
            f"certificate authority, give that CA's certificate in {CA_CERTIFICATES} (the chart's "
            "security.caCertificates)"
        )
        error.retryable = False
        return error
    return MediaSourceError(f"S3 transfer of {what} failed: {text}")
