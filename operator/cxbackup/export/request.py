"""What one export run does: `ExportRequest` (type, range, users, encryption, retention, part size).

A request is validated when it is made, with the messages a user should see:

- `gdprChat` needs 1 to 10 subject user ids (chat exports are per-user GDPR requests; a
  whole-organisation chat export is not supported); `contactHistory` takes no users.
- The range is `start` (+ optional `end`, default: the run time) or `last` (an ISO 8601 duration back
  from the run time, e.g. `P1D`); `time_range(now)` turns it into a concrete `TimeRange` [start, end).
- Times on the command line are RFC 3339 (`2026-08-24T00:00:00Z`, an offset or none for UTC) or a
  date `YYYY-MM-DD` (midnight UTC).

`ExportRequest.from_spec(spec, name)` maps an ExportJob spec; `to_args()` gives the matching
`cxbackup export run` arguments (the controller adds --cert, --store and --result-file).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Literal

from cxbackup.api.exportjob import MAX_GDPR_USERS, ExportJobSpec
from cxbackup.certs.cms import Algorithm
from cxbackup.core.times import Period, parse_period, to_ms
from cxbackup.export.errors import ExportConfigError
from cxbackup.export.names import format_iso, sanitize_name

__all__ = [
    "DEFAULT_PART_SIZE",
    "EXPORT_TYPES",
    "MIN_PART_SIZE",
    "ExportRequest",
    "ExportType",
    "TimeRange",
    "check_run_settings",
    "parse_duration",
    "parse_time",
]

ExportType = Literal["contactHistory", "gdprChat"]
EXPORT_TYPES: tuple[ExportType, ...] = ("contactHistory", "gdprChat")
DEFAULT_PART_SIZE = 256 * 1024 * 1024
"""Uncompressed bytes of records per artifact part (a record is never split across parts)."""
MIN_PART_SIZE = 1024
_USER_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$")
_ORG_REFUSED = (
    "a gdprChat export needs 1 to {max} subject user ids (--user ID); whole-organisation chat exports are not supported"
)


@dataclass(frozen=True)
class TimeRange:
    """[start, end) in UTC; records are in it when start <= their time < end."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("TimeRange needs timezone-aware datetimes")
        object.__setattr__(self, "start", self.start.astimezone(UTC))
        object.__setattr__(self, "end", self.end.astimezone(UTC))
        if self.start >= self.end:
            raise ExportConfigError(f"the range start {format_iso(self.start)} is not before its end")

    @property
    def start_ms(self) -> int:
        return to_ms(self.start)

    @property
    def end_ms(self) -> int:
        return to_ms(self.end)

    def describe(self) -> str:
        return f"[{format_iso(self.start)}, {format_iso(self.end)})"

    def to_json(self) -> dict[str, str]:
        return {"from": format_iso(self.start), "to": format_iso(self.end)}


def parse_time(text: str) -> datetime:
    """RFC 3339 (offset optional: UTC) or YYYY-MM-DD (midnight UTC), as a UTC datetime."""
    value = text.strip()
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            d = date.fromisoformat(value)
            return datetime(d.year, d.month, d.day, tzinfo=UTC)
        parsed = datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        raise ExportConfigError(f"{text!r} is not a time: use RFC 3339 (2026-08-24T00:00:00Z) or YYYY-MM-DD") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_duration(text: str) -> Period:
    """An ISO 8601 duration such as P1D, PT12H or P1M; zero and empty durations are refused."""
    try:
        return parse_period(text)
    except ValueError as exc:
        raise ExportConfigError(str(exc)) from None


def check_run_settings(name: str, encryption: str, retention_days: int, part_size: int) -> None:
    """The settings every export type has, checked alike (ExportConfigError with the reason)."""
    if not name.strip() or len(name) > 253:
        raise ExportConfigError("the export needs a name of 1 to 253 characters")
    if encryption not in ("AES-128", "AES-256"):
        raise ExportConfigError(f"unknown encryption {encryption!r}: use AES-128 or AES-256")
    if not 1 <= retention_days <= 3650:
        raise ExportConfigError("retention days must be between 1 and 3650")
    if part_size < MIN_PART_SIZE:
        raise ExportConfigError(f"the part size must be at least {MIN_PART_SIZE} bytes")


