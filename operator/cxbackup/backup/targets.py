"""Backup targets behind one small Protocol: a directory (a PVC, a local or UNC path) and an S3 bucket.

Paths given to a target are relative POSIX paths built by layout.py. A target:

- `size_of(path)` / `exists(path, size)`: is the file there (with that size)?
- `open_writer(path, sync_dir=True)`: a writer that becomes visible under `path` only on `commit()`;
  the directory target writes `.<name>.part-<8 hex>` next to the final file, fsyncs, then
  `os.replace`s it and, with sync_dir, fsyncs the folder (which makes every earlier rename in that
  folder durable too: the worker syncs the folder once per recording, with its last file);
  `abort()` removes the temporary file. A directory writer is also a `LocalFileWriter`: `hand_over()`
  gives the temporary file's path to another writer (the native S3 client) and `commit()` then fsyncs
  and renames what was written there.
- `scan_folder(directory)`: removes the temporary files a killed run left in a recording folder and
  returns {name: size} of the files there ({} for a folder that does not exist), or None when the target
  cannot list cheaply (then the worker asks `size_of` per file).
- `remove_stale_temp(directory, only_for)`: deletes temporary files a killed run left in a recording
  folder (safe: a recording belongs to one shard and each shard runs once, see the lock), or in the
  root those of one file (this shard's state file; other shards may be writing theirs).
- `read_text` / `write_text_atomic`: the last_recording_endtime state file.
- `remove_folder(directory)` (RemovableTarget): deletes a recording's folder and every file in it, the
  metadata file last (a folder half removed still has its metadata, so a later sweep or erasure finds
  it again); returns what was removed and what the target refused to remove (S3 Object Lock).
- `lock(name, holder)`: exclusive per target and shard for the whole run, else LockHeldError naming
  the holder. Directory: `fcntl.flock` on `<target>/<name>` (released by the kernel when the process
  dies, so kill -9 leaves no stale lock; the file stays and names the last holder). S3: see s3target.py.

Every resolved path is checked to stay inside the target root (a folder is resolved once and
remembered; a final component that is a symbolic link is resolved every time).

Symbolic links: the target folder must not be one, nor pass through one (in a pod: the PVC's subPath,
which another pod of the same user could have replaced by a link to another tenant's folder);
`LocalDirectoryTarget` refuses such a folder (UnsafePathError naming the link) before it creates
anything, and keeps the root open (O_NOFOLLOW) for the whole run. A writer opens its folder
from that handle one name at a time without following links (creating missing folders there), or, for a
link inside the target, follows it and checks where the opened folder really is; the temporary file is
created, renamed and removed relative to that folder's handle. So a link planted while a run goes on (a
folder of the tree replaced by a link out of the target) makes the write fail, never land outside.

Personal data: recordings, their metadata, the holds, the ledger, the state file and the search index
are owner-only whatever the umask: every file a writer makes is 0600 (`FILE_MODE`, set exactly with
fchmod, also on a file another writer filled after `hand_over()`), every folder it makes 0700
(`FOLDER_MODE`). Subject access pods read the target as the same user.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import json
import logging
import os
import socket
import stat
import weakref
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

from cxbackup.backup.errors import LockHeldError, TargetError, UnsafePathError
from cxbackup.backup.layout import check_relative_path, is_temp_name, temp_name, temp_prefix
from cxbackup.core.files import fsync_dir as _fsync_dir
from cxbackup.core.files import match_owner

FILE_MODE = 0o600
"""Every file of a folder target: recordings, metadata, holds and ledger hold personal data."""
FOLDER_MODE = 0o700
"""Every folder a folder target makes."""
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)

log = logging.getLogger(__name__)

__all__ = [
    "FILE_MODE",
    "FOLDER_MODE",
    "BackupTarget",
    "FolderRemoval",
    "LocalDirectoryTarget",
    "LocalFileWriter",
    "LockHolder",
    "RemovableTarget",
    "TargetWriter",
]

_FOLDER_CACHE_SIZE = 4096


@dataclass(frozen=True)
class LockHolder:
    """Who holds a lock: written into the lock file/object and quoted in LockHeldError."""

    pid: int
    host: str
    started_at: str
    shard: str

    @classmethod
    def current(cls, started_at: str, shard: str) -> LockHolder:
        return cls(pid=os.getpid(), host=socket.gethostname(), started_at=started_at, shard=shard)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host} (shard {self.shard}, started {self.started_at})"

    @staticmethod
    def describe_json(text: str) -> str:
        try:
            data = json.loads(text)
            return LockHolder(**{k: data[k] for k in ("pid", "host", "started_at", "shard")}).describe()
        except (ValueError, KeyError, TypeError):
            return repr(text.strip()[:200]) if text.strip() else "an unknown process"


class TargetWriter(Protocol):
    """Bytes for one file; nothing is visible under the final name until commit()."""

    bytes_written: int

    def write(self, data: bytes) -> None: ...

    def commit(self) -> None: ...

    def abort(self) -> None: ...


@runtime_checkable
class LocalFileWriter(TargetWriter, Protocol):
    """A writer backed by a temporary file on a local file system."""

    def hand_over(self) -> str:
        """Close this writer's handle and return the temporary file's path for another writer to fill;
        `commit()` then fsyncs and renames it, `abort()` removes it."""
        ...


class BackupTarget(Protocol):
    """Where recordings are written."""

    description: str

    def size_of(self, path: str) -> int | None: ...

    def exists(self, path: str, size: int | None = None) -> bool: ...

    def open_writer(self, path: str, *, sync_dir: bool = True, retain_until: datetime | None = None) -> TargetWriter:
        """A writer for `path`; `retain_until`: the recording's retention end, which a target with an
        immutability feature (S3 Object Lock) enforces and others ignore."""
        ...

    def read_bytes(self, path: str) -> bytes: ...

    def read_text(self, path: str) -> str | None: ...

    def write_text_atomic(self, path: str, text: str) -> None: ...

    def remove_stale_temp(self, directory: str, only_for: str | None = None) -> int: ...

    def scan_folder(self, directory: str) -> dict[str, int] | None: ...

    def lock(self, name: str, holder: LockHolder) -> contextlib.AbstractContextManager[None]: ...


@dataclass(frozen=True)
class FolderRemoval:
    """What `remove_folder` did: files (object versions on S3) and bytes removed, and the files the
    target refused to remove (an S3 Object Lock retention not yet over), with the reason."""

    files: int = 0
    bytes: int = 0
    kept: tuple[str, ...] = ()


@runtime_checkable
class RemovableTarget(Protocol):
    def remove_folder(self, directory: str) -> FolderRemoval: ...

    def list_folder(self, directory: str) -> dict[str, int]: ...


def metadata_last(directory: str, names: list[str]) -> list[str]:
    """`names` ordered so that the folder's metadata file (`<folder>/<folder>.json`) comes last."""
    meta = f"{directory.rpartition('/')[2]}.json"
    return sorted(names, key=lambda n: (n == meta, n))


