"""Media downloads into a folder target through `cxbackup-fetch`, a small native program (Go, with the AWS
SDK for Go) that the image ships next to `cxbackup`.

The worker keeps everything but the data path: listing, selection, layout, the folder scan that removes a
killed run's temporary files, the lock, the checkpoint, the search index, progress, redaction and exit
codes. For each recording it sends one request (the folder, each media object with its final name and
the size already there, the metadata file) and gets one answer when the recording is complete or failed.
The program fetches the media of a recording in parallel and up to `concurrency` objects at once, checks
each body while it writes it (size against Content-Length; the CRC32C, CRC32 or CRC64NVME S3 stores for
the whole object, else the ETag when it is an MD5), fsyncs and renames it, then writes the metadata file
and fsyncs the folder: the same guarantees as the Python path (`worker.copy_media`), without reading the
file back and without a Python thread per download.

Protocol: newline-delimited JSON over the program's standard input and output (requests in, answers out,
in any order, matched by id); non-secret settings as flags; the S3 credentials only in its environment.
Errors come back as S3's status, code and message (classified here by `s3source.classify_status`, as
boto3's and the CRT's are) or as a connection, integrity or file failure.

The contract (requests, answers, protocol version, flags, environment, temporary names) is defined once, in
native/fetch/contract/fetch.schema.json with examples beside it; this module holds the worker's side of it
(`PROTOCOL`, `file_request`/`recording_request`, `_outcome`, `_PASSED_ENV`; the temporary-name rule is
`layout.temp_name`), and tests/unit/backup/test_fetch_contract.py holds it to the schema, as
native/fetch/contract_test.go holds the program. The schema is not read at run time.
"""

from __future__ import annotations

import collections
import contextlib
import json
import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, NoReturn, TypedDict

from cxbackup.backup.errors import ConfigError, MediaIntegrityError, MediaSourceError, RcbsError, TargetError
from cxbackup.backup.s3source import FINAL_CODES, S3Options, classify_status
from cxbackup.core.retry import RetryPolicy
from cxbackup.core.tls import CA_CERTIFICATES

__all__ = [
    "BINARY",
    "BINARY_ENV",
    "PROTOCOL",
    "Answer",
    "FileRequest",
    "NativeFetcher",
    "Request",
    "check_protocol",
    "file_request",
    "find_fetcher",
    "raising",
    "recording_request",
]

log = logging.getLogger(__name__)

BINARY = "cxbackup-fetch"
BINARY_ENV = "CXBACKUP_FETCH"
"""The program's path, when it is not next to the Python interpreter or on PATH."""
PROTOCOL = 1
"""The protocol version this worker speaks (the contract's $defs/protocol): the program must answer it."""

_CHECKS = {"crc32c": "CRC32C", "crc32": "CRC32", "crc64nvme": "CRC64NVME", "md5": "MD5 (ETag)", "size": "size only"}
# what the program may see of the worker's environment besides the credentials ($defs/environment)
_PASSED_ENV = ("PATH", "HOME", "TMPDIR", "SSL_CERT_FILE", "SSL_CERT_DIR", "AWS_CA_BUNDLE", "GODEBUG", "GOMAXPROCS")
_ACCESS_KEY_ENV, _SECRET_KEY_ENV, _SESSION_TOKEN_ENV = "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"


def find_fetcher() -> str | None:
    """The program's path: $CXBACKUP_FETCH, else next to the interpreter (the image's and a venv's bin
    folder), else on PATH; None when there is none."""
    named = os.environ.get(BINARY_ENV)
    if named:
        return named if os.access(named, os.X_OK) else None
    beside = Path(sys.executable).parent / BINARY
    if os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(BINARY)


class FileRequest(TypedDict):
    """One media object of a request ($defs/fileRequest)."""

    bucket: str
    key: str
    region: str
    name: str  # the final file name in the request's folder
    have: int  # size of the file already there, -1 when there is none


class _Metadata(TypedDict):
    name: str
    data: str
    present: bool


