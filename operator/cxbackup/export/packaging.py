"""Packaging as CDDS does it: records as NDJSON (+ CSV for contact history), zipped, then CMS-encrypted.

An export is cut into parts. `ExportPackager` streams records into the current part: every file of the
part is spooled (`SpooledTemporaryFile`: memory up to `spool_memory` bytes, then disk) while its
SHA-256, size and record count are kept. When the next record would take the part's uncompressed size
(all its files, CSV headers included) over `part_size`, the part is closed and a new one begins; a
record is never split, so a part exceeds `part_size` only when one record alone is larger. The last
part is closed by `finish()`, which is how it knows it is the last. A part with no records is never
made, so an export without records makes no artifact.

A closed part is a zip (deflate) in a temporary file:

```
manifest.json                     what the part holds (below), written first
contact-history.ndjson            contactHistory: one JSON object per line, UTF-8
contact-history.csv               contactHistory: RFC 4180, UTF-8, header row, CRLF line ends
chat-messages/<userId>.ndjson     gdprChat: one file per subject user present in the part
```

manifest.json:

```json
{"kind": "CxbackupExportManifest", "version": 1, "export": "nightly", "type": "contactHistory",
 "runId": "20260825T001500Z", "range": {"from": "2026-08-24T00:00:00Z", "to": "2026-08-25T00:00:00Z"},
 "users": ["u1"], "createdAt": "2026-08-25T00:15:00Z", "part": 1, "last": true,
 "records": 120, "uncompressedBytes": 98765,
 "files": [{"name": "contact-history.ndjson", "records": 120, "bytes": 65432, "sha256": "..."}],
 "notes": ["user u2: ..."]}
```

(`users` only for gdprChat; a chat file entry also has `userId`; `notes` are the explanations known
when the part was written, e.g. a user whose range is outside the chat retention period.)

`check_certificate` refuses a certificate exports must not be encrypted to, with the rules of
`cxbackup cert inspect` (RSA of at least 2048 bits, valid now); every export run checks it before it
fetches anything, and `load_export_certificate` loads and checks the file an export pod is given.

`encrypt_part` wraps the zip as S/MIME enveloped-data (CMS, DER) to the certificate with AES-128 or
AES-256 (cxbackup.certs.cms), which `openssl cms -decrypt -inform DER -binary -inkey KEY` and
`openssl smime -decrypt -binary -inform DER -inkey KEY` read. CMS encryption is not streaming, so a
part's zip and its encrypted form are in memory together while it is encrypted, with the copies the
cryptography library makes: a peak of about four times the compressed part size (850 MB for a part of
200 MiB of incompressible media, measured), the bound on an export's memory.

A record may also be whole files (`spool_file` + `add_files`): a subjectAccess recording's metadata and
media files, written (streamed, decrypted) into spooled files before the record is added, so its size is
known when the part boundary is decided. `max_files` keeps such parts under what `export download`
accepts (MAX_PART_FILES).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from cryptography import x509

from cxbackup.certs import cms
from cxbackup.certs.validation import CertificateInvalid, read_certificate, validate_certificate
from cxbackup.export.errors import ExportConfigError, PackagingError
from cxbackup.export.names import format_iso, safe_member_name

__all__ = [
    "CHAT_DIR",
    "CONTACT_CSV",
    "CONTACT_CSV_COLUMNS",
    "CONTACT_HEADERS",
    "CONTACT_NDJSON",
    "MANIFEST_KIND",
    "MANIFEST_NAME",
    "MAX_PART_FILES",
    "ExportPackager",
    "PackedPart",
    "PartFile",
    "SpooledFile",
    "chat_member_names",
    "check_certificate",
    "contact_chunks",
    "contact_csv_row",
    "csv_line",
    "encrypt_part",
    "load_export_certificate",
    "ndjson_line",
]

MANIFEST_NAME = "manifest.json"
MANIFEST_KIND = "CxbackupExportManifest"
MAX_PART_FILES = 1000
"""The most files a part's zip may hold, manifest included: what `cxbackup export download` accepts by
default (download.ArchiveLimits.max_members), so a packager bounds a part's files below it."""
CONTACT_NDJSON = "contact-history.ndjson"
CONTACT_CSV = "contact-history.csv"
CHAT_DIR = "chat-messages"
CONTACT_CSV_COLUMNS = (
    "id",
    "type",
    "direction",
    "startTime",
    "endTime",
    "duration",
    "customer.id",
    "customer.phone",
    "customer.email",
    "agent.userName",
    "agent.employeeId",
    "queue",
    "disposition",
    "attachedData",
)
"""CSV columns: dotted paths into a contact; objects and lists (attachedData) are JSON text. NDJSON is
the lossless form: it keeps every field, including ones this list does not name."""

