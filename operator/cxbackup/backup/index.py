"""The search index of a backup target: what was backed up, queryable with SQLite (stdlib sqlite3).

Where it lives:

    <target>/.cxbackup-index/shard-<i>-of-<N>.sqlite3     one file per shard, mode 0600

(An S3 target holds the same files as objects; a run works on a local copy of its shard's object and
uploads it whole at the end: `open_copied_index`.)

Why one file per shard: several worker pods (one per shard) write to one volume at once, often a
network file system, where SQLite's file locks cannot be trusted to keep two writers apart. Each file
here has exactly one writer, the process that holds the shard's lock for the run (targets.py), so
SQLite's locking never has to arbitrate between writers. The journal is the classic rollback journal
(`journal_mode=DELETE`, `synchronous=FULL`), not WAL, which needs shared memory a network file system
does not give. Readers (`cxbackup search`) open the files read-only, so they never write, not even to
roll back a journal, and merge the results of all files (a recording found in two files, after the
number of shards changed, is shown once).

What an entry means: the recording's files are complete under their final names. The worker adds the
entry after `<callUUID>.json` (written last) is renamed into place and its folder fsynced, and also for
a recording it skipped because it is already complete; entries are committed in batches
(FLUSH_EVERY recordings or FLUSH_SECONDS), and always before the shard's last recording end time
advances. A crash loses at most the uncommitted batch: those recordings are complete in the tree but
not yet in the index, the checkpoint did not advance, so the next run covers the same window, finds
them complete, and adds them. A recording whose download failed never gets an entry.

The tree is the ground truth: `rebuild_index` (the `cxbackup index` command) reads every
`<callUUID>/<callUUID>.json` in the tree and the media files next to it, and writes the shard files
anew (each under a temporary name, renamed into place while holding that shard's lock).

Schema (SCHEMA_VERSION): `recordings` (one row per recording: id, start and stop time, caller,
dialed, folder, digest of what the entry was made from, its text zlib-compressed), `numbers` (every
phone number of the recording, digits only and reversed so that "ends with" is a range scan), `names`
(agent and user names and agent ids, lower case), `tags` (partitions `p` and access groups `g`),
`media` (id, type, size, whether it is backed up, its file name when that is not the media id), and
`recording_text` (FTS5 over the distinct text values of the metadata, contentless; a plain table of
the text folded by `fold_text`, searched with LIKE, when the sqlite3 library lacks FTS5).
`ShardIndex.remove` takes recordings out without a trace in the file (for erasure).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import re
import shutil
import sqlite3
import tempfile
import threading
import time
import unicodedata
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cxbackup.backup.errors import RcbsError, TargetError
from cxbackup.backup.layout import RecordingPaths, is_temp_name, media_file_names, temp_name
from cxbackup.backup.records import Recording, parse_metadata_time
from cxbackup.backup.sharding import ShardAssignment, shard_of
from cxbackup.backup.targets import TargetWriter
from cxbackup.core.files import PRIVATE_MODE, fsync_dir, match_owner

__all__ = [
    "FLUSH_EVERY",
    "FLUSH_SECONDS",
    "INDEX_DIR",
    "NAME_PATTERN",
    "SCHEMA_VERSION",
    "IndexEntry",
    "IndexSession",
    "IndexStore",
    "IndexWriter",
    "MediaEntry",
    "RebuildSummary",
    "ShardIndex",
    "digits_of",
    "editing_index",
    "entry_from_recording",
    "fill_shard",
    "fold_text",
    "index_files",
    "open_copied_index",
    "open_local_index",
    "open_readonly",
    "rebuild_index",
    "rebuild_object_index",
    "shard_index_name",
]

log = logging.getLogger("cxbackup.backup")

INDEX_DIR = ".cxbackup-index"
SCHEMA_VERSION = 1
FLUSH_EVERY = 500
FLUSH_SECONDS = 5.0
WRITER_CACHE_KIB = 16384  # SQLite's page cache of a writer (default 2 MiB): a million entries' b-trees
NAME_PATTERN = re.compile(r"^shard-(\d+)-of-(\d+)\.sqlite3$")
"""Names of index files (other names in the folder are ignored)."""
_PHONE_CHARS = set("+0123456789 -().")
_MAX_TEXT_VALUE = 512  # longer text values (base64 blobs, say) are not useful to search for

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS recordings (
    rec INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    start_ms INTEGER,
    stop_ms INTEGER,
    caller TEXT,
    dialed TEXT,
    folder TEXT NOT NULL,
    digest TEXT NOT NULL,
    indexed_ms INTEGER NOT NULL,
    text_z BLOB
);
CREATE INDEX IF NOT EXISTS recordings_start ON recordings (start_ms);
CREATE TABLE IF NOT EXISTS numbers (digits_rev TEXT NOT NULL, rec INTEGER NOT NULL,
    PRIMARY KEY (digits_rev, rec)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS numbers_rec ON numbers (rec);
CREATE TABLE IF NOT EXISTS names (name TEXT NOT NULL, rec INTEGER NOT NULL,
    PRIMARY KEY (name, rec)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS names_rec ON names (rec);
CREATE TABLE IF NOT EXISTS tags (kind TEXT NOT NULL, value TEXT NOT NULL, rec INTEGER NOT NULL,
    PRIMARY KEY (kind, value, rec)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_rec ON tags (rec);
CREATE TABLE IF NOT EXISTS media (rec INTEGER NOT NULL, media_id TEXT NOT NULL, type TEXT, size INTEGER,
    stored INTEGER NOT NULL, name TEXT, PRIMARY KEY (rec, media_id)) WITHOUT ROWID;
"""
# Only which recordings hold a word: no copy of the text in the table (content=''), no positions
# (detail=none: a search is for words that all appear, never for phrases), no sizes (columnsize=0: no
# ranking). Removing a row from a contentless table takes the very text it was given, so that text is
# kept zlib-compressed in recordings.text_z (a third of its size): a replaced or removed entry takes its
# words out of the index.
_FTS = (
    "CREATE VIRTUAL TABLE IF NOT EXISTS recording_text USING fts5(text, tokenize = 'unicode61', content = '', "
    "detail = none, columnsize = 0)"
)
_PLAIN_TEXT = "CREATE TABLE IF NOT EXISTS recording_text (rowid INTEGER PRIMARY KEY, text TEXT NOT NULL)"


