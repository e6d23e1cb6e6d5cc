"""Files that appear whole or not at all; private ones (keys, plaintext) readable by their owner only.

Every file a command writes that matters (a private key, a decrypted recording, an extracted export)
goes the same way, through `NewFile`:

1. a new hidden temporary file next to the final name, `.<name>.<8 hex>.part`, created with O_EXCL and
   mode 0600 by default; an owner-only mode is set exactly (fchmod), whatever the umask;
2. the data is written, flushed and fsynced;
3. `place()` moves it into place: `os.replace` when replacing is allowed, otherwise a hard link that
   fails when the name exists (a file that appeared meanwhile is never clobbered; on file systems
   without hard links, a rename after checking the name is free), then the folder is fsynced.
   It returns False, and removes the temporary file, when the name was taken.

Leaving the `with` block without `place()` (an error, or a caller that changed its mind) removes the
temporary file. `write_file` does all of it for bytes; `fsync_dir` makes the renames in a folder durable.

Inside a folder someone else can write to (an archive's tree, an output folder another user shares),
`open_folder(root, names)` opens a subfolder one name at a time without following a symbolic link
(making the missing ones, owner-only), raising `LinkInPath` at a link; a `NewFile` given that
`folder` descriptor creates, links, renames and removes its files relative to it, so nothing is written
through a link planted in the tree, even while it is written.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

__all__ = [
    "PRIVATE_FOLDER_MODE",
    "PRIVATE_MODE",
    "LinkInPath",
    "NewFile",
    "fsync_dir",
    "match_owner",
    "open_folder",
    "write_file",
]

PRIVATE_MODE = 0o600
"""Owner read and write only: private keys and anything decrypted."""

PRIVATE_FOLDER_MODE = 0o700
"""Owner only: folders of private files."""

_NO_HARD_LINKS = {errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}
_DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


class LinkInPath(OSError):
    """A folder on the way is a symbolic link (or not a folder): nothing is written through it."""


def open_folder(root: Path, names: Sequence[str], *, mode: int = PRIVATE_FOLDER_MODE) -> int:
    """The descriptor (the caller closes it) of `root`/`names`..., each name opened without following a
    link and made with `mode` (exactly, whatever the umask) where missing; `root` itself is followed (the
    caller's choice). Raises LinkInPath naming the first name that is a link or not a folder."""
    fd = os.open(root, _DIR_FLAGS)
    path = root
    try:
        for name in names:
            path = path / name
            if name in ("", ".", "..") or "/" in name:
                raise LinkInPath(errno.EINVAL, "not a plain folder name", str(path))
            try:
                child = os.open(name, _DIR_FLAGS | _NOFOLLOW, dir_fd=fd)
            except FileNotFoundError:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(name, mode, dir_fd=fd)
                try:
                    child = os.open(name, _DIR_FLAGS | _NOFOLLOW, dir_fd=fd)
                except OSError as exc:
                    raise LinkInPath(exc.errno, "a symbolic link or not a folder", str(path)) from None
                os.fchmod(child, mode)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    raise LinkInPath(exc.errno, "a symbolic link or not a folder", str(path)) from None
                raise
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def match_owner(path: Path, like: Path) -> None:
    """Give `path` (just created by this process) the owner and group of `like`, when this process runs as
    root and `like` belongs to another user: an administrator's command (run as root) on a backup volume
    must leave files the worker (uid 10001) can still open, such as the ledger, its lock and a rebuilt
    search index. Otherwise nothing is changed."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    st = like.stat()
    if (st.st_uid, st.st_gid) != (0, 0):
        os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)


def fsync_dir(directory: Path) -> None:
    """fsync a folder, so the renames into it survive a crash (skipped where it is not supported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems (SMB, some FUSE) refuse fsync on folders
        pass
    finally:
        os.close(fd)


class NewFile:
    """A file being written under a temporary name next to `path`; `place()` makes it `path`."""

    def __init__(self, path: Path, mode: int = PRIVATE_MODE, *, folder: int | None = None) -> None:
        """`folder`: a descriptor of `path`'s folder (`open_folder`), which every operation then goes through
        (the caller keeps it open until the file is placed or discarded, and closes it)."""
        self.path = path
        self.temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        self._folder = folder
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW
        fd = os.open(self._name(self.temp), flags, mode, dir_fd=folder)
        try:
            if not mode & 0o077:
                os.fchmod(fd, mode)  # exactly owner-only, whatever the umask
            self._file: BinaryIO | None = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            self._unlink(self.temp)
            raise

    def _name(self, path: Path) -> str | Path:
        """How `path` (this file or its temporary name) is given to the system: by name in `folder`."""
        return path.name if self._folder is not None else path

    def _unlink(self, path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._name(path), dir_fd=self._folder)

    def write(self, data: bytes | memoryview) -> None:
        assert self._file is not None, f"{self.temp} is closed"
        self._file.write(data)

    def rewind(self) -> None:
        """Drop what was written so far (the file is empty again)."""
        assert self._file is not None, f"{self.temp} is closed"
        self._file.seek(0)
        self._file.truncate()

    def close(self) -> None:
        """Flush, fsync and close the temporary file (done by `place()` too)."""
        if self._file is not None:
            fh, self._file = self._file, None
            try:
                fh.flush()
                os.fsync(fh.fileno())
            finally:
                fh.close()

    def place(self, *, replace: bool = False, sync_dir: bool = True) -> bool:
        """Move the file to `path`; False (and the temporary file removed) when it exists and not `replace`."""
        self.close()
        temp, final, fd = self._name(self.temp), self._name(self.path), self._folder
        try:
            if replace:
                os.replace(temp, final, src_dir_fd=fd, dst_dir_fd=fd)
            else:
                try:
                    os.link(temp, final, src_dir_fd=fd, dst_dir_fd=fd, follow_symlinks=False)  # fails when taken
                except FileExistsError:
                    return False
                except OSError as exc:
                    if exc.errno not in _NO_HARD_LINKS:
                        raise
                    try:
                        os.stat(final, dir_fd=fd, follow_symlinks=False)
                        return False
                    except FileNotFoundError:
                        os.rename(temp, final, src_dir_fd=fd, dst_dir_fd=fd)
        finally:
            self.discard()
        if sync_dir:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.fsync(fd)
            else:
                fsync_dir(self.path.parent)
        return True

    def discard(self) -> None:
        """Close and remove the temporary file (once placed, only the name left by a hard link)."""
        with contextlib.suppress(OSError):
            self.close()
        self._unlink(self.temp)

    def __enter__(self) -> NewFile:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.discard()


def write_file(path: Path, data: bytes, *, mode: int = PRIVATE_MODE, replace: bool = False) -> bool:
    """Write `data` to `path` as `NewFile` does; False when `path` exists and not `replace`."""
    with NewFile(path, mode) as new:
        new.write(data)
        return new.place(replace=replace)
