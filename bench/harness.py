"""Benchmark harness: a real S3 server (versitygw) holding the emulator's encrypted media, and the
emulator's recording API serving the matching metadata.

The emulator (`cxbackup_dev.emulator.Emulator`) keeps its media in moto behind a SigV4 proxy, which is far
too slow to be a benchmark server, and its S3 side cannot be swapped. So this harness reuses the
emulator's parts directly: `Dataset` (the lazily generated records) and `RecordingApiServer` (the
recording metadata and settings API), while the media objects are encrypted with the tenant
certificate and uploaded with boto3 into versitygw at the keys the settings' storage entries give.

The uploaded data set is cached under ~/.cache/cxbackup/bench-data/<tag>/ (versitygw's POSIX root, the
tenant key pair and a stamp), so a second run starts the server on it and uploads nothing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from cxbackup.certs.cms import encrypt
from cxbackup_dev.emulator.api import RecordingApiServer
from cxbackup_dev.emulator.core import write_properties
from cxbackup_dev.emulator.dataset import Dataset, DatasetSpec, StorageEntry
from cxbackup_dev.emulator.faults import FaultInjector
from cxbackup_dev.emulator.tenant import TenantKey, generate_tenant_key, load_tenant_key

CACHE = Path(os.environ.get("CXBACKUP_CACHE", Path.home() / ".cache" / "cxbackup"))
BUCKET = "bench-media"
TENANT = "PoD_tenant_2034"
PREFIX = f"{TENANT}/"
ACCESS_KEY = "BENCHACCESSKEY000001"
SECRET_KEY = "bench-secret-key-only-on-loopback-000001"
GWS_USER = "rcbs@bench"
GWS_PASSWORD = "bench-password"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_spec(recordings: int, *, screen_fraction: float = 0.1, seed: int = 9) -> DatasetSpec:
    """`recordings` voice files of 100-200 KB, about `screen_fraction` of them with a 1-5 MB screen file."""
    hours = 10
    return DatasetSpec(
        seed=seed,
        start=datetime(2024, 3, 4, tzinfo=UTC),
        hours=hours,
        recordings_per_hour=max(1, recordings // hours),
        screen_fraction=screen_fraction,
        voice_size=(100_000, 200_000),
        screen_size=(1_000_000, 5_000_000),
        regions=("usw1",),
        storage=(StorageEntry("usw1", "us-east-1", BUCKET, PREFIX),),
        tenant=TENANT,
    )


def s3_client(endpoint: str, pool: int = 16) -> Any:
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 5}, max_pool_connections=pool),
    )


class VersityGW:
    """versitygw (POSIX backend) on 127.0.0.1 rooted at `root`."""

    def __init__(self, binary: str, root: Path, log: Path) -> None:
        self.binary = binary
        self.root = root
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> VersityGW:
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    "--quiet",
                    "--access",
                    ACCESS_KEY,
                    "--secret",
                    SECRET_KEY,
                    "--port",
                    f"127.0.0.1:{self.port}",
                    "posix",
                    str(self.root),
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"versitygw exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("versitygw did not listen in 30s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@dataclass
class MediaStats:
    recordings: int
    objects: int
    bytes: int
    voice: int
    screen: int


class BenchSource:
    """versitygw with the data set's encrypted media + the emulator's recording API for its metadata."""

    def __init__(self, versitygw: str, spec: DatasetSpec, tag: str) -> None:
        self.spec = spec
        self.dir = CACHE / "bench-data" / tag
        self.dir.mkdir(parents=True, exist_ok=True)
        self.server = VersityGW(versitygw, self.dir / "s3root", self.dir / "versitygw.log")
        self.tenant: TenantKey | None = None
        self.dataset: Dataset | None = None
        self.api: RecordingApiServer | None = None
        self.upload_seconds: float | None = None

    def __enter__(self) -> BenchSource:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        key, cert = self.dir / "tenant.key", self.dir / "tenant.pem"
        stamp = self.dir / ".uploaded"
        if key.exists() and cert.exists() and stamp.exists():
            self.tenant = load_tenant_key(key, cert)
        else:
            shutil.rmtree(self.dir / "s3root", ignore_errors=True)
            stamp.unlink(missing_ok=True)
            self.tenant = generate_tenant_key(key, cert)
        self.dataset = Dataset(self.spec, cert_alias=self.tenant.alias)
        self.server.start()
        if not stamp.exists():
            t0 = time.monotonic()
            self._upload()
            self.upload_seconds = time.monotonic() - t0
            stamp.write_text(f"{self.upload_seconds:.1f}\n")
        self.api = RecordingApiServer(self.dataset, FaultInjector(None), username=GWS_USER, password=GWS_PASSWORD)
        self.api.start()

    def stop(self) -> None:
        if self.api is not None:
            self.api.stop()
            self.api = None
        self.server.stop()

    def _upload(self) -> None:
        assert self.dataset is not None and self.tenant is not None
        client = s3_client(self.server.url)
        try:
            client.create_bucket(Bucket=BUCKET)
        except client.exceptions.ClientError as exc:  # pragma: no cover - already there
            if "BucketAlreadyOwnedByYou" not in str(exc):
                raise
        cert = self.tenant.certificate
        ds = self.dataset

        def put(media: dict[str, Any]) -> None:
            media_id = str(media["mediaId"])
            body = encrypt(ds.media_plaintext(media_id, int(media["size"])), cert, "AES-256")
            client.put_object(Bucket=BUCKET, Key=PREFIX + media_id, Body=body)

        in_flight: deque[Future[None]] = deque()
        with ThreadPoolExecutor(8) as pool:
            for rec in ds.iter_records():
                for media in rec.get("mediaFiles", []):
                    in_flight.append(pool.submit(put, media))
                    if len(in_flight) > 32:
                        in_flight.popleft().result()
            while in_flight:
                in_flight.popleft().result()

    # ------------------------------------------------------------------------------------------ facts

    def stats(self) -> MediaStats:
        """What the bucket holds (objects and bytes as stored, i.e. encrypted) and the recordings."""
        assert self.dataset is not None
        client = s3_client(self.server.url)
        objects = size = 0
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX):
            for obj in page.get("Contents", []):
                objects += 1
                size += int(obj["Size"])
        voice = screen = 0
        recs = 0
        for rec in self.dataset.iter_records():
            recs += 1
            for m in rec.get("mediaFiles", []):
                if m.get("type") == "audio/mp3":
                    voice += 1
                else:
                    screen += 1
        return MediaStats(recs, objects, size, voice, screen)

    def record_ids(self) -> list[str]:
        assert self.dataset is not None
        return [str(r["id"]) for r in self.dataset.iter_records()]

    def env(self) -> dict[str, str]:
        """Worker credentials (the vendor API and the S3 server)."""
        return {
            "GWS_USERNAME": GWS_USER,
            "GWS_PASSWORD": GWS_PASSWORD,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def write_config(self, path: Path, target_dir: Path, **props: object) -> Path:
        assert self.api is not None and self.dataset is not None
        values: dict[str, object] = {
            "gwsUriPrefix": self.api.uri_prefix,
            "awsEndpointUrl": self.server.url,
            "targetDir": target_dir.as_posix(),
            # the emulator's convention for "the whole data set" (RCBS: maxDate is the older bound)
            "maxDate": self.dataset.start_ms,
            "minDate": self.dataset.end_ms,
        }
        values.update(props)
        return write_properties(path, values, header="cxbackup benchmark")


class Toxiproxy:
    """toxiproxy on 127.0.0.1: TCP proxies whose latency can be set while they run (the WAN benchmark).

    toxiproxy's `latency` toxic holds every chunk of data that crosses a proxy for the given time
    after it was read (it buffers up to 1,024 chunks of 32 KiB per direction and connection, so it
    delays without limiting the bandwidth). One toxic each way with half the round trip gives a
    request-response exchange the full round trip. What it does not model: the TCP and TLS handshakes
    (a client connects to the proxy on loopback at once; the first bytes of a request pay the delay),
    loss, and a bandwidth limit.
    """

    def __init__(self, binary: str, log: Path) -> None:
        self.binary = binary
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.proxies: dict[str, int] = {}

    def start(self) -> Toxiproxy:
        with self.log.open("ab") as fh:
            self.proc = subprocess.Popen(
                [self.binary, "-host", "127.0.0.1", "-port", str(self.port)],
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"toxiproxy exited: {self.log.read_text()[-2000:]}")
            try:
                self._api("GET", "/version")
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("toxiproxy did not listen in 30s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def _api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        import json
        import urllib.request

        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method)
        with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - http://127.0.0.1 only
            text = resp.read()
        return json.loads(text) if text.strip().startswith((b"{", b"[")) else text

    def proxy(self, name: str, upstream_url: str) -> str:
        """A proxy in front of `upstream_url` (http://host:port[/path]); returns the URL through it."""
        from urllib.parse import urlsplit

        up = urlsplit(upstream_url)
        port = free_port()
        self._api("POST", "/proxies", {"name": name, "listen": f"127.0.0.1:{port}", "upstream": up.netloc})
        self.proxies[name] = port
        return f"{up.scheme}://127.0.0.1:{port}{up.path}"

    def set_rtt(self, rtt_ms: float) -> None:
        """Every proxy: a latency toxic of rtt/2 each way (none at 0)."""
        for name in self.proxies:
            for stream in ("upstream", "downstream"):
                toxic = f"latency_{stream}"
                with contextlib.suppress(OSError):  # not there yet
                    self._api("DELETE", f"/proxies/{name}/toxics/{toxic}")
                if rtt_ms > 0:
                    self._api(
                        "POST",
                        f"/proxies/{name}/toxics",
                        {
                            "name": toxic,
                            "type": "latency",
                            "stream": stream,
                            "toxicity": 1.0,
                            "attributes": {"latency": round(rtt_ms / 2), "jitter": 0},
                        },
                    )