@dataclass(frozen=True)
class ExportRequest:
    """One export: validated on construction (ExportConfigError with the user-facing reason)."""

    name: str
    type: ExportType
    start: datetime | None = None
    end: datetime | None = None
    last: str | None = None
    users: tuple[str, ...] = field(default=())
    encryption: Algorithm = "AES-256"
    retention_days: int = 30
    part_size: int = DEFAULT_PART_SIZE

    def __post_init__(self) -> None:
        if self.type not in EXPORT_TYPES:
            raise ExportConfigError(f"unknown export type {self.type!r}: use contactHistory or gdprChat")
        check_run_settings(self.name, self.encryption, self.retention_days, self.part_size)
        self._check_range()
        self._check_users()

    def _check_range(self) -> None:
        for label, value in (("from", self.start), ("to", self.end)):
            if value is not None and value.tzinfo is None:
                raise ExportConfigError(f"the range {label} time needs a timezone")
        if self.last is not None:
            if self.start is not None or self.end is not None:
                raise ExportConfigError("give either a duration (last) or from/to, not both")
            parse_duration(self.last)
        elif self.start is None:
            raise ExportConfigError("give the range: from (and optionally to), or last (e.g. P1D)")
        elif self.end is not None and self.start >= self.end:
            raise ExportConfigError(f"from {format_iso(self.start)} must be before to {format_iso(self.end)}")

    def _check_users(self) -> None:
        users = tuple(dict.fromkeys(u.strip() for u in self.users))
        object.__setattr__(self, "users", users)
        if self.type == "contactHistory":
            if users:
                raise ExportConfigError("users apply only to gdprChat exports")
            return
        if not users or not 1 <= len(users) <= MAX_GDPR_USERS:
            raise ExportConfigError(_ORG_REFUSED.format(max=MAX_GDPR_USERS))
        for user in users:
            if not _USER_ID_RE.match(user):
                raise ExportConfigError(
                    f"{user!r} is not a user id (letters, digits and . _ @ : -, at most 128 characters)"
                )

    @property
    def slug(self) -> str:
        """The sanitised export name used in artifact names."""
        return sanitize_name(self.name)

    def time_range(self, now: datetime) -> TimeRange:
        """The concrete range of a run starting at `now` (ExportConfigError when it is empty)."""
        now = now.astimezone(UTC)
        if self.last is not None:
            return TimeRange(now - parse_duration(self.last), now)
        assert self.start is not None
        end = self.end or now
        if self.start >= end:
            raise ExportConfigError(f"from {format_iso(self.start)} is not before the run time {format_iso(end)}")
        return TimeRange(self.start, end)

    @classmethod
    def from_spec(cls, spec: ExportJobSpec, name: str, *, part_size: int = DEFAULT_PART_SIZE) -> ExportRequest:
        """The request an ExportJob of a vendor type describes (its metadata.name as `name`)."""
        if spec.range is None or spec.type == "subjectAccess":
            raise ExportConfigError(f"spec.range: a {spec.type} export from the vendor needs the time range")
        return cls(
            name=name,
            type=spec.type,
            start=spec.range.from_,
            end=spec.range.to,
            last=spec.range.last,
            users=tuple(spec.users or ()),
            encryption=spec.encryption,
            retention_days=spec.retention_days,
            part_size=part_size,
        )

    def to_args(self) -> list[str]:
        """`cxbackup export run` arguments for this request (without --cert, --store, --result-file)."""
        args = ["--name", self.name, "--type", self.type]
        for user in self.users:
            args += ["--user", user]
        if self.last is not None:
            args += ["--last", self.last]
        else:
            assert self.start is not None
            args += ["--from", format_iso(self.start)]
            if self.end is not None:
                args += ["--to", format_iso(self.end)]
        args += ["--encryption", self.encryption, "--retention-days", str(self.retention_days)]
        if self.part_size != DEFAULT_PART_SIZE:
            args += ["--part-size", str(self.part_size)]
        return args
