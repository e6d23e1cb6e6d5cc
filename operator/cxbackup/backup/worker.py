"""The backup worker: one run of `cxbackup download` for one shard and one window.

    run_backup(config, credentials, now=..., sink=...) -> RunSummary

1. Opens the target and takes the shard's lock (LockHeldError when another instance has it).
2. Computes the window (explicit windowStart/windowEnd, else `compute_window` with the stored last
   recording end time of this shard).
3. Lists the window's metadata a page at a time (in day-long chunks, logged the way RCBS logs them), at
   most `recordings_limit` records in all (maxRecordingsPerRun; a window whose `total` is already
   larger fails before the first page, a listing that goes past it stops there: ListingLimitError),
   keeps the recordings of this shard (sharding.py) that pass the filters (selection.py), and hands
   each to a pool of `concurrency` threads through a bounded queue (2 x concurrency in flight), so
   memory stays bounded whatever the window.
4. Per recording: lists its folder once (removing temporary files a killed run left); for each selected
   media file, skips it when the target has it with the size S3 reports (HEAD), else downloads the object
   into a temporary file (the CRT S3 client writes it natively when the target is a folder, see
   crtsource.py; otherwise 1 MiB chunks through Python), checks Content-Length and the MD5 (ETag)
   when S3 gives one, fsyncs and renames; retries with backoff on 429/5xx/SlowDown/reset/truncated
   bodies; then writes `<callUUID>.json` last and fsyncs the folder once (making every rename in it
   durable). With the native transfer (a folder target, nativefetch.py) the scan stays here and the
   rest of this step, media of a recording in parallel, is done by the `cxbackup-fetch` program, with
   the same checks (a stored CRC where S3 keeps one, else the MD5), no thread per download here. A
   recording whose media and metadata are all present is "skipped". Either way, the
   recording then gets its entry in the shard's search index (index.py; a local copy uploaded at the
   end for an S3 target), committed in batches; a failed recording gets none.
5. When the whole window finished with zero failures and the index is committed, stores the window
   end as the last recording end time (never backwards). Logs RCBS's summary line and the failed ids with reasons.

Everything that does I/O is passed in (vendor client, media source, target, sleep), so tests run the
real logic against fakes; `connections.py` builds the real ones.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar, cast

from cxbackup.backup.config import Credentials, RcbsConfig
from cxbackup.backup.connections import make_fetcher, make_media_source, make_vendor_client, open_target
from cxbackup.backup.errors import (
    ListingLimitError,
    MediaIntegrityError,
    MediaMissingError,
    MediaSourceError,
    RcbsError,
    TargetError,
)
from cxbackup.backup.holds import LEDGER_DIR, read_holds, update_holds
from cxbackup.backup.index import (
    INDEX_DIR,
    IndexEntry,
    IndexSession,
    IndexStore,
    IndexWriter,
    ObjectTree,
    ShardIndex,
    entry_from_recording,
    fill_shard,
    iter_object_tree,
    iter_tree,
    open_copied_index,
    open_local_index,
    shard_index_name,
)
from cxbackup.backup.layout import FolderFormat, RecordingPaths, recording_paths
from cxbackup.backup.nativefetch import Answer, NativeFetcher, file_request, raising, recording_request
from cxbackup.backup.progress import LogProgressSink, ProgressSink, RecordingResult, RecordingStatus, RunSummary
from cxbackup.backup.records import MediaFile, Recording
from cxbackup.backup.removal import erased_ids, sweep_shard
from cxbackup.backup.s3source import FileMediaSource, MediaRef, MediaSource, S3MediaSource
from cxbackup.backup.sharding import ShardAssignment
from cxbackup.backup.state import advance_last_end_time, lock_name, read_last_end_time, state_file_name
from cxbackup.backup.targets import BackupTarget, LocalDirectoryTarget, LocalFileWriter, LockHolder, TargetWriter
from cxbackup.backup.vendor_client import VendorClient
from cxbackup.backup.window import RecordingWindow, compute_window, format_utc, limit_hint, recordings_limit
from cxbackup.core.redact import Redactor
from cxbackup.core.retry import RetryPolicy
from cxbackup.core.times import Period, from_ms, to_ms

__all__ = ["CHUNK_BYTES", "RecordingCopier", "copy_media", "run_backup"]

log = logging.getLogger("cxbackup.backup")

CHUNK_BYTES = 1 << 20
T = TypeVar("T")
Outcome = Callable[[], RecordingResult]
"""A recording's result: returns it, or raises the recording's error."""
Submit = Callable[[Recording, list[MediaFile], Callable[[Outcome], None]], None]


def _with_retries(
    action: Callable[[], T], retry: RetryPolicy, sleep: Callable[[float], None], rng: random.Random, what: str
) -> T:
    for attempt in range(retry.retries + 1):
        try:
            return action()
        except MediaSourceError as exc:
            if not exc.retryable or attempt >= retry.retries:
                raise
            delay = retry.delay(attempt, rng)
            log.debug("%s failed (%s); retry %d in %.2fs", what, exc, attempt + 1, delay)
            sleep(delay)
    raise AssertionError("unreachable")


_KINDS: dict[tuple[type, type], bool] = {}


def _is_a(obj: object, protocol: type) -> bool:
    """isinstance() against a runtime-checkable Protocol, remembered per class (the check itself walks
    the protocol's members every time: measurable at thousands of files)."""
    key = (type(obj), protocol)
    known = _KINDS.get(key)
    if known is None:
        known = _KINDS[key] = isinstance(obj, protocol)
    return known


def _stream_into(source: MediaSource, ref: MediaRef, writer: TargetWriter, path: str) -> Callable[[], None]:
    """Copy the object through Python in 1 MiB chunks; returns the check to run before the rename."""
    stream = source.open(ref)
    digest = hashlib.md5(usedforsecurity=False)
    size = 0
    try:
        for chunk in stream.chunks(CHUNK_BYTES):
            try:
                writer.write(chunk)
            except OSError as exc:
                raise TargetError(f"writing {path} failed: {exc.strerror or exc}") from exc
            digest.update(chunk)
            size += len(chunk)
    finally:
        stream.close()

    def check() -> None:
        _check_size(ref, size, stream.content_length)
        _check_md5(ref, stream.md5_hex, digest.hexdigest)

    return check


def _fetch_into(source: FileMediaSource, ref: MediaRef, writer: LocalFileWriter, path: str) -> Callable[[], None]:
    """Let the source write the object into the writer's temporary file; returns the check to run before
    the rename: the file's size, then its MD5 (read back from the page cache) when the ETag is one."""
    temp = writer.hand_over()
    fetched = source.download_to(ref, temp)

    def check() -> None:
        try:
            with open(temp, "rb", buffering=0) as f:
                _check_size(ref, os.fstat(f.fileno()).st_size, fetched.content_length)
                _check_md5(
                    ref,
                    fetched.md5_hex,
                    lambda: hashlib.file_digest(f, lambda: hashlib.md5(usedforsecurity=False)).hexdigest(),
                )
        except OSError as exc:
            raise TargetError(f"reading back {path} failed: {exc.strerror or exc}") from exc

    return check


def _check_size(ref: MediaRef, size: int, content_length: int) -> None:
    if content_length >= 0 and size != content_length:
        raise MediaIntegrityError(
            f"s3://{ref.bucket}/{ref.key}: got {size} bytes, Content-Length says {content_length}"
        )


def _check_md5(ref: MediaRef, expected: str | None, actual: Callable[[], str]) -> None:
    """`actual` is only computed when there is an MD5 to compare with."""
    if expected and actual() != expected:
        raise MediaIntegrityError(f"s3://{ref.bucket}/{ref.key}: MD5 differs from the ETag")


def copy_media(
    source: MediaSource,
    ref: MediaRef,
    target: BackupTarget,
    path: str,
    *,
    retry: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
    sync_dir: bool = True,
    retain_until: datetime | None = None,
) -> int:
    """Copy one media object into `path` (temporary name, verified, renamed); returns its size.

    A source that can write files (the CRT S3 client) writes straight into the local target's temporary
    file; otherwise the body is streamed through Python. Either way the size must equal Content-Length
    and, when the ETag is an MD5, the content must match it before the rename.
    """

    def attempt() -> int:
        writer = target.open_writer(path, sync_dir=sync_dir, retain_until=retain_until)
        try:
            if _is_a(source, FileMediaSource) and _is_a(writer, LocalFileWriter):
                verify = _fetch_into(cast(FileMediaSource, source), ref, cast(LocalFileWriter, writer), path)
            else:
                verify = _stream_into(source, ref, writer, path)
            verify()
            try:
                writer.commit()
            except OSError as exc:
                raise TargetError(f"writing {path} failed: {exc.strerror or exc}") from exc
            return writer.bytes_written
        except BaseException:
            writer.abort()
            raise

    return _with_retries(attempt, retry, sleep, rng or random.Random(), f"download of {ref.key}")


@dataclass
class RecordingCopier:
    """Backs up one recording (see step 4 of the module docstring)."""

    target: BackupTarget
    source: MediaSource | None
    folder_format: FolderFormat
    retry: RetryPolicy
    metadata_only: bool = False
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random | None = None
    retention: Period | None = None
    """Kept for this long from each recording's start: the target's immutability (Object Lock) ends then."""
    index: IndexWriter | None = None
    fetcher: NativeFetcher | None = None
    """Media and metadata through `cxbackup-fetch` (a folder target): see `running`."""

    def __post_init__(self) -> None:
        # one generator for the backoff jitter of all threads (seeding one per recording costs more)
        self._rng = self.rng or random.Random()

    @contextlib.contextmanager
    def running(self, workers: int) -> Iterator[Submit]:
        """A function that backs up a recording and calls its `done` with the outcome when it is over:
        `workers` threads running this copier, or, with a fetcher, requests to the native program (the
        folder is scanned by the caller's thread, the rest is the program's; `done` runs on the thread
        reading its answers). Leaving waits for every recording submitted."""
        if self.fetcher is not None and not self.metadata_only:
            with self.fetcher.running():
                yield self._submit_native
            return
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="rcbs") as pool:

            def submit(recording: Recording, media: list[MediaFile], done: Callable[[Outcome], None]) -> None:
                future = pool.submit(self, recording, media)
                future.add_done_callback(lambda f: done(f.result))

            yield submit

    def _submit_native(self, recording: Recording, media: list[MediaFile], done: Callable[[Outcome], None]) -> None:
        assert self.fetcher is not None and isinstance(self.source, S3MediaSource)
        target = cast(LocalDirectoryTarget, self.target)
        try:
            paths = recording_paths(recording, self.folder_format)
            present = target.scan_folder(paths.directory) or {}
            files = []
            for m in media:
                assert m.media_id is not None
                ref = self.source.locate(recording.region, m.media_id)
                name = _name_in(paths, paths.media[m.media_id])
                files.append(
                    file_request(bucket=ref.bucket, key=ref.key, region=self.source.region_of(ref), name=name,
                                 have=present.get(name))
                )  # fmt: skip
            metadata = _name_in(paths, paths.metadata)
            os.close(target.open_folder(paths.directory))  # made here: owner-only, never through a link out
            request = recording_request(
                str(target.resolve(paths.directory)),
                files,
                metadata_name=metadata,
                metadata=recording.raw_json,
                metadata_present=metadata in present,
            )
        except RcbsError as exc:
            done(raising(exc))
            return
        except OSError as exc:  # the folder cannot be listed (a file where a folder should be, I/O error)
            done(raising(TargetError(f"cannot list the folder of {recording.id}: {exc.strerror or exc}")))
            return

        def outcome(answer: Callable[[], Answer]) -> RecordingResult:
            result = answer()
            for note in result.notes:
                log.info("%s/%s", paths.directory, note)
            self._index(recording, paths, media, present, on_disk=result.skipped)
            if result.skipped:
                return RecordingResult(recording.id, RecordingStatus.SKIPPED)
            return RecordingResult(recording.id, RecordingStatus.DOWNLOADED, files=result.files, bytes=result.bytes)

        self.fetcher.submit(request, lambda answer: done(functools.partial(outcome, answer)))

    def __call__(self, recording: Recording, media: list[MediaFile]) -> RecordingResult:
        rng = self._rng
        paths = recording_paths(recording, self.folder_format)
        # one listing of the folder (also removing a killed run's temporary files) answers "is it there,
        # with which size" for every file of the recording; None: ask the target file by file
        present = self.target.scan_folder(paths.directory)

        def size_of(path: str) -> int | None:
            if present is None:
                return self.target.size_of(path)
            return present.get(path.rpartition("/")[2])

        files = 0
        written = 0
        retain_until = (
            from_ms(recording.start_ms) + self.retention
            if self.retention is not None and recording.start_ms is not None
            else None
        )
        if not self.metadata_only:
            assert self.source is not None, "a media source is needed unless metadataOnly"
            source = self.source
            for m in media:
                assert m.media_id is not None
                path = paths.media[m.media_id]
                ref = source.locate(recording.region, m.media_id)
                have = size_of(path)
                if have is not None:
                    try:
                        expected = _with_retries(
                            functools.partial(source.size, ref), self.retry, self.sleep, rng, f"HEAD {ref.key}"
                        )
                    except MediaMissingError:
                        # gone from S3 (retention) but here under its final name, so it was complete
                        continue
                    if have == expected:
                        continue
                    log.info("%s has %d bytes but S3 has %d; downloading it again", path, have, expected)
                written += copy_media(
                    source, ref, self.target, path, retry=self.retry, sleep=self.sleep, rng=rng, sync_dir=False,
                    retain_until=retain_until,
                )  # fmt: skip
                files += 1
        if files == 0 and size_of(paths.metadata) is not None:
            self._index(recording, paths, media, present, on_disk=True)
            return RecordingResult(recording.id, RecordingStatus.SKIPPED)
        data = recording.raw_json.encode("utf-8")
        writer = self.target.open_writer(paths.metadata, retain_until=retain_until)
        try:
            writer.write(data)
            writer.commit()
        except OSError as exc:
            writer.abort()
            raise TargetError(f"writing {paths.metadata} failed: {exc.strerror or exc}") from exc
        except BaseException:
            writer.abort()
            raise
        self._index(recording, paths, media, present)
        return RecordingResult(recording.id, RecordingStatus.DOWNLOADED, files=files + 1, bytes=written + len(data))

    def _index(
        self,
        recording: Recording,
        paths: RecordingPaths,
        media: list[MediaFile],
        present: dict[str, int] | None,
        *,
        on_disk: bool = False,
    ) -> None:
        """Add the entry of a recording whose files are all in place (after the metadata's rename, or
        when it was skipped as complete: then from the metadata file in the tree, which is what the
        entry must describe even if the vendor's record changed since)."""
        index = self.index
        if index is None:
            return
        selected = set() if self.metadata_only else {m.media_id for m in media if m.media_id is not None}

        def make() -> IndexEntry:
            rec, where = recording, paths
            if on_disk:
                rec, where = self._from_disk(recording, paths)
            stored = {mid for mid in selected if mid in where.media}
            if present:  # media backed up by an earlier run (other mediaTypes) are in the folder as well
                stored.update(mid for mid, path in where.media.items() if path.rpartition("/")[2] in present)
            return entry_from_recording(rec, where, stored)

        index.add_entry(make)

    def _from_disk(self, recording: Recording, paths: RecordingPaths) -> tuple[Recording, RecordingPaths]:
        try:
            raw = self.target.read_bytes(paths.metadata).decode("utf-8")
            disk = Recording.from_json(json.loads(raw), raw)
            disk_paths = recording_paths(disk, self.folder_format)
        except (OSError, ValueError, RcbsError) as exc:
            log.debug("%s cannot be read back (%s); indexing the listed record", paths.metadata, exc)
            return recording, paths
        if disk.id != recording.id or disk_paths.directory != paths.directory or disk.problem:
            return recording, paths
        return disk, disk_paths


