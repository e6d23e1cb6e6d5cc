"""One export run: read the records, package and encrypt them in parts, store them, report.

```python
result = run_export(request, ApiSource.from_env(os.environ), open_store("/data/exports"),
                    load_certificate(Path("cert.pem")), now=datetime.now(UTC))
result.state            # "Succeeded" | "Failed"
result.artifacts        # [ArtifactInfo] -> result.artifact_records() for status.artifacts
result.to_run_record(job_name)          # status.history entry
result.to_json()        # <= 4096 bytes, for the termination message
```

The run's id is its start time (`now`, whole seconds, UTC). Parts are staged as they are closed
(encrypted one at a time, so memory stays at about one part) and published together when every
record was read; any failure discards the staging area, so a failed run leaves no artifact (see
store.py). Failures come back as a Failed result, not as exceptions: `error` (already redacted) and
`retryable` (temporary: throttling, 5xx, store I/O). KeyboardInterrupt and SystemExit still discard
the staging area and propagate.

An export with no records succeeds with no artifact; `notes` explain it, e.g. "user u1: the requested
range is outside the chat retention period of 90 days (oldest available 2026-05-27)".
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509

from cxbackup.certs.cms import Algorithm
from cxbackup.core.redact import Redactor
from cxbackup.export.errors import ExportError, StoreError
from cxbackup.export.names import artifact_name, format_iso, run_id_for
from cxbackup.export.packaging import (
    CONTACT_HEADERS,
    MANIFEST_KIND,
    ExportPackager,
    PackedPart,
    chat_member_names,
    check_certificate,
    contact_chunks,
    encrypt_part,
    ndjson_line,
)
from cxbackup.export.request import ExportRequest, TimeRange
from cxbackup.export.result import ExportResult
from cxbackup.export.source import ChatRetention, RecordSource
from cxbackup.export.store import ArtifactInfo, ArtifactStore, new_staging_id

__all__ = ["ExportSink", "Filler", "NullSink", "PackagedRun", "retention_note", "run_export", "run_packaged"]

log = logging.getLogger(__name__)


class ExportSink(Protocol):
    """Progress of a run, for a console or a status patcher. Calls come from the running thread."""

    def progress(self, records: int, what: str) -> None:
        """`records` read so far; `what` is "contacts" or "chat messages of user <id>"."""

    def part_stored(self, info: ArtifactInfo) -> None:
        """A part was encrypted and staged (published only when the run succeeds)."""

    def note(self, text: str) -> None:
        """An explanation worth showing (empty result, retention, certificate warning)."""


class NullSink:
    """A sink that ignores everything."""

    def progress(self, records: int, what: str) -> None:
        pass

    def part_stored(self, info: ArtifactInfo) -> None:
        pass

    def note(self, text: str) -> None:
        pass


def retention_note(user: str, count: int, retention: ChatRetention | None, time_range: TimeRange) -> str | None:
    """Why a user's chat export is empty or shortened, or None when there is nothing to say."""
    if retention is not None and retention.range_outside:
        oldest = ""
        if retention.oldest_available is not None:
            oldest = f" (oldest available {retention.oldest_available.date().isoformat()})"
        return f"user {user}: the requested range is outside the chat retention period of {retention.days} days{oldest}"
    cut = ""
    if retention is not None and retention.range_truncated:
        when = format_iso(retention.oldest_available) if retention.oldest_available else "the retention limit"
        cut = f"messages before {when} are outside the chat retention period of {retention.days} days"
    if count == 0:
        return f"user {user}: no chat messages in the range {time_range.describe()}" + (f"; {cut}" if cut else "")
    return f"user {user}: {cut} and are not in the export" if cut else None