def shard_index_name(shard: ShardAssignment) -> str:
    return f"shard-{shard.label}.sqlite3"


def digits_of(value: str) -> str:
    """The digits of a phone number (`+1 (647) 838-9001` -> `16478389001`)."""
    return "".join(c for c in value if c.isdigit() and c.isascii())


def fold_text(text: str) -> str:
    """`text` in lower case, without the accents of Latin letters (`Café` -> `cafe`): what the FTS5
    tokenizer (unicode61) does to words, for an index file kept without FTS5 (searched with LIKE)."""
    out: list[str] = []
    latin = False
    for ch in unicodedata.normalize("NFD", text.lower()):
        if unicodedata.combining(ch):
            if latin:
                continue
        else:
            latin = ch < "\u0250" or "\u1e00" <= ch <= "\u1eff"
        out.append(ch)
    return unicodedata.normalize("NFC", "".join(out))


def _phone(value: object) -> str | None:
    """The digits of `value` when it looks like a phone number (only phone characters, >= 3 digits)."""
    if not isinstance(value, str) or not value or not set(value) <= _PHONE_CHARS:
        return None
    digits = digits_of(value)
    return digits if len(digits) >= 3 else None


@dataclass(frozen=True)
class MediaEntry:
    media_id: str
    type: str | None
    size: int | None
    name: str | None  # file name in the recording's folder; None when this media file was not backed up


@dataclass(frozen=True)
class IndexEntry:
    """What the index knows about one recording."""

    id: str
    start_ms: int | None
    stop_ms: int | None
    caller: str | None
    dialed: str | None
    folder: str
    numbers: frozenset[str]  # digits
    names: frozenset[str]  # lower case
    partitions: frozenset[str]
    access_groups: frozenset[str]
    media: tuple[MediaEntry, ...]
    text: str
    digest: str = field(compare=False)


def _leaf_strings(value: object, out: dict[str, None]) -> None:
    """Every distinct text value in `value` (a JSON document), depth first."""
    stack = [value]
    while stack:
        v = stack.pop()
        if type(v) is str:
            text = v.strip()
            if text and len(text) <= _MAX_TEXT_VALUE:
                out[text] = None
        elif type(v) is dict:
            stack.extend(reversed(v.values()))
        elif type(v) is list:
            stack.extend(reversed(v))


def _time(value: object) -> int | None:
    try:
        return parse_metadata_time(value)
    except (ValueError, TypeError):
        return None


# what the metadata names a participant without a user (the caller, typically): not a name to search for
_NO_USER = "unknown"


def _add_name(names: set[str], value: object) -> None:
    if isinstance(value, str) and value.strip() and value.strip().lower() != _NO_USER:
        names.add(value.strip().lower())


def _from_contact(contact: object, numbers: set[str], names: set[str]) -> None:
    if isinstance(contact, dict):
        _add_name(names, contact.get("userName"))
        if (digits := _phone(contact.get("phoneNumber"))) is not None:
            numbers.add(digits)


