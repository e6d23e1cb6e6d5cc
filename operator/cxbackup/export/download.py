"""Getting an export back: fetch an artifact, verify it, decrypt it, unzip it safely, check the manifest.

`download_artifact(store, name, key, out_dir)`:

1. refuses an artifact whose stored size is over `limits.max_artifact_bytes` before reading it, then
   reads the artifact and its metadata from the store and checks the SHA-256 of the stored bytes
   against the metadata (a damaged or replaced file is refused before anything is decrypted);
2. decrypts the CMS enveloped-data with the private key (cxbackup.certs.cms, trying every recipient,
   as `openssl cms -decrypt -inkey KEY` does);
3. opens the zip and, before extracting anything, refuses more than `limits.max_members` members,
   unsafe member names (absolute paths, `..`, backslashes, drive letters, symbolic links), members the
   manifest does not list or lists with another size, a manifest declared larger than
   `limits.max_manifest_bytes`, and members whose declared sizes add up to more than
   `limits.max_unpacked_bytes` (a zip bomb is refused from its directory, without inflating it);
4. extracts every file into `out_dir` with mode 0600 (it is plaintext), streaming it in 1 MiB chunks and
   checking its size and SHA-256 against manifest.json while writing it under a temporary name
   (cxbackup.core.files; the bytes actually inflated are counted against the same budgets); only when
   every file verified are they all moved into place. Existing files are not replaced unless `overwrite`.
   Folders inside `out_dir` are opened one name at a time without following a symbolic link (made 0700
   where missing) and every file is written relative to its folder's handle: a folder of the output tree
   that is a link (planted by another user, or by anything before) is refused, never written through.

Every failure raises IntegrityError (or ArtifactNotFoundError / StoreError from the store) and leaves
no half-written file behind. The decrypted zip is held in memory (the zip reader needs the whole artifact), so
an artifact costs about twice its stored size in memory: the reason for `max_artifact_bytes`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from cxbackup.certs import cms
from cxbackup.core.files import PRIVATE_MODE, LinkInPath, NewFile, open_folder
from cxbackup.export.errors import IntegrityError
from cxbackup.export.packaging import MANIFEST_KIND, MANIFEST_NAME, MAX_PART_FILES
from cxbackup.export.store import ArtifactInfo, ArtifactStore

__all__ = [
    "MAX_ARTIFACT_BYTES",
    "MAX_MANIFEST_BYTES",
    "MAX_MEMBERS",
    "MAX_UNPACKED_BYTES",
    "ArchiveLimits",
    "DownloadResult",
    "ExtractedFile",
    "check_member_name",
    "download_artifact",
    "extract_zip",
]

MAX_ARTIFACT_BYTES = 1024 * 1024 * 1024
"""The largest stored artifact downloaded (1 GiB; a default part is at most 256 MiB uncompressed)."""
MAX_UNPACKED_BYTES = 4 * 1024 * 1024 * 1024
"""The most an artifact's files may add up to, uncompressed (4 GiB)."""
MAX_MEMBERS = MAX_PART_FILES
"""The most files an artifact's zip may hold (a part holds a manifest and at most a dozen files, or, a
subjectAccess part, the packager keeps it below this)."""
MAX_MANIFEST_BYTES = 4 * 1024 * 1024
"""The largest manifest.json read (4 MiB; a real one is a few KB)."""

_CHUNK = 1024 * 1024
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class ArchiveLimits:
    """The budgets of one download (see the module docstring); raise them for parts made with a larger
    --part-size."""

    max_artifact_bytes: int = MAX_ARTIFACT_BYTES
    max_unpacked_bytes: int = MAX_UNPACKED_BYTES
    max_members: int = MAX_MEMBERS
    max_manifest_bytes: int = MAX_MANIFEST_BYTES


@dataclass(frozen=True)
class ExtractedFile:
    """One file written into the output directory."""

    name: str
    path: Path
    size: int
    sha256: str
    records: int | None


@dataclass(frozen=True)
class DownloadResult:
    artifact: ArtifactInfo
    manifest: dict[str, Any]
    files: list[ExtractedFile]


