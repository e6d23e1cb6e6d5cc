"""`cxbackup decrypt`: decrypt downloaded recordings (CMS enveloped-data) into a separate tree.

    cxbackup decrypt (--key KEY [--cert CERT] | --keyring DIR) [--password-env VAR | --password-file F]
                     [--overwrite] SRC --out DEST

With --keyring DIR (a folder of key and certificate files, such as a saved keyring Secret), each
file's recipient picks the key, and each encrypted key opens with its own password from the file
`<name>.password` next to it; --password-env / --password-file is the password of keys without one.
A key that cannot be opened is named in a warning (its certificate's serial and the reason) and the
other keys are still used; the files encrypted to it fail, saying so.

SRC is one media file or a backup tree (`<folderFormat>/<callUUID>/` folders with media files next to
`<callUUID>.json`). The output equals `openssl cms -decrypt -inform DER -binary -inkey KEY` byte for
byte. Rules:

- Never in place: DEST must not be SRC, inside SRC, or contain SRC. The tree is mirrored under DEST.
- Media files (every file not listed below) are decrypted. The output name is the media file name
  with a trailing `.bin` removed (`..._00000001.mp3.bin` -> `..._00000001.mp3`); when what is left has
  no media extension and the sibling metadata gives the type, its extension is added (a screen
  recording `W6x+..._2021_07_21_16_49_01` of type video/mp4 becomes `..._16_49_01.mp4`).
- `.json` (metadata), `.txt`, `.csv`, `.log` and `.properties` files are copied unchanged.
- Hidden files (name starting with "."), `.part`/`.tmp`/`.lock` files and symlinks are skipped.
- An existing output file is kept and counted as skipped, unless --overwrite. Every file is written
  with mode 0600 (owner only, whatever the umask: it is plaintext) to a temporary name in its
  destination folder and renamed when complete.
- When metadata gives a media file's `size`, a decrypted length that differs is reported as a warning.

The summary counts decrypted, copied, skipped and failed files with each failure's reason; the exit
code is 1 when any file failed, 2 for a usage error (bad key, refused paths), else 0.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import mmap
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cxbackup.backup.layout import decrypted_name as output_name
from cxbackup.certs.cms import CmsError, KeyFileError, load_certificates, load_private_key
from cxbackup.certs.keyring import Keyring
from cxbackup.commands.passwords import PasswordError, add_password_arguments, password_from
from cxbackup.core.errors import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from cxbackup.core.files import PRIVATE_MODE, NewFile

__all__ = ["DecryptSummary", "decrypt_tree", "output_name", "register", "run"]

_COPY_CHUNK = 1024 * 1024
COPIED_SUFFIXES = (".json", ".txt", ".csv", ".log", ".properties")
SKIPPED_SUFFIXES = (".part", ".tmp", ".lock")


class UsageError(Exception):
    """Refused arguments (exit 2)."""


@dataclass
class DecryptSummary:
    """What `decrypt_tree` did, file by file (paths relative to SRC)."""

    decrypted: list[str] = field(default_factory=list)
    copied: list[str] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def _media_info(folder: Path, warnings: list[str], root: Path) -> dict[str, tuple[str | None, int | None]]:
    """mediaId -> (type, plaintext size) from the metadata files in `folder`."""
    info: dict[str, tuple[str | None, int | None]] = {}
    for meta in sorted(folder.glob("*.json")):
        try:
            doc = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            warnings.append(f"{meta.relative_to(root)}: metadata not readable ({type(exc).__name__})")
            continue
        media_files = doc.get("mediaFiles") if isinstance(doc, dict) else None
        for media in media_files if isinstance(media_files, list) else []:
            if not isinstance(media, dict) or not isinstance(media.get("mediaId"), str):
                continue
            size_text = media.get("size")
            try:
                size = int(size_text) if size_text is not None else None
            except (TypeError, ValueError):
                size = None
            mtype = media.get("type")
            info[media["mediaId"]] = (mtype if isinstance(mtype, str) else None, size)
    return info


def _copy_new(path: Path, source: Path, overwrite: bool) -> bool:
    """Copy `source` to `path`, mode 0600, via a temporary file (cxbackup.core.files); False when it exists
    and not overwrite."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with NewFile(path, PRIVATE_MODE) as new:
        with open(source, "rb") as fh:
            while chunk := fh.read(_COPY_CHUNK):
                new.write(chunk)
        return new.place(replace=overwrite, sync_dir=False)