class Request(TypedDict, total=False):
    """One recording's request ($defs/request); `submit` sets its id."""

    id: int
    dir: str
    files: list[FileRequest]
    metadata: _Metadata


def file_request(*, bucket: str, key: str, region: str, name: str, have: int | None) -> FileRequest:
    """A media object to copy into the request's folder as `name`; `have`: the size of the file already
    there under that name (None: there is none)."""
    return {"bucket": bucket, "key": key, "region": region, "name": name, "have": -1 if have is None else have}


def recording_request(
    folder: str, files: list[FileRequest], *, metadata_name: str, metadata: str, metadata_present: bool
) -> Request:
    """One recording: its absolute folder, its media objects, then its metadata file (`metadata`, the
    content), written unless nothing was downloaded and it is present already."""
    return {
        "dir": folder,
        "files": files,
        "metadata": {"name": metadata_name, "data": metadata, "present": metadata_present},
    }


@dataclass(frozen=True)
class Answer:
    """What the program did for one recording."""

    files: int  # files written, the metadata file included
    bytes: int
    skipped: bool  # nothing downloaded and the metadata file was there already
    checks: dict[str, int]  # media files written, by the check that passed (crc32c, crc32, crc64nvme, md5, size)
    notes: tuple[str, ...]
    retries: int


def _error(data: dict[str, Any]) -> RcbsError:
    kind = data.get("kind")
    message = str(data.get("message") or "")
    if kind == "s3":
        what = str(data.get("object") or "an S3 object")
        return classify_status(int(data.get("status") or 0), str(data.get("code") or ""), message, what)
    if kind == "integrity":
        return MediaIntegrityError(message)
    if kind == "target":
        return TargetError(message)
    if kind == "tls":  # the endpoint's certificate is not trusted: the same on every attempt
        error = MediaSourceError(
            f"{message}; if the endpoint's certificate is signed by a private certificate authority, give that "
            f"CA's certificate in {CA_CERTIFICATES} (the chart's security.caCertificates)"
        )
        error.retryable = False
        return error
    return MediaSourceError(message)