def entry_from_recording(recording: Recording, paths: RecordingPaths, stored: Iterable[str]) -> IndexEntry:
    """The index entry of `recording`, placed at `paths`, with the media ids in `stored` backed up."""
    data = json.loads(recording.raw_json)
    if not isinstance(data, dict):
        data = {}
    return _entry(recording, data, paths.directory, paths.media, set(stored))


_INT64 = 1 << 63


def _int64(value: int | None) -> int | None:
    """A number SQLite can store (a signed 64-bit integer), else None: metadata may claim any size."""
    return value if value is not None and -_INT64 <= value < _INT64 else None


def _entry(
    recording: Recording,
    data: Mapping[str, Any],
    folder: str,
    media_paths: Mapping[str, str],
    stored: set[str],
) -> IndexEntry:
    numbers: set[str] = set()
    names: set[str] = set()
    caller = data.get("callerPhoneNumber")
    dialed = data.get("dialedPhoneNumber")
    for value in (caller, dialed):
        if (digits := _phone(value)) is not None:
            numbers.add(digits)
    events = data.get("eventHistory")
    for event in events if isinstance(events, list) else ():
        if isinstance(event, dict):
            _from_contact(event.get("contact"), numbers, names)
    media_json = data.get("mediaFiles")
    for m in media_json if isinstance(media_json, list) else ():
        params = m.get("parameters") if isinstance(m, dict) else None
        if not isinstance(params, dict):
            continue
        # a screen recording's `agentID` may hold an agent's id, name or phone number (its DN): a name
        # whatever it holds, and a phone number too when it looks like one
        for key in ("username", "userName", "agentId", "agentName", "agentID"):
            _add_name(names, params.get(key))
        _from_contact(params.get("contact"), numbers, names)
        for key in ("ani", "dnis", "recordDN", "agentID", "phoneNumber"):
            if (digits := _phone(params.get(key))) is not None:
                numbers.add(digits)
    media = tuple(
        MediaEntry(
            media_id=m.media_id,
            type=m.type,
            size=_int64(m.size),
            name=media_paths[m.media_id].rpartition("/")[2] if m.media_id in stored else None,
        )
        for m in recording.media
        if m.media_id is not None
    )
    text: dict[str, None] = {}
    _leaf_strings(data, text)
    digest_src = recording.raw_json + "\0" + folder + "\0" + "\0".join(sorted(m.media_id for m in media if m.name))
    return IndexEntry(
        id=recording.id,
        start_ms=_int64(recording.start_ms),
        stop_ms=_int64(_time(data.get("stopTime"))),
        caller=caller if isinstance(caller, str) else None,
        dialed=dialed if isinstance(dialed, str) else None,
        folder=folder,
        numbers=frozenset(numbers),
        names=frozenset(names),
        partitions=frozenset(p for m in recording.media for p in m.partitions),
        access_groups=frozenset(g for m in recording.media for g in m.access_groups),
        media=media,
        text="\n".join(text),
        digest=hashlib.sha256(digest_src.encode("utf-8", "surrogatepass")).hexdigest()[:16],
    )


def _create_private(path: Path) -> None:
    """Create `path` empty, owner-only, when it does not exist (SQLite gives its journal the same mode)."""
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_MODE)
        os.fchmod(fd, PRIVATE_MODE)
        os.close(fd)