_COPY_CHUNK = 1024 * 1024


def ndjson_line(record: Mapping[str, Any]) -> bytes:
    """One NDJSON line: compact JSON, UTF-8 (non-ASCII kept), newline-terminated."""
    return (json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")


def csv_line(values: Sequence[str]) -> bytes:
    """One RFC 4180 CSV line (quoted where needed, CRLF)."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(values)
    return buf.getvalue().encode("utf-8")


CONTACT_HEADERS: dict[str, bytes] = {CONTACT_CSV: csv_line(CONTACT_CSV_COLUMNS)}
"""The header line of each contact-history file that has one (the CSV)."""


def _cell(record: Mapping[str, Any], path: str) -> str:
    value: Any = record
    for key in path.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return ""
        value = value[key]
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)
    return str(value)


def contact_csv_row(record: Mapping[str, Any]) -> bytes:
    """A contact as a CSV line of `CONTACT_CSV_COLUMNS`."""
    return csv_line([_cell(record, c) for c in CONTACT_CSV_COLUMNS])


def contact_chunks(record: Mapping[str, Any]) -> list[tuple[str, bytes]]:
    """What one contact adds to a part: its NDJSON line and its CSV row."""
    return [(CONTACT_NDJSON, ndjson_line(record)), (CONTACT_CSV, contact_csv_row(record))]


def chat_member_names(users: Sequence[str]) -> dict[str, str]:
    """user id -> `chat-messages/<safe id>.ndjson`, distinct even when two ids clean up alike."""
    out: dict[str, str] = {}
    taken: set[str] = set()
    for user in users:
        base = safe_member_name(user)
        name, n = base, 1
        while name.lower() in taken:
            n += 1
            name = f"{base}-{n}"
        taken.add(name.lower())
        out[user] = f"{CHAT_DIR}/{name}.ndjson"
    return out


def check_certificate(certificate: x509.Certificate, now: datetime) -> None:
    """Refuse a certificate customer data must not be encrypted to, by the rules `cxbackup cert inspect`
    applies (cxbackup.certs.validation.validate_certificate): not RSA, RSA under 2048 bits, not valid yet,
    expired. ExportConfigError (exit code 2) names the problem and its reason code."""
    try:
        validate_certificate(certificate, now=now)
    except CertificateInvalid as exc:
        raise ExportConfigError(f"the encryption certificate cannot be used: {exc.message} [{exc.reason}]") from None


def load_export_certificate(path: Path, now: datetime) -> x509.Certificate:
    """The certificate file an export run encrypts to, read and checked by the rules `cxbackup cert inspect`
    applies (cxbackup.certs.validation.read_certificate: one PEM certificate alone, RSA of at least 2048
    bits, valid now); ExportConfigError naming the problem and its reason code when it cannot be read or
    used. Call it before anything is fetched or written."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ExportConfigError(f"{path}: cannot read the certificate ({exc.strerror or exc})") from None
    try:
        certificate, _ = read_certificate(data, now=now)
    except CertificateInvalid as exc:
        raise ExportConfigError(
            f"the encryption certificate cannot be used: {path}: {exc.message} [{exc.reason}]"
        ) from None
    return certificate


@dataclass(frozen=True)
class PartFile:
    """One data file inside a part."""

    name: str
    records: int
    size: int
    sha256: str
    user_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "records": self.records, "bytes": self.size, "sha256": self.sha256}
        if self.user_id is not None:
            out["userId"] = self.user_id
        return out


@dataclass
class PackedPart:
    """A closed part: its zip in a temporary file (call `close()` when done)."""

    number: int
    last: bool
    records: int
    uncompressed: int
    files: list[PartFile]
    manifest: dict[str, Any]
    zip_file: IO[bytes]
    zip_size: int

    def read_zip(self) -> bytes:
        self.zip_file.seek(0)
        return self.zip_file.read()

    def close(self) -> None:
        self.zip_file.close()


