"""Subject access: a copy of one person's recordings, read from the BACKUP TARGET, as an export artifact.

A customer (the subject) asks for a copy of their recordings (a data-protection right of access). The
backup already holds them: `run_subject_export` finds them through the target's search index
(cxbackup.backup.search, the same query as `cxbackup search --phone/--agent/--from/--to`), and packs
each recording's files into parts exactly as the other exports do (runner.run_packaged: zip with
manifest.json, CMS enveloped-data to the requester's certificate, staged then published together, with
expiry), so `cxbackup export list/download/sweep` treat them alike. The vendor API is not asked.

```python
request = SubjectAccessRequest(name="dsar-2026-118", phones=(parse_phone("+1 647 838 9001"),))
result = run_subject_export(request, target, index_dir, open_store("/data/exports"), certificate,
                            keyring=None)  # or a Keyring to decrypt the media into the zip
```

A part's zip holds, per recording (a recording is never split across parts):

```
recordings/<callUUID>/<callUUID>.json        the metadata file as stored in the target
recordings/<callUUID>/<media file>           each media file the target holds, as stored (vendor CMS)
```

(`<callUUID>` is the recording's folder name in the target, layout.recording_folder_name.) With a
keyring the media files are decrypted instead, named as `cxbackup decrypt` names them
(layout.decrypted_name: `.bin` dropped, an extension from the media type); the whole zip is encrypted
to the requester's certificate either way. A part holds fewer than MAX_PART_FILES files, so `export
download` takes it with its default limits.

Every match counts: the search asks for up to MAX_LIMIT recordings, and a subject with more fails
(ExportConfigError) asking for a narrower --from/--to instead of exporting a silent subset.

Checks, each failing the run with the recording's id named and nothing stored (BackupContentError):
a file the index lists is missing from the target; a media file's size disagrees with the size the
index recorded (the metadata's `size`, bytes before encryption: compared with the decrypted length,
or, as stored, with the range of plaintext lengths the CMS ciphertext can hold); a media file does
not decrypt with the keyring. An index or target that cannot be read is BackupUnavailableError
(exit 5, retryable).

The subject's phone numbers and agent names never leave the run in clear: the manifest's `subject`
gives the kinds of criteria and their counts (`{"phoneNumbers": 1, "agents": 0}`), not the values
(and no hash of them either: a phone number's hash is found again by trying every number), and the
notes, errors, result JSON and logs only ever describe the criteria the same way. The recordings
themselves are the subject's data and are only inside the encrypted parts.

Files stream: each media file is copied (or decrypted) into a spooled file of the packager (memory up
to its spool size, then disk) while its SHA-256 is computed; an S3 object is first downloaded into a
private temporary file (decryption needs the whole CMS file, mapped rather than read into memory).
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import os
import sqlite3
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from cryptography import x509

from cxbackup.backup.errors import RcbsError
from cxbackup.backup.layout import decrypted_name
from cxbackup.backup.s3target import S3BucketTarget
from cxbackup.backup.search import (
    MAX_LIMIT,
    MIN_PHONE_DIGITS,
    Match,
    MediaMatch,
    SearchQuery,
    explain_empty,
    search_index,
)
from cxbackup.backup.targets import BackupTarget, LocalDirectoryTarget
from cxbackup.certs import cms
from cxbackup.certs.keyring import Keyring
from cxbackup.core.redact import Redactor
from cxbackup.core.times import to_ms
from cxbackup.export.errors import BackupContentError, BackupUnavailableError, ExportConfigError
from cxbackup.export.packaging import MAX_PART_FILES, ExportPackager, SpooledFile
from cxbackup.export.request import DEFAULT_PART_SIZE, TimeRange, check_run_settings
from cxbackup.export.result import ExportResult
from cxbackup.export.runner import ExportSink, NullSink, PackagedRun, run_packaged
from cxbackup.export.store import ArtifactStore

__all__ = ["EXPORT_TYPE", "RECORDINGS_DIR", "SubjectAccessRequest", "run_subject_export"]

log = logging.getLogger(__name__)

EXPORT_TYPE = "subjectAccess"
RECORDINGS_DIR = "recordings"
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_COPY_CHUNK = 1024 * 1024


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


@dataclass(frozen=True)
class SubjectAccessRequest:
    """One subject access export: who (phone numbers and/or agent names: a recording matching any of
    them), optionally which start times ([start, end)), and the settings every export has. Validated on
    construction (ExportConfigError naming the option, never the value)."""

    name: str
    phones: tuple[str, ...] = ()
    """The digits of phone numbers (backup.search.parse_phone); a recording matches when one of its
    numbers ends with them."""
    agents: tuple[str, ...] = ()
    """Agent or user names, or agent ids (case ignored)."""
    start: datetime | None = None
    end: datetime | None = None
    decrypt_media: bool = False
    encryption: cms.Algorithm = "AES-256"
    retention_days: int = 30
    part_size: int = DEFAULT_PART_SIZE

    def __post_init__(self) -> None:
        check_run_settings(self.name, self.encryption, self.retention_days, self.part_size)
        object.__setattr__(self, "phones", tuple(dict.fromkeys(self.phones)))
        object.__setattr__(self, "agents", tuple(dict.fromkeys(a.strip() for a in self.agents)))
        if not self.phones and not self.agents:
            raise ExportConfigError("a subjectAccess export needs the subject: --phone NUMBER and/or --agent NAME")
        for n, phone in enumerate(self.phones, 1):
            if not phone.isdigit() or len(phone) < MIN_PHONE_DIGITS:
                raise ExportConfigError(f"--phone: value {n} is not the digits of a phone number")
        if any(not agent for agent in self.agents):
            raise ExportConfigError("--agent: an empty name matches nothing")
        for label, value in (("--from", self.start), ("--to", self.end)):
            if value is not None and value.tzinfo is None:
                raise ExportConfigError(f"{label}: the time needs a timezone")
        if self.start is not None and self.end is not None and self.start >= self.end:
            raise ExportConfigError("--from must be before --to")

    def query(self) -> SearchQuery:
        """The index query: every recording of the subject (up to MAX_LIMIT) in the time range."""
        return SearchQuery(
            phones=self.phones,
            agents=self.agents,
            start_from=to_ms(self.start) if self.start is not None else None,
            start_to=to_ms(self.end) if self.end is not None else None,
            limit=MAX_LIMIT,
        )

    def time_range(self, now: datetime) -> TimeRange:
        """[--from or 1970-01-01, --to or the run time): the artifact names and manifest state the range."""
        end = self.end or now
        if (self.start or _EPOCH) >= end:
            raise ExportConfigError("--from is not before the run time")
        return TimeRange(self.start or _EPOCH, end)

    def describe(self) -> str:
        """The criteria without their values, for notes and logs: "the subject's 1 phone number"."""
        kinds = []
        if self.phones:
            kinds.append(_count(len(self.phones), "phone number", "phone numbers"))
        if self.agents:
            kinds.append(_count(len(self.agents), "agent name", "agent names"))
        return "the subject's " + " or ".join(kinds)

    def subject_json(self) -> dict[str, int]:
        """The manifest's `subject`: what kind of criteria, how many; never the values."""
        return {"phoneNumbers": len(self.phones), "agents": len(self.agents)}


