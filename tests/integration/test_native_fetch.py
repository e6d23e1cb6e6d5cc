"""The native media transfer (`cxbackup-fetch`, driven by nativefetch.NativeFetcher) against real servers:
the emulator's S3 (which checks SigV4 signatures) for keys that need percent-encoding and for the whole
recording, and an HTTP server on 127.0.0.1 for what a real S3 can do wrong (deny, miss, throttle, cut a
body short, stop sending, send bytes that do not match the checksum it gives)."""

from __future__ import annotations

import base64
import hashlib
import http.server
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cxbackup.backup.config import Credentials, parse_properties
from cxbackup.backup.errors import MediaAuthError, MediaIntegrityError, MediaMissingError, MediaSourceError, RcbsError
from cxbackup.backup.layout import is_temp_name
from cxbackup.backup.nativefetch import BINARY_ENV, Answer, NativeFetcher, find_fetcher
from cxbackup.backup.progress import RunSummary
from cxbackup.backup.s3source import S3Options
from cxbackup.backup.worker import run_backup
from cxbackup.core.retry import RetryPolicy
from cxbackup_dev.emulator import Emulator, EndpointFaults, FaultConfig, parse_time
from cxbackup_dev.emulator.tls import TestCA
from tests.integration.emulator_fixtures import put_media

BODY = bytes(range(256)) * 700  # 179,200 bytes: a voice file's size


def crc64nvme(data: bytes) -> int:
    """CRC-64/NVME (reflected 0x9a6c9329ac4bc9b5, init and final xor all ones), bit by bit."""
    crc = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x9A6C9329AC4BC9B5 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFFFFFFFFFF


def test_the_crc64nvme_of_this_test_is_the_standard_one() -> None:
    assert crc64nvme(b"123456789") == 0xAE8B14860A799888  # the published check value


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


@dataclass
class Behaviour:
    """How the server answers GETs (and HEADs) of one key."""

    status: int = 200
    code: str = ""
    body: bytes = BODY
    headers: dict[str, str] = field(default_factory=dict)
    fail_first: int = 0  # that many GETs get 503 SlowDown first
    cut_at: int | None = None  # send this many bytes of the body, then close
    stall: bool = False  # send 1000 bytes, then nothing


class S3Double(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.scheme = "http"
        if tls is not None:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
            self.scheme = "https"
        self.connections = 0
        self.keys: dict[str, Behaviour] = {}
        self.log: list[tuple[str, str, dict[str, str]]] = []
        self.gets: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"{self.scheme}://localhost:{self.server_address[1]}"

    def get_request(self) -> tuple[Any, Any]:
        self.connections += 1  # counted before the TLS handshake, which accept() runs
        return super().get_request()

    def close(self) -> None:
        self.stop.set()
        self.shutdown()
        self.server_close()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: S3Double
    protocol_version = "HTTP/1.1"

    def log_message(self, *_: Any) -> None:
        pass

    def _behaviour(self) -> tuple[str, Behaviour]:
        key = self.path.split("?", 1)[0].removeprefix("/media/")
        self.server.log.append((self.command, key, {k.lower(): v for k, v in self.headers.items()}))
        return key, self.server.keys.get(key, Behaviour(status=404, code="NoSuchKey"))

    def _error(self, status: int, code: str, head: bool) -> None:
        body = f"<Error><Code>{code}</Code><Message>{code} from the test</Message></Error>".encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(0 if head else len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        _, b = self._behaviour()
        if b.status != 200:
            self._error(b.status, b.code, head=True)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(b.body)))
        self.end_headers()

    def do_GET(self) -> None:
        key, b = self._behaviour()
        n = self.server.gets[key] = self.server.gets.get(key, 0) + 1
        if b.status != 200:
            self._error(b.status, b.code, head=False)
            return
        if n <= b.fail_first:
            self._error(503, "SlowDown", head=False)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(b.body)))
        for name, value in b.headers.items():
            self.send_header(name, value)
        if b.cut_at is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        if b.stall:
            self.wfile.write(b.body[:1000])
            self.wfile.flush()
            self.server.stop.wait(8)  # bounded: the client gives up long before
            self.close_connection = True
            return
        self.wfile.write(b.body if b.cut_at is None else b.body[: b.cut_at])
        if b.cut_at is not None:
            self.close_connection = True


