"""Where each file of a recording goes in the target: every path is built here.

    <recordingFolderFormat of startTime, UTC>/<callUUID>/<media file>...
    <recordingFolderFormat of startTime, UTC>/<callUUID>/<callUUID>.json

recordingFolderFormat (default `yyyy/MM/dd/HH`) uses Java SimpleDateFormat letters: `yyyy` `yy` year,
`MM` `M` month, `dd` `d` day, `HH` `H` hour (0-23), `mm` `m` minute, `ss` `s` second, `'text'` a
literal; other characters (`/ - _ .`) are copied. Other letters are rejected. `/` separates folders.

Name rule (`safe_name`), applied to the callUUID folder and to every media file name (the mediaId):

1. Every character outside printable ASCII, and each of `/ \\ < > : " | ? *`, becomes `_`; a leading
   `.` or blank, and a trailing `.` or blank, become `_` (no hidden names, no `.`/`..`, nothing that
   Windows or SMB would strip). Windows device names (CON, NUL, COM1, ...) get a `_` prefix.
2. When step 1 changed anything, or the name is longer than 160 characters, the name is cut to fit
   and `~` plus the first 12 hex digits of the SHA-256 of the original (UTF-8) is appended. So two
   different originals never end up with the same name, and an unchanged name stays readable.
3. Case-insensitive file systems (Windows, SMB, macOS): names of one recording's files that would be
   equal when case is ignored (two mediaIds, or a mediaId and `<callUUID>.json`) all get the suffix
   of step 2, decided from the recording's full mediaFiles list so it is the same on every run. A
   callUUID folder cannot see the other recordings of its hour, so a callUUID containing a lower-case
   ASCII letter always gets the suffix (vendor CallUUIDs are upper case, so in practice none does).

Temporary files are `.<name>.part-<8 hex>` in the final file's folder (hidden; at most 175 + 15
characters). Every path is relative, has no empty, `.` or `..` segment, and the targets check again
that the resolved path stays inside the target root.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from cxbackup.backup.errors import ConfigError, UnsafePathError
from cxbackup.backup.records import Recording
from cxbackup.core.times import from_ms

__all__ = [
    "DEFAULT_FOLDER_FORMAT",
    "MAX_NAME",
    "TEMP_PATTERN",
    "FolderFormat",
    "RecordingPaths",
    "check_relative_path",
    "decrypted_name",
    "is_temp_name",
    "media_file_names",
    "recording_folder_name",
    "recording_paths",
    "safe_name",
    "temp_name",
    "temp_prefix",
]

DEFAULT_FOLDER_FORMAT = "yyyy/MM/dd/HH"
MAX_NAME = 160
_SUFFIX_HEX = 12
_FORBIDDEN = set('/\\<>:"|?*')
_WINDOWS_DEVICES = {"CON", "PRN", "AUX", "NUL"} | {f"{p}{n}" for p in ("COM", "LPT") for n in range(1, 10)}
TEMP_PATTERN = r"^\..+\.part-[0-9a-f]{8}$"
"""Our temporary names, the worker's and cxbackup-fetch's (native/fetch/contract: $defs/tempName)."""
_TEMP = re.compile(TEMP_PATTERN)
MEDIA_EXTENSIONS = (".mp3", ".mp4", ".wav", ".ogg", ".opus", ".webm", ".m4a", ".mkv", ".avi", ".gsm")
TYPE_EXTENSIONS = {
    "audio/mp3": ".mp3",
    "audio/mpeg": ".mp3",
    "video/mp4": ".mp4",
    "audio/wav": ".wav",
    "audio/x-wav": ".wav",
    "audio/ogg": ".ogg",
    "video/webm": ".webm",
}


def _digest(original: str) -> str:
    return hashlib.sha256(original.encode("utf-8", "surrogatepass")).hexdigest()[:_SUFFIX_HEX]


def safe_name(name: str, *, force_suffix: bool = False) -> str:
    """A file or folder name for `name` following the module's name rule (steps 1 and 2)."""
    chars = ["_" if (c in _FORBIDDEN or not " " <= c <= "~") else c for c in name]
    if chars and chars[0] in ". ":
        chars[0] = "_"
    if chars and chars[-1] in ". ":
        chars[-1] = "_"
    cleaned = "".join(chars) or "_"
    if cleaned.split(".")[0].upper() in _WINDOWS_DEVICES:
        cleaned = "_" + cleaned
    if cleaned == name and len(cleaned) <= MAX_NAME and not force_suffix:
        return cleaned
    keep = MAX_NAME - _SUFFIX_HEX - 1
    head = cleaned[:keep]
    if head.endswith((".", " ")):
        head = head[:-1] + "_"
    return f"{head}~{_digest(name)}"


def recording_folder_name(call_uuid: str) -> str:
    """The folder of a recording: `safe_name(callUUID)`, with the suffix when it has lower case."""
    return safe_name(call_uuid, force_suffix=any("a" <= c <= "z" for c in call_uuid))


def media_file_names(media_ids: Iterable[str], metadata_name: str) -> dict[str, str]:
    """File names for all mediaIds of one recording, unique when case is ignored (rule step 3)."""
    ids = list(dict.fromkeys(media_ids))
    base = {mid: safe_name(mid) for mid in ids}
    folded: dict[str, int] = {metadata_name.casefold(): 1}
    for name in base.values():
        folded[name.casefold()] = folded.get(name.casefold(), 0) + 1
    return {
        mid: (safe_name(mid, force_suffix=True) if folded[name.casefold()] > 1 else name) for mid, name in base.items()
    }


