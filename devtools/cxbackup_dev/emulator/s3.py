"""The emulated vendor S3: a moto server in a child process behind an authenticating, faulty proxy.

- `MotoProcess` runs moto's `ThreadedMotoServer` in a child Python process on a free 127.0.0.1 port.
  A child process, not a thread, because moto keeps its buckets in process-global state that
  `moto.mock_aws` in other tests would reset, and two emulators in one process would share; it also
  gives S3 its own core. The child exits when the parent closes its stdin (or dies).
- `S3Proxy` is the endpoint the emulator advertises. It checks each request's SigV4 signature against
  the emulator's own key id and secret (moto accepts anything) and answers S3-style 403 XML errors
  (`InvalidAccessKeyId`, `SignatureDoesNotMatch`, `AccessDenied`), injects the `s3` faults (503
  `SlowDown`, 500 `InternalError`, latency, resets, truncated bodies), can create a media object just
  before its first GET/HEAD (lazy media), and forwards everything else to moto unchanged, streaming.
- `S3Store` is the emulator's own boto3 client straight to moto (no proxy, no faults) for creating
  buckets and uploading, deleting and checking objects.
"""

from __future__ import annotations

import http.client
import os
import secrets
import selectors
import ssl
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit
from xml.sax.saxutils import escape

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from cxbackup_dev.emulator._http import FaultAwareHandler, LoopbackServer
from cxbackup_dev.emulator.api import RequestLog, RequestRecord
from cxbackup_dev.emulator.dataset import StorageEntry
from cxbackup_dev.emulator.faults import FaultInjector, FaultPlan
from cxbackup_dev.emulator.sigv4 import check_request

__all__ = ["MotoProcess", "S3Proxy", "S3Store", "s3_error_xml"]

_CHILD = r"""
import logging, sys
logging.disable(logging.CRITICAL)
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
server.start()
print(server.get_host_and_port()[1], flush=True)
sys.stdin.read()
"""

_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "host",
    "expect",  # the proxy answers 100-continue itself; moto gets the whole body at once
}
_REPLACED = {"date", "server"}  # the proxy's own response carries these
_CHUNK = 256 * 1024


class MotoProcess:
    """moto's S3 server in a child process on 127.0.0.1 (`port` 0: a free one)."""

    def __init__(self, log_path: Path, port: int = 0) -> None:
        self._log_path = log_path
        self._port = port
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> None:
        self._log = open(self._log_path, "ab")  # noqa: SIM115 - closed in stop()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MOTO_"))}
        self._proc = subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(self._port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            env=env,
        )
        assert self._proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self._proc.stdout, selectors.EVENT_READ)
            ready = sel.select(timeout)
        line = self._proc.stdout.readline() if ready else b""
        if not line.strip().isdigit():
            self.stop()
            raise RuntimeError(f"the moto S3 server did not start (see {self._log_path})")
        self.port = int(line)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            for stream in (proc.stdin, proc.stdout):
                if stream is not None:
                    stream.close()
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._log is not None:
            self._log.close()
            self._log = None


def s3_error_xml(code: str, message: str, resource: str = "") -> bytes:
    """An S3 error document."""
    request_id = secrets.token_hex(8).upper()
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        f"<Resource>{escape(resource)}</Resource><RequestId>{request_id}</RequestId>"
        f"<HostId>{secrets.token_urlsafe(24)}</HostId></Error>"
    ).encode()


_FAULT_ERRORS = {
    503: ("SlowDown", "Please reduce your request rate."),
    500: ("InternalError", "We encountered an internal error. Please try again."),
}


