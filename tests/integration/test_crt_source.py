"""The CRT media source (crtsource.py) against real servers: the emulator's S3 (which checks SigV4
signatures) for keys that need percent-encoding, and a raw HTTP server on 127.0.0.1 for the failures a
real S3 can produce (denied, missing, throttled, a body cut short, a body that stops coming)."""

from __future__ import annotations

import hashlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cxbackup.backup.config import RcbsConfig
from cxbackup.backup.crtsource import CrtS3MediaSource, select_media_transfer
from cxbackup.backup.errors import ConfigError, MediaAuthError, MediaMissingError, MediaSourceError, TargetError
from cxbackup.backup.s3source import S3Options
from cxbackup.backup.vendor_client import StorageEntry, VendorSettings
from cxbackup_dev.emulator import Emulator
from cxbackup_dev.emulator.tls import TestCA
from tests.integration.emulator_fixtures import put_media

ODD_KEYS = [
    "plain-key.bin",
    "+YcX0DG1kw+nLQ08Zabu8++_238T.bin",  # '+' must be sent as %2B (an unencoded '+' fails the signature)
    "with space and=equals&amp.bin",
    "unicode-\u00e9\u00fc\u4e2d.bin",
    "nested/dir/key~tilde.bin",
]


def _source(endpoint: str, access: str, secret: str, bucket: str, prefix: str = "", **kw: Any) -> CrtS3MediaSource:
    settings = VendorSettings("t", (StorageEntry("usw1", "us-east-1", bucket, prefix),))
    options = S3Options(access_key_id=access, secret_access_key=secret, endpoint_url=endpoint, region="us-east-1")
    return CrtS3MediaSource(settings, options, **kw)


def _emulator_source(emulator: Emulator, secret: str | None = None) -> CrtS3MediaSource:
    """A CRT source for the emulator's first storage entry (with `secret`: a wrong one)."""
    entry = emulator.storage[0]
    return _source(
        emulator.s3_endpoint,
        emulator.aws_access_key_id,
        secret or emulator.aws_secret_access_key,
        entry.bucket,
        entry.prefix,
    )


def test_keys_that_need_encoding_are_signed_and_fetched(emulator: Emulator, tmp_path: Path) -> None:
    source = _emulator_source(emulator)
    for i, name in enumerate(ODD_KEYS):
        body = hashlib.sha256(name.encode()).digest() * (100 + i * 997)
        put_media(emulator, name, body)
        path = tmp_path / f"f{i}"
        path.write_bytes(b"stale bytes the download must replace" * 5000)
        fetched = source.download_to(source.locate("usw1", name), str(path))
        assert path.read_bytes() == body, name
        assert fetched.content_length == len(body)
        assert fetched.md5_hex == hashlib.md5(body, usedforsecurity=False).hexdigest()


def test_an_object_larger_than_a_part_is_fetched_in_ranges(emulator: Emulator, tmp_path: Path) -> None:
    source = _emulator_source(emulator)
    part = source.sizing.part_bytes
    body = b"".join(i.to_bytes(4, "big") for i in range((2 * part + 12345) // 4))
    put_media(emulator, "big.bin", body)
    logged = len(emulator.request_log("s3"))
    fetched = source.download_to(source.locate("usw1", "big.bin"), str(tmp_path / "big"))
    assert (tmp_path / "big").read_bytes() == body
    assert fetched.content_length == len(body)
    gets = [r for r in emulator.request_log("s3")[logged:] if r.method == "GET"]
    assert len(gets) == 3 and {r.status for r in gets} == {206}  # three ranged GETs, one per part


def test_missing_object_and_wrong_secret(emulator: Emulator, tmp_path: Path) -> None:
    good = _emulator_source(emulator)
    with pytest.raises(MediaMissingError, match="not found in S3"):
        good.download_to(good.locate("usw1", "no-such-media"), str(tmp_path / "x"))
    bad = _emulator_source(emulator, secret="wrong-secret")
    media_id = next(m["mediaId"] for r in emulator.records() for m in r["mediaFiles"])
    with pytest.raises(MediaAuthError, match="S3 denied"):
        bad.download_to(bad.locate("usw1", media_id), str(tmp_path / "y"))


class RawServer:
    """HTTP/1.1 on 127.0.0.1 that answers every request by `behaviour` (one connection at a time)."""

    def __init__(self, behaviour: str, tls: ssl.SSLContext | None = None) -> None:
        self.behaviour = behaviour
        self.tls = tls
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://localhost:{self.port}"

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            try:
                if self.tls is not None:
                    conn = self.tls.wrap_socket(conn, server_side=True)  # takes over the descriptor
                self.requests.append(conn.recv(65536))
                self._answer(conn)
            except OSError:
                pass
            finally:
                conn.close()

    def _answer(self, conn: socket.socket) -> None:
        def error(status: str, code: str) -> bytes:
            body = f"<Error><Code>{code}</Code><Message>{code} from the test</Message></Error>".encode()
            head = f"HTTP/1.1 {status}\r\nContent-Type: application/xml\r\nContent-Length: {len(body)}\r\n"
            return (head + "Connection: close\r\n\r\n").encode() + body

        if self.behaviour == "denied":
            conn.sendall(error("403 Forbidden", "AccessDenied"))
        elif self.behaviour == "slowdown":
            conn.sendall(error("503 Slow Down", "SlowDown"))
        elif self.behaviour == "truncated":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n" + b"x" * 1000)
        elif self.behaviour == "stall":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b"x" * 1000)
            self.stop.wait(8)  # bounded: the client must give up long before

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=15)
        self.sock.close()