class ShardIndex:
    """One index file opened for writing (by the one process that holds its shard's lock)."""

    def __init__(self, path: Path, *, durable: bool = True) -> None:
        self.path = path
        _create_private(path)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            self._db.execute("PRAGMA journal_mode=DELETE")
            self._db.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
            self._db.execute(f"PRAGMA cache_size=-{WRITER_CACHE_KIB}")
            self._db.execute("PRAGMA secure_delete=ON")  # freed pages are zeroed: removed means gone
            self._db.execute("PRAGMA foreign_keys=OFF")
            self._db.execute("BEGIN IMMEDIATE")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            version = self._meta("schema")
            if version is None:
                self._db.execute("INSERT INTO meta VALUES ('schema', ?)", (str(SCHEMA_VERSION),))
                try:
                    self._db.execute(_FTS)
                    fts = "fts5"
                except sqlite3.OperationalError:  # a sqlite3 library built without FTS5
                    self._db.execute(_PLAIN_TEXT)
                    fts = "like"
                self._db.execute("INSERT INTO meta VALUES ('text', ?)", (fts,))
            elif version != str(SCHEMA_VERSION):
                raise TargetError(
                    f"{path.name} has index schema {version}, this version writes {SCHEMA_VERSION}: "
                    "rebuild the index with `cxbackup index`"
                )
            self._text = self._meta("text")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.close()
            raise

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def add(self, entries: Iterable[IndexEntry], *, now_ms: int | None = None) -> int:
        """Insert or replace `entries` in one transaction; returns how many changed."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        db = self._db
        changed = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            for e in entries:
                row = db.execute("SELECT rec, digest FROM recordings WHERE id = ?", (e.id,)).fetchone()
                if row is not None:
                    if row[1] == e.digest:
                        continue
                    self._delete(row[0])
                text_z = zlib.compress(e.text.encode("utf-8", "surrogatepass")) if self._text == "fts5" else None
                rec = db.execute(
                    "INSERT INTO recordings (id, start_ms, stop_ms, caller, dialed, folder, digest, indexed_ms, "
                    "text_z) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (e.id, e.start_ms, e.stop_ms, e.caller, e.dialed, e.folder, e.digest, now_ms, text_z),
                ).lastrowid
                db.executemany("INSERT INTO numbers VALUES (?, ?)", [(d[::-1], rec) for d in e.numbers])
                db.executemany("INSERT INTO names VALUES (?, ?)", [(n, rec) for n in e.names])
                db.executemany(
                    "INSERT INTO tags VALUES (?, ?, ?)",
                    [("p", v, rec) for v in e.partitions] + [("g", v, rec) for v in e.access_groups],
                )
                db.executemany(
                    "INSERT OR REPLACE INTO media VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (rec, m.media_id, m.type, m.size, m.name is not None, m.name if m.name != m.media_id else None)
                        for m in e.media
                    ],
                )
                text = e.text if self._text == "fts5" else fold_text(e.text)
                db.execute("INSERT INTO recording_text (rowid, text) VALUES (?, ?)", (rec, text))
                changed += 1
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        return changed

    def _delete(self, rec: int) -> None:
        for table in ("numbers", "names", "tags", "media"):
            self._db.execute(f"DELETE FROM {table} WHERE rec = ?", (rec,))  # noqa: S608 - fixed names
        if self._text == "fts5":
            (text_z,) = self._db.execute("SELECT text_z FROM recordings WHERE rec = ?", (rec,)).fetchone()
            if text_z is not None:
                text = zlib.decompress(text_z).decode("utf-8", "surrogatepass")
                self._db.execute(
                    "INSERT INTO recording_text (recording_text, rowid, text) VALUES ('delete', ?, ?)", (rec, text)
                )
        else:
            self._db.execute("DELETE FROM recording_text WHERE rowid = ?", (rec,))
        self._db.execute("DELETE FROM recordings WHERE rec = ?", (rec,))

    def remove(self, ids: Iterable[str]) -> int:
        """Remove the entries of recordings `ids` (an erasure), then merge the text index so nothing of them
        is left in its pages (freed pages are zeroed); returns how many were there."""
        db = self._db
        removed = 0
        db.execute("BEGIN IMMEDIATE")
        try:
            for rec_id in ids:
                row = db.execute("SELECT rec FROM recordings WHERE id = ?", (rec_id,)).fetchone()
                if row is not None:
                    self._delete(row[0])
                    removed += 1
            if removed and self._text == "fts5":
                db.execute("INSERT INTO recording_text (recording_text) VALUES ('optimize')")
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise
        return removed

    def count(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM recordings").fetchone()[0])

    @property
    def uses_fts(self) -> bool:
        return self._text == "fts5"

    def select(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """The rows of a read-only query (the retention sweep's and the erasure's selections)."""
        return [tuple(row) for row in self._db.execute(sql, params)]

    def close(self) -> None:
        self._db.close()


class IndexWriter:
    """The worker's side: entries from the download threads, built and committed in batches by one
    thread of its own, so that a download thread only hands over a recording and goes on (a commit of
    a batch, with its fsyncs, never holds up the downloads).

    The first failure is kept in `error` and indexing stops (the backup goes on); the run then ends
    with that error and without advancing its checkpoint, so nothing claims a window the index lacks.
    At most QUEUE_LIMIT recordings wait for the thread; beyond that a download thread waits.
    """

    QUEUE_LIMIT = 10_000

    def __init__(self, index: ShardIndex, *, every: int = FLUSH_EVERY, seconds: float = FLUSH_SECONDS) -> None:
        self._index = index
        self._every = every
        self._seconds = seconds
        self._queue: queue.Queue[Callable[[], IndexEntry] | None] = queue.Queue(self.QUEUE_LIMIT)
        self._pending: list[IndexEntry] = []
        self._closed = False
        self.error: str | None = None
        self.added = 0
        self._thread = threading.Thread(target=self._run, name="index-writer", daemon=True)
        self._thread.start()

    def add_entry(self, make: Callable[[], IndexEntry]) -> None:
        """Queue the entry `make()` builds (on the writer's thread; a failure there stops indexing)."""
        if self.error is None and not self._closed:
            self._queue.put(make)

    def add(self, entry: IndexEntry) -> None:
        self.add_entry(lambda: entry)

    @property
    def path(self) -> Path:
        return self._index.path

    def wait_idle(self) -> None:
        """Wait until every queued entry is built and either committed or pending (for tests)."""
        self._queue.join()

    def _run(self) -> None:
        deadline = time.monotonic() + self._seconds
        while True:
            try:
                make = self._queue.get(timeout=max(deadline - time.monotonic(), 0.0))
            except queue.Empty:
                self._flush()
                deadline = time.monotonic() + self._seconds
                continue
            try:
                if make is None:
                    return
                if self.error is not None:
                    continue
                try:
                    self._pending.append(make())
                except Exception as exc:
                    self._fail(f"indexing a recording failed: {type(exc).__name__}: {exc}")
                    continue
                if len(self._pending) >= self._every or time.monotonic() >= deadline:
                    self._flush()
                    deadline = time.monotonic() + self._seconds
            finally:
                self._queue.task_done()

    def _fail(self, message: str) -> None:
        self.error = message
        self._pending = []
        log.error("%s; the backup goes on, rebuild the index with `cxbackup index`", message)

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch or self.error is not None:
            return
        try:
            self.added += self._index.add(batch)
        except (sqlite3.Error, OSError, OverflowError, ValueError) as exc:
            self._fail(f"updating the search index {self._index.path.name} failed: {exc}")

    def _stop(self, *, commit: bool) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join()
        if commit:
            self._flush()
        self._pending = []
        with contextlib.suppress(sqlite3.Error):
            self._index.close()

    def close(self) -> str | None:
        """Build and commit everything queued, close the file; returns the error, if any."""
        self._stop(commit=True)
        return self.error


@runtime_checkable
class IndexStore(Protocol):
    """A target where the index cannot be updated in place (an S3 bucket): it is downloaded, worked on as a
    local copy, and uploaded whole at the end of the run."""

    def download_to(self, path: str, dest: Path) -> bool: ...

    def open_writer(self, path: str, *, sync_dir: bool = True) -> TargetWriter: ...


@dataclass
class IndexSession:
    """A run's index: the writer the download threads feed, and what finishing it takes."""

    writer: IndexWriter
    publish: Callable[[], None] | None = None  # upload of the local copy, after the last commit
    cleanup: Callable[[], None] | None = None

    @property
    def path(self) -> Path:
        """The index file this run writes (a local copy for an S3 target)."""
        return self.writer.path

    def finish(self, before_publish: Callable[[Path], None] | None = None) -> str | None:
        """Commit, close, publish; returns the error that makes the index incomplete, if any.
        `before_publish(path)` runs on the closed file first (the run's retention sweep), when the
        entries were committed without error."""
        error = self.writer.close()
        try:
            if error is None and before_publish is not None:
                before_publish(self.path)
            if error is None and self.publish is not None:
                try:
                    self.publish()
                except (OSError, RcbsError) as exc:
                    error = f"uploading the search index failed: {exc}"
                    log.error("%s", error)
        finally:
            if self.cleanup is not None:
                self.cleanup()
        return error


Prefill = Callable[[ShardIndex], None]
"""What fills a shard's index file the run finds missing, before the run's own entries (fill_shard)."""


def open_local_index(path: Path, prefill: Prefill | None = None) -> IndexSession:
    """The index file at `path`, written in place (a directory target); `prefill` runs when it is new."""
    new = not path.exists()
    index = ShardIndex(path)
    try:
        if new and prefill is not None:
            prefill(index)
    except BaseException:
        index.close()
        raise
    return IndexSession(IndexWriter(index))


def open_copied_index(store: IndexStore, path: str, prefill: Prefill | None = None) -> IndexSession:
    """Object `path` of `store` as a local copy in a private temporary folder, uploaded by `finish()`
    (whole, as one object: readers see the old file or the new one). A crash loses the copy; the object
    keeps its last version, and the next run covers the window again (its checkpoint did not move).
    `prefill` runs when there is no such object yet."""
    workdir = Path(tempfile.mkdtemp(prefix="cxbackup-index-"))
    local = workdir / path.rpartition("/")[2]
    try:
        existed = store.download_to(path, local)
        if existed:
            log.info("Search index: working on a copy of %s (%d bytes)", path, local.stat().st_size)
        index = ShardIndex(local, durable=False)  # the upload is what makes it durable
        try:
            if not existed and prefill is not None:
                prefill(index)
        except BaseException:
            index.close()
            raise
        writer = IndexWriter(index)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise

    def publish() -> None:
        _upload(store, local, path)

    return IndexSession(writer, publish, lambda: shutil.rmtree(workdir, ignore_errors=True))


@contextlib.contextmanager
def editing_index(target: object, path: str, local: Path | None) -> Iterator[ShardIndex]:
    """Index file `path` of `target` opened for writing by a process that holds its shard's lock: in place
    at `local` (a folder target), else (an IndexStore) a local copy uploaded when the block ends without
    an error. Nothing is published when the block fails: the object keeps its last version."""
    if local is not None:
        index = ShardIndex(local)
        try:
            yield index
        finally:
            index.close()
        return
    assert isinstance(target, IndexStore)
    workdir = Path(tempfile.mkdtemp(prefix="cxbackup-index-"))
    try:
        copy = workdir / path.rpartition("/")[2]
        target.download_to(path, copy)
        index = ShardIndex(copy, durable=False)
        try:
            yield index
        finally:
            index.close()
        _upload(target, copy, path)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _upload(store: IndexStore, local: Path, path: str) -> None:
    """Copy the local file to `path` in the target: whole or not at all (the target's writer)."""
    out = store.open_writer(path)
    try:
        with open(local, "rb") as f:
            while chunk := f.read(8 << 20):
                out.write(chunk)
        out.commit()
    except BaseException:
        out.abort()
        raise


def index_files(index_dir: Path) -> list[Path]:
    """The index files in `index_dir` (sorted), ignoring anything else there."""
    try:
        names = sorted(e.name for e in os.scandir(index_dir) if e.is_file())
    except FileNotFoundError:
        return []
    return [index_dir / n for n in names if NAME_PATTERN.match(n)]


def open_readonly(path: Path) -> sqlite3.Connection:
    """Open an index file for reading only: a reader never writes (not even a journal rollback)."""
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False)
    db.execute("PRAGMA query_only=ON")
    return db


