"""Which recordings a run covers: minAge/maxAge, minDate/maxDate and the stored last end time.

All functions are pure; the current time is passed in (`now`, a timezone-aware datetime).

A window is `RecordingWindow(start_ms, end_ms)`, epoch milliseconds, half-open: a recording belongs to
it when `start_ms <= startTime < end_ms`, which is also how the recording API reads
`startTimeRange=FROM,TO`.

How `compute_window` decides (RCBS's documented rules; see "Configuring download period"):

1. `windowStart` and `windowEnd` (our properties, epoch ms, both or neither) override everything. The
   operator computes one window for all shards and passes it this way.
2. end = `minDate` when set (midnight GMT of that date, or the epoch ms given), else now - `minAge`.
3. start = `maxDate` when set (it also overrides the stored last end time); else the stored last
   recording end time when there is one (older than now - maxAge: the run catches up after downtime;
   newer: it resumes where the last successful run stopped), unless `skipLastRecordingCheck=true`;
   else now - `maxAge` (`maxAge=0` means any age: start at the epoch).
4. RCBS's documented example sets `minDate=2018-01-04` and `maxDate=2018-01-02` to get 2 to 4 January:
   minDate is the newer bound. When both are given the other way round (minDate older than maxDate)
   they are swapped and a notice is logged.
5. When both ages are in effect (no minDate/maxDate) minAge must be less than maxAge (unless maxAge is
   0); the error names both. A stored end time newer than the end gives an empty window.

How many recordings a run may list (`recordings_limit`): `maxRecordingsPerRun` when set, else
MAX_RECORDINGS_PER_DAY for each started day of the window. The vendor decides what a listing returns, so
without a bound a listing that never ends (fresh records on every page, a `total` in the billions) would
keep a run writing metadata until its Job's deadline; with it the run stops at the bound and fails
naming the limit.

Ages are whole days (`2`) or ISO 8601 durations (`PT30M`, `P30D`, `P1Y2DT4H30M`, `P6MT12H`); years and
months are calendar years and months counted back from `now` (isodate does the arithmetic). Dates are
`YYYY-MM-DD` (GMT midnight) or 13-digit epoch milliseconds.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import isodate

from cxbackup.backup.errors import ConfigError
from cxbackup.core.times import DAY_MS, from_ms, to_ms

__all__ = [
    "MAX_RECORDINGS_PER_DAY",
    "Age",
    "RecordingWindow",
    "WindowSettings",
    "check_ages",
    "compute_window",
    "format_utc",
    "limit_hint",
    "parse_age",
    "parse_date_bound",
    "recordings_limit",
]

log = logging.getLogger(__name__)

_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")
MAX_AGE_YEARS = 1000
"""The longest age accepted: longer ones cannot be subtracted from a date (datetime ends at year 1)."""
_AGE_REFERENCE = datetime(2100, 1, 1, tzinfo=UTC)
MAX_RECORDINGS_PER_DAY = 1_000_000
"""The most recordings a day of a window is expected to hold when `maxRecordingsPerRun` is not set: about
12 a second around the clock, above what 5,000 agents on a call every ten minutes record (720,000)."""


def format_utc(ms: int) -> str:
    """RCBS's log format for window bounds: `02/19/2018 13:30:14`."""
    return from_ms(ms).strftime("%m/%d/%Y %H:%M:%S")


@dataclass(frozen=True)
class Age:
    """A parsed minAge/maxAge: whole days or an ISO 8601 duration, kept with its text."""

    text: str
    duration: timedelta | isodate.Duration

    @property
    def is_zero(self) -> bool:
        if isinstance(self.duration, timedelta):
            return self.duration == timedelta(0)
        return bool(self.duration == isodate.Duration())

    def before(self, now: datetime) -> datetime:
        """`now` minus this age (years and months are calendar units relative to `now`)."""
        result = now - self.duration
        assert isinstance(result, datetime)
        return result


def parse_age(value: str | int, property_name: str) -> Age:
    """Parse whole days (`2`) or an ISO 8601 duration (`PT30M`); errors name the property."""
    text = str(value).strip()
    if re.fullmatch(r"\d+", text):
        days = int(text)
        if days > MAX_AGE_YEARS * 366:
            raise ConfigError(f"{property_name}={text!r}: at most {MAX_AGE_YEARS} years")
        return Age(text=text, duration=timedelta(days=days))
    if not text.upper().startswith("P") or text.upper() == "P" or text.upper().endswith("T"):
        raise ConfigError(
            f"{property_name}={text!r}: expected whole days (e.g. 2) or an ISO 8601 duration "
            "(e.g. PT30M, P30D, P1Y2DT4H30M)"
        )
    try:
        duration = isodate.parse_duration(text.upper())
    except OverflowError:
        raise ConfigError(f"{property_name}={text!r}: at most {MAX_AGE_YEARS} years") from None
    except (isodate.ISO8601Error, ValueError) as exc:
        raise ConfigError(f"{property_name}={text!r}: not an ISO 8601 duration ({exc})") from exc
    negative = (
        duration < timedelta(0)
        if isinstance(duration, timedelta)
        else (duration.years < 0 or duration.months < 0 or duration.tdelta < timedelta(0))
    )
    if negative:
        raise ConfigError(f"{property_name}={text!r}: must not be negative")
    try:
        too_long = _AGE_REFERENCE - duration < _AGE_REFERENCE.replace(year=2100 - MAX_AGE_YEARS)
    except (OverflowError, ValueError):
        too_long = True
    if too_long:
        raise ConfigError(f"{property_name}={text!r}: at most {MAX_AGE_YEARS} years")
    return Age(text=text, duration=duration)


