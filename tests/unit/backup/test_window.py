"""Windows: ages (days and ISO 8601), dates, the stored end time, RCBS's minDate/maxDate order."""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, datetime, timedelta

import pytest

from cxbackup.backup.config import RcbsConfig
from cxbackup.backup.errors import ConfigError
from cxbackup.backup.window import (
    DAY_MS,
    RecordingWindow,
    compute_window,
    format_utc,
    parse_age,
    parse_date_bound,
    to_ms,
)

NOW = datetime(2018, 1, 9, 0, 0, tzinfo=UTC)
NOW_MS = to_ms(NOW)
HOUR_MS = 3_600_000


def cfg(**values: object) -> RcbsConfig:
    return RcbsConfig.from_values({"gwsUriPrefix": "https://x/api/v2", "targetDir": "/t", **values})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", NOW),
        ("2", NOW - timedelta(days=2)),
        ("PT30M", NOW - timedelta(minutes=30)),
        ("P30D", NOW - timedelta(days=30)),
        ("P1Y2DT4H30M", datetime(2017, 1, 6, 19, 30, tzinfo=UTC)),
        ("P6MT12H", datetime(2017, 7, 8, 12, 0, tzinfo=UTC)),
        ("p2w", NOW - timedelta(weeks=2)),
    ],
)
def test_ages_count_back_from_now(text: str, expected: datetime) -> None:
    assert parse_age(text, "maxAge").before(NOW) == expected


def test_months_are_calendar_months() -> None:
    end_of_march = datetime(2024, 3, 31, tzinfo=UTC)
    assert parse_age("P1M", "minAge").before(end_of_march) == datetime(2024, 2, 29, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["", "-1", "1.5", "P", "PT", "2D", "P-1D", "-P1D", "days"])
def test_bad_ages_name_the_property(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"^minAge="):
        parse_age(bad, "minAge")


def test_dates_are_gmt_midnight_or_epoch_ms() -> None:
    assert parse_date_bound("2015-07-31", "minDate") == 1438300800000
    assert parse_date_bound("1438300800000", "minDate") == 1438300800000
    with pytest.raises(ConfigError, match=r"maxDate.*epoch seconds"):
        parse_date_bound("1438300800", "maxDate")
    with pytest.raises(ConfigError, match="maxDate='31/07/2015'"):
        parse_date_bound("31/07/2015", "maxDate")


def test_seed_example_min_age_0_max_age_3() -> None:
    # "current date January 09, 2018 ... minAge=0 and maxAge=3 ... from 12 AM GMT on January 06 to 12 AM GMT
    # of January 09"
    w = compute_window(cfg(minAge=0, maxAge=3), NOW, None)
    assert w == RecordingWindow(to_ms(datetime(2018, 1, 6, tzinfo=UTC)), NOW_MS)


def test_seed_example_min_date_newer_than_max_date() -> None:
    w = compute_window(cfg(minDate="2018-01-04", maxDate="2018-01-02"), NOW, None)
    assert w == RecordingWindow(to_ms(datetime(2018, 1, 2, tzinfo=UTC)), to_ms(datetime(2018, 1, 4, tzinfo=UTC)))


def test_intuitive_date_order_is_swapped_with_a_notice(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="cxbackup.backup.window"):
        w = compute_window(cfg(minDate="2018-01-02", maxDate="2018-01-04"), NOW, None)
    assert w == RecordingWindow(to_ms(datetime(2018, 1, 2, tzinfo=UTC)), to_ms(datetime(2018, 1, 4, tzinfo=UTC)))
    assert "other way round" in caplog.text


def test_stored_end_time_older_than_max_age_catches_up() -> None:
    stored = NOW_MS - 5 * DAY_MS  # offline for three days with maxAge=2
    assert compute_window(cfg(maxAge=2), NOW, stored) == RecordingWindow(stored, NOW_MS)


def test_stored_end_time_newer_than_max_age_resumes_from_it() -> None:
    stored = NOW_MS - 6 * HOUR_MS
    assert compute_window(cfg(maxAge=2), NOW, stored) == RecordingWindow(stored, NOW_MS)


def test_stored_end_time_ignored_when_asked() -> None:
    stored = NOW_MS - 6 * HOUR_MS
    w = compute_window(cfg(maxAge=2, skipLastRecordingCheck=True), NOW, stored)
    assert w.start_ms == NOW_MS - 2 * DAY_MS


def test_max_date_overrides_the_stored_time_and_min_date_sets_the_end() -> None:
    stored = NOW_MS - 6 * HOUR_MS
    w = compute_window(cfg(maxDate="2017-12-01"), NOW, stored)
    assert w == RecordingWindow(to_ms(datetime(2017, 12, 1, tzinfo=UTC)), NOW_MS)
    w = compute_window(cfg(minDate="2018-01-08", maxAge=5), NOW, None)
    assert w == RecordingWindow(NOW_MS - 5 * DAY_MS, to_ms(datetime(2018, 1, 8, tzinfo=UTC)))


def test_min_age_sets_the_end_and_zero_max_age_is_any_age() -> None:
    w = compute_window(cfg(minAge="PT30M", maxAge=0), NOW, None)
    assert w == RecordingWindow(0, NOW_MS - 30 * 60_000)


def test_stored_time_after_the_end_gives_an_empty_window() -> None:
    w = compute_window(cfg(minAge=1, maxAge=2), NOW, NOW_MS - HOUR_MS)
    assert w.is_empty and w.end_ms == NOW_MS - DAY_MS


def test_min_age_must_be_less_than_max_age_relative_to_now() -> None:
    config = cfg(minDate="2018-01-04", minAge=40, maxAge="P1M")  # valid: the ages are not in effect
    with pytest.raises(ConfigError, match=r"minAge \(40\) must be less than maxAge \(P1M\)"):
        compute_window(config.model_copy(update={"min_date": None}), NOW, None)


def test_explicit_window_overrides_everything() -> None:
    w = compute_window(cfg(windowStart=1000, windowEnd=5000, maxDate="2017-01-01"), NOW, NOW_MS)
    assert w == RecordingWindow(1000, 5000)


def test_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        compute_window(cfg(), datetime(2018, 1, 9), None)


def test_window_chunks_cover_exactly_and_are_bounded() -> None:
    w = RecordingWindow(1519047014000, 1519316698940)  # RCBS's documented log: 3 days and a bit
    chunks = list(w.chunks())
    assert chunks[0].start_ms == w.start_ms and chunks[-1].end_ms == w.end_ms
    assert all(a.end_ms == b.start_ms for a, b in itertools.pairwise(chunks))
    assert [c.end_ms - c.start_ms for c in chunks[:-1]] == [DAY_MS] * 3
    assert format_utc(chunks[0].end_ms) == "02/20/2018 13:30:14"
    huge = RecordingWindow(0, NOW_MS)
    assert len(list(huge.chunks())) <= 64
    assert list(RecordingWindow(5, 5).chunks()) == []
    with pytest.raises(ValueError):
        RecordingWindow(10, 5)