# ============================================================================== rebuild from the tree


@dataclass
class RebuildSummary:
    recordings: int = 0
    files: dict[str, int] = field(default_factory=dict)  # index file name -> recordings
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (metadata path, why not indexed)
    removed: list[str] = field(default_factory=list)  # index files of an old shard layout, removed


@dataclass(frozen=True)
class TreeFolder:
    """A recording's folder found in the tree: its path, the names of the files in it, and its metadata."""

    folder: str  # relative to the target
    metadata_name: str
    files: frozenset[str]
    read: Callable[[], bytes]  # the metadata file's bytes


def iter_tree(root: Path) -> Iterator[TreeFolder]:
    """Every `<name>/<name>.json` folder under `root` (hidden folders, such as the index's own, are not
    entered; temporary files are not files of the recording)."""
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        here = Path(dirpath)
        meta = f"{here.name}.json"
        if here != root and meta in filenames:
            yield TreeFolder(
                folder=here.relative_to(root).as_posix(),
                metadata_name=meta,
                files=frozenset(n for n in filenames if not is_temp_name(n)),
                read=(here / meta).read_bytes,
            )


class ObjectTree(Protocol):
    """A bucket seen as a tree: every object's path relative to the target, in key order, and reads."""

    def iter_files(self) -> Iterator[tuple[str, int]]: ...

    def read_bytes(self, path: str, max_bytes: int | None = None) -> bytes: ...