class NativeFetcher:
    """One `cxbackup-fetch` process for a run. `submit` sends a request; `done` is called (on the reader
    thread) with a function that returns the Answer or raises the recording's error."""

    def __init__(
        self,
        binary: str,
        options: S3Options,
        *,
        in_flight: int,
        retry: RetryPolicy,
        stall_seconds: float = 120.0,
    ) -> None:
        if not (options.access_key_id and options.secret_access_key):
            raise ConfigError("the native media transfer needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
        self._argv = [
            binary,
            f"-in-flight={in_flight}",
            f"-retries={retry.retries}",
            f"-base-delay={retry.base_delay}s",
            f"-max-delay={retry.max_delay}s",
            f"-stall={stall_seconds}s",
            f"-final-codes={','.join(sorted(FINAL_CODES))}",
        ]
        if options.endpoint_url:
            self._argv.append(f"-endpoint={options.endpoint_url}")
        if options.proxy_url:
            self._argv.append(f"-proxy={options.proxy_url}")
        env = {k: v for k, v in os.environ.items() if k in _PASSED_ENV}
        env[_ACCESS_KEY_ENV] = options.access_key_id
        env[_SECRET_KEY_ENV] = options.secret_access_key
        if options.session_token:
            env[_SESSION_TOKEN_ENV] = options.session_token
        self._env = env
        self._proc: subprocess.Popen[bytes] | None = None
        self._pending: dict[int, Callable[[Callable[[], Answer]], None]] = {}
        self._lock = threading.Lock()
        self._next = 0
        self._threads: list[threading.Thread] = []
        self._stderr: list[str] = []
        self._gone: str | None = None
        self.checks: collections.Counter[str] = collections.Counter()
        """Media files written so far, by the check that passed."""

    @contextlib.contextmanager
    def running(self) -> Iterator[NativeFetcher]:
        """Start the program; on leaving, end its input, wait for every answer and for the program."""
        self._start()
        try:
            yield self
        finally:
            self._stop()

    def _start(self) -> None:
        try:
            self._proc = subprocess.Popen(
                self._argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=self._env
            )
        except OSError as exc:
            raise ConfigError(f"cannot start {self._argv[0]}: {exc.strerror or exc}") from exc
        assert self._proc.stdout is not None and self._proc.stderr is not None
        for target, stream in ((self._read_answers, self._proc.stdout), (self._read_stderr, self._proc.stderr)):
            thread = threading.Thread(target=target, args=(stream,), name=f"{BINARY}-{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def submit(self, request: Request, done: Callable[[Callable[[], Answer]], None]) -> None:
        """Send one recording's request (`recording_request`); raises MediaSourceError when the program is
        gone."""
        proc = self._proc
        assert proc is not None and proc.stdin is not None, "submit() outside running()"
        with self._lock:
            if self._gone is not None:
                raise MediaSourceError(self._gone)
            self._next += 1
            request["id"] = self._next
            self._pending[self._next] = done
            try:
                proc.stdin.write(json.dumps(request, separators=(",", ":")).encode() + b"\n")
                proc.stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                self._pending.pop(self._next, None)
                raise MediaSourceError(self._gone_message()) from None

    def _read_answers(self, stream: IO[bytes]) -> None:
        for line in stream:
            try:
                data = json.loads(line)
                ident = int(data["id"])
            except (ValueError, KeyError, TypeError):
                log.error("%s answered something that is not an answer: %.200r", BINARY, line)
                continue
            with self._lock:
                done = self._pending.pop(ident, None)
                self.checks.update(data.get("checks") or {})
            if done is None:
                log.error("%s answered an unknown request %d", BINARY, ident)
                continue
            try:
                done(_outcome(data))
            except Exception:  # a caller's bug must not stop the answers of every other recording
                log.exception("handling the answer to request %d failed", ident)
        # the program ended: every request still waiting fails
        with self._lock:
            self._gone = self._gone_message()
            waiting, self._pending = list(self._pending.values()), {}
        error = MediaSourceError(self._gone)
        for done in waiting:
            done(raising(error))

    def _read_stderr(self, stream: IO[bytes]) -> None:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._stderr = [*self._stderr[-4:], line]
                log.warning("%s: %s", BINARY, line)

    def _gone_message(self) -> str:
        proc = self._proc
        code = proc.poll() if proc is not None else None
        if code is None and proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = proc.wait(timeout=5)
        said = f": {self._stderr[-1]}" if self._stderr else ""
        return f"the media download program {BINARY} exited (code {code}){said}"

    def _stop(self) -> None:
        proc = self._proc
        if proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            assert proc.stdin is not None
            proc.stdin.close()
        for thread in self._threads:
            thread.join()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if self.checks:
            verified = ", ".join(f"{n} by {_CHECKS.get(c, c)}" for c, n in self.checks.most_common())
            log.info("Media files verified: %s", verified)


def _outcome(data: dict[str, Any]) -> Callable[[], Answer]:
    error = data.get("error")
    if error:
        return raising(_error(error))
    answer = Answer(
        files=int(data.get("files", 0)),
        bytes=int(data.get("bytes", 0)),
        skipped=bool(data.get("skipped", False)),
        checks={str(k): int(v) for k, v in (data.get("checks") or {}).items()},
        notes=tuple(str(n) for n in data.get("notes") or ()),
        retries=int(data.get("attempts", 0)),
    )
    return lambda: answer


def raising(error: BaseException) -> Callable[[], NoReturn]:
    """An outcome that raises `error` (a recording's failure, handed to its `done`)."""

    def outcome() -> NoReturn:
        raise error

    return outcome


def check_protocol(binary: str) -> None:
    """Raise ConfigError unless `binary` speaks this worker's protocol."""
    try:
        out = subprocess.run([binary, "-version"], capture_output=True, timeout=30, check=True).stdout
        version = json.loads(out)["protocol"]
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{binary} cannot be run: {exc}") from exc
    if version != PROTOCOL:
        raise ConfigError(
            f"{binary} speaks protocol {version}; this cxbackup needs {PROTOCOL}: install matching versions"
        )
