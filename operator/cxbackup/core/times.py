"""Times as cxbackup writes and reads them: aware UTC datetimes, RFC 3339 with 'Z', epoch milliseconds."""

from __future__ import annotations

import datetime as dt
import re
from typing import TypeAlias

import isodate

__all__ = [
    "DAY_MS",
    "EPOCH",
    "ISO_DURATION_PATTERN",
    "Period",
    "format_ms",
    "from_ms",
    "iso",
    "iso_seconds",
    "parse_period",
    "parse_time",
    "to_ms",
]

Period: TypeAlias = dt.timedelta | isodate.Duration
"""An ISO 8601 duration: years and months are calendar ones (isodate does the arithmetic)."""

ISO_DURATION_PATTERN = r"^P([0-9]+Y)?([0-9]+M)?([0-9]+W)?([0-9]+D)?(T([0-9]+H)?([0-9]+M)?([0-9]+S)?)?$"
"""The ISO 8601 durations cxbackup accepts (also the CRDs' pattern)."""
_PERIOD_RE = re.compile(ISO_DURATION_PATTERN)


def iso(when: dt.datetime) -> str:
    """An aware time in UTC with 'Z' (sub-second digits kept when there are any)."""
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def iso_seconds(when: dt.datetime) -> str:
    """An aware time in UTC, whole seconds, 'Z' (as Kubernetes writes times)."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_ms(ms: int | None) -> str:
    """Epoch ms for people: `2026-11-20 10:00:00Z` (`-` for an unknown time)."""
    if ms is None:
        return "-"
    return from_ms(ms).strftime("%Y-%m-%d %H:%M:%SZ")


def parse_time(value: str | None) -> dt.datetime | None:
    """An RFC 3339 time ('Z' or an offset) as an aware UTC datetime; None for None or ''."""
    if not value:
        return None
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(dt.UTC)


DAY_MS = 86_400_000
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def to_ms(when: dt.datetime) -> int:
    """Epoch milliseconds of an aware time (the vendor API's unit), exact (no float rounding)."""
    if when.tzinfo is None:
        raise ValueError("naive datetime; pass a timezone-aware time (UTC)")
    delta = when - EPOCH
    return delta.days * DAY_MS + delta.seconds * 1000 + delta.microseconds // 1000


def from_ms(ms: int) -> dt.datetime:
    """The aware UTC time of epoch milliseconds."""
    return EPOCH + dt.timedelta(milliseconds=ms)


def parse_period(text: str) -> Period:
    """A positive ISO 8601 duration such as P7Y, P18M, P30D or PT12H; ValueError saying what is wrong."""
    value = text.strip().upper()
    if not _PERIOD_RE.match(value) or value in ("P", "PT") or value.endswith("T"):
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as P7Y, P30D or PT12H")
    parsed = isodate.parse_duration(value)
    base = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    if base + parsed <= base:
        raise ValueError(f"{text!r}: the duration must be longer than zero")
    result: Period = parsed
    return result