def decrypted_name(name: str, media_type: str | None = None) -> str:
    """The name of a media file once decrypted (what `cxbackup decrypt` and a subjectAccess export with
    --decrypt-media write): a trailing `.bin` removed (`..._00000001.mp3.bin` -> `..._00000001.mp3`); when
    what is left has no media extension and the metadata gives the type, its extension is added (a screen
    recording `W6x+..._2021_07_21_16_49_01` of type video/mp4 becomes `..._16_49_01.mp4`)."""
    out = name[: -len(".bin")] if name.lower().endswith(".bin") and len(name) > 4 else name
    if not out.lower().endswith(MEDIA_EXTENSIONS) and media_type:
        out += TYPE_EXTENSIONS.get(media_type.lower(), "")
    return out


def temp_name(final_name: str) -> str:
    """A fresh hidden temporary name next to `final_name` (32 random bits from the process's generator,
    seeded from os.urandom and re-seeded after fork: a system call per file buys nothing here)."""
    return f"{temp_prefix(final_name)}{random.getrandbits(32):08x}"


def temp_prefix(final_name: str) -> str:
    """What every temporary name of `final_name` starts with."""
    return f".{final_name}.part-"


def is_temp_name(name: str) -> bool:
    """Whether `name` is one of our temporary names (left over when a run was killed)."""
    return bool(_TEMP.match(name))


def check_relative_path(path: str) -> str:
    """Return `path` when it is a clean relative POSIX path; raise UnsafePathError otherwise."""
    parts = path.split("/")
    if not path or path.startswith("/") or "\\" in path or "\x00" in path or any(p in ("", ".", "..") for p in parts):
        raise UnsafePathError(f"refusing unsafe path {path!r}")
    return path


_TOKEN = re.compile(r"'([^']*)'|([A-Za-z])\2*|([^A-Za-z']+)")


@dataclass(frozen=True)
class FolderFormat:
    """A parsed recordingFolderFormat."""

    text: str
    tokens: tuple[tuple[str, str], ...]  # (kind, value): kind "lit" or "field" (e.g. "yyyy")

    @classmethod
    def parse(cls, text: str) -> FolderFormat:
        tokens: list[tuple[str, str]] = []
        pos = 0
        stripped = text.strip()
        if "\\" in stripped:
            raise ConfigError(f"recordingFolderFormat={text!r}: use '/' as the separator, not '\\'")
        while pos < len(stripped):
            m = _TOKEN.match(stripped, pos)
            if m is None:
                raise ConfigError(f"recordingFolderFormat={text!r}: unterminated quote at {pos + 1}")
            if m[1] is not None:
                tokens.append(("lit", m[1]))
            elif m[2] is not None:
                field = m[0]
                if field not in _FIELDS:
                    raise ConfigError(
                        f"recordingFolderFormat={text!r}: {field!r} is not supported "
                        "(use yyyy, yy, MM, M, dd, d, HH, H, mm, m, ss, s and '/')"
                    )
                tokens.append(("field", field))
            else:
                tokens.append(("lit", m[3]))
            pos = m.end()
        fmt = cls(text=stripped, tokens=tuple(tokens))
        sample = fmt.format(datetime(2001, 2, 3, 4, 5, 6))
        if sample:
            for part in sample.split("/"):
                if part in ("", ".", "..") or safe_name(part) != part:
                    raise ConfigError(
                        f"recordingFolderFormat={text!r}: gives the folder {sample!r}; every part between "
                        "'/' must be a plain name (letters, digits, - _ and no leading or trailing '/')"
                    )
        return fmt

    def format(self, when: datetime) -> str:
        out: list[str] = []
        for kind, value in self.tokens:
            out.append(value if kind == "lit" else _FIELDS[value](when))
        return "".join(out)


_FIELDS = {
    "yyyy": lambda d: f"{d.year:04d}",
    "yy": lambda d: f"{d.year % 100:02d}",
    "MM": lambda d: f"{d.month:02d}",
    "M": lambda d: str(d.month),
    "dd": lambda d: f"{d.day:02d}",
    "d": lambda d: str(d.day),
    "HH": lambda d: f"{d.hour:02d}",
    "H": lambda d: str(d.hour),
    "mm": lambda d: f"{d.minute:02d}",
    "m": lambda d: str(d.minute),
    "ss": lambda d: f"{d.second:02d}",
    "s": lambda d: str(d.second),
}


@dataclass(frozen=True)
class RecordingPaths:
    """Relative paths of one recording's files in the target."""

    directory: str
    metadata: str
    media: dict[str, str]  # mediaId -> path, for every mediaId of the record


def recording_paths(recording: Recording, folder_format: FolderFormat) -> RecordingPaths:
    """All paths of `recording`; raises UnsafePathError if something would escape (never expected)."""
    if recording.start_ms is None:
        raise UnsafePathError(f"recording {recording.id!r} has no startTime; cannot place it")
    folder = recording_folder_name(recording.id)
    time_part = folder_format.format(from_ms(recording.start_ms))
    directory = f"{time_part}/{folder}" if time_part else folder
    metadata_name = f"{folder}.json"
    names = media_file_names((m.media_id for m in recording.media if m.media_id), metadata_name)
    media = {mid: check_relative_path(f"{directory}/{name}") for mid, name in names.items()}
    return RecordingPaths(
        directory=check_relative_path(directory),
        metadata=check_relative_path(f"{directory}/{metadata_name}"),
        media=media,
    )