MAX_METADATA_BYTES = 16 << 20
"""The most read of one metadata object in a rebuild."""


def iter_object_tree(store: ObjectTree) -> Iterator[TreeFolder]:
    """Every `<name>/<name>.json` folder of a bucket, from one listing (the objects of a folder are
    consecutive in key order); hidden folders are skipped."""
    current: str | None = None
    names: set[str] = set()

    def done(folder: str | None, files: set[str]) -> Iterator[TreeFolder]:
        if folder is None:
            return
        base = folder.rpartition("/")[2]
        if f"{base}.json" in files:
            meta = f"{folder}/{base}.json"
            yield TreeFolder(
                folder, f"{base}.json", frozenset(files), lambda: store.read_bytes(meta, MAX_METADATA_BYTES)
            )

    for path, _size in store.iter_files():
        folder, _, name = path.rpartition("/")
        if not folder or any(part.startswith(".") for part in folder.split("/")):
            continue
        if folder != current:
            yield from done(current, names)
            current, names = folder, set()
        names.add(name)
    yield from done(current, names)


def fill_shard(
    index: ShardIndex,
    tree: Iterable[TreeFolder],
    shard: ShardAssignment,
    *,
    workers: int = 1,
    progress: Callable[[int], object] | None = None,
) -> tuple[int, int]:
    """Add to `index` the entries of the recordings of `shard` found in `tree`: what a shard's first run
    with an index does over a target earlier versions backed up. Returns (added, metadata files that
    could not be read). A folder named by an unchanged recording id (no `~`, see layout.py) of another
    shard is not read at all."""

    def mine(item: TreeFolder) -> bool:
        name = item.folder.rpartition("/")[2]
        return "~" in name or shard_of(name, shard.total) == shard.index

    added = unreadable = seen = 0
    batch: list[IndexEntry] = []
    for item, raw in _read_ahead((t for t in tree if mine(t)), workers):
        try:
            if isinstance(raw, Exception):
                raise raw
            entry = entry_from_tree(item, raw)
        except (OSError, ValueError, UnicodeDecodeError, RcbsError) as exc:
            unreadable += 1
            log.warning("Search index: %s/%s cannot be indexed: %s", item.folder, item.metadata_name, str(exc)[:200])
            continue
        if shard_of(entry.id, shard.total) != shard.index:
            continue
        batch.append(entry)
        seen += 1
        if len(batch) >= 2000:
            added += index.add(batch)
            batch = []
            if progress is not None:
                progress(seen)
    added += index.add(batch)
    return added, unreadable


