"""`Emulator`: the vendor cloud on 127.0.0.1 - recording API, S3 with CMS-encrypted media, faults.

```python
with Emulator(DatasetSpec(hours=6, recordings_per_hour=5), tmp_path) as emu:
    emu.write_config(tmp_path / "config.properties", target_dir=tmp_path / "target")
    subprocess.run(["cxbackup", "download", "-config", ...], env={**os.environ, **emu.env()})
    for record in emu.records():            # ground truth, lazily generated
        for media in record["mediaFiles"]:
            expected = emu.media_plaintext(media["mediaId"])
```

Start-up: the tenant key pair (generated into `workdir`, or loaded), a moto S3 server in a child
process with one bucket per settings storage entry, the media uploaded (`media="eager"`), then the S3
proxy (the advertised `s3_endpoint`) and the recording API. With `media="lazy"` an object is created
the first time it is read through the proxy (listings show only objects already read); with
`media="none"` (metadata only) no object exists. Memory stays bounded in every mode: records and media
bytes are computed from the seed when needed.

Contact history and per-user chat messages (GDPR exports) are served by the same API server from the
same seed (`contacts`, `chat`); `chat_retention_days` and `chat_clock` are the organisation's chat
retention settings (default 90 days before the end of the data span, see emulator/chat.py).

Credentials are the emulator's own throwaway values (random unless given); `env()` hands them out
as the environment variables the worker reads.
"""

from __future__ import annotations

import json
import os
import secrets
import string
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from cxbackup.backup.properties import escape_key, escape_value
from cxbackup.certs.cms import Algorithm, encrypt
from cxbackup_dev.emulator.api import RecordingApiServer, RequestLog, RequestRecord
from cxbackup_dev.emulator.chat import DEFAULT_CHAT_RETENTION_DAYS, ChatHistory
from cxbackup_dev.emulator.contacts import ContactHistory
from cxbackup_dev.emulator.dataset import Dataset, DatasetSpec, Record, StorageEntry
from cxbackup_dev.emulator.faults import FaultConfig, FaultInjector
from cxbackup_dev.emulator.s3 import MotoProcess, S3Proxy, S3Store
from cxbackup_dev.emulator.tenant import TenantKey, generate_tenant_key, load_tenant_key
from cxbackup_dev.emulator.tls import TestCA

__all__ = ["Emulator", "MediaMode", "write_properties"]

MediaMode = Literal["eager", "lazy", "none"]

_DATE_PROPERTIES = ("minAge", "maxAge", "minDate", "maxDate")


def _random_key_id() -> str:
    return "AKIA" + "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(16))


