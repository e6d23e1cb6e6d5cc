"""Names: export names made safe, artifact file names built and recognised, time stamps.

An artifact is named

    <export>-<type>-<from>-<to>-<run>-part-<nnnn>.zip.p7m
    e.g. nightly-contact-history-20260824T000000Z-20260825T000000Z-20260825T001500Z-part-0001.zip.p7m

where `<export>` is the sanitised export name (lower-case letters, digits and single hyphens, at most
63 characters), `<type>` is `contact-history`, `gdpr-chat` or `subject-access`, `<from>`/`<to>` the
exported range and `<run>` the run's start (the run id), all UTC stamps `YYYYMMDDTHHMMSSZ`, and `<nnnn>`
the part number from 0001. The run id makes every run's artifacts distinct, so a re-run of the same range never
overwrites an earlier run's files, and leftovers of a crashed run can be told apart.

The store and the retention sweep only touch names `parse_artifact_name` recognises (and that have
our metadata), so a file someone else put into the store is never listed, overwritten or deleted.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = [
    "ARTIFACT_SUFFIX",
    "MAX_EXPORT_NAME",
    "TYPE_SLUGS",
    "ArtifactName",
    "artifact_name",
    "format_iso",
    "is_run_id",
    "parse_artifact_name",
    "parse_stamp",
    "run_id_for",
    "safe_member_name",
    "sanitize_name",
    "stamp",
]

ARTIFACT_SUFFIX = ".zip.p7m"
MAX_EXPORT_NAME = 63
TYPE_SLUGS = {"contactHistory": "contact-history", "gdprChat": "gdpr-chat", "subjectAccess": "subject-access"}
_SLUG_TYPES = {v: k for k, v in TYPE_SLUGS.items()}
_STAMP = r"\d{8}T\d{6}Z"
_ARTIFACT_RE = re.compile(
    rf"^(?P<export>[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)-(?P<type>{'|'.join(TYPE_SLUGS.values())})"
    rf"-(?P<start>{_STAMP})-(?P<end>{_STAMP})-(?P<run>{_STAMP})-part-(?P<part>\d{{4,6}})\.zip\.p7m$"
)
_RUN_ID_RE = re.compile(rf"^{_STAMP}$")
_NOT_SLUG = re.compile(r"[^a-z0-9]+")
_NOT_MEMBER = re.compile(r"[^A-Za-z0-9._@-]+")


def sanitize_name(name: str) -> str:
    """An export name usable in file names and S3 keys: `Nightly Export/EU` -> `nightly-export-eu`.

    Accents are dropped (`été` -> `ete`); lower-case ASCII letters and digits stay; every other run of
    characters becomes one hyphen; no hyphen at either end; at most 63 characters; `export` when
    nothing is left.
    """
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    slug = _NOT_SLUG.sub("-", ascii_name.lower()).strip("-")
    slug = slug[:MAX_EXPORT_NAME].rstrip("-")
    return slug or "export"


def safe_member_name(text: str) -> str:
    """One path segment inside a zip from an arbitrary id: letters, digits, `._@-`; never `.` or `..`."""
    cleaned = _NOT_MEMBER.sub("_", text)[:128].strip(".") or "_"
    return cleaned


def stamp(when: datetime) -> str:
    """`20260825T001500Z` (UTC, whole seconds)."""
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def parse_stamp(text: str) -> datetime:
    """The inverse of `stamp`."""
    return datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def run_id_for(started: datetime) -> str:
    """A run's id: its start stamp."""
    return stamp(started)


def is_run_id(text: str) -> bool:
    return bool(_RUN_ID_RE.match(text))


def format_iso(when: datetime) -> str:
    """RFC 3339 in UTC with a `Z`: whole seconds, or milliseconds when there are any."""
    utc = when.astimezone(UTC)
    spec = "milliseconds" if utc.microsecond else "seconds"
    return utc.replace(tzinfo=None).isoformat(timespec=spec) + "Z"


@dataclass(frozen=True)
class ArtifactName:
    """The parts of an artifact name."""

    export: str
    type: str  # contactHistory | gdprChat | subjectAccess
    start: datetime
    end: datetime
    run_id: str
    part: int


def artifact_name(export: str, type_: str, start: datetime, end: datetime, run_id: str, part: int) -> str:
    """The artifact file name (see the module docstring); `export` is sanitised here."""
    if type_ not in TYPE_SLUGS:
        raise ValueError(f"unknown export type {type_!r}")
    if not 1 <= part <= 999_999:
        raise ValueError("part numbers run from 1 to 999999")
    if not is_run_id(run_id):
        raise ValueError(f"not a run id: {run_id!r}")
    name = f"{sanitize_name(export)}-{TYPE_SLUGS[type_]}-{stamp(start)}-{stamp(end)}-{run_id}-part-{part:04d}"
    return name + ARTIFACT_SUFFIX


def parse_artifact_name(name: str) -> ArtifactName | None:
    """The parts of a name we write, or None for any other name."""
    m = _ARTIFACT_RE.match(name)
    if m is None or len(m.group("export")) > MAX_EXPORT_NAME:
        return None
    try:
        start, end = parse_stamp(m.group("start")), parse_stamp(m.group("end"))
        parse_stamp(m.group("run"))
    except ValueError:
        return None
    return ArtifactName(
        m.group("export"), _SLUG_TYPES[m.group("type")], start, end, m.group("run"), int(m.group("part"))
    )