def parse_date_bound(value: str | int, property_name: str) -> int:
    """Parse `YYYY-MM-DD` (midnight GMT) or epoch milliseconds into epoch ms; errors name the property."""
    text = str(value).strip()
    m = _DATE.match(text)
    if m:
        try:
            day = datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=UTC)
        except ValueError as exc:
            raise ConfigError(f"{property_name}={text!r}: not a calendar date ({exc})") from exc
        return to_ms(day)
    if re.fullmatch(r"\d+", text):
        if len(text) <= 10:
            raise ConfigError(
                f"{property_name}={text!r}: looks like epoch seconds; RCBS wants epoch milliseconds "
                "(13 digits) or YYYY-MM-DD"
            )
        return int(text)
    raise ConfigError(f"{property_name}={text!r}: expected YYYY-MM-DD (GMT) or 13-digit epoch milliseconds")


@dataclass(frozen=True, order=True)
class RecordingWindow:
    """Recordings with `start_ms <= startTime < end_ms` (epoch milliseconds)."""

    start_ms: int
    end_ms: int

    def __post_init__(self) -> None:
        if self.start_ms < 0 or self.end_ms < self.start_ms:
            raise ValueError(f"invalid window [{self.start_ms}, {self.end_ms})")

    @property
    def is_empty(self) -> bool:
        return self.start_ms == self.end_ms

    def contains(self, ms: int) -> bool:
        return self.start_ms <= ms < self.end_ms

    def chunks(self, chunk_ms: int = DAY_MS, max_chunks: int = 64) -> Iterator[RecordingWindow]:
        """Consecutive sub-windows of `chunk_ms` (longer when there would be more than `max_chunks`).

        RCBS walks a window a day at a time; listing per chunk keeps offsets small and shows progress.
        """
        span = self.end_ms - self.start_ms
        step = max(chunk_ms, -(-span // max_chunks)) if span else chunk_ms
        start = self.start_ms
        while start < self.end_ms:
            end = min(start + step, self.end_ms)
            yield RecordingWindow(start, end)
            start = end

    def describe(self) -> str:
        return f"from {format_utc(self.start_ms)} to {format_utc(self.end_ms)} UTC"


def recordings_limit(window: RecordingWindow, configured: int = 0) -> int:
    """The most recordings a run over `window` may list: `configured` (maxRecordingsPerRun) when set, else
    MAX_RECORDINGS_PER_DAY per started day of the window (at least one day)."""
    if configured > 0:
        return configured
    days = max(1, -(-(window.end_ms - window.start_ms) // DAY_MS))
    return days * MAX_RECORDINGS_PER_DAY


def limit_hint(configured: int) -> str:
    """What a run's recordings limit is and how to raise it, for the error that names it."""
    how = (
        f"maxRecordingsPerRun={configured}"
        if configured > 0
        else f"maxRecordingsPerRun is not set: {MAX_RECORDINGS_PER_DAY} per day of the window"
    )
    return (
        f"the limit of one run ({how}; RecordingBackup spec.window.maxRecordingsPerRun); raise it if the vendor "
        "really holds that many recordings, or back up a shorter window"
    )


class WindowSettings(Protocol):
    """The settings a window is computed from (an RcbsConfig has them all)."""

    @property
    def window_start(self) -> int | None: ...

    @property
    def window_end(self) -> int | None: ...

    @property
    def min_age(self) -> str: ...

    @property
    def max_age(self) -> str: ...

    @property
    def min_date(self) -> str | None: ...

    @property
    def max_date(self) -> str | None: ...

    @property
    def skip_last_recording_check(self) -> bool: ...


def compute_window(config: WindowSettings, now: datetime, last_end_time: int | None) -> RecordingWindow:
    """The window of a run (see the module docstring for the rules).

    `last_end_time` is the stored last recording end time (epoch ms) or None when there is none.
    Raises ConfigError for contradictory settings.
    """
    if config.window_start is not None and config.window_end is not None:
        return RecordingWindow(config.window_start, config.window_end)
    to_ms(now)  # rejects a naive `now` early
    min_date = parse_date_bound(config.min_date, "minDate") if config.min_date else None
    max_date = parse_date_bound(config.max_date, "maxDate") if config.max_date else None
    if min_date is not None and max_date is not None and min_date < max_date:
        log.info(
            "minDate (%s) is older than maxDate (%s); using them as the window [maxDate, minDate) the other "
            "way round: RCBS reads minDate as the newer bound (minDate=2018-01-04, maxDate=2018-01-02 is 2 "
            "to 4 January)",
            config.min_date,
            config.max_date,
        )
        min_date, max_date = max_date, min_date
    min_age = parse_age(config.min_age, "minAge")
    max_age = parse_age(config.max_age, "maxAge")
    if min_date is None and max_date is None:
        check_ages(min_age, max_age, now)

    end_ms = min_date if min_date is not None else to_ms(min_age.before(now))
    if max_date is not None:
        start_ms = max_date
    elif last_end_time is not None and not config.skip_last_recording_check:
        start_ms = last_end_time
    elif max_age.is_zero:
        start_ms = 0
    else:
        start_ms = max(0, to_ms(max_age.before(now)))
    end_ms = max(0, end_ms)
    start_ms = max(0, min(start_ms, end_ms))
    return RecordingWindow(start_ms, end_ms)


def check_ages(min_age: Age, max_age: Age, now: datetime) -> None:
    """minAge must be less than maxAge (maxAge 0 means any age); the error names both."""
    if max_age.is_zero:
        return
    if min_age.before(now) <= max_age.before(now):
        raise ConfigError(
            f"minAge ({min_age.text}) must be less than maxAge ({max_age.text}): the window would be empty"
        )