def entry_from_tree(item: TreeFolder, raw_bytes: bytes | None = None) -> IndexEntry:
    """The entry of the recording in `item` (ValueError when its metadata cannot be used)."""
    raw = (item.read() if raw_bytes is None else raw_bytes).decode("utf-8")
    data = json.loads(raw)
    recording = Recording.from_json(data, raw)
    if recording.problem:
        raise ValueError(recording.problem)
    names = media_file_names((m.media_id for m in recording.media if m.media_id), item.metadata_name)
    stored = {mid for mid, name in names.items() if name in item.files}
    paths = {mid: f"{item.folder}/{name}" for mid, name in names.items()}
    return _entry(recording, data, item.folder, paths, stored)


def _read_ahead(items: Iterable[TreeFolder], workers: int) -> Iterator[tuple[TreeFolder, bytes | Exception]]:
    """(folder, its metadata bytes or the error reading them), `workers` reads at a time (a bucket answers
    each GET in milliseconds: one at a time, a million would take hours)."""
    if workers <= 1:
        for item in items:
            try:
                yield item, item.read()
            except (OSError, RcbsError) as exc:
                yield item, exc
        return

    def read(item: TreeFolder) -> bytes | Exception:
        try:
            return item.read()
        except (OSError, RcbsError) as exc:
            return exc

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="index-read") as pool:
        batch: list[TreeFolder] = []
        for item in items:
            batch.append(item)
            if len(batch) >= 16 * workers:
                yield from zip(batch, pool.map(read, batch), strict=True)
                batch = []
        yield from zip(batch, pool.map(read, batch), strict=True)


class _Placement(Protocol):
    """Where rebuilt index files go."""

    def existing(self) -> list[str]: ...

    def scratch(self) -> Path: ...

    def place(self, name: str, temp: Path) -> None: ...

    def remove(self, name: str) -> None: ...

    def finish(self) -> None: ...


class _FolderPlacement:
    def __init__(self, index_dir: Path) -> None:
        self.index_dir = index_dir
        index_dir.mkdir(mode=0o700, exist_ok=True)

    def existing(self) -> list[str]:
        return [p.name for p in index_files(self.index_dir)]

    def scratch(self) -> Path:
        return self.index_dir  # same file system: the rename is atomic

    def place(self, name: str, temp: Path) -> None:
        _fsync_file(temp)
        match_owner(temp, self.index_dir)  # owned like the folder the backup runs made: they write it next
        final = self.index_dir / name
        _settle(final)
        temp.replace(final)

    def remove(self, name: str) -> None:
        _settle(self.index_dir / name)
        (self.index_dir / name).unlink()

    def finish(self) -> None:
        fsync_dir(self.index_dir)


class IndexObjectStore(IndexStore, ObjectTree, Protocol):
    """What a rebuild needs of a bucket: the tree, uploads, deletes and the index folder's listing."""

    def list_folder(self, directory: str) -> dict[str, int]: ...

    def delete(self, path: str) -> None: ...


class _ObjectPlacement:
    def __init__(self, store: IndexObjectStore, stack: contextlib.ExitStack) -> None:
        self.store = store
        self._scratch = Path(tempfile.mkdtemp(prefix="cxbackup-index-"))
        stack.callback(shutil.rmtree, self._scratch, True)

    def existing(self) -> list[str]:
        return sorted(n for n in self.store.list_folder(INDEX_DIR) if NAME_PATTERN.match(n))

    def scratch(self) -> Path:
        return self._scratch

    def place(self, name: str, temp: Path) -> None:
        _upload(self.store, temp, f"{INDEX_DIR}/{name}")

    def remove(self, name: str) -> None:
        self.store.delete(f"{INDEX_DIR}/{name}")

    def finish(self) -> None:
        pass


