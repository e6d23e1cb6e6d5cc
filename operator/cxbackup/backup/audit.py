"""Audit: compare the vendor's recording list for a window with what the target holds.

For every recording of the window that the config's filters keep (access filters, mediaTypePattern;
all shards unless `shard_only`), in the layout the worker writes (layout.py):

    ok                 every selected media file present with the size S3 reports, metadata present
    missing            nothing of it is in the target, or some selected media file is absent
    size_mismatch      a media file's size differs from the S3 object (or, after decryption, from
                       the metadata's `size`)
    metadata_missing   the media are there but `<callUUID>.json` is not
    undecryptable      (only with a key check) a media file does not decrypt with the given key/keyring
    erased             not in the target because an erasure removed it (the target's ledger says so)
    expired            not in the target because the retention sweep deleted it (the ledger says so)

A recording gets its worst status (in the order above, bottom to top), with every problem in
`problems`. With metadataOnly only the metadata is checked; without S3 access sizes are not compared
(present = ok). The key check is a function (`KeyCheck`): bytes + name -> decrypted length, raising
on failure; `key_check_from_key_file` / `key_check_from_keyring` build it from cxbackup.certs.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from cxbackup.backup.config import RcbsConfig
from cxbackup.backup.errors import MediaMissingError, RcbsError
from cxbackup.backup.layout import recording_paths
from cxbackup.backup.records import Recording
from cxbackup.backup.s3source import MediaSource
from cxbackup.backup.targets import BackupTarget
from cxbackup.backup.vendor_client import VendorClient
from cxbackup.backup.window import RecordingWindow

__all__ = [
    "AuditEntry",
    "AuditReport",
    "AuditStatus",
    "KeyCheck",
    "audit_recording",
    "iter_audit",
    "key_check_from_key_file",
    "key_check_from_keyring",
]

log = logging.getLogger("cxbackup.backup.audit")

KeyCheck = Callable[[bytes, str], int]


class AuditStatus(StrEnum):
    ERASED = "erased"
    EXPIRED = "expired"
    OK = "ok"
    METADATA_MISSING = "metadata_missing"
    UNDECRYPTABLE = "undecryptable"
    SIZE_MISMATCH = "size_mismatch"
    MISSING = "missing"


_RANK = {s: i for i, s in enumerate(AuditStatus)}


@dataclass(frozen=True)
class AuditEntry:
    recording_id: str
    start_ms: int | None
    status: AuditStatus
    problems: tuple[str, ...] = ()


@dataclass
class AuditReport:
    window: RecordingWindow
    counts: dict[str, int] = field(default_factory=lambda: {s.value: 0 for s in AuditStatus})
    checked: int = 0
    oldest_missing_start: int | None = None

    def add(self, entry: AuditEntry) -> None:
        self.checked += 1
        self.counts[entry.status.value] += 1
        start = entry.start_ms
        if entry.status is AuditStatus.MISSING and start is not None:
            self.oldest_missing_start = min(start, self.oldest_missing_start or start)

    @property
    def ok(self) -> bool:
        fine = (AuditStatus.OK, AuditStatus.ERASED, AuditStatus.EXPIRED)
        return self.checked == sum(self.counts[s.value] for s in fine)


class _Discard:
    """Where a key check's plaintext goes: only its length is wanted, so it is never kept."""

    def write(self, data: bytes | memoryview, /) -> None:
        pass

    def rewind(self) -> None:
        pass


def key_check_from_key_file(path: Path, password: str | None = None) -> KeyCheck:
    """Decrypt with one private key (like `openssl cms -decrypt -inkey KEY`)."""
    from cxbackup.certs.cms import decrypt_with_key_into, load_private_key

    key = load_private_key(path, password)

    def check(data: bytes, name: str) -> int:
        return decrypt_with_key_into(data, key, _Discard(), source=name)

    return check


def key_check_from_keyring(directory: Path, password: str | None = None) -> KeyCheck:
    """Decrypt with whichever key of a keyring directory the file names (each key with its own
    `.password` file, else `password`); a key that cannot be opened is logged as a warning."""
    from cxbackup.certs.keyring import Keyring

    keyring = Keyring.from_directory(directory, password)
    for unusable in keyring.unusable:
        log.warning("keyring: %s", unusable)

    def check(data: bytes, name: str) -> int:
        return keyring.decrypt_into(data, _Discard(), source=name)

    return check