@pytest.fixture
def s3() -> Iterator[S3Double]:
    server = S3Double()
    yield server
    server.close()


def binary() -> str:
    found = find_fetcher()
    assert found, "cxbackup-fetch is not built: `make venv` builds it into the venv"
    return found


def make_fetcher(url: str, *, in_flight: int = 8, retries: int = 2, stall: float = 120.0) -> NativeFetcher:
    options = S3Options(
        access_key_id="AKIDTEST", secret_access_key="secret-never-shown", endpoint_url=url, region="us-east-1"
    )
    retry = RetryPolicy(retries=retries, base_delay=0.01, max_delay=0.05)
    return NativeFetcher(binary(), options, in_flight=in_flight, retry=retry, stall_seconds=stall)


def request(folder: Path, *files: tuple[str, str, int], metadata: str = "{}", present: bool = False) -> dict[str, Any]:
    """A request for one recording: files as (key, name, size already there or -1)."""
    return {
        "dir": str(folder),
        "files": [{"bucket": "media", "key": k, "region": "us-east-1", "name": n, "have": h} for k, n, h in files],
        "metadata": {"name": "rec.json", "data": metadata, "present": present},
    }


def run(fetcher: NativeFetcher, *requests: dict[str, Any]) -> list[Answer | RcbsError]:
    """Submit every request, wait for every answer; each answer or the recording's error, in order."""
    results: dict[int, Answer | RcbsError] = {}
    lock = threading.Lock()

    def done(i: int, outcome: Any) -> None:
        try:
            value: Answer | RcbsError = outcome()
        except RcbsError as exc:
            value = exc
        with lock:
            results[i] = value

    with fetcher.running():
        for i, r in enumerate(requests):
            fetcher.submit(r, lambda outcome, i=i: done(i, outcome))
    return [results[i] for i in range(len(requests))]


def temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if is_temp_name(p.name)]


def test_each_check_s3_can_give_is_used_and_the_files_are_written(s3: S3Double, tmp_path: Path) -> None:
    md5 = hashlib.md5(BODY, usedforsecurity=False).hexdigest()
    crc32 = b64(zlib.crc32(BODY).to_bytes(4, "big"))
    crc64 = b64(crc64nvme(BODY).to_bytes(8, "big"))
    kms = {"ETag": '"0123456789abcdef0123456789abcdef"', "x-amz-server-side-encryption": "aws:kms"}
    s3.keys = {
        "md5": Behaviour(headers={"ETag": f'"{md5}"'}),
        "crc32": Behaviour(headers={"ETag": '"abc-2"', "x-amz-checksum-crc32": crc32}),
        "crc64": Behaviour(headers={"ETag": f'"{md5}"', "x-amz-checksum-crc64nvme": crc64}),  # the CRC wins
        "multipart": Behaviour(headers={"ETag": '"abc-2"'}),  # no checksum at all: the size alone
        "kms": Behaviour(headers=kms),  # the ETag of an SSE-KMS object is not its MD5: the size alone
    }
    folder = tmp_path / "2026" / "rec"  # does not exist yet: the program makes it
    [answer] = run(
        make_fetcher(s3.url),
        request(folder, *((k, f"{k}.bin", -1) for k in s3.keys), metadata='{"id": "rec"}'),
    )
    assert isinstance(answer, Answer), answer
    assert answer.checks == {"md5": 1, "crc32": 1, "crc64nvme": 1, "size": 2}
    assert (answer.files, answer.bytes, answer.skipped) == (6, 5 * len(BODY) + len('{"id": "rec"}'), False)
    for key in s3.keys:
        assert (folder / f"{key}.bin").read_bytes() == BODY
    assert (folder / "rec.json").read_text() == '{"id": "rec"}'
    assert temp_files(tmp_path) == []
    # the stored checksum is asked for on every GET, without a HEAD first
    assert all(h.get("x-amz-checksum-mode") == "ENABLED" for m, _, h in s3.log if m == "GET")
    assert {m for m, _, _ in s3.log} == {"GET"}


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        ({"ETag": '"00000000000000000000000000000000"'}, "the MD5 \\(ETag\\)"),
        ({"x-amz-checksum-crc32": b64(b"\0\0\0\0")}, "the CRC32"),
        ({"x-amz-checksum-crc64nvme": b64(b"\0" * 8)}, "the CRC64NVME"),
    ],
)
def test_a_body_that_does_not_match_its_checksum_is_retried_then_fails_leaving_nothing(
    s3: S3Double, tmp_path: Path, headers: dict[str, str], named: str
) -> None:
    s3.keys = {"bad": Behaviour(headers=headers)}
    [result] = run(make_fetcher(s3.url, retries=2), request(tmp_path, ("bad", "bad.bin", -1)))
    assert isinstance(result, MediaIntegrityError)
    assert result.retryable
    assert f"s3://media/bad: {named.replace(chr(92), '')} differs" in str(result)
    assert s3.gets["bad"] == 3  # first attempt + 2 retries
    assert list(tmp_path.iterdir()) == []  # neither the media nor the metadata file, no temporary file