class _Reader:
    """The target's files as local files: a folder's own, an S3 object downloaded into `tmp` (0600)."""

    def __init__(self, target: BackupTarget, tmp: Path) -> None:
        self._target = target
        self._tmp = tmp
        self._n = 0

    @contextlib.contextmanager
    def local(self, path: str) -> Iterator[Path | None]:
        """The file `path` of the target as a local file while the block runs; None when it is missing."""
        target = self._target
        try:
            if isinstance(target, LocalDirectoryTarget):
                local = target.resolve(path)
                yield local if local.is_file() else None
                return
            if not isinstance(target, S3BucketTarget):
                raise TypeError(f"cannot read files of {target!r}")
            self._n += 1
            dest = self._tmp / f"{self._n}"
            if not target.download_to(path, dest):
                yield None
                return
        except (RcbsError, OSError) as exc:
            raise BackupUnavailableError(f"cannot read {path} in the backup target: {exc}") from exc
        try:
            yield dest
        finally:
            dest.unlink(missing_ok=True)


@contextlib.contextmanager
def _mapped(path: Path) -> Iterator[bytes | mmap.mmap]:
    """The file's bytes mapped (never read into memory), or b"" for an empty file (mmap refuses those)."""
    with open(path, "rb") as fh:
        if os.fstat(fh.fileno()).st_size == 0:
            yield b""
            return
        data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            yield data
        finally:
            with contextlib.suppress(BufferError):  # a traceback may still hold a view into it
                data.close()


def _copy(src: IO[bytes], out: SpooledFile) -> None:
    while chunk := src.read(_COPY_CHUNK):
        out.write(chunk)