def audit_recording(
    recording: Recording,
    config: RcbsConfig,
    target: BackupTarget,
    source: MediaSource | None,
    key_check: KeyCheck | None = None,
) -> AuditEntry:
    """The audit entry of one recording (see the module docstring)."""
    if recording.problem:
        return AuditEntry(recording.id, recording.start_ms, AuditStatus.MISSING, (recording.problem,))
    paths = recording_paths(recording, config.folder_format)
    problems: list[tuple[AuditStatus, str]] = []
    media = [] if config.metadata_only else config.media_selector.select(recording.media)
    present = 0
    for m in media:
        assert m.media_id is not None
        path = paths.media[m.media_id]
        have = target.size_of(path)
        if have is None:
            problems.append((AuditStatus.MISSING, f"media missing: {path}"))
            continue
        present += 1
        if source is not None:
            try:
                expected = source.size(source.locate(recording.region, m.media_id))
            except MediaMissingError:
                expected = have  # gone from S3 (retention); the copy here is all there is
            except RcbsError as exc:
                problems.append((AuditStatus.SIZE_MISMATCH, f"cannot check {path} against S3: {exc}"))
            else:
                if have != expected:
                    problems.append((AuditStatus.SIZE_MISMATCH, f"{path}: {have} bytes, S3 has {expected}"))
                    continue
        if key_check is not None:
            try:
                plain = key_check(target.read_bytes(path), path)
            except Exception as exc:  # CmsError and friends: any failure means "cannot decrypt"
                problems.append((AuditStatus.UNDECRYPTABLE, f"{path}: {exc}"))
                continue
            if m.size is not None and plain != m.size:
                problems.append(
                    (AuditStatus.SIZE_MISMATCH, f"{path}: decrypts to {plain} bytes, metadata says {m.size}")
                )
    has_metadata = target.size_of(paths.metadata) is not None
    if not has_metadata:
        if present == 0:
            problems = [(AuditStatus.MISSING, "not in the target")]
        else:
            problems.append((AuditStatus.METADATA_MISSING, f"metadata missing: {paths.metadata}"))
    if not problems:
        return AuditEntry(recording.id, recording.start_ms, AuditStatus.OK)
    worst = max((s for s, _ in problems), key=lambda s: _RANK[s])
    return AuditEntry(recording.id, recording.start_ms, worst, tuple(p for _, p in problems))


def iter_audit(
    config: RcbsConfig,
    window: RecordingWindow,
    vendor: VendorClient,
    target: BackupTarget,
    source: MediaSource | None,
    *,
    key_check: KeyCheck | None = None,
    shard_only: bool = False,
    removed: Mapping[str, str] | None = None,
) -> Iterator[AuditEntry]:
    """Audit entries of the window's recordings, in listing order, `concurrency` checks at a time.
    `removed`: recording id -> `erasure` or `retention`, the deletions the target's ledger records."""
    removed = removed or {}
    access = config.access_filter
    selector = config.media_selector
    shard = config.shard
    pending: deque[Future[AuditEntry]] = deque()
    limit = config.concurrency * 2
    check = functools.partial(audit_recording, config=config, target=target, source=source, key_check=key_check)
    with ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="rcbs-audit") as pool:
        for rec in vendor.iter_recordings(window):
            if shard_only and not shard.owns(rec.id):
                continue
            if not rec.problem and not access.matches(rec):
                continue
            if rec.media and not selector.select(rec.media):
                continue
            kind = removed.get(rec.id)
            if kind is not None and target.size_of(recording_paths(rec, config.folder_format).metadata) is None:
                status = AuditStatus.ERASED if kind == "erasure" else AuditStatus.EXPIRED
                done: Future[AuditEntry] = Future()
                done.set_result(AuditEntry(rec.id, rec.start_ms, status, (f"deleted ({kind}, in the ledger)",)))
                pending.append(done)
                continue
            pending.append(pool.submit(check, rec))
            while pending and (pending[0].done() or len(pending) >= limit):
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
