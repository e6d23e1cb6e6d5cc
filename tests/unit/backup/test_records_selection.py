"""Metadata pages (exact raw text kept), media type patterns and the access-control filters."""

from __future__ import annotations

import json

import pytest

from cxbackup.backup.errors import ConfigError, VendorApiError
from cxbackup.backup.records import Recording, parse_metadata_time, parse_recordings_page
from cxbackup.backup.selection import AccessFilter, MediaTypeSelector, path_covers

from .fakes import make_record

SEED_RECORD = """{
  "id" : "021L6BI58K8FH7R5USI402LAES00000A",
  "callerPhoneNumber" : "+19059683343",
  "startTime" : "2021-07-21T16:49:00.000+0000",
  "unknownField" : {"nested": [1, 2.50, 1e3], "text": "caf\\u00e9 \\"q\\""},
  "mediaFiles" : [ {
    "mediaId" : "021L6BI58K8FH7R5USI402LAES000000A_2021-07-21_16-49-00-334B020F-10002D91-00000001.mp3.bin",
    "type" : "audio/mp3", "size" : "146304", "partitions" : [ ], "accessgroups" : [ "/" ]
  } ],
  "callType" : "Internal",
  "region" : "usw1"
}"""


def test_page_keeps_each_record_byte_for_byte() -> None:
    other = json.dumps(make_record("B" * 32, 1626886200000))
    text = f'{{ "total" : 7, "offset" : 5,\n "recordings" : [ {SEED_RECORD} ,\n{other}],"extra":null }}'
    page = parse_recordings_page(text)
    assert (page.total, page.offset) == (7, 5)
    assert [r.raw_json for r in page.recordings] == [SEED_RECORD, other]
    rec = page.recordings[0]
    assert rec.id == "021L6BI58K8FH7R5USI402LAES00000A"
    assert rec.start_ms == 1626886140000
    assert rec.region == "usw1"
    assert rec.media[0].size == 146304 and rec.media[0].type == "audio/mp3"
    assert rec.problem is None


def test_empty_page_and_missing_total() -> None:
    assert parse_recordings_page('{"recordings": []}').total == 0
    assert parse_recordings_page('{"total": 0, "offset": 0, "recordings": []}').recordings == []


@pytest.mark.parametrize(
    "bad", ["", "[]", '{"total": 1}', '{"recordings": [ {"id": 1} ', "<html>", '{"recordings": [1 2]}']
)
def test_malformed_pages(bad: str) -> None:
    with pytest.raises(VendorApiError, match="not a page"):
        parse_recordings_page(bad)


def test_records_with_problems_are_flagged() -> None:
    assert (
        Recording.from_json({"startTime": "2021-07-21T16:49:00.000+0000"}, "{}").problem == "metadata record has no id"
    )
    bad_time = Recording.from_json({"id": "X", "startTime": "yesterday"}, "{}")
    assert bad_time.problem is not None and bad_time.problem.startswith("bad startTime")
    assert Recording.from_json([1], "[1]").problem == "not an object"


def test_metadata_times() -> None:
    assert parse_metadata_time("2021-07-21T16:49:00.000+0000") == 1626886140000
    assert parse_metadata_time("2021-07-21T16:49:00Z") == 1626886140000
    assert parse_metadata_time(1626886140000) == 1626886140000
    with pytest.raises(ValueError):
        parse_metadata_time("2021-07-21T16:49:00")


def test_media_type_patterns() -> None:
    default = MediaTypeSelector.parse("audio/mp3 video/mp4")
    assert default.matches("audio/mp3") and default.matches("video/mp4")
    assert not default.matches("audio/mp3x") and not default.matches(None)
    alt = MediaTypeSelector.parse("audio/mp3|video/mp4")
    assert alt.matches("video/mp4")
    assert MediaTypeSelector.parse("audio/.*").matches("audio/wav")
    with pytest.raises(ConfigError):
        MediaTypeSelector.parse("   ")