def write_properties(path: Path, properties: Mapping[str, object], *, header: str = "") -> Path:
    """Write a Java-style .properties file (None values are left out, booleans as true/false)."""
    lines = [f"# {line}" for line in header.splitlines()]
    for name, value in properties.items():
        if value is None:
            continue
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        lines.append(f"{escape_key(name)}={escape_value(text)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


class Emulator:
    """A local stand-in for the vendor cloud, for tests and the demo. Use as a context manager."""

    def __init__(
        self,
        spec: DatasetSpec,
        workdir: Path,
        faults: FaultConfig | None = None,
        *,
        gws_username: str = "rcbs@customer_tenant.com",
        gws_password: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        port: int = 0,
        s3_port: int = 0,
        api_path: str = "/api/v2",
        media: MediaMode = "eager",
        encryption: Algorithm = "AES-256",
        tenant_key_path: Path | None = None,
        tenant_cert_path: Path | None = None,
        tenant_key_password: str | None = None,
        upload_workers: int = 4,
        chat_retention_days: int = DEFAULT_CHAT_RETENTION_DAYS,
        chat_clock: Callable[[], datetime] | None = None,
        tls: TestCA | None = None,
    ) -> None:
        if (tenant_key_path is None) != (tenant_cert_path is None):
            raise ValueError("give both tenant_key_path and tenant_cert_path, or neither")
        self.spec = spec
        self.workdir = Path(workdir)
        self.gws_username = gws_username
        self.gws_password = gws_password or secrets.token_urlsafe(18)
        self.aws_access_key_id = aws_access_key_id or _random_key_id()
        self.aws_secret_access_key = aws_secret_access_key or secrets.token_urlsafe(30)[:40]
        self.media_mode: MediaMode = media
        self.encryption: Algorithm = encryption
        self.injector = FaultInjector(faults)
        self.requests = RequestLog()
        self._port = port
        self._s3_port = s3_port
        self._api_path = api_path
        self._given_key = (tenant_key_path, tenant_cert_path, tenant_key_password)
        self._upload_workers = max(1, upload_workers)
        self._tenant_keys: list[TenantKey] = []
        self._by_alias: dict[str, TenantKey] = {}
        self._lock = threading.Lock()
        self._created: set[tuple[str, str]] = set()
        self._deleted: set[tuple[str, str]] = set()
        self._dataset: Dataset | None = None
        self._chat_settings = (chat_retention_days, chat_clock)
        self._contacts: ContactHistory | None = None
        self._chat: ChatHistory | None = None
        self._moto: MotoProcess | None = None
        self._store: S3Store | None = None
        self._proxy: S3Proxy | None = None
        self._api: RecordingApiServer | None = None
        self._tls = tls
        self._started = False

    # ------------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> Emulator:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        """Generate or load the tenant key, start S3, upload media (eager), start the proxy and API."""
        if self._started:
            return
        self._started = True
        try:
            self.workdir.mkdir(parents=True, exist_ok=True)
            key_path, cert_path, password = self._given_key
            if key_path is not None and cert_path is not None:
                tenant = load_tenant_key(key_path, cert_path, password)
            else:
                tenant = generate_tenant_key(self.workdir / "tenant.key", self.workdir / "tenant.pem")
            self._add_tenant_key(tenant)
            self._dataset = Dataset(self.spec, cert_alias=tenant.alias)
            self._contacts = ContactHistory(self._dataset)
            self._chat = ChatHistory(self._dataset, retention_days=self._chat_settings[0], clock=self._chat_settings[1])
            self._moto = MotoProcess(self.workdir / "moto.log")
            self._moto.start()
            self._store = S3Store(self._moto.url, self.aws_access_key_id, self.aws_secret_access_key)
            self._store.create_buckets(self._dataset.storage)
            if self.media_mode == "eager":
                self._upload_range(self._dataset.start_ms, self._dataset.end_ms)
            self._proxy = S3Proxy(
                self._moto.port,
                self.injector,
                {self.aws_access_key_id: self.aws_secret_access_key},
                port=self._s3_port,
                requests=self.requests,
                on_object_read=self._on_object_read if self.media_mode == "lazy" else None,
                tls=self._tls.server_context("s3") if self._tls else None,
            )
            self._proxy.start()
            self._api = RecordingApiServer(
                self._dataset,
                self.injector,
                username=self.gws_username,
                password=self.gws_password,
                port=self._port,
                api_path=self._api_path,
                requests=self.requests,
                contacts=self._contacts,
                chat=self._chat,
                tls=self._tls.server_context("api") if self._tls else None,
            )
            self._api.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop every server (idempotent). The workdir (keys, logs) is left in place."""
        for part in (self._api, self._proxy):
            if part is not None:
                part.stop()
        self._api = self._proxy = None
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        self._started = False

    # ------------------------------------------------------------------------------- facts

    @property
    def dataset(self) -> Dataset:
        if self._dataset is None:
            raise RuntimeError("the emulator is not started")
        return self._dataset

    @property
    def contacts(self) -> ContactHistory:
        """The contact history the API serves (ground truth: `contacts.iter_items(from_ms, to_ms)`)."""
        if self._contacts is None:
            raise RuntimeError("the emulator is not started")
        return self._contacts

    @property
    def chat(self) -> ChatHistory:
        """The chat messages the API serves (`chat.users`, `chat.messages(user_id, ...)`, retention)."""
        if self._chat is None:
            raise RuntimeError("the emulator is not started")
        return self._chat

    @property
    def gws_uri_prefix(self) -> str:
        """The `gwsUriPrefix` of config.properties, e.g. http://127.0.0.1:PORT/api/v2."""
        if self._api is None:
            raise RuntimeError("the emulator is not started")
        return self._api.uri_prefix

    @property
    def s3_endpoint(self) -> str:
        """The S3 endpoint URL (the authenticating, fault-injecting proxy in front of moto)."""
        if self._proxy is None:
            raise RuntimeError("the emulator is not started")
        return self._proxy.url

    @property
    def storage(self) -> list[StorageEntry]:
        """The settings API's storage entries."""
        return list(self.dataset.storage)

    @property
    def tenant_key_path(self) -> Path:
        """The current tenant private key (PEM)."""
        return self._tenant_keys[-1].key_path

    @property
    def tenant_cert_path(self) -> Path:
        """The current tenant recording certificate (PEM)."""
        return self._tenant_keys[-1].cert_path

    @property
    def tenant_keys(self) -> list[TenantKey]:
        """Every key pair the tenant had, oldest first (see `rotate_certificate`)."""
        return list(self._tenant_keys)

    @property
    def start_ms(self) -> int:
        return self.dataset.start_ms

    @property
    def end_ms(self) -> int:
        return self.dataset.end_ms

    @property
    def counters(self) -> dict[str, int]:
        """Requests per endpoint and injected faults (`recordings.requests`, `s3.errors`, ...)."""
        return self.injector.snapshot()

    def request_log(self, endpoint: str | None = None) -> list[RequestRecord]:
        """The requests the API and S3 proxy answered, oldest first."""
        return self.requests.snapshot(endpoint)

    def env(self) -> dict[str, str]:
        """GWS_USERNAME, GWS_PASSWORD, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_ENDPOINT_URL."""
        return {
            "GWS_USERNAME": self.gws_username,
            "GWS_PASSWORD": self.gws_password,
            "AWS_ACCESS_KEY_ID": self.aws_access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.aws_secret_access_key,
            "AWS_ENDPOINT_URL": self.s3_endpoint,
        }

    def connection_facts(self) -> dict[str, Any]:
        """Everything a client needs, as JSON-able data (what `--ready-file` receives)."""
        return {
            "gwsUriPrefix": self.gws_uri_prefix,
            "s3Endpoint": self.s3_endpoint,
            "env": self.env(),
            "tenantKeyPath": str(self.tenant_key_path),
            "tenantCertPath": str(self.tenant_cert_path),
            "tenant": self.spec.tenant,
            "storage": [e.to_json() for e in self.storage],
            "startMs": self.start_ms,
            "endMs": self.end_ms,
            "recordings": self.dataset.count(self.start_ms, self.end_ms),
            "chatUsers": [u.id for u in self.chat.users],
            "media": self.media_mode,
            "pid": os.getpid(),
        }

    def write_config(self, path: Path, target_dir: str | Path | None = None, **properties: object) -> Path:
        """Write an RCBS config.properties for this emulator.

        Sets gwsUriPrefix, awsEndpointUrl (our property for a non-AWS S3 endpoint) and targetDir.
        Unless one of minAge/maxAge/minDate/maxDate is given, the window is the whole dataset, in the
        RCBS's terms: maxDate = the oldest start (epoch ms), minDate = the end (epoch ms). Other
        keyword arguments are written verbatim as properties (None leaves one out).
        """
        props: dict[str, object] = {
            "gwsUriPrefix": self.gws_uri_prefix,
            "awsEndpointUrl": self.s3_endpoint,
        }
        if target_dir is not None:
            props["targetDir"] = Path(target_dir).as_posix()
        if not any(name in properties for name in _DATE_PROPERTIES):
            props["maxDate"] = self.start_ms
            props["minDate"] = self.end_ms
        props.update(properties)
        return write_properties(path, props, header="RCBS configuration for the cxbackup emulator")

    # ------------------------------------------------------------------------------- ground truth

    def records(self, start_ms: int | None = None, end_ms: int | None = None) -> Iterator[Record]:
        """The recordings starting in [start_ms, end_ms) (default: all), sorted as the API sorts them."""
        return self.dataset.iter_records(start_ms, end_ms)

    def record(self, call_uuid: str) -> Record | None:
        return self.dataset.record(call_uuid)

    def media_plaintext(self, media_id: str) -> bytes:
        """The media file's bytes before encryption (what a decrypted backup must equal)."""
        return self.dataset.media_plaintext(media_id)

    def media_location(self, media_id: str) -> tuple[str, str]:
        """(bucket, key) of a media object."""
        found = self.dataset.find_media(media_id)
        if found is None:
            raise KeyError(f"no recording has media {media_id!r}")
        entry = self.dataset.storage_for(found[0])
        return entry.bucket, entry.key(media_id)

    def object_exists(self, media_id: str) -> bool:
        """Whether the media object is in S3 now."""
        bucket, key = self.media_location(media_id)
        return self._s3().exists(bucket, key)

    # ------------------------------------------------------------------------------- changes

    def set_faults(self, faults: FaultConfig | None) -> None:
        """Replace the fault configuration (thread-safe; takes effect on the next request)."""
        self.injector.set_config(faults or FaultConfig())

    @property
    def faults(self) -> FaultConfig:
        return self.injector.config

    def extend(self, hours: int = 1) -> tuple[int, int]:
        """New recordings arrive: append `hours` to the dataset; returns the new [from_ms, to_ms)."""
        lo, hi = self.dataset.extend(hours)
        if self.media_mode == "eager":
            self._upload_range(lo, hi)
        return lo, hi

    def add_recording(
        self,
        start: datetime | int,
        *,
        screen: bool = False,
        voice_size: int | None = None,
        screen_size: int | None = None,
        fields: Mapping[str, Any] | None = None,
    ) -> Record:
        """Insert one recording (start as datetime or epoch ms, inside the span) and upload its media."""
        start_ms = start if isinstance(start, int) else int(start.timestamp() * 1000)
        rec = self.dataset.add_recording(
            start_ms, screen=screen, voice_size=voice_size, screen_size=screen_size, fields=fields
        )
        if self.media_mode == "eager":
            self._upload_record(rec)
        return rec

    def delete_object(self, media_id: str) -> None:
        """Remove a media object from S3 (the metadata still lists it); lazy mode will not recreate it."""
        bucket, key = self.media_location(media_id)
        with self._lock:
            self._deleted.add((bucket, key))
        self._s3().delete(bucket, key)

    def rotate_certificate(self, *, key_path: Path | None = None, cert_path: Path | None = None) -> TenantKey:
        """A new tenant certificate for recordings after the current end (see `extend`).

        Generated into the workdir as tenant-N.key/.pem unless given. Earlier recordings stay
        encrypted to the earlier certificates; `tenant_keys` lists them all.
        """
        n = len(self._tenant_keys) + 1
        if key_path is not None and cert_path is not None:
            tenant = load_tenant_key(key_path, cert_path)
        else:
            tenant = generate_tenant_key(self.workdir / f"tenant-{n}.key", self.workdir / f"tenant-{n}.pem")
        self._add_tenant_key(tenant)
        self.dataset.set_cert_alias(tenant.alias)
        return tenant

    # ------------------------------------------------------------------------------- internals

    def _s3(self) -> S3Store:
        if self._store is None:
            raise RuntimeError("the emulator is not started")
        return self._store

    def _add_tenant_key(self, tenant: TenantKey) -> None:
        self._tenant_keys.append(tenant)
        self._by_alias[tenant.alias] = tenant

    def _encrypted(self, record: Record, media: Mapping[str, Any]) -> bytes:
        media_id = str(media["mediaId"])
        alias = (media.get("certAlias") or [""])[0]
        tenant = self._by_alias.get(alias, self._tenant_keys[0])
        plaintext = self.dataset.media_plaintext(media_id, int(media["size"]))
        return encrypt(plaintext, tenant.certificate, self.encryption)

    def _upload_one(self, record: Record, media: Mapping[str, Any]) -> None:
        entry = self.dataset.storage_for(record)
        key = entry.key(str(media["mediaId"]))
        with self._lock:
            if (entry.bucket, key) in self._deleted:
                return
        self._s3().put(entry.bucket, key, self._encrypted(record, media))
        with self._lock:
            self._created.add((entry.bucket, key))

    def _upload_record(self, record: Record) -> None:
        for media in record.get("mediaFiles", []):
            if media.get("mediaId"):
                self._upload_one(record, media)

    def _upload_range(self, lo: int, hi: int) -> None:
        """Upload the media of [lo, hi), with at most a few records in memory at a time."""
        in_flight: deque[Future[None]] = deque()
        with ThreadPoolExecutor(self._upload_workers, thread_name_prefix="emulator-upload") as pool:
            for rec in self.dataset.iter_records(lo, hi):
                in_flight.append(pool.submit(self._upload_record, rec))
                if len(in_flight) >= 4 * self._upload_workers:
                    in_flight.popleft().result()
            while in_flight:
                in_flight.popleft().result()

    def _on_object_read(self, bucket: str, key: str) -> None:
        with self._lock:
            if (bucket, key) in self._created or (bucket, key) in self._deleted:
                return
        for entry in self.dataset.storage:
            if entry.bucket == bucket and key.startswith(entry.prefix):
                found = self.dataset.find_media(key[len(entry.prefix) :])
                if found is not None and self.dataset.storage_for(found[0]) == entry:
                    self._upload_one(*found)
                return

    def write_ready_file(self, path: Path) -> Path:
        """Write `connection_facts()` as JSON, mode 0600 (it holds the throwaway credentials)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(self.connection_facts(), fh, indent=2)
            fh.write("\n")
        tmp.replace(path)
        return path