class _ProxyHandler(FaultAwareHandler):
    proxy: ClassVar[S3Proxy]
    _upstream: http.client.HTTPConnection | None = None

    def do_GET(self) -> None:
        self._handle("GET")

    def do_HEAD(self) -> None:
        self._handle("HEAD")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def finish(self) -> None:
        super().finish()
        if self._upstream is not None:
            self._upstream.close()
            self._upstream = None

    def _error(self, method: str, status: int, code: str, message: str, plan: FaultPlan) -> None:
        body = s3_error_xml(code, message, urlsplit(self.path).path)
        headers = [("Content-Type", "application/xml"), ("x-amz-request-id", secrets.token_hex(8).upper())]
        if plan.retry_after is not None:
            headers.append(("Retry-After", str(plan.retry_after)))
        self.proxy.requests.add(RequestRecord("s3", method, self.path, status))
        self.send_reply(status, headers, body, len(body), FaultPlan(delay_s=plan.delay_s), head_only=method == "HEAD")

    def _handle(self, method: str) -> None:
        proxy = self.proxy
        body = self.read_body()
        plan = proxy.injector.plan("s3", self.path)
        failure = check_request(method, self.path, self.headers, proxy.credentials)
        if failure is not None:
            proxy.injector.count(f"s3.auth.{failure.code}")
            self._error(method, 403, failure.code, failure.message, plan)
            return
        if plan.status is not None:
            code, message = _FAULT_ERRORS.get(plan.status, ("ServiceUnavailable", "Service is unavailable."))
            if plan.throttled:
                code, message = _FAULT_ERRORS[503]
            self._error(method, plan.status, code, message, plan)
            return
        if method in ("GET", "HEAD") and proxy.on_object_read is not None:
            parts = unquote(urlsplit(self.path).path).lstrip("/").split("/", 1)
            if len(parts) == 2 and parts[1]:
                proxy.on_object_read(parts[0], parts[1])
        self._forward(method, body, plan)

    def _forward(self, method: str, body: bytes, plan: FaultPlan) -> None:
        proxy = self.proxy
        if self._upstream is None:
            self._upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=120)
        conn = self._upstream
        try:
            conn.putrequest(method, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                if name.lower() not in _HOP_BY_HOP:
                    conn.putheader(name, value)
            conn.putheader("Host", self.headers.get("Host", f"127.0.0.1:{proxy.upstream_port}"))
            if body or method in ("PUT", "POST"):
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body or None)
            resp = conn.getresponse()
        except (OSError, http.client.HTTPException):
            conn.close()
            self._upstream = None
            self._error(method, 503, "ServiceUnavailable", "The S3 backend is unavailable.", plan)
            return
        headers = [(k, v) for k, v in resp.getheaders() if k.lower() not in _HOP_BY_HOP | _REPLACED]
        declared = resp.getheader("Content-Length")
        proxy.requests.add(RequestRecord("s3", method, self.path, resp.status))
        if method == "HEAD" or declared is None:
            data = resp.read()
            length = int(declared) if method == "HEAD" and declared is not None else len(data)
            self.send_reply(resp.status, headers, data, length, plan, head_only=method == "HEAD")
            return
        length = int(declared)
        consumed = [0]

        def stream() -> Iterator[bytes]:
            while consumed[0] < length:
                chunk = resp.read(min(_CHUNK, length - consumed[0]))
                if not chunk:
                    return
                consumed[0] += len(chunk)
                yield chunk

        self.send_reply(resp.status, headers, stream(), length, plan)
        if consumed[0] < length or resp.will_close:
            conn.close()
            self._upstream = None


class S3Proxy:
    """The advertised S3 endpoint: SigV4 check, faults, lazy objects, then moto."""

    def __init__(
        self,
        upstream_port: int,
        injector: FaultInjector,
        credentials: dict[str, str],
        *,
        port: int = 0,
        requests: RequestLog | None = None,
        tls: ssl.SSLContext | None = None,
        on_object_read: Callable[[str, str], None] | None = None,
    ) -> None:
        self.upstream_port = upstream_port
        self.injector = injector
        self.credentials = credentials
        self.requests = requests or RequestLog()
        self.on_object_read = on_object_read
        handler = type("S3ProxyHandler", (_ProxyHandler,), {"proxy": self})
        self._server = LoopbackServer(port, handler, "s3-proxy", tls)

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()


class S3Store:
    """The emulator's own S3 client, straight to moto."""

    def __init__(self, endpoint: str, access_key_id: str, secret_access_key: str) -> None:
        self._client: Any = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            region_name="us-east-1",
            config=Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 5, "mode": "standard"},
                max_pool_connections=16,
            ),
        )
        self._lock = threading.Lock()

    def create_buckets(self, storage: tuple[StorageEntry, ...]) -> None:
        for bucket, region in {(e.bucket, e.aws_region) for e in storage}:
            kwargs: dict[str, Any] = {"Bucket": bucket}
            if region != "us-east-1":
                kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
            try:
                self._client.create_bucket(**kwargs)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "BucketAlreadyOwnedByYou":
                    raise

    def put(self, bucket: str, key: str, body: bytes) -> None:
        self._client.put_object(Bucket=bucket, Key=key, Body=body, ContentType="application/octet-stream")

    def delete(self, bucket: str, key: str) -> None:
        self._client.delete_object(Bucket=bucket, Key=key)

    def exists(self, bucket: str, key: str) -> bool:
        try:
            self._client.head_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def close(self) -> None:
        self._client.close()