@pytest.fixture
def raw_server(request: pytest.FixtureRequest) -> Iterator[RawServer]:
    server = RawServer(request.param)
    yield server
    server.close()


@pytest.mark.parametrize(
    ("raw_server", "error", "retryable", "match"),
    [
        ("denied", MediaAuthError, False, "AccessDenied"),
        ("slowdown", MediaSourceError, True, "SLOW_DOWN|SlowDown"),
        ("truncated", MediaSourceError, True, "S3 transfer of s3://media/k.bin failed"),
    ],
    indirect=["raw_server"],
)
def test_failures_map_to_the_worker_errors(
    raw_server: RawServer, tmp_path: Path, error: type[Exception], retryable: bool, match: str
) -> None:
    source = _source(raw_server.url, "AKIDTEST", "secret", "media")
    with pytest.raises(error, match=match) as info:
        source.download_to(source.locate("usw1", "k.bin"), str(tmp_path / "f"))
    assert getattr(info.value, "retryable", None) is retryable
    request_line = raw_server.requests[0].split(b"\r\n", 1)[0]
    assert request_line.startswith(b"GET /media/k.bin ")  # path-style with an endpoint
    assert b"AWS4-HMAC-SHA256 Credential=AKIDTEST/" in raw_server.requests[0]


@pytest.mark.parametrize("raw_server", ["stall"], indirect=True)
def test_a_body_that_stops_coming_is_cancelled(raw_server: RawServer, tmp_path: Path) -> None:
    source = _source(raw_server.url, "AKIDTEST", "secret", "media", stall_seconds=1.0)
    started = time.monotonic()
    with pytest.raises(MediaSourceError, match="no data for 1s") as info:
        source.download_to(source.locate("usw1", "k.bin"), str(tmp_path / "f"))
    assert info.value.retryable
    assert time.monotonic() - started < 7  # well before the server would have closed the connection


class HoldingServer:
    """HTTP/1.1 on 127.0.0.1, one thread per connection, that holds every GET until `hold` requests are
    waiting at once (or `patience` seconds passed), then answers all of them: the most requests a
    client had in flight is `peak`."""

    def __init__(self, hold: int, patience: float = 3.0) -> None:
        self.hold = hold
        self.patience = patience
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.cond = threading.Condition()
        self.waiting = 0
        self.peak = 0
        self.threads: list[threading.Thread] = []
        self.acceptor = threading.Thread(target=self._accept, daemon=True)
        self.acceptor.start()

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        body = b"held body"
        etag = hashlib.md5(body, usedforsecurity=False).hexdigest()
        with conn:
            while not self.stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue  # an idle kept-alive connection: look at `stop` again
                except OSError:
                    return
                if not data:
                    return
                with self.cond:
                    self.waiting += 1
                    self.peak = max(self.peak, self.waiting)
                    self.cond.notify_all()
                    self.cond.wait_for(lambda: self.waiting >= self.hold or self.stop.is_set(), self.patience)
                    self.hold = 0  # the first batch was held: answer everything from now on
                    self.cond.notify_all()
                    self.waiting -= 1
                # the CRT asks for the first part as a range: the whole (small) object is that range
                head = (
                    f"HTTP/1.1 206 Partial Content\r\nContent-Length: {len(body)}\r\n"
                    f'Content-Range: bytes 0-{len(body) - 1}/{len(body)}\r\nETag: "{etag}"\r\n\r\n'
                )
                try:
                    conn.sendall(head.encode() + body)
                except OSError:
                    return

    def close(self) -> None:
        self.stop.set()
        with self.cond:
            self.cond.notify_all()
        self.acceptor.join(timeout=5)
        for t in self.threads:
            t.join(timeout=5)
        self.sock.close()