def rebuild_index(
    root: Path,
    total: int,
    *,
    lock: Callable[[str], contextlib.AbstractContextManager[object]],
    progress: Callable[[int], object] | None = None,
) -> RebuildSummary:
    """Write the index of the tree at `root` anew, as `total` shard files.

    `lock(label)` is a context manager taking shard `label`'s lock (the backup's own). Every shard's
    lock is taken first and held until the new files are in place, so no run adds entries meanwhile
    (a running backup makes this raise LockHeldError before anything is written). Index files of
    another number of shards are removed (under their locks too).
    """
    return _rebuild(iter_tree(root), _FolderPlacement(root / INDEX_DIR), total, lock, progress, workers=1)


def rebuild_object_index(
    store: IndexObjectStore,
    total: int,
    *,
    lock: Callable[[str], contextlib.AbstractContextManager[object]],
    progress: Callable[[int], object] | None = None,
    workers: int = 16,
) -> RebuildSummary:
    """`rebuild_index` for a bucket: one listing, `workers` metadata reads at a time, the new files built in
    a private temporary folder and uploaded whole."""
    with contextlib.ExitStack() as stack:
        placement = _ObjectPlacement(store, stack)
        return _rebuild(iter_object_tree(store), placement, total, lock, progress, workers=workers)


def _rebuild(
    tree: Iterable[TreeFolder],
    placement: _Placement,
    total: int,
    lock: Callable[[str], contextlib.AbstractContextManager[object]],
    progress: Callable[[int], object] | None,
    *,
    workers: int,
) -> RebuildSummary:
    summary = RebuildSummary()
    shards = [ShardAssignment(i, total) for i in range(total)]
    wanted = {shard_index_name(s) for s in shards}
    with contextlib.ExitStack() as locks:
        # every lock first: a run writing meanwhile would add entries the new files do not have
        for s in shards:
            locks.enter_context(lock(s.label))
        others = [n for n in placement.existing() if n not in wanted]
        for name in others:
            m = NAME_PATTERN.match(name)
            assert m is not None
            locks.enter_context(lock(f"{m[1]}-of-{m[2]}"))
        _rebuild_locked(tree, placement, shards, others, summary, progress, workers)
    return summary


def _rebuild_locked(
    tree: Iterable[TreeFolder],
    placement: _Placement,
    shards: list[ShardAssignment],
    others: list[str],
    summary: RebuildSummary,
    progress: Callable[[int], object] | None,
    workers: int,
) -> None:
    total = len(shards)
    temps: dict[str, Path] = {}
    writers: dict[str, ShardIndex] = {}
    try:
        for s in shards:
            name = shard_index_name(s)
            temp = placement.scratch() / temp_name(name)
            temps[name] = temp
            writers[name] = ShardIndex(temp, durable=False)  # made durable when it is put in place
        batches: dict[str, list[IndexEntry]] = {name: [] for name in writers}
        for item, raw in _read_ahead(tree, workers):
            try:
                if isinstance(raw, Exception):
                    raise raw
                entry = entry_from_tree(item, raw)
            except (OSError, ValueError, UnicodeDecodeError, RcbsError) as exc:
                summary.skipped.append((f"{item.folder}/{item.metadata_name}", str(exc)[:200]))
                continue
            name = shard_index_name(shards[shard_of(entry.id, total)])
            batches[name].append(entry)
            summary.recordings += 1
            if len(batches[name]) >= 2000:
                writers[name].add(batches[name])
                batches[name] = []
            if progress is not None and summary.recordings % 10000 == 0:
                progress(summary.recordings)
        for name, batch in batches.items():
            writers[name].add(batch)
            summary.files[name] = writers[name].count()
            writers[name].close()
        for name, temp in temps.items():
            placement.place(name, temp)
        for name in others:
            placement.remove(name)
            summary.removed.append(name)
        placement.finish()
        temps.clear()
    finally:
        for w in writers.values():
            with contextlib.suppress(sqlite3.Error):
                w.close()
        for temp in temps.values():
            for leftover in (temp, temp.with_name(temp.name + "-journal")):
                leftover.unlink(missing_ok=True)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _settle(path: Path) -> None:
    """Before `path` is replaced or removed: let SQLite roll back a journal a crashed writer left (a
    journal left next to a new file would be played into it), then remove the journal."""
    if not path.exists():
        return
    journal = path.with_name(path.name + "-journal")
    if journal.exists():
        with contextlib.suppress(sqlite3.Error):
            db = sqlite3.connect(path)
            try:
                db.execute("SELECT count(*) FROM sqlite_master").fetchone()
            finally:
                db.close()
        journal.unlink(missing_ok=True)
