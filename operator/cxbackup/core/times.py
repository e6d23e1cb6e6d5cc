"""Times as cxbackup writes and reads them: aware UTC datetimes, RFC 3339 with 'Z', epoch milliseconds."""

from __future__ import annotations

import datetime as dt

__all__ = ["DAY_MS", "EPOCH", "from_ms", "iso", "iso_seconds", "parse_time", "to_ms"]


def iso(when: dt.datetime) -> str:
    """An aware time in UTC with 'Z' (sub-second digits kept when there are any)."""
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def iso_seconds(when: dt.datetime) -> str:
    """An aware time in UTC, whole seconds, 'Z' (as Kubernetes writes times)."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