@pytest.mark.parametrize(
    ("behaviour", "error", "retryable", "match", "gets"),
    [
        (Behaviour(status=403, code="AccessDenied"), MediaAuthError, False, "S3 denied s3://media/k: AccessDenied", 1),
        (Behaviour(status=404, code="NoSuchKey"), MediaMissingError, False, "s3://media/k not found in S3", 1),
        (Behaviour(status=404, code="NoSuchBucket"), MediaMissingError, False, "not found in S3", 1),
        (Behaviour(status=503, code="SlowDown"), MediaSourceError, True, "SlowDown", 3),
        (Behaviour(cut_at=1000), MediaSourceError, True, "reading s3://media/k failed", 3),
    ],
)
def test_failures_map_to_the_worker_errors(
    s3: S3Double, tmp_path: Path, behaviour: Behaviour, error: type, retryable: bool, match: str, gets: int
) -> None:
    s3.keys = {"k": behaviour}
    [result] = run(make_fetcher(s3.url, retries=2), request(tmp_path, ("k", "k.bin", -1)))
    assert type(result) is error, result
    assert isinstance(result, RcbsError) and result.retryable is retryable
    assert match in str(result)
    assert s3.gets["k"] == gets
    assert list(tmp_path.iterdir()) == []


def test_throttling_then_success(s3: S3Double, tmp_path: Path) -> None:
    s3.keys = {"k": Behaviour(fail_first=2)}
    [answer] = run(make_fetcher(s3.url, retries=2), request(tmp_path, ("k", "k.bin", -1)))
    assert isinstance(answer, Answer) and answer.retries == 2
    assert (tmp_path / "k.bin").read_bytes() == BODY


def test_a_body_that_stops_coming_is_cancelled_and_retried(s3: S3Double, tmp_path: Path) -> None:
    s3.keys = {"k": Behaviour(stall=True)}
    started = time.monotonic()
    [result] = run(make_fetcher(s3.url, retries=1, stall=1.0), request(tmp_path, ("k", "k.bin", -1)))
    assert isinstance(result, MediaSourceError) and result.retryable
    assert "s3://media/k: no data for 1s; cancelled" in str(result)
    assert s3.gets["k"] == 2
    assert time.monotonic() - started < 7  # well before the server would have given up
    assert list(tmp_path.iterdir()) == []