class _LocalWriter:
    """The temporary file is created (O_EXCL, O_NOFOLLOW, mode 0600) on the first write, or by the other
    writer after `hand_over()`; a writer that wrote nothing commits an empty file. Every operation on the
    folder goes through `folder`, the handle of the checked folder (see the module docstring)."""

    def __init__(self, final: Path, folder: int, reopen: Callable[[], int], *, sync_dir: bool = True) -> None:
        self._final = final
        self._temp = final.with_name(temp_name(final.name))
        self._dir = folder
        self._reopen = reopen
        self._sync_dir = sync_dir
        self._file: IO[bytes] | None = None
        self._state = "new"  # new -> open | handed -> closed
        self.bytes_written = 0

    def _create(self) -> int:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
        return os.open(self._temp.name, flags, FILE_MODE, dir_fd=self._dir)

    def _open(self) -> IO[bytes]:
        if self._file is None:
            assert self._state == "new", f"writer is {self._state}"
            try:
                fd = self._create()
            except FileNotFoundError:  # the folder was removed after it was made: make it again
                os.close(self._dir)
                self._dir = self._reopen()
                fd = self._create()
            try:
                os.fchmod(fd, FILE_MODE)  # exactly owner-only, whatever the umask
            except BaseException:
                os.close(fd)
                raise
            self._file = os.fdopen(fd, "wb")
            self._state = "open"
        return self._file

    def write(self, data: bytes) -> None:
        self._open().write(data)
        self.bytes_written += len(data)

    def hand_over(self) -> str:
        assert self._state == "new", f"writer is {self._state}"
        self._state = "handed"
        return str(self._temp)

    def commit(self) -> None:
        try:
            if self._state == "handed":
                fd = os.open(self._temp.name, os.O_RDONLY | _NOFOLLOW, dir_fd=self._dir)
                try:
                    os.fchmod(fd, FILE_MODE)  # the other writer chose its own mode
                    os.fsync(fd)
                    self.bytes_written = os.fstat(fd).st_size
                finally:
                    os.close(fd)
            else:
                f = self._open()
                self._file = None
                try:
                    f.flush()
                    os.fsync(f.fileno())
                finally:
                    f.close()
            self._state = "closed"
            os.replace(self._temp.name, self._final.name, src_dir_fd=self._dir, dst_dir_fd=self._dir)
            if self._sync_dir:
                _fsync_dir(self._final.parent)
        finally:
            self._close_dir()

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._state != "new" and self._dir >= 0:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._temp.name, dir_fd=self._dir)
        self._state = "closed"
        self._close_dir()

    def _close_dir(self) -> None:
        if self._dir >= 0:
            fd, self._dir = self._dir, -1
            os.close(fd)