def test_as_many_gets_in_flight_as_downloads(tmp_path: Path) -> None:
    """With `downloads=N` the CRT client lets N GETs wait on the server at once (with its memory limit
    fixed at 256 MiB and 8 MiB parts it admitted 16, whatever the worker's concurrency)."""
    downloads = 24
    server = HoldingServer(hold=downloads)
    try:
        source = _source(server.url, "AKIDTEST", "secret", "media", downloads=downloads)
        errors: list[BaseException] = []

        def fetch(i: int) -> None:
            try:
                fetched = source.download_to(source.locate("usw1", f"k{i}.bin"), str(tmp_path / f"f{i}"))
                assert fetched.content_length == len(b"held body")
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=fetch, args=(i,)) for i in range(downloads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert not errors, errors
        assert server.peak == downloads
    finally:
        server.close()


def test_a_file_that_cannot_be_written_is_a_target_error(emulator: Emulator, tmp_path: Path) -> None:
    source = _emulator_source(emulator)
    media_id = next(m["mediaId"] for r in emulator.records() for m in r["mediaFiles"])
    with pytest.raises(TargetError, match="AWS_ERROR_FILE_INVALID_PATH"):
        source.download_to(source.locate("usw1", media_id), str(tmp_path / "no" / "such" / "dir" / "f"))


def test_virtual_hosted_addressing_without_an_endpoint() -> None:
    settings = VendorSettings("t", (StorageEntry("usw1", "eu-west-1", "rec-bucket", "T/"),))
    source = CrtS3MediaSource(settings, S3Options(access_key_id="a", secret_access_key="b"))
    addr = source.address(source.locate("usw1", "a+b c"))
    assert (addr.host, addr.path) == ("rec-bucket.s3.eu-west-1.amazonaws.com", "/T/a%2Bb%20c")
    dotted = CrtS3MediaSource(
        VendorSettings("t", (StorageEntry("usw1", "eu-west-1", "my.bucket", ""),)),
        S3Options(access_key_id="a", secret_access_key="b"),
    )
    addr = dotted.address(dotted.locate("usw1", "k"))
    assert (addr.host, addr.path) == ("s3.eu-west-1.amazonaws.com", "/my.bucket/k")


def test_auto_falls_back_to_boto3_only_for_a_proxy() -> None:
    plain = S3Options(access_key_id="a", secret_access_key="b", endpoint_url="https://s3.example.com")
    assert select_media_transfer("auto", plain) == "crt"
    assert select_media_transfer("boto3", plain) == "boto3"
    proxied = S3Options(access_key_id="a", secret_access_key="b", proxy_url="http://proxy:3128")
    assert select_media_transfer("auto", proxied) == "boto3"
    with pytest.raises(ConfigError, match="mediaTransfer=crt cannot be used: awsProxyHost is set"):
        select_media_transfer("crt", proxied)


def test_crt_with_a_proxy_is_refused_when_the_configuration_is_read() -> None:
    with pytest.raises(ConfigError, match="mediaTransfer=crt cannot go through awsProxyHost"):
        RcbsConfig.from_values(
            {
                "gwsUriPrefix": "https://x/api/v2",
                "targetDir": "/t",
                "mediaTransfer": "crt",
                "awsProxyHost": "proxy",
                "awsProxyPort": "3128",
            }
        )


def _tls_files(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for localhost signed by it: (ca.pem, cert.pem, key.pem)."""
    ca = TestCA.create(tmp_path / "ca")
    cert, key = ca.issue_server("server", ("localhost", "127.0.0.1"))
    return ca.cert_path, cert, key


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[RawServer, Path]]:
    """A server on localhost that answers 403 over TLS, its certificate signed by a throwaway CA; (server, ca.pem)."""
    ca, cert, key = _tls_files(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = RawServer("denied", tls=context)
    yield server, ca
    server.close()


@pytest.mark.slow
def test_https_endpoint_not_in_aws_ca_bundle_is_refused(
    tls_server: tuple[RawServer, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slow: the CRT closes a refused negotiation only after s2n's blinding delay (10 to 30 s, no setting turns
    it off); the message and the retry decision are also checked without a handshake in
    tests/unit/backup/test_crt_errors.py."""
    server, _ = tls_server
    # the system bundle does not know the test CA: the handshake fails (a transfer error, never retried)
    monkeypatch.setenv("AWS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    untrusting = _source(server.url, "AKIDTEST", "secret", "media")
    with pytest.raises(MediaSourceError, match=r"S3 transfer of s3://media/k\.bin failed: AWS_IO_TLS") as info:
        untrusting.download_to(untrusting.locate("usw1", "k.bin"), str(tmp_path / "f"))
    assert type(info.value) is MediaSourceError and info.value.retryable is False
    assert not any(r.startswith(b"GET ") for r in server.requests)  # nothing was sent over the refused link


def test_https_endpoint_trusts_the_ca_bundle_in_aws_ca_bundle(
    tls_server: tuple[RawServer, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, ca = tls_server
    # with the test CA the request reaches the server, which answers 403 (the system bundle alone does not
    # know the CA: test_https_endpoint_not_in_aws_ca_bundle_is_refused)
    monkeypatch.setenv("AWS_CA_BUNDLE", str(ca))
    trusting = _source(server.url, "AKIDTEST", "secret", "media")
    with pytest.raises(MediaAuthError, match="AccessDenied"):
        trusting.download_to(trusting.locate("usw1", "k.bin"), str(tmp_path / "f"))
    assert any(r.startswith(b"GET /media/k.bin ") for r in server.requests)