def check_member_name(name: str) -> PurePosixPath:
    """The member's relative path, or IntegrityError when extracting it could escape the directory."""
    path = PurePosixPath(name)
    if (
        not name
        or "\\" in name
        or "\x00" in name
        or name.startswith("/")
        or _DRIVE.match(name)
        or any(part in ("", ".", "..") for part in name.split("/"))
    ):
        raise IntegrityError(f"unsafe file name in the archive: {name!r}")
    return path


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _read_manifest(zf: zipfile.ZipFile, limits: ArchiveLimits, where: str) -> dict[str, Any]:
    try:
        info = zf.getinfo(MANIFEST_NAME)
    except KeyError:
        raise IntegrityError(f"{where}the archive has no {MANIFEST_NAME}") from None
    if info.file_size > limits.max_manifest_bytes:
        raise IntegrityError(
            f"{where}{MANIFEST_NAME} declares {info.file_size} bytes, over the limit of "
            f"{limits.max_manifest_bytes} bytes; not read"
        )
    try:
        with zf.open(info) as src:
            text = src.read(limits.max_manifest_bytes + 1)
        if len(text) > limits.max_manifest_bytes:
            raise IntegrityError(f"{where}{MANIFEST_NAME} is over the limit of {limits.max_manifest_bytes} bytes")
        manifest = json.loads(text)
    except (ValueError, zipfile.BadZipFile) as exc:
        raise IntegrityError(f"{where}{MANIFEST_NAME} is unreadable ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != MANIFEST_KIND:
        raise IntegrityError(f"{where}{MANIFEST_NAME} is not a cxbackup export manifest")
    return manifest


def _check_budget(members: list[zipfile.ZipInfo], limits: ArchiveLimits, where: str) -> None:
    """Refuse an archive whose directory already says it is too big: no member is inflated."""
    declared = 0
    for info in members:
        declared += info.file_size
        if declared > limits.max_unpacked_bytes:
            raise IntegrityError(
                f"{where}the archive declares more than {limits.max_unpacked_bytes} bytes uncompressed "
                f"(reached at {info.filename!r}, {info.file_size} bytes); nothing was extracted"
            )


def extract_zip(
    data: bytes,
    out_dir: Path,
    *,
    overwrite: bool = False,
    source: str = "",
    limits: ArchiveLimits | None = None,
) -> tuple[dict[str, Any], list[ExtractedFile]]:
    """Extract an export zip into `out_dir` after checking names, budgets and manifest (see the module
    docstring)."""
    limits = limits or ArchiveLimits()
    where = f"{source}: " if source else ""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        raise IntegrityError(f"{where}the decrypted content is not a zip ({exc})") from None
    with zf:
        members = zf.infolist()
        if len(members) > limits.max_members:
            raise IntegrityError(
                f"{where}the archive holds {len(members)} files, over the limit of {limits.max_members}"
            )
        for info in members:
            check_member_name(info.filename)
            if info.is_dir() or _is_symlink(info):
                raise IntegrityError(f"{where}unexpected directory or link in the archive: {info.filename!r}")
        if len({m.filename for m in members}) != len(members):
            raise IntegrityError(f"{where}the archive names a file twice")
        _check_budget(members, limits, where)
        manifest = _read_manifest(zf, limits, where)
        listed = {str(f.get("name")): f for f in manifest.get("files", []) if isinstance(f, dict)}
        present = {m.filename for m in members if m.filename != MANIFEST_NAME}
        if present != set(listed):
            extra = sorted(present ^ set(listed))
            raise IntegrityError(f"{where}the archive and its manifest disagree about {extra[:3]}")
        for info in members:
            expected = listed.get(info.filename)
            if expected is not None and expected.get("bytes") != info.file_size:
                raise IntegrityError(
                    f"{where}{info.filename} is {info.file_size} bytes in the archive but "
                    f"{expected.get('bytes')!r} in the manifest; nothing was extracted"
                )
        names = [MANIFEST_NAME, *sorted(present)]
        targets = {n: out_dir.joinpath(*check_member_name(n).parts) for n in names}
        if not overwrite:
            taken = [str(p) for p in targets.values() if p.exists()]
            if taken:
                raise IntegrityError(f"{where}{taken[0]} exists already (use another directory, or overwrite)")
        staged: list[tuple[NewFile, ExtractedFile]] = []
        folders: list[int] = []
        budget = [limits.max_unpacked_bytes]  # what may still be inflated, counted while extracting
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            for name in names:  # every file verified under a temporary name first...
                folder = _member_folder(out_dir, name, where)
                folders.append(folder)
                staged.append(_extract_one(zf, name, targets[name], listed.get(name), where, budget, folder))
            for new, done in staged:  # ...then all moved into place
                if not new.place(replace=overwrite):
                    raise IntegrityError(f"{where}{done.path} appeared while extracting; not replacing it")
        finally:
            for new, _ in staged:
                new.discard()
            for folder in folders:
                os.close(folder)
    return manifest, [done for _, done in staged]


def _member_folder(out_dir: Path, name: str, where: str) -> int:
    """The folder of member `name` under `out_dir`, opened (made where missing, 0700) one name at a time
    without following a link: a folder inside the output folder that is a symbolic link (planted by the
    archive's earlier files or by another user) is refused, never written through."""
    try:
        return open_folder(out_dir, check_member_name(name).parts[:-1])
    except LinkInPath as exc:
        raise IntegrityError(
            f"{where}{exc.filename} is a symbolic link or not a folder; nothing is written through it "
            f"(remove it, or use another directory)"
        ) from None


def _extract_one(
    zf: zipfile.ZipFile,
    name: str,
    target: Path,
    expected: dict[str, Any] | None,
    where: str,
    budget: list[int],
    folder: int,
) -> tuple[NewFile, ExtractedFile]:
    """Write one member, mode 0600, to a temporary name next to `target` in `folder` (its checked folder),
    checked against the manifest and the remaining uncompressed budget (`budget[0]`, lowered by what is
    written)."""
    limit = int(expected["bytes"]) if expected is not None else None
    digest = hashlib.sha256()
    size = 0
    new = NewFile(target, PRIVATE_MODE, folder=folder)
    try:
        with zf.open(name) as src:
            while chunk := src.read(_CHUNK):
                size += len(chunk)
                budget[0] -= len(chunk)
                if budget[0] < 0:
                    raise IntegrityError(f"{where}the archive inflates past its uncompressed budget at {name}")
                if limit is not None and size > limit:
                    raise IntegrityError(f"{where}{name} is larger than the manifest says ({limit} bytes)")
                digest.update(chunk)
                new.write(chunk)
        new.close()
        sha = digest.hexdigest()
        if expected is not None and (size != limit or sha != expected.get("sha256")):
            raise IntegrityError(f"{where}{name} does not match the manifest (size or sha256)")
    except zipfile.BadZipFile as exc:
        new.discard()
        raise IntegrityError(f"{where}{name} is damaged in the archive ({exc})") from None
    except BaseException:
        new.discard()
        raise
    records = int(expected["records"]) if expected is not None and "records" in expected else None
    return new, ExtractedFile(name, target, size, sha, records)


def download_artifact(
    store: ArtifactStore,
    name: str,
    key: RSAPrivateKey,
    out_dir: Path,
    *,
    overwrite: bool = False,
    limits: ArchiveLimits | None = None,
) -> DownloadResult:
    """Fetch, verify, decrypt and extract one artifact (see the module docstring)."""
    limits = limits or ArchiveLimits()
    stored = store.info(name).size
    if stored > limits.max_artifact_bytes:
        raise IntegrityError(
            f"{name}: the artifact is {stored} bytes, over the limit of {limits.max_artifact_bytes} bytes "
            "(--max-artifact-bytes); not read"
        )
    data, info = store.get(name, max_bytes=limits.max_artifact_bytes)
    actual = hashlib.sha256(data).hexdigest()
    if len(data) != info.size or actual != info.sha256:
        raise IntegrityError(
            f"{name}: the stored file does not match its metadata "
            f"(size {len(data)} vs {info.size}, sha256 {actual[:12]}... vs {info.sha256[:12]}...)"
        )
    try:
        plaintext = cms.decrypt_with_key(data, key, source=name)
    except cms.CmsError as exc:
        raise IntegrityError(str(exc)) from None
    del data  # the encrypted copy is not needed while extracting
    manifest, files = extract_zip(plaintext, out_dir, overwrite=overwrite, source=name, limits=limits)
    return DownloadResult(info, manifest, files)