def _decrypt_new(keyring: Keyring, source: Path, path: Path, rel: str, overwrite: bool) -> tuple[int, bool]:
    """Decrypt `source` into `path` as `_copy_new` copies: the file is mapped, not read into memory, and the
    plaintext streamed into the temporary file, which is dropped on any error. (Bytes, whether placed.)"""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(source, "rb") as fh, NewFile(path, PRIVATE_MODE) as new:
        if os.fstat(fh.fileno()).st_size == 0:
            size = keyring.decrypt_into(b"", new, source=rel)  # raises: not CMS
        else:
            data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
            size = keyring.decrypt_into(data, new, source=rel)
            # unmapped now; after an error, when the traceback's views into it are gone
            with contextlib.suppress(BufferError):
                data.close()
        return size, new.place(replace=overwrite, sync_dir=False)


def _classify(path: Path) -> str:
    name = path.name
    if path.is_symlink():
        return "skip:symlink"
    if name.startswith("."):
        return "skip:hidden file"
    lower = name.lower()
    if lower.endswith(SKIPPED_SUFFIXES):
        return "skip:temporary or lock file"
    if lower.endswith(COPIED_SUFFIXES):
        return "copy"
    return "decrypt"


def _walk(src: Path) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            yield Path(dirpath) / name


def check_paths(src: Path, dest: Path) -> None:
    """Refuse in-place decryption: DEST equal to, inside, or containing SRC (raises UsageError)."""
    s, d = src.resolve(), dest.resolve()
    if not src.exists():
        raise UsageError(f"{src}: no such file or directory")
    if src.is_dir():
        if d == s or d.is_relative_to(s) or s.is_relative_to(d):
            raise UsageError(f"refusing to decrypt in place: --out {dest} must be outside {src} and not contain it")
    elif d == s:
        raise UsageError(f"refusing to decrypt in place: --out {dest} is the source file")


def decrypt_tree(keyring: Keyring, src: Path, dest: Path, *, overwrite: bool = False) -> DecryptSummary:
    """Decrypt SRC (a file or a tree) into DEST as the module docstring describes."""
    check_paths(src, dest)
    summary = DecryptSummary()
    if src.is_file():
        info = _media_info(src.parent, summary.warnings, src.parent)
        target = dest / output_name(src.name, info.get(src.name, (None, None))[0]) if dest.is_dir() else dest
        if target.resolve() == src.resolve():
            raise UsageError(f"refusing to decrypt in place: the output would be {src} itself")
        _one(keyring, src, target, src.name, _classify(src), info, summary, overwrite)
        return summary
    folders: dict[Path, dict[str, tuple[str | None, int | None]]] = {}
    for path in _walk(src):
        rel = path.relative_to(src)
        action = _classify(path)
        if path.parent not in folders:
            folders.clear()  # os.walk finishes a folder before the next: keep one folder's metadata
            folders[path.parent] = _media_info(path.parent, summary.warnings, src)
        info = folders[path.parent]
        mtype = info.get(path.name, (None, None))[0]
        out_rel = rel.parent / output_name(path.name, mtype) if action == "decrypt" else rel
        _one(keyring, path, dest / out_rel, rel.as_posix(), action, info, summary, overwrite)
    return summary


