"""The emulator's generated data set: determinism, the vendor's metadata format, lazy paging, extension."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

import pytest

from cxbackup_dev.emulator.dataset import HOUR_MS, Dataset, DatasetSpec, StorageEntry, format_time, parse_time

SPEC = DatasetSpec(seed=7, hours=6, recordings_per_hour=9, screen_fraction=0.4, hourly_jitter=0.5)
UUID_RE = re.compile(r"^[0-9A-V]{18}LAES[0-9A-V]{10}$")
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$")


def _all(ds: Dataset, lo: int, hi: int, limit: int) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    offset = 0
    while True:
        total, page = ds.page(lo, hi, offset, limit)
        out.extend(page)
        offset += len(page)
        if not page or offset >= total:
            return out


def test_same_seed_same_records_other_seed_other_records() -> None:
    a, b = Dataset(SPEC), Dataset(SPEC)
    assert a.page(a.start_ms, a.end_ms, 5, 20) == b.page(b.start_ms, b.end_ms, 5, 20)
    c = Dataset(DatasetSpec(seed=8, hours=6, recordings_per_hour=9, screen_fraction=0.4, hourly_jitter=0.5))
    assert [r["id"] for r in c.iter_records()] != [r["id"] for r in a.iter_records()]


def test_paging_matches_the_ground_truth_in_order() -> None:
    ds = Dataset(SPEC)
    truth = list(ds.iter_records())
    assert len(truth) == ds.count(ds.start_ms, ds.end_ms)
    keys = [(parse_time(str(r["startTime"])), str(r["id"])) for r in truth]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    for limit in (1, 7, 100):
        assert _all(ds, ds.start_ms, ds.end_ms, limit) == truth
    total, page = ds.page(ds.start_ms, ds.end_ms, len(truth), 10)
    assert (total, page) == (len(truth), [])


def test_hourly_jitter_varies_counts_but_totals_add_up() -> None:
    ds = Dataset(SPEC)
    counts = [ds.count(ds.start_ms + h * HOUR_MS, ds.start_ms + (h + 1) * HOUR_MS) for h in range(6)]
    assert len(set(counts)) > 1
    assert sum(counts) == ds.count(0, 2**62)


def test_range_is_from_inclusive_to_exclusive() -> None:
    ds = Dataset(SPEC)
    truth = list(ds.iter_records())
    rec = truth[len(truth) // 2]
    t = parse_time(str(rec["startTime"]))
    same_t = [r["id"] for r in truth if parse_time(str(r["startTime"])) == t]
    assert [r["id"] for r in ds.page(t, t + 1, 0, 100)[1]] == same_t
    assert rec["id"] not in [r["id"] for r in ds.page(t + 1, t + HOUR_MS, 0, 1000)[1]]
    assert rec["id"] not in [r["id"] for r in ds.page(t - HOUR_MS, t, 0, 1000)[1]]
    # a window cutting through slots counts exactly the records inside it
    lo, hi = ds.start_ms + HOUR_MS // 2, ds.start_ms + 3 * HOUR_MS + 17_000
    inside = [r for r in truth if lo <= parse_time(str(r["startTime"])) < hi]
    assert ds.page(lo, hi, 0, 1000) == (len(inside), inside)
    assert ds.page(ds.end_ms, ds.end_ms + HOUR_MS, 0, 10) == (0, [])
    assert ds.page(hi, lo, 0, 10) == (0, [])


def test_a_million_recordings_page_lazily() -> None:
    ds = Dataset(DatasetSpec(hours=1000, recordings_per_hour=1000, screen_fraction=0.0))
    began = time.perf_counter()
    total, page = ds.page(ds.start_ms, ds.end_ms, 654_321, 1000)
    assert total == 1_000_000
    assert len(page) == 1000
    assert ds.page(ds.start_ms, ds.end_ms, 999_999, 1000)[1][0] == list(ds.iter_records(ds.end_ms - HOUR_MS))[-1]
    assert time.perf_counter() - began < 5.0
    assert len(ds._index_cache) <= 64  # only a few slots' indexes are ever held


def test_record_follows_the_seed_format() -> None:
    ds = Dataset(SPEC, cert_alias="rcs_Environment:1:CN=Genesys Recording:5")
    records = list(ds.iter_records())
    screen = [r for r in records if "callRecordingId" in r]
    voice_only = [r for r in records if "callRecordingId" not in r]
    assert screen and voice_only
    for rec in records:
        assert UUID_RE.match(str(rec["id"]))
        for name in ("callerPhoneNumber", "dialedPhoneNumber", "startTime", "stopTime", "region", "callType"):
            assert rec[name]
        assert TIME_RE.match(str(rec["startTime"])) and rec["startTime"] < rec["stopTime"]
        events = rec["eventHistory"]
        assert isinstance(events, list)
        assert {e["event"] for e in events} == {"Joined", "Left", "Data"}
        media = rec["mediaFiles"]
        assert isinstance(media, list)
        voice = media[0]
        assert voice["type"] == "audio/mp3" and voice["callUUID"] == rec["id"]
        assert re.match(
            rf"^{rec['id']}_\d{{4}}-\d\d-\d\d_\d\d-\d\d-\d\d-[0-9A-F]{{8}}-[0-9A-F]{{8}}-00000001\.mp3\.bin$",
            voice["mediaId"],
        )
        assert isinstance(voice["size"], str) and SPEC.voice_size[0] <= int(voice["size"]) <= SPEC.voice_size[1]
        params = voice["parameters"]
        assert params["username"].startswith("agent_") and params["agentHierarchy"] in SPEC.agent_hierarchy
        assert voice["certAlias"] == ["rcs_Environment:1:CN=Genesys Recording:5"]
        assert voice["partitions"][0] in SPEC.partitions and voice["accessgroups"][0] in SPEC.access_groups
        assert voice["channels"] == 2 and voice["tenant"] == SPEC.tenant
    for rec in screen:
        video = rec["mediaFiles"][1]
        assert rec["callRecordingId"] == rec["id"]
        assert video["type"] == "video/mp4" and re.match(r"^\d+:\d\d:\d\d$", video["duration"])
        assert rec["id"] in video["mediaId"] and "/" not in video["mediaId"]
        assert video["parameters"]["muxed_mediaIds"][1] == rec["mediaFiles"][0]["mediaId"]


def test_media_ids_lead_back_to_their_record_and_bytes_are_deterministic() -> None:
    ds = Dataset(SPEC)
    for rec in ds.iter_records():
        for media in rec["mediaFiles"]:
            found = ds.find_media(media["mediaId"])
            assert found is not None and found[0] == rec and found[1] == media
            data = ds.media_plaintext(media["mediaId"])
            assert len(data) == int(media["size"])
            assert data[:3] == b"ID3" if media["type"] == "audio/mp3" else data[4:8] == b"ftyp"
    media_id = next(ds.iter_records())["mediaFiles"][0]["mediaId"]
    assert Dataset(SPEC).media_plaintext(media_id) == ds.media_plaintext(media_id)
    assert ds.find_media("0" * 32 + "_nothing.mp3.bin") is None
    assert ds.find_media(media_id.replace("LAES", "LAEZ")) is None
    assert ds.record("X" * 32) is None


def test_extend_appends_new_recordings_and_keeps_old_ones() -> None:
    ds = Dataset(SPEC)
    before = list(ds.iter_records())
    old_end = ds.end_ms
    lo, hi = ds.extend(2)
    assert (lo, hi) == (old_end, old_end + 2 * HOUR_MS) and ds.end_ms == hi
    assert list(ds.iter_records(ds.start_ms, old_end)) == before
    new = list(ds.iter_records(lo, hi))
    assert new and all(lo <= parse_time(str(r["startTime"])) < hi for r in new)
    assert ds.count(ds.start_ms, ds.end_ms) == len(before) + len(new)


def test_add_recording_pages_in_place_with_overrides() -> None:
    ds = Dataset(SPEC)
    at = ds.start_ms + HOUR_MS + 1234_000
    rec = ds.add_recording(at, screen=True, voice_size=1000, fields={"region": "apse2", "custom": {"x": 1}})
    assert rec["startTime"] == format_time(at) and rec["custom"] == {"x": 1}
    truth = list(ds.iter_records())
    assert rec in truth
    keys = [(str(r["startTime"]), str(r["id"])) for r in truth]
    assert keys == sorted(keys)
    assert ds.find_media(rec["mediaFiles"][1]["mediaId"]) == (rec, rec["mediaFiles"][1])
    assert len(ds.media_plaintext(rec["mediaFiles"][0]["mediaId"])) == 1000
    assert ds.storage_for(rec) == ds.storage[0]  # no storage entry for apse2: the first one
    with pytest.raises(ValueError):
        ds.add_recording(ds.end_ms)


def test_storage_defaults_and_explicit_storage() -> None:
    assert DatasetSpec().storage_entries() == (
        StorageEntry("usw1", "us-west-1", "stage-recordings-us-west-1", "PoD_tenant_2034/"),
        StorageEntry("use1", "us-east-1", "stage-recordings-us-east-1", "PoD_tenant_2034/"),
    )
    one = (StorageEntry("euw1", "eu-west-1", "b", "t/"),)
    assert DatasetSpec(storage=one).storage_entries() == one


def test_spec_validation_days_and_recent() -> None:
    assert DatasetSpec(days=2).hours == 48
    with pytest.raises(ValueError):
        DatasetSpec(screen_fraction=1.5)
    with pytest.raises(ValueError):
        DatasetSpec(voice_size=(10, 5))
    now = datetime(2024, 3, 1, 12, 34, 56, tzinfo=UTC)
    recent = DatasetSpec.recent(hours=5, now=now)
    assert recent.start == datetime(2024, 3, 1, 7, tzinfo=UTC) and recent.hours == 5


def test_time_format_round_trips() -> None:
    ms = 1626886140123
    assert format_time(ms) == "2021-07-21T16:49:00.123+0000"
    assert parse_time("2021-07-21T16:49:00.000+0000") == 1626886140000
    assert parse_time(format_time(ms)) == ms
