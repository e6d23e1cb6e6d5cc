"""When a recording certificate is due for rotation: pure schedule arithmetic, the clock passed in.

Public API::

    rotation_due(not_before, not_after, now, renew_before=None, window=None) -> (due, at)
        The renewal time is not_after - renew_before, truncated to whole seconds. renew_before
        defaults to a third of the lifetime (not_after - not_before), as cert-manager does, and falls
        back to that default when it is not shorter than the lifetime.
        window = (start, end), two UTC times of day, restricts rotation to [start, end) every day;
        start > end crosses midnight (22:00-02:00 is 22:00-24:00 and 00:00-02:00); start == end is
        rejected. The result:
          - at = the first instant at or after the renewal time that lies in the window (the renewal
            time itself without a window);
          - now < at: (False, at), rotate at `at`;
          - now >= at and now in the window: (True, at), rotate now; `at` is when it became due;
          - now >= at but outside the window (overdue, e.g. after downtime): (False, next window start).
        So `at` is always the time to act on when not due: it is never in the past then.

    parse_duration(text) -> timedelta
        An ISO 8601 duration for spec.rotation.renewBefore (P30D, PT720H, P1M2D ...); years count
        365 days and months 30 days, since a duration before expiry has no calendar anchor.
        Raises ValueError unless it is positive.

    parse_window(start, end) -> (time, time) | None
        spec.rotation.windowStart / windowEnd ('HH:MM' UTC) as a window for rotation_due; None when
        neither is set. Raises ValueError when only one is set, a time is invalid, or start == end.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta

import isodate

__all__ = ["parse_duration", "parse_window", "rotation_due"]

_HHMM = re.compile(r"([0-9]{2}):([0-9]{2})")


def _utc(name: str, value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return value.astimezone(UTC)


def _in_window(moment: datetime, window: tuple[time, time]) -> bool:
    start, end = window
    clock = moment.time()
    if start < end:
        return start <= clock < end
    return clock >= start or clock < end


def _next_window_start(moment: datetime, window: tuple[time, time]) -> datetime:
    """The first window start strictly after `moment` (UTC)."""
    candidate = datetime.combine(moment.date(), window[0], tzinfo=UTC)
    if candidate <= moment:
        candidate += timedelta(days=1)
    return candidate


def _first_in_window(moment: datetime, window: tuple[time, time]) -> datetime:
    return moment if _in_window(moment, window) else _next_window_start(moment, window)


def _check_window(window: tuple[time, time]) -> tuple[time, time]:
    start, end = window
    if start.tzinfo is not None or end.tzinfo is not None:
        raise ValueError("rotation window times are UTC and must be naive times")
    if start == end:
        raise ValueError(f"rotation window start and end are both {start:%H:%M}; it would be empty")
    return start, end


def rotation_due(
    not_before: datetime,
    not_after: datetime,
    now: datetime,
    renew_before: timedelta | None = None,
    window: tuple[time, time] | None = None,
) -> tuple[bool, datetime]:
    """Whether to rotate now, and when (see the module docstring for the exact rules)."""
    start_of_life = _utc("not_before", not_before)
    end_of_life = _utc("not_after", not_after)
    moment = _utc("now", now)
    lifetime = end_of_life - start_of_life
    if lifetime <= timedelta(0):
        raise ValueError("not_after must be later than not_before")
    if renew_before is None or not timedelta(0) < renew_before < lifetime:
        renew_before = lifetime / 3
    renewal = (end_of_life - renew_before).replace(microsecond=0)
    if window is None:
        return moment >= renewal, renewal
    checked = _check_window(window)
    at = _first_in_window(renewal, checked)
    if moment < at:
        return False, at
    if _in_window(moment, checked):
        return True, at
    return False, _next_window_start(moment, checked)


def parse_duration(text: str) -> timedelta:
    """A positive ISO 8601 duration as a timedelta (years = 365 days, months = 30 days)."""
    try:
        parsed = isodate.parse_duration(text)
    except (isodate.ISO8601Error, ValueError, TypeError):
        raise ValueError(f"{text!r} is not an ISO 8601 duration such as P30D or PT720H") from None
    if isinstance(parsed, isodate.Duration):
        days = float(parsed.years) * 365 + float(parsed.months) * 30
        value: timedelta = parsed.tdelta + timedelta(days=days)
    else:
        value = parsed
    if value <= timedelta(0):
        raise ValueError(f"duration {text!r} must be positive")
    return value


def _parse_hhmm(name: str, text: str) -> time:
    match = _HHMM.fullmatch(text)
    if not match or int(match.group(1)) > 23 or int(match.group(2)) > 59:
        raise ValueError(f"{name} must be a UTC time HH:MM between 00:00 and 23:59 (got {text!r})")
    return time(int(match.group(1)), int(match.group(2)))


def parse_window(start: str | None, end: str | None) -> tuple[time, time] | None:
    """The rotation window from windowStart/windowEnd, or None when neither is set."""
    if start is None and end is None:
        return None
    if start is None or end is None:
        raise ValueError("set both windowStart and windowEnd, or neither")
    return _check_window((_parse_hhmm("windowStart", start), _parse_hhmm("windowEnd", end)))