def test_files_already_there_are_checked_with_a_head_and_kept(s3: S3Double, tmp_path: Path) -> None:
    s3.keys = {"same": Behaviour(), "other": Behaviour(), "gone": Behaviour(status=404, code="NoSuchKey")}
    for name, size in (("same.bin", len(BODY)), ("other.bin", 10), ("gone.bin", 5)):
        (tmp_path / name).write_bytes(b"x" * size)
    (tmp_path / "rec.json").write_text("old")
    fetcher = make_fetcher(s3.url)
    answers = run(
        fetcher,
        request(tmp_path, ("same", "same.bin", len(BODY)), ("gone", "gone.bin", 5), present=True),
        request(tmp_path / "b", ("other", "other.bin", 10), present=True),
    )
    skipped, redone = answers
    # all there with S3's size (or gone from S3 under its final name): nothing written, not even the metadata
    assert isinstance(skipped, Answer) and skipped.skipped and skipped.files == 0
    assert (tmp_path / "same.bin").read_bytes() == b"x" * len(BODY) and (tmp_path / "rec.json").read_text() == "old"
    assert isinstance(redone, Answer) and not redone.skipped and redone.files == 2
    assert redone.notes == (f"other.bin has 10 bytes but S3 has {len(BODY)}; downloading it again",)
    assert sorted((m, k) for m, k, _ in s3.log) == [
        ("GET", "other"),
        ("HEAD", "gone"),
        ("HEAD", "other"),
        ("HEAD", "same"),
    ]


def test_requests_in_flight_are_bounded(s3: S3Double, tmp_path: Path) -> None:
    """`in_flight` GETs at most at once, and as many when there is that much to do."""
    active = 0
    peak = 0
    lock = threading.Lock()
    inner = _Handler.do_GET

    def counting(handler: _Handler) -> None:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.3)
        try:
            inner(handler)
        finally:
            with lock:
                active -= 1

    s3.keys = {f"k{i}": Behaviour() for i in range(40)}
    requests = [
        request(tmp_path / f"r{i}", (f"k{2 * i}", "a.bin", -1), (f"k{2 * i + 1}", "b.bin", -1)) for i in range(20)
    ]
    _Handler.do_GET = counting  # type: ignore[method-assign]
    try:
        answers = run(make_fetcher(s3.url, in_flight=12), *requests)
    finally:
        _Handler.do_GET = inner  # type: ignore[method-assign]
    assert all(isinstance(a, Answer) and a.files == 3 for a in answers), answers
    assert peak == 12


def test_keys_that_need_encoding_are_signed_and_fetched(emulator: Emulator, tmp_path: Path) -> None:
    entry = emulator.storage[0]
    keys = ["+YcX0DG1kw+nLQ08Zabu8++_238T.bin", "with space and=equals&amp.bin", "unicode-\u00e9\u00fc\u4e2d.bin"]
    for i, key in enumerate(keys):
        put_media(emulator, key, BODY[: 1000 * (i + 1)])
    options = S3Options(
        access_key_id=emulator.aws_access_key_id,
        secret_access_key=emulator.aws_secret_access_key,
        endpoint_url=emulator.s3_endpoint,
        region="us-east-1",
    )
    fetcher = NativeFetcher(binary(), options, in_flight=4, retry=RetryPolicy(retries=1, base_delay=0.01))
    files = [
        {"bucket": entry.bucket, "key": entry.prefix + k, "region": "us-east-1", "name": f"f{i}", "have": -1}
        for i, k in enumerate(keys)
    ]
    [answer] = run(fetcher, {"dir": str(tmp_path), "files": files, "metadata": {"name": "m.json", "data": "{}"}})
    assert isinstance(answer, Answer), answer
    for i in range(len(keys)):
        assert (tmp_path / f"f{i}").read_bytes() == BODY[: 1000 * (i + 1)]


def test_the_secret_is_in_the_environment_only(s3: S3Double, tmp_path: Path) -> None:
    s3.keys = {"k": Behaviour(stall=True)}
    fetcher = make_fetcher(s3.url, retries=0, stall=1.0)
    with fetcher.running():
        fetcher.submit(request(tmp_path, ("k", "k.bin", -1)), lambda _: None)
        proc = fetcher._proc  # the running program, busy with the stalled download for a second
        assert proc is not None
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
    assert b"-in-flight=8" in cmdline and b"secret-never-shown" not in cmdline
    assert b"AWS_SECRET_ACCESS_KEY=secret-never-shown" in environ