def test_select_keeps_matching_media_once() -> None:
    rec = Recording.from_json(
        make_record("A", 0, [("m1", "audio/mp3"), ("m2", "video/mp4"), ("m1", "audio/mp3"), ("m3", "text/plain")]), "{}"
    )
    assert [m.media_id for m in MediaTypeSelector.parse("audio/mp3 video/mp4").select(rec.media)] == ["m1", "m2"]
    assert [m.media_id for m in MediaTypeSelector.parse("video/mp4").select(rec.media)] == ["m2"]


def rec(**kw: object) -> Recording:
    return Recording.from_json(make_record("R", 0, **kw), "{}")  # type: ignore[arg-type]


def test_path_covers_whole_segments() -> None:
    assert path_covers("/Anthony", "/Anthony/John")
    assert path_covers("/Anthony/", "/Anthony")
    assert not path_covers("/Anthony", "/Anthony2")
    assert path_covers("/", "/anything")


def test_partition_filter() -> None:
    f = AccessFilter(partitions=("/sales",))
    assert f.matches(rec(partitions=["/sales", "/support"]))
    assert not f.matches(rec(partitions=["/support"]))


def test_access_group_filter_follows_the_seed() -> None:
    # "/" grants everything; a group covers the hierarchy below it; a group named like a partition
    assert AccessFilter(access_groups=("/",)).matches(rec(accessgroups=["/Anthony/John"]))
    assert AccessFilter(access_groups=("/Anthony",)).matches(rec(accessgroups=["/Anthony/John"]))
    assert not AccessFilter(access_groups=("/Anthony/John",)).matches(rec(accessgroups=["/Anthony/Paul"]))
    assert AccessFilter(access_groups=("/sales",)).matches(rec(partitions=["/sales"], accessgroups=[]))


def test_agent_hierarchy_filter_uses_the_hierarchy_field_then_access_groups() -> None:
    f = AccessFilter(agent_hierarchy=("/Anthony/John",))
    assert f.matches(rec(hierarchy="/Anthony/John", accessgroups=["/"]))
    assert not f.matches(rec(hierarchy="/Anthony/Paul", accessgroups=["/Anthony/John"]))
    assert f.matches(rec(accessgroups=["/Anthony/John"]))  # no hierarchy field at all
    assert AccessFilter(agent_hierarchy=("/Anthony",)).matches(rec(hierarchy="/Anthony/Paul"))


def test_filters_combine_with_and() -> None:
    f = AccessFilter(partitions=("/sales",), agent_hierarchy=("/Anthony",))
    assert f.matches(rec(partitions=["/sales"], hierarchy="/Anthony/John"))
    assert not f.matches(rec(partitions=["/support"], hierarchy="/Anthony/John"))
    assert not f.matches(rec(partitions=["/sales"], hierarchy="/Bob"))
    assert AccessFilter().matches(rec(media=[]))
    assert not AccessFilter(access_groups=("/",)).matches(rec(media=[]))


def test_a_bad_record_is_described_briefly_without_echoing_its_data() -> None:
    """A record's problem becomes a failure reason in the status: vendor data in it is cut short."""
    value = {"echo": "Authorization: Basic dXNlcjpzM2NyM3Q=", "padding": "x" * 10_000}
    rec = Recording.from_json({"id": "REC1", "startTime": value}, "{}")
    assert rec.problem is not None and rec.problem.startswith("bad startTime: not a time")
    assert len(rec.problem) < 160 and "dXNlcjpzM2NyM3Q" not in rec.problem


def test_a_page_that_is_not_a_page_is_reported_without_its_body() -> None:
    body = '{"total": 1, "recordings": [{"id": "A", "secretField": "hunter2-' + "z" * 500 + '"'
    with pytest.raises(VendorApiError) as info:
        parse_recordings_page(body)
    assert "hunter2" not in str(info.value) and len(str(info.value)) < 200