def _name_in(paths: RecordingPaths, path: str) -> str:
    """The name of `path`, a file of the recording's folder."""
    folder, _, name = path.rpartition("/")
    if folder != paths.directory:
        raise TargetError(f"{path} is not in the recording's folder {paths.directory}")
    return name


def _index_earlier_backups(target: BackupTarget, shard: ShardAssignment, index: ShardIndex) -> None:
    """A shard with a checkpoint but no index file was backed up by a version without the index (or the
    file was lost): index what the target already holds of this shard, once, before this run's entries."""
    log.info(
        "Search index: %s is new but earlier runs backed up this shard; indexing them from the target", index.path.name
    )
    started = time.monotonic()
    if isinstance(target, LocalDirectoryTarget):
        tree = iter_tree(target.root)
        workers = 1
    else:
        tree = iter_object_tree(cast(ObjectTree, target))
        workers = 16
    added, unreadable = fill_shard(
        index,
        tree,
        shard,
        workers=workers,
        progress=lambda n: log.info("Search index: %d earlier recordings indexed", n),
    )
    log.info(
        "Search index: %d earlier recordings indexed in %.1f s%s", added, time.monotonic() - started,
        f"; {unreadable} metadata files could not be read (see above)" if unreadable else "",
    )  # fmt: skip