def _real_path(fd: int) -> Path | None:
    """Where the folder open as `fd` really is (Linux: /proc; macOS: F_GETPATH); None where neither works."""
    try:
        return Path(f"/proc/self/fd/{fd}").readlink()
    except OSError:
        pass
    get_path = getattr(fcntl, "F_GETPATH", None)
    if get_path is not None:
        with contextlib.suppress(OSError):
            return Path(os.fsdecode(fcntl.fcntl(fd, get_path, bytes(1024)).rstrip(b"\0")))
    return None


def check_target_folder(path: Path) -> None:
    """Refuse a target folder that is a symbolic link or reached through one (UnsafePathError naming it):
    writing through a link would put the backup wherever it points, and in a pod another pod of the same
    user can plant one on the volume. The real path (`realpath`) is always accepted."""
    full = Path(path).absolute()
    for folder in (full, *full.parents):
        try:
            st = folder.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            what = "is a symbolic link" if folder == full else f"passes through {folder}, a symbolic link"
            raise UnsafePathError(
                f"targetDir {path} {what} (to {folder.readlink()}); give the folder's real path: a link could "
                "send the backup out of its volume"
            )


class LocalDirectoryTarget:
    """A directory: a PVC mount, a local folder or a UNC-style //server/path."""

    def __init__(self, root: str | os.PathLike[str], *, create: bool = True) -> None:
        path = Path(root)
        check_target_folder(path)  # before anything is created through a link
        if create:
            try:
                path.mkdir(mode=FOLDER_MODE, parents=True, exist_ok=True)
            except OSError as exc:
                raise TargetError(f"cannot create targetDir {path}: {exc.strerror or exc}") from exc
        check_target_folder(path)
        if not path.is_dir():
            raise TargetError(f"targetDir {path} is not a directory")
        try:
            self._root_fd = os.open(path, _DIR_FLAGS | _NOFOLLOW)
        except OSError as exc:
            raise TargetError(f"cannot open targetDir {path}: {exc.strerror or exc}") from exc
        weakref.finalize(self, os.close, self._root_fd)
        self.root = _real_path(self._root_fd) or path.resolve()
        self.description = str(path)
        self._folders: dict[str, Path] = {}

    def __repr__(self) -> str:
        return f"LocalDirectoryTarget({self.description!r})"

    def _inside(self, full: Path, path: str) -> Path:
        if not full.is_relative_to(self.root):
            raise UnsafePathError(f"{path!r} resolves outside the target ({full})")
        return full

    def _folder(self, rel: str) -> Path:
        """The real path of folder `rel` (relative, checked), remembered: a recording's files share one,
        and the recordings of an hour share its parent. A new folder costs one lstat (is it a link?)."""
        if not rel:
            return self.root
        folder = self._folders.get(rel)
        if folder is None:
            parent, _, name = rel.rpartition("/")
            folder = self._folder(parent) / name
            if folder.is_symlink():
                folder = self._inside(folder.resolve(), rel)
            if len(self._folders) >= _FOLDER_CACHE_SIZE:
                self._folders.clear()
            self._folders[rel] = folder
        return folder

    def resolve(self, path: str) -> Path:
        """The absolute path of relative `path`, refusing anything outside the root."""
        head, _, name = check_relative_path(path).rpartition("/")
        full = self._folder(head) / name
        if full.is_symlink():
            return self._inside(full.resolve(), path)
        return full

    def size_of(self, path: str) -> int | None:
        try:
            st = self.resolve(path).stat()
        except FileNotFoundError:
            return None
        return st.st_size

    def exists(self, path: str, size: int | None = None) -> bool:
        actual = self.size_of(path)
        return actual is not None and (size is None or actual == size)

    def open_folder(self, directory: str) -> int:
        """A handle (O_RDONLY folder descriptor; the caller closes it) of folder `directory`, made (0700)
        where missing: opened from the root one name at a time without following links; a link is followed
        only when the folder it leads to is inside the target. UnsafePathError otherwise."""
        names = [n for n in check_relative_path(directory).split("/") if n] if directory else []
        fd = os.dup(self._root_fd)
        try:
            for name in names:
                try:
                    child = os.open(name, _DIR_FLAGS | _NOFOLLOW, dir_fd=fd)
                except FileNotFoundError:
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, FOLDER_MODE, dir_fd=fd)
                    child = os.open(name, _DIR_FLAGS | _NOFOLLOW, dir_fd=fd)
                    os.fchmod(child, FOLDER_MODE)  # exactly owner-only, whatever the umask
                except OSError as exc:
                    if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                        raise
                    child = os.open(name, _DIR_FLAGS, dir_fd=fd)  # a link: where does it lead?
                    self._check_open(child, directory)
                os.close(fd)
                fd = child
            self._check_open(fd, directory)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _check_open(self, fd: int, directory: str) -> None:
        real = _real_path(fd)
        if real is not None and not real.is_relative_to(self.root):
            os.close(fd)
            raise UnsafePathError(f"{directory!r} resolves outside the target ({real})")

    def open_writer(self, path: str, *, sync_dir: bool = True, retain_until: datetime | None = None) -> TargetWriter:
        final = self.resolve(path)
        folder = check_relative_path(path).rpartition("/")[0]
        reopen = functools.partial(self.open_folder, folder)
        try:
            return _LocalWriter(final, reopen(), reopen, sync_dir=sync_dir)
        except UnsafePathError:
            raise
        except OSError as exc:
            raise TargetError(f"cannot write {path}: {exc.strerror or exc}") from exc

    def read_bytes(self, path: str) -> bytes:
        return self.resolve(path).read_bytes()

    def read_text(self, path: str) -> str | None:
        try:
            return self.resolve(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def write_text_atomic(self, path: str, text: str) -> None:
        writer = self.open_writer(path)
        try:
            writer.write(text.encode("utf-8"))
            writer.commit()
        except BaseException:
            writer.abort()
            raise
        match_owner(self.resolve(path), self.owner_reference())

    def remove_stale_temp(self, directory: str, only_for: str | None = None) -> int:
        """Delete our temporary files in `directory` (only those of file `only_for`, when given)."""
        folder = self.resolve(directory) if directory else self.root
        removed = 0
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return 0
        for entry in entries:
            mine = only_for is None or entry.name.startswith(temp_prefix(only_for))
            if mine and entry.is_file(follow_symlinks=False) and is_temp_name(entry.name):
                with contextlib.suppress(FileNotFoundError):
                    Path(entry.path).unlink()
                    removed += 1
        return removed

    def owner_reference(self) -> Path:
        """What files an administrator's command creates here should be owned like: a backup run's lock
        file in the root (its owner is the worker's user), else the root itself."""
        for entry in sorted(self.root.glob(".rcbs-lock-*")):
            return entry
        return self.root

    def list_folder(self, directory: str) -> dict[str, int]:
        """{name: size} of the files directly in `directory` ({} when it does not exist)."""
        folder = self.resolve(directory)
        try:
            return {e.name: e.stat().st_size for e in os.scandir(folder) if e.is_file(follow_symlinks=False)}
        except FileNotFoundError:
            return {}

    def make_private_folder(self, directory: str) -> None:
        """Make `directory` (owner-only) when it does not exist."""
        folder = self.resolve(directory)
        if not folder.is_dir():
            os.close(self.open_folder(directory))
            match_owner(folder, self.owner_reference())

    def remove_folder(self, directory: str) -> FolderRemoval:
        """Delete the recording folder `directory`: its files (the metadata file last), then the folder,
        then each parent left empty, up to the root (a writer that finds its folder gone makes it again)."""
        if not directory.strip("/"):
            raise UnsafePathError("refusing to remove the target's root")
        folder = self.resolve(directory)
        try:
            entries = {e.name: e for e in os.scandir(folder)}
        except FileNotFoundError:
            return FolderRemoval()
        except OSError as exc:
            raise TargetError(f"cannot list {directory}: {exc.strerror or exc}") from exc
        files = removed_bytes = 0
        try:
            for name in metadata_last(directory, list(entries)):
                entry = entries[name]
                if entry.is_dir(follow_symlinks=False):
                    raise TargetError(f"{directory}/{name} is a folder; a recording folder holds only files")
                size = entry.stat(follow_symlinks=False).st_size
                with contextlib.suppress(FileNotFoundError):
                    Path(entry.path).unlink()  # a symbolic link is removed itself, never what it points to
                    files += 1
                    removed_bytes += size
            _fsync_dir(folder)
            folder.rmdir()
            parent = folder.parent
            _fsync_dir(parent)
            while parent != self.root and parent.is_relative_to(self.root):
                try:
                    parent.rmdir()
                except OSError:  # not empty (or in use): it stays
                    break
                parent = parent.parent
        except TargetError:
            raise
        except OSError as exc:
            raise TargetError(f"removing {directory} failed: {exc.strerror or exc}") from exc
        self._folders.clear()
        return FolderRemoval(files, removed_bytes)

    def scan_folder(self, directory: str) -> dict[str, int] | None:
        """Remove our temporary files in `directory`; {name: size} of the other files there."""
        folder = self.resolve(directory)
        try:
            entries = list(os.scandir(folder))
        except FileNotFoundError:
            return {}
        sizes: dict[str, int] = {}
        for entry in entries:
            try:
                if entry.is_symlink():  # checked like any path: a link out of the target is refused
                    size = self.size_of(f"{directory}/{entry.name}")
                    if size is not None:
                        sizes[entry.name] = size
                elif entry.is_file():
                    if is_temp_name(entry.name):
                        Path(entry.path).unlink()
                    else:
                        sizes[entry.name] = entry.stat().st_size
            except FileNotFoundError:
                continue
        return sizes

    @contextlib.contextmanager
    def lock(self, name: str, holder: LockHolder) -> Iterator[None]:
        path = self.resolve(name)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | _NOFOLLOW, FILE_MODE)
        try:
            match_owner(path, self.owner_reference())
            if self._flock(fd, path, holder):
                os.ftruncate(fd, 0)
                os.pwrite(fd, (holder.to_json() + "\n").encode(), 0)
                os.fsync(fd)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _flock(self, fd: int, path: Path, holder: LockHolder) -> bool:
        """Take the lock; False when the file system cannot lock (then the run goes on without one)."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            current = os.pread(fd, 4096, 0).decode("utf-8", "replace")
            raise LockHeldError(
                f"another instance is already running with target {self.description} and shard "
                f"{holder.shard}: {LockHolder.describe_json(current)} holds {path}"
            ) from None
        except OSError as exc:
            if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                log.warning("%s does not support file locks (%s); running without the lock", path, exc.strerror)
                return False
            raise TargetError(f"cannot lock {path}: {exc.strerror or exc}") from exc
        return True