def encrypt_part(part: PackedPart, certificate: x509.Certificate, algorithm: cms.Algorithm) -> bytes:
    """The part's zip as CMS enveloped-data (DER) to `certificate`."""
    try:
        return cms.encrypt(part.read_zip(), certificate, algorithm)
    except (ValueError, TypeError) as exc:
        raise PackagingError(f"cannot encrypt part {part.number} to the certificate: {exc}") from exc


@dataclass
class _Member:
    name: str
    spool: IO[bytes]
    user_id: str | None
    size: int = 0
    records: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    def write(self, data: bytes | memoryview, *, record: bool = False) -> None:
        self.spool.write(data)
        self.digest.update(data)
        self.size += len(data)
        if record:
            self.records += 1

    def rewind(self) -> None:
        """Forget what was written (cms.Output: a decryption retried with another key starts over)."""
        self.spool.seek(0)
        self.spool.truncate()
        self.digest = hashlib.sha256()
        self.size = 0
        self.records = 0


class SpooledFile:
    """A file of a part written before the record it belongs to is added (`ExportPackager.spool_file`):
    a media file streamed from the backup, whose size is known only once it is read. Its SHA-256 and size
    are kept while it is written; it is a `cms.Output`, so a decryption can stream into it. `close()` it
    when it is not handed to `ExportPackager.add_files`."""

    def __init__(self, member: _Member) -> None:
        self._member = member

    @property
    def name(self) -> str:
        return self._member.name

    @property
    def size(self) -> int:
        return self._member.size

    @property
    def sha256(self) -> str:
        return str(self._member.digest.hexdigest())

    def write(self, data: bytes | memoryview, /) -> int:
        self._member.write(data)
        return len(data)

    def rewind(self) -> None:
        self._member.rewind()

    def close(self) -> None:
        self._member.spool.close()


@dataclass
class _OpenPart:
    number: int
    members: dict[str, _Member] = field(default_factory=dict)
    records: int = 0
    size: int = 0