def _open_index(
    target: BackupTarget, shard: ShardAssignment, checkpoint: int | None = None
) -> tuple[IndexSession | None, str | None]:
    """The shard's index (index.py); (None, why) when it cannot be opened (the backup goes on). With a
    `checkpoint` (earlier runs completed windows), a missing index file is first filled from the target."""
    name = f"{INDEX_DIR}/{shard_index_name(shard)}"
    prefill = functools.partial(_index_earlier_backups, target, shard) if checkpoint is not None else None
    try:
        if isinstance(target, LocalDirectoryTarget):
            os.close(target.open_folder(INDEX_DIR))  # owner-only, made without following a link
            return open_local_index(target.resolve(name), prefill), None
        if _is_a(target, IndexStore):
            return open_copied_index(cast(IndexStore, target), name, prefill), None
    except (OSError, sqlite3.Error, RcbsError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        message = f"the search index {name} cannot be opened ({reason})"
        log.error("%s; the backup goes on without it", message)
        return None, message
    log.info("This target keeps no search index")
    return None, None


def _abandon(session: IndexSession) -> None:
    try:
        session.writer.close()
    finally:
        if session.cleanup is not None:
            session.cleanup()


def _erased_and_holds(config: RcbsConfig, target: BackupTarget, holder: LockHolder) -> frozenset[str]:
    """The ids erasures named (never downloaded again); first this configuration's legal holds are written
    into the target's holds, so every later sweep or erasure respects them."""
    try:
        if config.legal_holds or config.legal_holds_source != "config":
            holds = config.legal_holds
            update_holds(target, config.legal_holds_source, lambda _current: holds, holder)
        erased = erased_ids(target)
    except (OSError, ValueError) as exc:
        raise TargetError(f"reading the target's ledger ({LEDGER_DIR}) failed: {exc}") from exc
    if erased:
        log.info("%d erased recordings will not be backed up again", len(erased))
    return erased


def _after_index(
    config: RcbsConfig, target: BackupTarget, summary: RunSummary, now: datetime, redactor: Redactor, path: Path
) -> None:
    """On the shard's index file at `path`, after this run's entries are committed and before it is published:
    the retention sweep of this shard (its lock is held) when configured, then the index's size."""
    if config.retention_sweep != "off":
        _sweep(config, target, summary, now, redactor, path)
    try:
        index = ShardIndex(path, durable=isinstance(target, LocalDirectoryTarget))
        try:
            summary.index_recordings = index.count()
        finally:
            index.close()
        summary.index_bytes = path.stat().st_size
    except (OSError, sqlite3.Error) as exc:
        log.warning("cannot count the search index %s: %s", path.name, exc)


def _sweep(
    config: RcbsConfig, target: BackupTarget, summary: RunSummary, now: datetime, redactor: Redactor, path: Path
) -> None:
    """The run's retention sweep of its own shard; its outcome goes into `summary.retention`."""
    assert config.retention_period is not None and config.retention is not None
    dry_run = config.retention_sweep == "dry-run"
    try:
        holds = read_holds(target).all() + config.legal_holds
        index = ShardIndex(path, durable=isinstance(target, LocalDirectoryTarget))
        try:
            result = sweep_shard(
                target,
                index,
                keep_for=config.retention_period,
                period=config.retention,
                holds=holds,
                now=now,
                dry_run=dry_run,
                label=config.shard.label,
            )
        finally:
            index.close()
    except (OSError, sqlite3.Error, RcbsError) as exc:
        summary.retention_error = redactor.clean(f"the retention sweep failed: {getattr(exc, 'strerror', None) or exc}")
        log.error("%s", summary.retention_error)
        return
    summary.retention = result
    verb = "would delete" if dry_run else "deleted"
    count = result.expired if dry_run else result.deleted
    log.info(
        "Retention (%s, expired before %s): %s %d recordings, %d kept under a legal hold, %d could not be deleted",
        config.retention_period, format_utc(result.cutoff_ms), verb, count, result.held, result.failed,
    )  # fmt: skip
    for rec_id, why in result.failures[:20]:
        log.error("  not deleted %s: %s", rec_id, redactor.clean(why))


def _log_config(config: RcbsConfig, target: BackupTarget, window: RecordingWindow, explicit: bool) -> None:
    log.info("Min-age:%s", config.min_age)
    log.info("Max-age:%s", config.max_age)
    log.info("Min-Date:%s", config.min_date or "")
    log.info("Max-Date:%s", config.max_date or "")
    log.info("Target Directory:%s", target.description)
    log.info("Instance: %d of %d", config.rcbs_instance_id, config.total_rcbs_instances)
    log.info(
        "Encryption format:%s (media are kept exactly as the vendor encrypted them; this tool does not re-encrypt)",
        config.encryption_format,
    )
    log.info("Window%s: %s", " (explicit)" if explicit else "", window.describe())


def run_backup(
    config: RcbsConfig,
    credentials: Credentials,
    *,
    now: datetime | None = None,
    window: RecordingWindow | None = None,
    sink: ProgressSink | None = None,
    vendor: VendorClient | None = None,
    source: MediaSource | None = None,
    target: BackupTarget | None = None,
    sleep: Callable[[float], None] = time.sleep,
    rng: random.Random | None = None,
) -> RunSummary:
    """Run one backup (see the module docstring). Returns the summary; raises RcbsError when the run
    cannot start (configuration, lock, credentials, settings). Errors while listing end the run early
    with `summary.error` set; per-recording errors are counted in `summary.failed`.
    """
    started = datetime.now(UTC)
    now = now or started
    sink = sink or LogProgressSink()
    if vendor is None:
        credentials.require_gws()
    if not config.metadata_only and source is None:
        credentials.require_aws()
    if target is None:
        target = open_target(config, credentials)
    shard = config.shard
    redactor = Redactor(credentials.secrets())
    holder = LockHolder.current(started.isoformat(timespec="seconds"), shard.label)
    with target.lock(lock_name(shard), holder):
        explicit = window is not None or config.window_start is not None
        target.remove_stale_temp("", only_for=state_file_name(shard))
        stored = read_last_end_time(target, shard)
        erased = _erased_and_holds(config, target, holder)
        if window is None:
            window = compute_window(config, now, None if explicit else stored)
        _log_config(config, target, window, explicit)
        vendor = vendor or make_vendor_client(config, credentials)
        fetcher = None
        if not config.metadata_only and source is None:
            fetcher = make_fetcher(config, credentials, target)
            source = make_media_source(config, credentials, vendor.settings(), native=fetcher is not None)
        summary = RunSummary(
            shard=shard,
            window=window,
            started_at=started,
            encryption_format=config.encryption_format,
            metadata_only=config.metadata_only,
            last_recording_end_time=stored,
        )
        session, index_error = _open_index(target, shard, stored)
        if config.retention_sweep != "off" and session is None and index_error is None:
            summary.retention_error = "this target keeps no search index, which the retention sweep works from"
        copier = RecordingCopier(
            target=target,
            source=source,
            folder_format=config.folder_format,
            retry=RetryPolicy(retries=config.retries),
            metadata_only=config.metadata_only,
            sleep=sleep,
            rng=rng,
            retention=config.retention,
            index=session.writer if session is not None else None,
            fetcher=fetcher,
        )
        try:
            total = vendor.count(window)
            limit = recordings_limit(window, config.max_recordings_per_run)
            if total > limit:
                raise ListingLimitError(
                    f"the recording API reports {total} recordings {window.describe()}, more than {limit}: "
                    f"{limit_hint(config.max_recordings_per_run)}"
                )
            sink.on_start(-(-total // shard.total) if total else 0)
            # with the sweep deleting, a recording past its retention is not backed up only to be deleted
            expired_before = (
                to_ms(now - config.retention)
                if config.retention_sweep == "delete" and config.retention is not None
                else None
            )
            _process_window(config, vendor, copier, window, summary, sink, redactor, erased, expired_before, limit)
        except RcbsError as exc:
            summary.error = redactor.clean(str(exc))
            summary.error_exit_code = exc.exit_code
            log.error("Run stopped: %s", summary.error)
        except BaseException:
            if session is not None:  # interrupted: commit what is complete, publish nothing, clean up
                _abandon(session)
            raise
        if session is not None:
            index_error = session.finish(
                before_publish=functools.partial(_after_index, config, target, summary, now, redactor)
            )
            if index_error is None:
                log.info("Search index: %d recordings added or updated", session.writer.added)
        if index_error is not None and summary.error is None:
            hint = (
                "rebuild it with `cxbackup index`"
                if isinstance(target, LocalDirectoryTarget)
                else "the next run covers this window and writes it again"
            )
            summary.error = redactor.clean(f"{index_error}; {hint}")
            summary.error_exit_code = TargetError.exit_code
            log.error("Run stopped: %s", summary.error)
        if summary.ok:
            try:
                stored_after = advance_last_end_time(target, shard, window.end_ms)
            except (OSError, RcbsError) as exc:
                reason = getattr(exc, "strerror", None) or str(exc)
                summary.error = redactor.clean(f"writing the last recording end time failed: {reason}")
                summary.error_exit_code = TargetError.exit_code
                log.error("Run stopped: %s", summary.error)
            else:
                summary.checkpoint_advanced = stored_after != stored
                summary.last_recording_end_time = stored_after
        summary.finished_at = datetime.now(UTC)
    sink.on_finish(summary)
    log.info("%s", summary.closing_line())
    if summary.failed:
        log.error("%d recordings failed:", summary.failed)
        for rec_id, reason in summary.failures:
            log.error("  %s: %s", rec_id, reason)
        if len(summary.failures) < summary.failed:
            log.error("  ... and %d more", summary.failed - len(summary.failures))
    if not summary.ok:
        log.error("The last recording end time was not advanced; the next run covers this window again")
    return summary


def _process_window(
    config: RcbsConfig,
    vendor: VendorClient,
    copier: RecordingCopier,
    window: RecordingWindow,
    summary: RunSummary,
    sink: ProgressSink,
    redactor: Redactor,
    erased: frozenset[str] = frozenset(),
    expired_before: int | None = None,
    limit: int | None = None,
) -> None:
    shard = config.shard
    hint = limit_hint(config.max_recordings_per_run)
    listed = 0
    access = config.access_filter
    selector = config.media_selector
    slots = threading.BoundedSemaphore(config.concurrency * 2)
    results_lock = threading.Lock()

    def record(result: RecordingResult) -> None:
        with results_lock:
            summary.add(result)
            try:
                sink.on_recording(result)
            except Exception:
                log.exception("progress sink failed")

    def done(rec_id: str, outcome: Outcome) -> None:
        slots.release()
        try:
            result = outcome()
        except RcbsError as exc:
            result = RecordingResult(rec_id, RecordingStatus.FAILED, reason=redactor.clean(str(exc)))
        except Exception as exc:
            log.debug("recording %s failed", rec_id, exc_info=True)
            reason = redactor.clean(f"{type(exc).__name__}: {exc}")
            result = RecordingResult(rec_id, RecordingStatus.FAILED, reason=reason)
        record(result)

    span = max(window.end_ms - window.start_ms, 1)
    with copier.running(config.concurrency) as submit:
        for chunk in window.chunks():
            overall = 100 * (chunk.end_ms - window.start_ms) // span
            log.info("Starting download recordings <%s> Overall: %d%%", chunk.describe(), overall)
            log.info("URL: %s", vendor.page_url(chunk, config.page_size, 0))
            remaining = None if limit is None else limit - listed
            for rec in vendor.iter_recordings(chunk, max_items=remaining, limit_hint=hint):
                listed += 1
                if not shard.owns(rec.id):
                    continue
                if rec.id in erased:
                    summary.erased += 1
                    continue
                if expired_before is not None and rec.start_ms is not None and rec.start_ms < expired_before:
                    summary.filtered += 1
                    continue
                if rec.problem:
                    record(RecordingResult(rec.id or "<no id>", RecordingStatus.FAILED, reason=rec.problem))
                    continue
                if not access.matches(rec):
                    summary.filtered += 1
                    continue
                media = selector.select(rec.media)
                if rec.media and not media:
                    summary.filtered += 1
                    continue
                slots.acquire()
                submit(rec, media, functools.partial(done, rec.id))
            log.info("Downloading recordings before %s UTC", format_utc(chunk.end_ms))
    if window.is_empty:
        log.info("The window is empty: nothing to do")