class _Packer:
    """Packs one recording after another (see the module docstring)."""

    def __init__(self, reader: _Reader, packager: ExportPackager, keyring: Keyring | None) -> None:
        self._reader = reader
        self._packager = packager
        self._keyring = keyring

    def recording(self, match: Match) -> None:
        folder = match.folder.rpartition("/")[2]
        base = f"{RECORDINGS_DIR}/{folder}"
        files: list[SpooledFile] = []
        try:
            meta = self._packager.spool_file(f"{base}/{folder}.json")
            files.append(meta)
            with self._reader.local(match.metadata) as local:
                if local is None:
                    raise self._missing(match, match.metadata)
                with open(local, "rb") as fh:
                    _copy(fh, meta)
            for media in match.media:
                if media.path is not None:  # None: in the metadata, never backed up
                    files.append(self._media(match, media, base))
        except BaseException:
            for f in files:
                f.close()
            raise
        self._packager.add_files(files)

    @staticmethod
    def _missing(match: Match, path: str) -> BackupContentError:
        return BackupContentError(
            f"recording {match.id}: {path} is in the search index but not in the backup target; rebuild the "
            "index (`cxbackup index`) and export again"
        )

    def _media(self, match: Match, media: MediaMatch, base: str) -> SpooledFile:
        assert media.path is not None
        name = media.path.rpartition("/")[2]
        out_name = decrypted_name(name, media.type) if self._keyring is not None else name
        out = self._packager.spool_file(f"{base}/{out_name}")
        try:
            with self._reader.local(media.path) as local:
                if local is None:
                    raise self._missing(match, media.path)
                if self._keyring is not None:
                    self._decrypt(match, media, local, out)
                else:
                    with open(local, "rb") as fh:
                        _copy(fh, out)
                    self._check_stored(match, media, local, out.size)
        except BaseException:
            out.close()
            raise
        return out

    def _decrypt(self, match: Match, media: MediaMatch, local: Path, out: SpooledFile) -> None:
        assert self._keyring is not None
        where = f"recording {match.id}: media file {media.path}"
        try:
            with _mapped(local) as data:
                size = self._keyring.decrypt_into(data, out)
        except cms.CmsError as exc:
            raise BackupContentError(f"{where} cannot be decrypted: {exc}") from None
        if media.size is not None and size != media.size:
            raise BackupContentError(f"{where} decrypts to {size} bytes; the index recorded {media.size}")

    @staticmethod
    def _check_stored(match: Match, media: MediaMatch, local: Path, stored: int) -> None:
        """The stored (encrypted) file against the plaintext size the index recorded: the CMS ciphertext
        bounds the plaintext's length without the key; a file that is not CMS is compared as it is."""
        if media.size is None:
            return
        where = f"recording {match.id}: media file {media.path}"
        try:
            with _mapped(local) as data:
                bounds = cms.plaintext_size_range(data) if cms.looks_like_cms(data) else (stored, stored)
        except cms.CmsError as exc:
            raise BackupContentError(f"{where} is not readable CMS: {exc}") from None
        if bounds is not None and not bounds[0] <= media.size <= bounds[1]:
            holds = f"{bounds[0]}" if bounds[0] == bounds[1] else f"{bounds[0]} to {bounds[1]}"
            raise BackupContentError(
                f"{where} holds {holds} bytes of media ({stored} bytes stored); the index recorded {media.size}"
            )


def run_subject_export(
    request: SubjectAccessRequest,
    target: BackupTarget,
    index_dir: Path,
    store: ArtifactStore,
    certificate: x509.Certificate,
    *,
    keyring: Keyring | None = None,
    where: str | None = None,
    now: datetime | None = None,
    sink: ExportSink | None = None,
    clock: Callable[[], datetime] | None = None,
    redactor: Redactor | None = None,
    spool_dir: Path | None = None,
) -> ExportResult:
    """Export the subject's recordings in `target` (a folder or an S3 bucket target), found through the
    index files in `index_dir` (the target's own, or a local copy of an S3 target's), into `store`,
    encrypted to `certificate`; with `request.decrypt_media`, the media files are decrypted with
    `keyring` first. `where` names the target in messages (default: its description). Like run_export,
    failures come back as a Failed result (only a missing keyring, a caller's mistake, raises
    ExportConfigError); no Kubernetes here, the caller passes plain objects."""
    sink = sink or NullSink()
    if request.decrypt_media and keyring is None:
        raise ExportConfigError("--decrypt-media needs --keyring DIR (the tenant's recording keys)")
    described = where or str(getattr(target, "description", target))

    def fill(packager: ExportPackager, _range: TimeRange, result: ExportResult, note: Callable[[str], None]) -> None:
        query = request.query()
        try:
            found = search_index(index_dir, query, count=False)
        except sqlite3.Error as exc:
            raise BackupUnavailableError(
                f"the search index of {described} cannot be read ({exc}); rebuild it with `cxbackup index`"
            ) from None
        matches = found.matches
        if len(matches) >= MAX_LIMIT:
            raise ExportConfigError(
                f"{request.describe()} match more than {MAX_LIMIT - 1} backed-up recordings; export them in "
                "several runs with --from/--to"
            )
        if not matches:
            note(explain_empty(found, query, request.describe()))
            return
        found_text = _count(len(matches), "recording", "recordings")
        log.info("%s: %s of the subject in %s", request.name, found_text, described)
        with tempfile.TemporaryDirectory(prefix="cxbackup-subject-", dir=spool_dir) as tmp:
            packer = _Packer(_Reader(target, Path(tmp)), packager, keyring if request.decrypt_media else None)
            for n, match in enumerate(matches, 1):
                packer.recording(match)
                log.debug("recording %s packed", match.id)
                sink.progress(n, "recordings")

    manifest: dict[str, Any] = {
        "subject": request.subject_json(),
        "media": "decrypted" if request.decrypt_media else "as stored",
    }
    return run_packaged(
        PackagedRun(
            name=request.name,
            type=EXPORT_TYPE,
            time_range=request.time_range,
            encryption=request.encryption,
            retention_days=request.retention_days,
            part_size=request.part_size,
            manifest=manifest,
            max_files=MAX_PART_FILES - 1,  # and the manifest
        ),
        fill,
        store,
        certificate,
        now=now,
        sink=sink,
        clock=clock,
        redactor=redactor,
        spool_dir=spool_dir,
    )
