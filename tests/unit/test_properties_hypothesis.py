"""Property-based tests (hypothesis) for the parsers and pure decisions of the backup engine, adding what
tests/unit/backup/ does not already check with hypothesis (it covers safe_name's output alphabet and length,
media names unique ignoring case, paths inside the target, one-line escape round trips, and the config's
to_properties round trip):

- compute_window: start <= end, end = now - minAge, catch-up from an older stored end time, maxDate and
  minDate override the stored time, both date orders give the same window.
- parse_age / parse_date_bound: round trips of whole days, ISO 8601 durations and dates; rejections raise
  ConfigError naming the property, never anything else.
- parse_java_properties / load_properties: arbitrary text raises nothing but PropertiesSyntaxError /
  ConfigError; several escaped key/value lines round trip with their line numbers.
- parse_recordings_page / Recording.from_json: arbitrary JSON raises nothing but VendorApiError; records
  keep their exact JSON text.
- recording_folder_name / recording_paths: never '/', NUL, '.', '..'; a hidden name is never produced.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxbackup.backup.config import RcbsConfig, load_properties
from cxbackup.backup.errors import ConfigError, PropertiesSyntaxError, RcbsError, VendorApiError
from cxbackup.backup.layout import FolderFormat, check_relative_path, recording_folder_name, recording_paths
from cxbackup.backup.properties import escape_key, escape_value, parse_java_properties
from cxbackup.backup.records import Recording, parse_recordings_page
from cxbackup.backup.window import compute_window, parse_age, parse_date_bound
from cxbackup.core.times import DAY_MS, to_ms

FAST = settings(max_examples=60, deadline=None)
NOW = st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2090, 1, 1), timezones=st.just(UTC))


def cfg(**values: object) -> RcbsConfig:
    return RcbsConfig.from_values({"gwsUriPrefix": "https://x/api/v2", "targetDir": "/t", **values})


# ---------------------------------------------------------------------------------------- windows


@FAST
@given(now=NOW, min_days=st.integers(0, 30), extra=st.integers(1, 400), stored_back=st.none() | st.integers(0, 800))
def test_window_is_ordered_ends_at_min_age_and_catches_up(
    now: datetime, min_days: int, extra: int, stored_back: int | None
) -> None:
    max_days = min_days + extra
    stored = None if stored_back is None else to_ms(now - timedelta(days=stored_back))
    w = compute_window(cfg(minAge=min_days, maxAge=max_days), now, stored)
    assert 0 <= w.start_ms <= w.end_ms
    assert w.end_ms == to_ms(now - timedelta(days=min_days))
    if stored is None:
        assert w.start_ms == to_ms(now - timedelta(days=max_days))
    else:
        # catch-up: an older stored end time reaches further back than maxAge; nothing between is skipped
        assert w.start_ms == min(stored, w.end_ms)


@FAST
@given(now=NOW, a=st.integers(0, 20_000), b=st.integers(0, 20_000), stored=st.none() | st.integers(0, 2**41))
def test_min_and_max_date_override_the_stored_time_in_either_order(
    now: datetime, a: int, b: int, stored: int | None
) -> None:
    lo, hi = sorted((a, b))
    lo_ms, hi_ms = 946_684_800_000 + lo * DAY_MS, 946_684_800_000 + hi * DAY_MS
    seed_order = compute_window(cfg(minDate=str(hi_ms), maxDate=str(lo_ms)), now, stored)
    other_order = compute_window(cfg(minDate=str(lo_ms), maxDate=str(hi_ms)), now, stored)
    assert seed_order == other_order
    assert (seed_order.start_ms, seed_order.end_ms) == (lo_ms, hi_ms)


@FAST
@given(start=st.integers(0, 2**42), span=st.integers(0, 400 * DAY_MS))
def test_chunks_cover_the_window_exactly(start: int, span: int) -> None:
    w = compute_window(cfg(windowStart=start, windowEnd=start + span), datetime.now(UTC), None)
    chunks = list(w.chunks())
    assert len(chunks) <= 64
    assert [c.start_ms for c in chunks[1:]] == [c.end_ms for c in chunks[:-1]]
    if span:
        assert chunks[0].start_ms == start and chunks[-1].end_ms == start + span


# ---------------------------------------------------------------------------- durations and dates


@FAST
@given(days=st.integers(0, 365_000))
def test_whole_days_round_trip(days: int) -> None:
    assert parse_age(str(days), "maxAge").duration == timedelta(days=days)
    assert parse_age(days, "maxAge").text == str(days)


@pytest.mark.parametrize("text", ["1000000000", "400000", "P1001Y", "P999999999D", "PT99999999999H"])
def test_ages_longer_than_a_thousand_years_are_a_config_error(text: str) -> None:
    with pytest.raises(ConfigError, match="at most 1000 years"):
        parse_age(text, "maxAge")


@FAST
@given(d=st.integers(0, 999), h=st.integers(0, 99), m=st.integers(0, 999), s=st.integers(0, 999))
def test_iso_durations_round_trip(d: int, h: int, m: int, s: int) -> None:
    text = f"P{d}DT{h}H{m}M{s}S"
    age = parse_age(text, "minAge")
    assert age.duration == timedelta(days=d, hours=h, minutes=m, seconds=s)
    assert age.is_zero == (d == h == m == s == 0)


@FAST
@given(text=st.text(max_size=30))
def test_ages_parse_or_raise_config_error_naming_the_property(text: str) -> None:
    try:
        age = parse_age(text, "maxAge")
    except ConfigError as exc:
        assert str(exc).startswith("maxAge=")
    else:
        assert age.before(datetime(2050, 1, 1, tzinfo=UTC)) <= datetime(2050, 1, 1, tzinfo=UTC)


@FAST
@given(day=st.dates(min_value=datetime(1970, 1, 1).date(), max_value=datetime(9999, 12, 31).date()))
def test_dates_round_trip_to_gmt_midnight(day: object) -> None:
    ms = parse_date_bound(str(day), "minDate")
    assert datetime.fromtimestamp(ms / 1000, UTC).date() == day
    assert ms % DAY_MS == 0
    if len(str(ms)) > 10:  # 10 digits or fewer are read as epoch seconds and refused
        assert parse_date_bound(str(ms), "minDate") == ms


@FAST
@given(text=st.text(max_size=30))
def test_date_bounds_parse_or_raise_config_error_naming_the_property(text: str) -> None:
    try:
        ms = parse_date_bound(text, "maxDate")
    except ConfigError as exc:
        assert str(exc).startswith("maxDate=")
    else:
        assert ms >= 0


# ------------------------------------------------------------------------------- config parser


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=200))
def test_properties_parser_never_crashes(text: str) -> None:
    try:
        entries, warnings = parse_java_properties(text, "c.properties")
    except PropertiesSyntaxError as exc:
        assert exc.line >= 1 and str(exc).startswith(f"c.properties:{exc.line}: ")
    else:
        assert all(e.line >= 1 for e in entries)
        assert all(isinstance(w, str) for w in warnings)


_KEYS = st.sampled_from(["gwsUriPrefix", "targetDir", "concurrency", "maxAge", "minAge", "minDate", "maxDate",
                         "partitions", "mediaTypePattern", "recordingFolderFormat", "totalRcbsInstances",
                         "rcbsInstanceId", "metadataOnly", "bogus"])  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(pairs=st.lists(st.tuples(_KEYS, st.text(max_size=20)), max_size=6))
def test_config_loader_raises_only_config_errors(pairs: list[tuple[str, str]]) -> None:
    text = "".join(f"{escape_key(k)}={escape_value(v)}\n" for k, v in pairs)
    with contextlib.suppress(ConfigError):
        load_properties(text, "c.properties")


_TEXT = st.text(st.characters(codec="utf-8"), max_size=25)


@FAST
@given(pairs=st.lists(st.tuples(_TEXT.filter(bool), _TEXT), min_size=1, max_size=6, unique_by=lambda p: p[0]))
def test_many_lines_round_trip_with_line_numbers(pairs: list[tuple[str, str]]) -> None:
    text = "# header\n" + "".join(f"{escape_key(k)}={escape_value(v)}\n" for k, v in pairs)
    entries, _ = parse_java_properties(text, "c")
    assert [(e.key, e.value) for e in entries] == pairs
    assert [e.line for e in entries] == list(range(2, 2 + len(pairs)))


# ----------------------------------------------------------------------------- metadata parser

_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
_RECORDISH = st.fixed_dictionaries(
    {},
    optional={
        "id": _JSON | st.text(max_size=20),
        "startTime": _JSON | st.sampled_from(["2021-07-21T16:49:00.000+0000", "1626886140000", "2021-07-21"]),
        "region": _JSON,
        "mediaFiles": st.lists(
            st.fixed_dictionaries({}, optional={"mediaId": _JSON | st.text(max_size=10), "size": _JSON, "type": _JSON}),
            max_size=3,
        )
        | _JSON,
    },
)


@settings(max_examples=150, deadline=None)
@given(page=st.fixed_dictionaries({"recordings": st.lists(_RECORDISH | _JSON, max_size=4)}, optional={"total": _JSON}))
def test_page_parser_accepts_any_json_records_and_keeps_their_text(page: dict[str, object]) -> None:
    text = json.dumps(page)
    parsed = parse_recordings_page(text)
    recs = page["recordings"]
    assert isinstance(recs, list)
    assert len(parsed.recordings) == len(recs)
    for rec, original in zip(parsed.recordings, recs, strict=True):
        assert json.loads(rec.raw_json) == original
        assert rec.problem is not None or (isinstance(rec.id, str) and rec.id and rec.start_ms is not None)


@settings(max_examples=150, deadline=None)
@given(value=_JSON | st.text(max_size=40))
def test_page_parser_raises_only_vendor_api_error(value: object) -> None:
    for text in (json.dumps(value), str(value)):
        with contextlib.suppress(VendorApiError):
            parse_recordings_page(text)


# ------------------------------------------------------------------------------- name sanitizer


@settings(max_examples=200, deadline=None)
@given(call_uuid=st.text(min_size=1, max_size=300), media_ids=st.lists(st.text(min_size=1, max_size=80), max_size=3))
def test_recording_paths_are_clean_for_any_names(call_uuid: str, media_ids: list[str]) -> None:
    folder = recording_folder_name(call_uuid)
    assert folder not in ("", ".", "..") and "/" not in folder and "\x00" not in folder
    assert not folder.startswith(".")
    data = {
        "id": call_uuid,
        "startTime": "2021-07-21T16:49:00.000+0000",
        "mediaFiles": [{"mediaId": m, "type": "audio/mp3", "size": "1"} for m in media_ids],
    }
    rec = Recording.from_json(data, json.dumps(data))
    try:
        paths = recording_paths(rec, FolderFormat.parse("yyyy/MM/dd/HH"))
    except RcbsError as exc:  # never expected; fail with the reason
        raise AssertionError(exc) from exc
    for p in (paths.directory, paths.metadata, *paths.media.values()):
        assert check_relative_path(p) == p
        assert all(not part.startswith(".") for part in p.split("/"))
        assert p.startswith("2021/07/21/16/")
    assert len(set(paths.media.values())) == len(set(media_ids))
