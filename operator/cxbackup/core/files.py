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
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

__all__ = ["PRIVATE_MODE", "NewFile", "fsync_dir", "match_owner", "write_file"]

PRIVATE_MODE = 0o600
"""Owner read and write only: private keys and anything decrypted."""

_NO_HARD_LINKS = {errno.EPERM, errno.EXDEV, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}


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

    def __init__(self, path: Path, mode: int = PRIVATE_MODE) -> None:
        self.path = path
        self.temp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
        fd = os.open(self.temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            if not mode & 0o077:
                os.fchmod(fd, mode)  # exactly owner-only, whatever the umask
            self._file: BinaryIO | None = os.fdopen(fd, "wb")
        except BaseException:
            os.close(fd)
            self.temp.unlink(missing_ok=True)
            raise

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
        try:
            if replace:
                self.temp.replace(self.path)
            else:
                try:
                    os.link(self.temp, self.path)  # atomic, and fails when the name exists
                except FileExistsError:
                    return False
                except OSError as exc:
                    if exc.errno not in _NO_HARD_LINKS:
                        raise
                    if self.path.exists():
                        return False
                    self.temp.rename(self.path)
        finally:
            self.discard()
        if sync_dir:
            fsync_dir(self.path.parent)
        return True

    def discard(self) -> None:
        """Close and remove the temporary file (once placed, only the name left by a hard link)."""
        with contextlib.suppress(OSError):
            self.close()
        with contextlib.suppress(FileNotFoundError):
            self.temp.unlink()

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