def _run(emulator: Emulator, tmp_path: Path, target: Path, **props: object) -> RunSummary:
    cfg = emulator.write_config(tmp_path / "c.properties", target_dir=target, mediaTransfer="native", **props)
    config = parse_properties(cfg.read_text(), str(cfg))
    return run_backup(config, Credentials.from_env(emulator.env()))


def test_a_folder_that_cannot_be_made_fails_its_recordings_only(emulator: Emulator, tmp_path: Path) -> None:
    """A file where an hour's folder should be: that hour's recordings fail naming the folder, the others are
    backed up, the checkpoint stays; once the file is gone the next run completes."""
    target = tmp_path / "t"
    records = list(emulator.records())

    def hour(record: dict[str, Any]) -> str:
        return f"{datetime.fromtimestamp(parse_time(record['startTime']) / 1000, UTC):%Y/%m/%d/%H}"

    blocker = target / hour(records[0])
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    in_that_hour = sum(1 for r in records if hour(r) == hour(records[0]))
    summary = _run(emulator, tmp_path, target)
    assert not summary.ok and summary.failed == in_that_hour and summary.downloaded == len(records) - in_that_hour
    assert all("not a directory" in reason.lower() for _, reason in summary.failures), summary.failures
    assert not (target / "last_recording_endtime.txt").exists()
    blocker.unlink()
    again = _run(emulator, tmp_path, target)
    assert again.ok and again.downloaded == in_that_hour and again.skipped == len(records) - in_that_hour
    assert temp_files(target) == []


def test_the_program_dying_mid_run_fails_the_run_and_the_rerun_completes(
    emulator: Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "t"
    dying = tmp_path / "dying-fetch"
    dying.write_text(f'#!/bin/sh\nexec timeout -s KILL 1 {binary()} "$@"\n')  # SIGKILLed after a second
    dying.chmod(0o755)
    monkeypatch.setenv(BINARY_ENV, str(dying))
    emulator.set_faults(FaultConfig.uniform(EndpointFaults(latency_s=0.1), seed=1))  # a run longer than that
    try:
        summary = _run(emulator, tmp_path, target, concurrency=2)
    finally:
        emulator.set_faults(None)
    assert not summary.ok
    reasons = [reason for _, reason in summary.failures] + [summary.error or ""]
    assert any("the media download program cxbackup-fetch exited (code -9)" in r for r in reasons), reasons
    assert not (target / "last_recording_endtime.txt").exists()
    monkeypatch.delenv(BINARY_ENV)
    again = _run(emulator, tmp_path, target)
    assert again.ok and again.downloaded + again.skipped == len(list(emulator.records()))
    assert (target / "last_recording_endtime.txt").read_text() == f"{emulator.end_ms}\n"
    assert temp_files(target) == []


def test_an_untrusted_endpoint_fails_at_once_naming_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = TestCA.create(tmp_path / "ca")
    cert, key = ca.issue_server("server", ("localhost", "127.0.0.1"))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = S3Double(tls=context)
    try:
        server.keys = {"k": Behaviour()}
        monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
        [result] = run(make_fetcher(server.url, retries=3), request(tmp_path / "a", ("k", "k.bin", -1)))
        assert isinstance(result, MediaSourceError) and not result.retryable
        assert "certificate signed by unknown authority" in str(result)
        assert "CXBACKUP_CA_CERTIFICATES (the chart's security.caCertificates)" in str(result)
        assert server.connections == 1  # not retried
        # with the CA in AWS_CA_BUNDLE (what CXBACKUP_CA_CERTIFICATES leads to) the same request succeeds
        monkeypatch.setenv("AWS_CA_BUNDLE", str(ca.cert_path))
        [answer] = run(make_fetcher(server.url), request(tmp_path / "b", ("k", "k.bin", -1)))
        assert isinstance(answer, Answer), answer
        assert (tmp_path / "b" / "k.bin").read_bytes() == BODY
    finally:
        server.close()
