"""rotation_due, parse_duration and parse_window: when a certificate is rotated, windows included."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxbackup.certs.rotation import parse_duration, parse_window, rotation_due

NOT_BEFORE = datetime(2026, 1, 1, tzinfo=UTC)
NOT_AFTER = datetime(2026, 1, 31, tzinfo=UTC)  # 30 days: the default renewal is at day 20
DEFAULT_RENEWAL = datetime(2026, 1, 21, tzinfo=UTC)


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 1, day, hour, minute, tzinfo=UTC)


# --- without a window ----------------------------------------------------------------------------------


def test_default_is_a_third_of_the_lifetime_before_expiry() -> None:
    assert rotation_due(NOT_BEFORE, NOT_AFTER, _at(20, 23, 59)) == (False, DEFAULT_RENEWAL)
    assert rotation_due(NOT_BEFORE, NOT_AFTER, DEFAULT_RENEWAL) == (True, DEFAULT_RENEWAL)
    assert rotation_due(NOT_BEFORE, NOT_AFTER, _at(30, 0)) == (True, DEFAULT_RENEWAL)
    assert rotation_due(NOT_BEFORE, NOT_AFTER, datetime(2027, 1, 1, tzinfo=UTC)) == (True, DEFAULT_RENEWAL)


def test_renew_before_sets_the_renewal_time() -> None:
    assert rotation_due(NOT_BEFORE, NOT_AFTER, _at(25, 0), timedelta(days=5)) == (False, _at(26, 0))
    assert rotation_due(NOT_BEFORE, NOT_AFTER, _at(26, 0), timedelta(days=5)) == (True, _at(26, 0))


@pytest.mark.parametrize("renew_before", [timedelta(days=30), timedelta(days=400), timedelta(0), timedelta(-1)])
def test_an_unusable_renew_before_falls_back_to_the_default(renew_before: timedelta) -> None:
    assert rotation_due(NOT_BEFORE, NOT_AFTER, NOT_BEFORE, renew_before) == (False, DEFAULT_RENEWAL)


def test_renewal_time_is_whole_seconds() -> None:
    not_after = NOT_BEFORE + timedelta(seconds=10)  # a third is 3.333 s
    due, at = rotation_due(NOT_BEFORE, not_after, NOT_BEFORE)
    assert (due, at) == (False, NOT_BEFORE + timedelta(seconds=6))


def test_other_timezones_are_compared_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    now = datetime(2026, 1, 21, 1, 59, tzinfo=plus_two)  # 2026-01-20 23:59 UTC
    assert rotation_due(NOT_BEFORE, NOT_AFTER, now) == (False, DEFAULT_RENEWAL)
    assert rotation_due(NOT_BEFORE, NOT_AFTER, now + timedelta(minutes=1))[0] is True


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        rotation_due(NOT_BEFORE, NOT_AFTER, datetime(2026, 1, 2))
    with pytest.raises(ValueError, match="later than"):
        rotation_due(NOT_AFTER, NOT_BEFORE, NOT_BEFORE)
    with pytest.raises(ValueError, match="empty"):
        rotation_due(NOT_BEFORE, NOT_AFTER, NOT_BEFORE, window=(time(3, 0), time(3, 0)))
    with pytest.raises(ValueError, match="naive"):
        rotation_due(NOT_BEFORE, NOT_AFTER, NOT_BEFORE, window=(time(1, tzinfo=UTC), time(3)))


# --- with a window -------------------------------------------------------------------------------------

NIGHT = (time(2, 0), time(4, 0))
ACROSS_MIDNIGHT = (time(22, 0), time(2, 0))


def test_window_moves_the_renewal_to_its_next_start() -> None:
    # renewal 2026-01-21 00:00 is before 02:00, so rotation waits for 02:00 the same day
    assert rotation_due(NOT_BEFORE, NOT_AFTER, _at(21, 1), window=NIGHT) == (False, _at(21, 2))
    assert rotation_due(NOT_BEFORE, NOT_AFTER, _at(21, 2), window=NIGHT) == (True, _at(21, 2))
    assert rotation_due(NOT_BEFORE, NOT_AFTER, _at(21, 3, 59), window=NIGHT) == (True, _at(21, 2))


def test_overdue_outside_the_window_waits_for_the_next_one() -> None:
    assert rotation_due(NOT_BEFORE, NOT_AFTER, _at(21, 4), window=NIGHT) == (False, _at(22, 2))
    assert rotation_due(NOT_BEFORE, NOT_AFTER, _at(23, 12), window=NIGHT) == (False, _at(24, 2))
    assert rotation_due(NOT_BEFORE, NOT_AFTER, _at(24, 2, 30), window=NIGHT) == (True, _at(21, 2))


def test_renewal_inside_the_window_is_not_moved() -> None:
    renew_before = timedelta(days=9, hours=21)  # renewal 2026-01-21 03:00
    assert rotation_due(NOT_BEFORE, NOT_AFTER, _at(21, 2, 59), renew_before, NIGHT) == (False, _at(21, 3))
    assert rotation_due(NOT_BEFORE, NOT_AFTER, _at(21, 3), renew_before, NIGHT) == (True, _at(21, 3))


def test_window_end_is_exclusive() -> None:
    renew_before = timedelta(days=9, hours=20)  # renewal 2026-01-21 04:00, the window's end
    assert rotation_due(NOT_BEFORE, NOT_AFTER, _at(21, 4), renew_before, NIGHT) == (False, _at(22, 2))


def test_window_crossing_midnight() -> None:
    renew_before = timedelta(days=9, hours=12)  # renewal 2026-01-21 12:00
    assert rotation_due(NOT_BEFORE, NOT_AFTER, _at(21, 12), renew_before, ACROSS_MIDNIGHT) == (
        False,
        _at(21, 22),
    )
    assert rotation_due(NOT_BEFORE, NOT_AFTER, _at(21, 23, 59), renew_before, ACROSS_MIDNIGHT) == (
        True,
        _at(21, 22),
    )
    assert rotation_due(NOT_BEFORE, NOT_AFTER, _at(22, 1, 59), renew_before, ACROSS_MIDNIGHT) == (
        True,
        _at(21, 22),
    )
    assert rotation_due(NOT_BEFORE, NOT_AFTER, _at(22, 2), renew_before, ACROSS_MIDNIGHT) == (
        False,
        _at(22, 22),
    )


def test_renewal_after_midnight_inside_a_crossing_window() -> None:
    renew_before = timedelta(days=9, hours=23)  # renewal 2026-01-21 01:00, inside 22:00-02:00
    assert rotation_due(NOT_BEFORE, NOT_AFTER, _at(21, 0), renew_before, ACROSS_MIDNIGHT) == (False, _at(21, 1))
    assert rotation_due(NOT_BEFORE, NOT_AFTER, _at(21, 1, 30), renew_before, ACROSS_MIDNIGHT) == (
        True,
        _at(21, 1),
    )


def _in(moment: datetime, window: tuple[time, time]) -> bool:
    start, end = window
    clock = moment.time()
    return start <= clock < end if start < end else clock >= start or clock < end


@settings(database=None, max_examples=300, deadline=None)
@given(
    renewal_offset=st.integers(min_value=0, max_value=10 * 24 * 3600),
    now_offset=st.integers(min_value=0, max_value=20 * 24 * 3600),
    start_minute=st.integers(min_value=0, max_value=1439),
    end_minute=st.integers(min_value=0, max_value=1439),
)
def test_rotation_happens_only_inside_the_window_and_never_early(
    renewal_offset: int, now_offset: int, start_minute: int, end_minute: int
) -> None:
    if start_minute == end_minute:
        end_minute = (end_minute + 1) % 1440
    window = (time(start_minute // 60, start_minute % 60), time(end_minute // 60, end_minute % 60))
    not_before = datetime(2026, 1, 1, tzinfo=UTC)
    renewal = not_before + timedelta(days=20, seconds=renewal_offset)
    not_after = renewal + timedelta(days=365)
    now = not_before + timedelta(days=15, seconds=now_offset)
    due, at = rotation_due(not_before, not_after, now, timedelta(days=365), window)
    assert _in(at, window)
    if due:
        assert _in(now, window) and now >= renewal and at <= now and at >= renewal
    else:
        assert at > now
        assert at - max(now, renewal) <= timedelta(days=1)


# --- parsing -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("P30D", timedelta(days=30)),
        ("PT720H", timedelta(hours=720)),
        ("P2W", timedelta(days=14)),
        ("P1DT12H", timedelta(days=1, hours=12)),
        ("PT90M", timedelta(minutes=90)),
        ("P1M", timedelta(days=30)),
        ("P1Y2M3D", timedelta(days=365 + 60 + 3)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["30d", "", "P", "1 day", "PT0S", "P0D", "-P1D"])
def test_parse_duration_rejects(text: str) -> None:
    with pytest.raises(ValueError, match=repr(text).replace("(", r"\(")):
        parse_duration(text)


def test_parse_window() -> None:
    assert parse_window(None, None) is None
    assert parse_window("22:00", "02:30") == (time(22, 0), time(2, 30))
    assert parse_window("00:00", "23:59") == (time(0, 0), time(23, 59))


@pytest.mark.parametrize(
    ("start", "end", "message"),
    [
        ("22:00", None, "both"),
        (None, "02:00", "both"),
        ("24:00", "02:00", "windowStart"),
        ("22:00", "02:60", "windowEnd"),
        ("7:00", "09:00", "windowStart"),
        ("03:00", "03:00", "empty"),
    ],
)
def test_parse_window_rejects(start: str | None, end: str | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_window(start, end)