class ExportPackager:
    """Streams records into parts of at most `part_size` uncompressed bytes (see the module docstring).

    `manifest_base` holds the manifest fields every part shares; `notes` is read when a part closes.
    `on_part` receives each closed part and owns it from then on (it must `close()` it). `max_files`
    bounds the files of a part (a record is never split, so one record may still bring more): what
    `cxbackup export download` accepts by default (MAX_PART_FILES) when records bring files of their own.
    """

    def __init__(
        self,
        *,
        part_size: int,
        manifest_base: Mapping[str, Any],
        on_part: Callable[[PackedPart], None],
        created_at: datetime,
        headers: Mapping[str, bytes] | None = None,
        notes: Sequence[str] = (),
        spool_memory: int = 8 * 1024 * 1024,
        spool_dir: Path | None = None,
        max_files: int | None = None,
    ) -> None:
        if part_size < 1:
            raise ValueError("part_size must be >= 1")
        if max_files is not None and max_files < 1:
            raise ValueError("max_files must be >= 1")
        self.max_files = max_files
        self.part_size = part_size
        self._base = dict(manifest_base)
        self._on_part = on_part
        self._created_at = created_at.astimezone(UTC)
        self._headers = dict(headers or {})
        self._notes = notes
        self._spool_memory = spool_memory
        self._spool_tmp = str(spool_dir) if spool_dir is not None else None
        self._part: _OpenPart | None = None
        self.parts = 0
        self.records = 0

    def _new_bytes(self, part: _OpenPart, chunks: Sequence[tuple[str, bytes]]) -> int:
        size = sum(len(data) for _, data in chunks)
        for name in {name for name, _ in chunks}:
            if name not in part.members:
                size += len(self._headers.get(name, b""))
        return size

    def spool_file(self, name: str) -> SpooledFile:
        """A new file for `add_files`, spooled like the part's own files (memory up to `spool_memory`, then
        the spool folder)."""
        spool = tempfile.SpooledTemporaryFile(max_size=self._spool_memory, dir=self._spool_tmp)  # noqa: SIM115
        return SpooledFile(_Member(name, spool, None))

    def add_files(self, files: Sequence[SpooledFile]) -> None:
        """Add one record made of whole files (from `spool_file`, names unique in the export), each counted
        as one record in its manifest entry. The files are the packager's from now on (closed with the part),
        also when this raises."""
        if not files:
            return
        members = [f._member for f in files]
        try:
            size = sum(m.size for m in members)
            part = self._part
            if part is not None and part.records and self._full(part, size, len(members)):
                self._close(last=False)
                part = None
            if part is None:
                part = self._part = _OpenPart(self.parts + 1)
        except BaseException:
            for m in members:
                m.spool.close()
            raise
        for member in members:
            if member.name in part.members:
                for m in members:
                    m.spool.close()
                raise PackagingError(f"two files named {member.name!r} in one part")
        for member in members:
            member.records = 1
            part.members[member.name] = member
            part.size += member.size
        part.records += 1
        self.records += 1

    def _full(self, part: _OpenPart, new_bytes: int, new_files: int) -> bool:
        """Whether a record of `new_bytes` bringing up to `new_files` new files must go to the next part."""
        if part.size + new_bytes > self.part_size:
            return True
        return self.max_files is not None and len(part.members) + new_files > self.max_files

    def add(self, chunks: Sequence[tuple[str, bytes]], *, user_id: str | None = None) -> None:
        """Add one record, as the bytes it contributes to each file of a part."""
        if not chunks:
            return
        part = self._part
        new_files = len({name for name, _ in chunks} - set(part.members)) if part is not None else 0
        if part is not None and part.records and self._full(part, self._new_bytes(part, chunks), new_files):
            self._close(last=False)
            part = None
        if part is None:
            part = self._part = _OpenPart(self.parts + 1)
        for name, data in chunks:
            member = part.members.get(name)
            if member is None:
                spool = tempfile.SpooledTemporaryFile(max_size=self._spool_memory, dir=self._spool_tmp)  # noqa: SIM115
                member = part.members[name] = _Member(name, spool, user_id)
                header = self._headers.get(name)
                if header:
                    member.write(header, record=False)
                    part.size += len(header)
            member.write(data, record=True)
            part.size += len(data)
        part.records += 1
        self.records += 1

    def finish(self) -> int:
        """Close the last part (if any record came); returns how many parts there were."""
        if self._part is not None:
            self._close(last=True)
        return self.parts

    def discard(self) -> None:
        """Drop the open part without packaging it (after a failure)."""
        if self._part is not None:
            for member in self._part.members.values():
                member.spool.close()
            self._part = None

    def _close(self, *, last: bool) -> None:
        part = self._part
        assert part is not None
        self._part = None
        files = [PartFile(m.name, m.records, m.size, m.digest.hexdigest(), m.user_id) for m in part.members.values()]
        manifest = {
            **self._base,
            "createdAt": format_iso(self._created_at),
            "part": part.number,
            "last": last,
            "records": part.records,
            "uncompressedBytes": part.size,
            "files": [f.to_json() for f in files],
            "notes": list(self._notes),
        }
        out = tempfile.TemporaryFile(dir=self._spool_tmp)  # noqa: SIM115 - handed to PackedPart
        try:
            self._write_zip(out, part, manifest)
            size = out.seek(0, io.SEEK_END)
            out.seek(0)
        except BaseException:
            out.close()
            raise
        finally:
            for member in part.members.values():
                member.spool.close()
        self.parts += 1
        self._on_part(PackedPart(part.number, last, part.records, part.size, files, manifest, out, size))

    def _write_zip(self, out: IO[bytes], part: _OpenPart, manifest: dict[str, Any]) -> None:
        stamp = self._created_at.timetuple()[:6]
        date_time = (max(1980, stamp[0]), *stamp[1:])

        def info(name: str) -> zipfile.ZipInfo:
            zi = zipfile.ZipInfo(name, date_time=date_time)
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = 0o644 << 16
            return zi

        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
            body = json.dumps(manifest, ensure_ascii=False, indent=2).encode("utf-8") + b"\n"
            zf.writestr(info(MANIFEST_NAME), body)
            for member in part.members.values():
                member.spool.seek(0)
                with zf.open(info(member.name), "w", force_zip64=member.size >= zipfile.ZIP64_LIMIT) as dst:
                    shutil.copyfileobj(member.spool, dst, _COPY_CHUNK)