def _one(
    keyring: Keyring,
    path: Path,
    target: Path,
    rel: str,
    action: str,
    info: dict[str, tuple[str | None, int | None]],
    summary: DecryptSummary,
    overwrite: bool,
) -> None:
    if action.startswith("skip:"):
        summary.skipped.append((rel, action[5:]))
        return
    if target.exists() and not overwrite:
        summary.skipped.append((rel, f"{target} exists (use --overwrite to replace)"))
        return
    try:
        if action == "copy":
            written = _copy_new(target, path, overwrite)
            bucket = summary.copied
        else:
            size, written = _decrypt_new(keyring, path, target, rel, overwrite)
            expected = info.get(path.name, (None, None))[1]
            if expected is not None and expected != size:
                summary.warnings.append(f"{rel}: metadata size is {expected} bytes, decrypted {size}")
            bucket = summary.decrypted
    except CmsError as exc:
        summary.failed.append((rel, str(exc).removeprefix(f"{rel}: ")))
        return
    except OSError as exc:
        summary.failed.append((rel, f"{exc.strerror or exc} ({exc.filename or target})"))
        return
    if written:
        bucket.append(rel)
    else:
        summary.skipped.append((rel, f"{target} exists (use --overwrite to replace)"))


def load_keyring(args: argparse.Namespace) -> Keyring:
    """The keyring the arguments name (--keyring DIR, or --key KEY with an optional --cert CERT)."""
    try:
        password = password_from(args)
    except PasswordError as exc:
        raise UsageError(str(exc)) from None
    if args.keyring:
        ring = Keyring.from_directory(Path(args.keyring), password)
        if not len(ring):
            raise UsageError(f"--keyring {args.keyring}: no private key found")
        return ring
    key_path = Path(args.key)
    key = load_private_key(key_path, password)
    certs = load_certificates(key_path)  # a combined PEM may hold the certificate too
    if args.cert:
        certs += load_certificates(Path(args.cert))
    ring = Keyring()
    ring.add(key, source=str(key_path))
    for cert in certs:
        if not ring.add_certificate(cert):
            raise UsageError(f"--cert {args.cert}: the certificate is not for the key {key_path}")
    return ring


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str) -> None:
    p = sub.add_parser(
        name,
        help=help_text,
        description=help_text + ". Output equals `openssl cms -decrypt -inform DER -binary -inkey KEY`.",
    )
    keys = p.add_mutually_exclusive_group(required=True)
    keys.add_argument("--key", metavar="KEY", help="the recording private key (PEM: PKCS#1 or PKCS#8)")
    keys.add_argument(
        "--keyring",
        metavar="DIR",
        help="a folder of keys and certificates (each key's password in <name>.password next to it); "
        "each file's recipient picks the key",
    )
    p.add_argument("--cert", metavar="CERT", help="the certificate of --key (optional; faster key selection)")
    add_password_arguments(p, what="--key, or of the --keyring keys without a <name>.password file")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("src", metavar="SRC", help="a downloaded media file or a backup folder")
    p.add_argument("--out", metavar="DEST", required=True, help="where to write (never SRC or inside it)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.cert and not args.key:
        print("cxbackup decrypt: --cert goes with --key", file=sys.stderr)
        return EXIT_CONFIG
    try:
        check_paths(Path(args.src), Path(args.out))
        keyring = load_keyring(args)
        for unusable in keyring.unusable:
            print(f"warning: {unusable}; files encrypted to it cannot be decrypted", file=sys.stderr)
        summary = decrypt_tree(keyring, Path(args.src), Path(args.out), overwrite=args.overwrite)
    except (UsageError, KeyFileError, OSError) as exc:
        print(f"cxbackup decrypt: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    print(
        f"decrypted {len(summary.decrypted)}, copied {len(summary.copied)}, "
        f"skipped {len(summary.skipped)}, failed {len(summary.failed)}"
    )
    existing = sum(1 for _, why in summary.skipped if "exists" in why)
    if existing:
        print(f"  {existing} output files exist already and were kept (use --overwrite to replace)")
    for warning in summary.warnings:
        print(f"warning: {warning}")
    for rel, reason in summary.failed:
        print(f"failed: {rel}: {reason}", file=sys.stderr)
    return EXIT_OK if summary.ok else EXIT_FAILED
