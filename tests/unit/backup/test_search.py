"""The query builder and the search over index files: every criterion, refusals, hostile input."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cxbackup.backup.index import INDEX_DIR, ShardIndex, entry_from_recording
from cxbackup.backup.layout import FolderFormat, recording_paths
from cxbackup.backup.records import Recording
from cxbackup.backup.search import (
    SearchQuery,
    build_select,
    build_where,
    fts_query,
    parse_phone,
    parse_time_bound,
    search_index,
)
from cxbackup_dev.emulator.dataset import Dataset, DatasetSpec

FMT = FolderFormat.parse("yyyy/MM/dd/HH")


@pytest.fixture(scope="module")
def records() -> list[dict[str, Any]]:
    spec = DatasetSpec(
        hours=4,
        recordings_per_hour=15,
        seed=11,
        partitions=("/sales", "/support"),
        access_groups=("/emea", "/amer", "/apac"),
    )
    recs = list(Dataset(spec).iter_records())
    return sorted(recs, key=lambda r: (Recording.from_json(r, "{}").start_ms, r["id"]))  # the search's order


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory, records: list[dict[str, Any]]) -> Path:
    """Two shard files (split by position), the last record in both (as after a change of shards)."""
    root = tmp_path_factory.mktemp("search")
    (root / INDEX_DIR).mkdir()
    halves = [records[::2], [*records[1::2], records[0]]]
    for i, part in enumerate(halves):
        idx = ShardIndex(root / INDEX_DIR / f"shard-{i}-of-2.sqlite3")
        entries = []
        for r in part:
            rec = Recording.from_json(r, json.dumps(r))
            paths = recording_paths(rec, FMT)
            entries.append(entry_from_recording(rec, paths, {m.media_id for m in rec.media if m.media_id}))
        idx.add(entries)
        idx.close()
    return root


def find(root: Path, **criteria: Any) -> list[str]:
    return [m.id for m in search_index(root / INDEX_DIR, SearchQuery(limit=1000, **criteria)).matches]


def ids(records: list[dict[str, Any]], pred: Any) -> list[str]:
    return [r["id"] for r in records if pred(r)]


def test_phone_numbers_match_by_their_last_digits(root: Path, records: list[dict[str, Any]]) -> None:
    caller = records[5]["callerPhoneNumber"]  # +1NNNNNNNNNN
    expected = ids(records, lambda r: r["callerPhoneNumber"] == caller)
    assert find(root, phones=(parse_phone(caller),)) == expected
    assert find(root, phones=(parse_phone(caller[2:]),)) == expected  # without the country code
    spaced = f"({caller[2:5]}) {caller[5:8]}-{caller[8:]}"
    assert find(root, phones=(parse_phone(spaced),)) == expected
    dialed = records[0]["dialedPhoneNumber"]
    assert set(find(root, phones=(parse_phone(dialed),))) >= set(
        ids(records, lambda r: r["dialedPhoneNumber"] == dialed)
    )
    # two numbers: either
    other = records[7]["callerPhoneNumber"]
    assert set(find(root, phones=(parse_phone(caller), parse_phone(other)))) == set(expected) | set(
        ids(records, lambda r: r["callerPhoneNumber"] == other)
    )
    assert find(root, phones=("0000000000",)) == []


def test_agents_by_user_name_or_id_ignoring_case(root: Path, records: list[dict[str, Any]]) -> None:
    def params(r: dict[str, Any]) -> dict[str, Any]:
        p: dict[str, Any] = r["mediaFiles"][0]["parameters"]
        return p

    user = params(records[3])["username"]
    expected = ids(records, lambda r: params(r)["username"] == user)
    assert find(root, agents=(user.upper(),)) == expected
    assert find(root, agents=(params(records[3])["agentId"],)) == expected


def test_time_partition_group_and_text(root: Path, records: list[dict[str, Any]]) -> None:
    start = Recording.from_json(records[20], "{}").start_ms
    assert start is not None
    later = [r["id"] for r in records if (Recording.from_json(r, "{}").start_ms or 0) >= start]
    assert find(root, start_from=start) == later
    assert find(root, start_to=start) == [r["id"] for r in records if r["id"] not in later]
    sales = ids(records, lambda r: r["mediaFiles"][0]["partitions"] == ["/sales"])
    assert find(root, partitions=("/sales",)) == sales
    amer_or_apac = ids(records, lambda r: r["mediaFiles"][0]["accessgroups"][0] in ("/amer", "/apac"))
    assert find(root, access_groups=("/amer", "/apac")) == amer_or_apac
    assert find(root, partitions=("/sales",), access_groups=("/amer", "/apac")) == [
        i for i in sales if i in amer_or_apac
    ]

    def disposition(r: dict[str, Any]) -> str:
        return next(
            e["data"]["updated"]["DispositionCode"] for e in r["eventHistory"] if "updated" in e.get("data", {})
        )

    callback = ids(records, lambda r: disposition(r) == "callback")
    assert callback and find(root, text="callback") == callback
    outbound = ids(records, lambda r: r["callType"] == "Outbound")
    assert find(root, text="Outbound callback") == [i for i in callback if i in outbound]
    assert find(root, text="callb*") == callback
    # "no-sale" is the words "no" and "sale": the text search finds words, not substrings
    assert find(root, text="sale") == ids(records, lambda r: disposition(r) in ("sale", "no-sale"))


def test_a_recording_in_two_files_is_shown_once_in_start_order(root: Path, records: list[dict[str, Any]]) -> None:
    result = search_index(root / INDEX_DIR, SearchQuery(start_from=0, limit=1000))
    assert [m.id for m in result.matches] == [r["id"] for r in records]
    assert result.files == 2 and result.total == len(records) + 1  # counted per file
    first = search_index(root / INDEX_DIR, SearchQuery(start_from=0, limit=3))
    assert [m.id for m in first.matches] == [r["id"] for r in records[:3]]


def test_nothing_found_reports_what_the_index_covers(root: Path, records: list[dict[str, Any]]) -> None:
    result = search_index(root / INDEX_DIR, SearchQuery(agents=("nobody",)))
    assert result.matches == [] and result.total == 0
    assert result.coverage.recordings == len(records) + 1
    assert result.coverage.first_start_ms == Recording.from_json(records[0], "{}").start_ms


def test_values_are_parameters_never_sql(root: Path) -> None:
    hostile = "x') OR 1=1 --"
    sql, params = build_select(SearchQuery(agents=(hostile,), partitions=(hostile,), ids=(hostile,), text=hostile))
    assert hostile not in sql and "1=1" not in sql
    assert hostile.lower() in params
    assert find(root, agents=(hostile,)) == []
    assert find(root, text='NEAR("a" "b") OR *') == []  # FTS5 syntax is taken as words


def test_fts_query_splits_words_like_the_tokenizer_and_quotes_them() -> None:
    assert fts_query('sale "quoted" pre* no-sale') == '"sale" "quoted" "pre"* "no" "sale"'
    assert fts_query("agent_103001 callb*") == '"agent" "103001" "callb"*'
    with pytest.raises(ValueError, match="no word"):
        fts_query("   ")
    with pytest.raises(ValueError, match="no word"):
        fts_query('" * -- ()')


def test_like_fallback_takes_words_only() -> None:
    where, params = build_where(SearchQuery(text="100%_done x*"), fts=False)
    assert "LIKE" in where and params == ["%100%", "%done%", "%x%"]


@pytest.mark.parametrize(
    ("text", "message"),
    [("abc", "not a phone number"), ("12", "fewer than 4"), ("", "not a phone number"), ("+1 555 12x4", "not a phone")],
)
def test_bad_phone_numbers_are_refused(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_phone(text)


def test_time_bounds() -> None:
    assert parse_time_bound("2026-11-20") == 1795132800000
    assert parse_time_bound("2026-11-20T01:00:00Z") == 1795136400000
    assert parse_time_bound("2026-11-20T02:00:00+01:00") == 1795136400000
    assert parse_time_bound("1795136400000") == 1795136400000
    with pytest.raises(ValueError, match="not a time"):
        parse_time_bound("yesterday")


def test_queries_refuse_bad_values() -> None:
    with pytest.raises(ValueError, match="before its end"):
        SearchQuery(start_from=10, start_to=10)
    with pytest.raises(ValueError, match="limit"):
        SearchQuery(limit=0)
    with pytest.raises(ValueError, match="digits"):
        SearchQuery(phones=("+1555",))


def test_partitions_are_listed_alone_and_checked_per_candidate_otherwise(
    root: Path, records: list[dict[str, Any]]
) -> None:
    alone, _ = build_where(SearchQuery(partitions=("/sales",)))
    assert "r.rec IN (SELECT rec FROM tags" in alone
    narrowed, _ = build_where(SearchQuery(partitions=("/sales",), start_from=0, access_groups=("/emea",)))
    assert "r.rec IN (SELECT rec FROM tags" not in narrowed and narrowed.count("EXISTS (SELECT 1 FROM tags") == 2
    both = [i for i in find(root, partitions=("/sales",)) if i in find(root, access_groups=("/emea",))]
    assert find(root, partitions=("/sales",), access_groups=("/emea",), start_from=0) == both


def test_counts_stop_at_the_cap_and_say_so(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cxbackup.backup import search as search_mod

    monkeypatch.setattr(search_mod, "COUNT_CAP", 5)
    result = search_index(root / INDEX_DIR, SearchQuery(start_from=0, limit=3))
    assert (result.total, result.total_exact, len(result.matches)) == (10, False, 3)  # 5 per file, 2 files
    exact = search_index(root / INDEX_DIR, SearchQuery(ids=(result.matches[1].id,)))  # [0] is in both files
    assert (exact.total, exact.total_exact) == (1, True)


def test_without_fts5_text_still_ignores_case_and_latin_accents(
    tmp_path: Path, records: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An index file kept where SQLite lacks FTS5 (a plain table searched with LIKE) folds its text and the
    words searched for as the FTS5 tokenizer does."""
    monkeypatch.setattr("cxbackup.backup.index._FTS", "CREATE VIRTUAL TABLE recording_text USING no_such_module(t)")
    (tmp_path / INDEX_DIR).mkdir()
    idx = ShardIndex(tmp_path / INDEX_DIR / "shard-0-of-1.sqlite3")
    assert not idx.uses_fts
    entries = []
    for n, word in enumerate(("Café ÉCOLE", "cafe ecole", "Straße Ærø", "ΆΘΗΝΑ")):
        r = {**records[n], "disposition": word}
        rec = Recording.from_json(r, json.dumps(r))
        entries.append(entry_from_recording(rec, recording_paths(rec, FMT), ()))
    idx.add(entries)
    idx.close()
    ids = [r["id"] for r in records[:4]]
    assert find(tmp_path, text="CAFE école") == ids[:2]
    assert find(tmp_path, text="STRAßE ærø") == [ids[2]] and find(tmp_path, text="strasse") == []
    assert find(tmp_path, text="άθηνα") == [ids[3]] and find(tmp_path, text="αθηνα") == []