def run_export(
    request: ExportRequest,
    source: RecordSource,
    store: ArtifactStore,
    certificate: x509.Certificate,
    *,
    now: datetime | None = None,
    sink: ExportSink | None = None,
    clock: Callable[[], datetime] | None = None,
    redactor: Redactor | None = None,
    spool_dir: Path | None = None,
) -> ExportResult:
    """Run one export (see the module docstring). `now` is the run's start (default: `clock()`);
    `clock` stamps createdAt of each part and the completion time (default: the system clock)."""
    sink = sink or NullSink()

    def fill(packager: ExportPackager, range_: TimeRange, result: ExportResult, note: Callable[[str], None]) -> None:
        if request.type == "contactHistory":
            _contacts(source, range_, packager, sink)
            if packager.records == 0:
                note(f"no contacts in the range {range_.describe()}")
        else:
            _chat(request, source, range_, packager, sink, result, note)

    return run_packaged(
        PackagedRun(
            name=request.name,
            type=request.type,
            time_range=request.time_range,
            encryption=request.encryption,
            retention_days=request.retention_days,
            part_size=request.part_size,
            users=request.users,
            manifest={"users": list(request.users)} if request.type == "gdprChat" else {},
            headers=CONTACT_HEADERS if request.type == "contactHistory" else None,
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


Filler = Callable[[ExportPackager, TimeRange, ExportResult, Callable[[str], None]], None]
"""What reads the records of a run into the packager: (packager, range, result, note)."""


@dataclass(frozen=True)
class PackagedRun:
    """What every export type shares in a run: its name and type, how the range follows from the start,
    how the parts are encrypted, kept and cut, and the type's own manifest fields and CSV headers."""

    name: str
    type: str
    time_range: Callable[[datetime], TimeRange]
    encryption: Algorithm
    retention_days: int
    part_size: int
    users: tuple[str, ...] = ()
    manifest: Mapping[str, Any] = field(default_factory=dict)
    headers: Mapping[str, bytes] | None = None
    max_files: int | None = None


def run_packaged(
    run: PackagedRun,
    fill: Filler,
    store: ArtifactStore,
    certificate: x509.Certificate,
    *,
    now: datetime | None = None,
    sink: ExportSink | None = None,
    clock: Callable[[], datetime] | None = None,
    redactor: Redactor | None = None,
    spool_dir: Path | None = None,
) -> ExportResult:
    """One run of any export type: `fill` adds the records; everything else (certificate check, parts
    encrypted and staged, published together or discarded, the result) is the same for every type, so
    an artifact of any type is listed, downloaded and swept alike."""
    clock = clock or (lambda: datetime.now(UTC))
    sink = sink or NullSink()
    redactor = redactor or Redactor()
    started = (now or clock()).astimezone(UTC).replace(microsecond=0)
    run_id = run_id_for(started)
    staging_id = new_staging_id(run_id)
    result = ExportResult(run.name, run.type, run_id, started, users=run.users, store=store.location)
    published = False

    def add_note(text: str) -> None:
        result.notes.append(text)
        sink.note(text)

    try:
        time_range = run.time_range(started)
        result.range = time_range
        check_certificate(certificate, started)  # before anything is fetched: refused with ExportConfigError

        def on_part(part: PackedPart) -> None:
            try:
                name = artifact_name(run.name, run.type, time_range.start, time_range.end, run_id, part.number)
                data = encrypt_part(part, certificate, run.encryption)
            finally:
                part.close()
            created = clock().astimezone(UTC).replace(microsecond=0)
            info = ArtifactInfo.new(
                name,
                created,
                run.retention_days,
                export=run.name,
                type=run.type,
                run_id=run_id,
                part=part.number,
                last=part.last,
                records=part.records,
            )
            stored = store.stage(staging_id, data, info)
            log.debug("part %d: %s (%d records, %d bytes)", part.number, name, part.records, stored.size)
            sink.part_stored(stored)

        base: dict[str, Any] = {
            "kind": MANIFEST_KIND,
            "version": 1,
            "export": run.name,
            "type": run.type,
            "runId": run_id,
            "range": time_range.to_json(),
            **run.manifest,
        }
        packager = ExportPackager(
            part_size=run.part_size,
            manifest_base=base,
            on_part=on_part,
            created_at=started,
            headers=run.headers,
            notes=result.notes,
            spool_dir=spool_dir,
            max_files=run.max_files,
        )
        try:
            fill(packager, time_range, result, add_note)
            result.records = packager.records
            packager.finish()
        finally:
            packager.discard()
        result.artifacts = store.publish(staging_id)
        published = True
        result.state = "Succeeded"
    except ExportError as exc:
        result.fail_by(exc, redactor.clean(str(exc)))
    except Exception as exc:
        log.exception("export %s failed unexpectedly", run.name)
        message = redactor.clean(f"unexpected error: {type(exc).__name__}: {exc}")
        result.fail(message, retryable=False, reason="InternalError")
    finally:
        if not published:
            try:
                store.discard(staging_id)
            except (StoreError, ValueError) as exc:
                log.warning("could not remove the staging area %s: %s", staging_id, redactor.clean(str(exc)))
        result.completion_time = clock().astimezone(UTC)
    return result


def _contacts(source: RecordSource, time_range: TimeRange, packager: ExportPackager, sink: ExportSink) -> None:
    for page in source.contact_history(time_range):
        for item in page.items:
            packager.add(contact_chunks(item))
        sink.progress(packager.records, "contacts")


def _chat(
    request: ExportRequest,
    source: RecordSource,
    time_range: TimeRange,
    packager: ExportPackager,
    sink: ExportSink,
    result: ExportResult,
    add_note: Callable[[str], None],
) -> None:
    members = chat_member_names(request.users)
    for user in request.users:
        count = 0
        retention: ChatRetention | None = None
        for page in source.chat_messages(user, time_range):
            retention = retention or page.retention
            for item in page.items:
                packager.add([(members[user], ndjson_line(item))], user_id=user)
                count += 1
            sink.progress(count, f"chat messages of user {user}")
        result.user_records[user] = count
        note = retention_note(user, count, retention, time_range)
        if note:
            add_note(note)
