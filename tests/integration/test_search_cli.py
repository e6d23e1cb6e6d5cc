"""`cxbackup download` against the emulator, then `cxbackup search` and `cxbackup index` as a user runs them.

Shards writing at once, a recording whose download failed, the rebuild from the tree, and the refusals. The
shards are processes of their own, as are one `search` and one `index` (`python -m cxbackup`); the other
commands run through the real entry point in this process (tests/integration/cli.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from cxbackup.backup.index import INDEX_DIR
from cxbackup.backup.records import parse_metadata_time
from cxbackup_dev.emulator import Emulator
from tests.integration.cli import run_cli, run_cli_process
from tests.integration.emulator_fixtures import target_bucket

pytestmark = pytest.mark.integration


def search(target: Path, *args: str, process: bool = False) -> subprocess.CompletedProcess[str]:
    return (run_cli_process if process else run_cli)(["search", "--target", str(target), *args], {}, timeout=60)


def search_json(target: Path, *args: str, process: bool = False) -> dict[str, Any]:
    result = search(target, *args, "--json", "--limit", "1000", process=process)
    assert result.returncode == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def found(target: Path, *args: str, process: bool = False) -> list[str]:
    return [r["id"] for r in search_json(target, *args, process=process)["recordings"]]


def in_order(records: Sequence[Mapping[str, Any]]) -> list[str]:
    return [r["id"] for r in sorted(records, key=lambda r: (parse_metadata_time(r["startTime"]), r["id"]))]


@pytest.fixture(scope="module")
def backed_up(emulator: Emulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The emulator's recordings backed up by two shards running at once into one folder."""
    work = tmp_path_factory.mktemp("search")
    target = work / "target"
    cfg = emulator.write_config(work / "config.properties", target_dir=target, concurrency=4)
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "cxbackup", "download", "-config", str(cfg), "--progress", "none",
             "--rcbs-instance-id", str(i), "--total-rcbs-instances", "2"],
            env={**os.environ, **emulator.env()},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]  # fmt: skip
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    yield target


def test_shards_running_at_once_each_keep_their_index_and_search_sees_all(backed_up: Path, emulator: Emulator) -> None:
    names = sorted(p.name for p in (backed_up / INDEX_DIR).iterdir())
    assert names == ["shard-0-of-2.sqlite3", "shard-1-of-2.sqlite3"]  # no journal left, no temporary file
    for p in (backed_up / INDEX_DIR).iterdir():
        assert p.stat().st_mode & 0o777 == 0o600
    records = list(emulator.records())
    assert found(backed_up, "--from", "1970-01-01", process=True) == in_order(records)


def test_search_by_phone_agent_time_partition_and_text(backed_up: Path, emulator: Emulator) -> None:
    records = list(emulator.records())
    rec = records[7]
    voice = rec["mediaFiles"][0]
    by_caller = [r for r in records if r["callerPhoneNumber"] == rec["callerPhoneNumber"]]
    assert found(backed_up, "--phone", rec["callerPhoneNumber"]) == in_order(by_caller)
    user = voice["parameters"]["username"]
    by_agent = [r for r in records if r["mediaFiles"][0]["parameters"]["username"] == user]
    assert found(backed_up, "--agent", user.upper()) == in_order(by_agent)
    start = parse_metadata_time(rec["startTime"])
    window = [r for r in records if start <= parse_metadata_time(r["startTime"]) < start + 3_600_000]
    assert found(backed_up, "--from", str(start), "--to", str(start + 3_600_000)) == in_order(window)
    part = voice["partitions"][0]
    assert found(backed_up, "--partition", part, "--agent", user) == in_order(
        [r for r in by_agent if r["mediaFiles"][0]["partitions"] == [part]]
    )
    hierarchy = voice["parameters"]["agentHierarchy"]
    word = hierarchy.strip("/").split("/")[-1]
    assert rec["id"] in found(backed_up, "--text", word, "--phone", rec["callerPhoneNumber"])
    # the JSON names every file, and the files are there
    doc = search_json(backed_up, "--id", rec["id"])
    assert doc["total"] == 1
    hit = doc["recordings"][0]
    assert hit["callerPhoneNumber"] == rec["callerPhoneNumber"] and user in hit["agents"]
    assert (backed_up / hit["metadata"]).is_file()
    assert [m["mediaId"] for m in hit["media"]] == sorted(m["mediaId"] for m in rec["mediaFiles"])
    for m in hit["media"]:
        assert (backed_up / m["path"]).is_file()


def test_the_table_and_the_empty_result(backed_up: Path, emulator: Emulator) -> None:
    rec = next(iter(emulator.records()))
    result = search(backed_up, "--id", rec["id"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:4] == ["START", "(UTC)", "ID", "CALLER"]
    assert rec["id"] in lines[1] and rec["callerPhoneNumber"] in lines[1]
    assert lines[-1] == "1 match"
    nothing = search(backed_up, "--agent", "nobody-at-all")
    assert nothing.returncode == 0
    assert nothing.stdout.startswith("No recording matches --agent nobody-at-all; the index holds 30 recordings")
    later = search(backed_up, "--from", "2100-01-01")
    assert later.returncode == 0 and "--from is after the last indexed recording" in later.stdout
    assert search_json(backed_up, "--from", "2100-01-01")["explanation"].startswith("No recording matches")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--phone", "call-me"], "argument --phone"),
        (["--phone", "12"], "argument --phone"),
        (["--from", "yesterday"], "argument --from"),
        (["--to", "2026-13-01"], "argument --to"),
        (["--limit", "0", "--agent", "a"], "argument --limit"),
        (["--text", "  "], "argument --text"),
        (["--from", "2026-11-02", "--to", "2026-11-01"], "argument --to"),
        (["--colour", "red"], "unrecognized arguments: --colour"),
        ([], "give at least one of --phone"),
    ],
)
def test_bad_input_is_refused_naming_the_option(backed_up: Path, args: list[str], named: str) -> None:
    result = search(backed_up, *args)
    assert result.returncode == 2 and named in result.stderr, result.stderr
    assert result.stdout == ""


def test_a_folder_without_an_index_or_a_missing_folder(tmp_path: Path) -> None:
    result = search(tmp_path, "--agent", "a")
    assert result.returncode == 2 and "has no search index" in result.stderr and "cxbackup index" in result.stderr
    missing = search(tmp_path / "nope", "--agent", "a")
    assert missing.returncode == 2 and "--target" in missing.stderr and "no such folder" in missing.stderr


def test_rebuild_from_the_tree_gives_the_same_answers(backed_up: Path, tmp_path: Path) -> None:
    before = search_json(backed_up, "--from", "1970-01-01")
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-a", str(backed_up), str(copy)], check=True)
    for p in (copy / INDEX_DIR).iterdir():
        p.unlink()
    result = run_cli_process(["index", "--target", str(copy)], {}, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Indexed 30 recordings")  # two shards: from the checkpoint files' names
    assert sorted(p.name for p in (copy / INDEX_DIR).iterdir()) == ["shard-0-of-2.sqlite3", "shard-1-of-2.sqlite3"]
    assert search_json(copy, "--from", "1970-01-01") == before
    again = run_cli(["index", "--target", str(copy), "--shards", "1"], {}, timeout=60)
    assert again.returncode == 0 and "Removed shard-0-of-2.sqlite3" in again.stdout
    assert search_json(copy, "--from", "1970-01-01") == before


def test_a_recording_whose_download_failed_is_not_in_the_index(
    make_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    emu = make_emulator()
    records = list(emu.records())
    victim = records[4]
    emu.delete_object(victim["mediaFiles"][0]["mediaId"])
    target = tmp_path / "target"
    cfg = emu.write_config(tmp_path / "config.properties", target_dir=target, concurrency=4, retries=1)
    result = run_cli(["download", "-config", str(cfg), "--progress", "none"], emu.env())
    assert result.returncode == 1, result.stderr
    assert (target / INDEX_DIR / "shard-0-of-1.sqlite3").is_file()
    nothing = search(target, "--id", victim["id"])
    assert nothing.returncode == 0 and nothing.stdout.startswith("No recording matches --id")
    others = [r for r in records if r["id"] != victim["id"]]
    assert found(target, "--from", "1970-01-01") == in_order(others)
    # the rebuild agrees: the tree has no metadata for it (metadata is written last)
    rebuilt = run_cli(["index", "--target", str(target)], {}, timeout=60)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert victim["id"] not in found(target, "--from", "1970-01-01")
    assert len(found(target, "--from", "1970-01-01")) == len(others)


def test_s3_target_backup_then_search_through_the_config(emulator: Emulator, tmp_path: Path) -> None:
    bucket = target_bucket(emulator)
    client, target_env = bucket.client, bucket.env
    cfg = bucket.config(tmp_path / "c.properties", "search-backup", targetS3Prefix="rcbs/")
    result = run_cli(["download", "-config", str(cfg), "--progress", "none"], target_env)
    assert result.returncode == 0, result.stderr
    keys = {
        o["Key"] for o in client.list_objects_v2(Bucket="search-backup", Prefix="rcbs/.cxbackup-index/")["Contents"]
    }
    assert keys == {"rcbs/.cxbackup-index/shard-0-of-1.sqlite3"}
    records = list(emulator.records())
    rec = records[3]
    user = rec["mediaFiles"][0]["parameters"]["username"]
    found = run_cli(["search", "-config", str(cfg), "--agent", user, "--json", "--limit", "1000"], target_env)
    assert found.returncode == 0, found.stderr
    doc = json.loads(found.stdout)
    expected = [r for r in records if r["mediaFiles"][0]["parameters"]["username"] == user]
    assert [r["id"] for r in doc["recordings"]] == in_order(expected)
    hit = next(r for r in doc["recordings"] if r["id"] == rec["id"])
    for m in hit["media"]:  # paths are relative to the target: under the prefix in the bucket
        assert client.head_object(Bucket="search-backup", Key=f"rcbs/{m['path']}")["ContentLength"] > 0
    # the index is rebuilt from the bucket's objects alone, with the same answers
    client.delete_object(Bucket="search-backup", Key="rcbs/.cxbackup-index/shard-0-of-1.sqlite3")
    rebuilt = run_cli(["index", "-config", str(cfg)], target_env)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.startswith(f"Indexed {len(records)} recordings of s3://search-backup/rcbs/")
    again = run_cli(["search", "-config", str(cfg), "--agent", user, "--json", "--limit", "1000"], target_env)
    assert again.returncode == 0 and json.loads(again.stdout) == doc
    # a bucket without an index (no run yet) says so
    client.create_bucket(Bucket="empty-backup")
    empty = emulator.write_config(
        tmp_path / "e.properties", targetS3Bucket="empty-backup", targetS3EndpointUrl=emulator.s3_endpoint
    )
    none = run_cli(["search", "-config", str(empty), "--agent", user], target_env)
    assert none.returncode == 2 and "has no search index; build it from the bucket with `cxbackup index" in none.stderr


# ------------------------------------------------------------------ hand-made metadata in a real folder


def recording(
    rec_id: str, minute: int, *, caller: str = "+15125550100", media: Sequence[Mapping[str, Any]] = (), **fields: Any
) -> dict[str, Any]:
    """A metadata record in the vendor's format, started `minute` minutes after 2026-11-29 10:00Z."""
    start = f"2026-11-29T{10 + minute // 60:02d}:{minute % 60:02d}:00.000+0000"
    files = [{"mediaId": f"{rec_id}_{i}.bin", "type": "audio/mp3", **m} for i, m in enumerate(media)]
    return {"id": rec_id, "callerPhoneNumber": caller, "dialedPhoneNumber": "+15125550199", "startTime": start,
            "stopTime": start, "mediaFiles": files, **fields}  # fmt: skip


def write_tree(target: Path, records: Sequence[Mapping[str, Any]]) -> None:
    """Each record as `<hour>/<id>/<id>.json` (metadata only, as with metadataOnly), then `cxbackup index`."""
    for rec in records:
        folder = target / "2026/11/29/10" / rec["id"]
        folder.mkdir(parents=True)
        (folder / f"{rec['id']}.json").write_text(json.dumps(rec))
    result = run_cli(["index", "--target", str(target)], {}, timeout=60)
    assert result.returncode == 0, result.stderr


def test_access_group_covers_the_groups_under_it_on_whole_path_segments(tmp_path: Path) -> None:
    target = tmp_path / "groups"
    groups = {
        "G-ANTHONY": ["/Anthony"],
        "G-JOHN": ["/Anthony/John"],
        "G-DEEP": ["/Anthony/John/Night"],
        "G-SLASHES": ["Anthony/Paul/"],  # written without the leading and with a trailing slash
        "G-ANTHONYX": ["/Anthonyx"],
        "G-ANTHONY-X": ["/Anthony-x/John"],
        "G-OTHER": ["/Other"],
        "G-NONE": [],
    }
    write_tree(target, [recording(i, n, media=[{"accessgroups": g}]) for n, (i, g) in enumerate(groups.items())])
    for narrowed in ([], ["--from", "2026-11-29"]):  # alone (listed from the key) and per candidate
        covered = {*found(target, "--access-group", "/Anthony", *narrowed)}
        assert covered == {"G-ANTHONY", "G-JOHN", "G-DEEP", "G-SLASHES"}, narrowed
        assert found(target, "--access-group", "Anthony/", *narrowed) == found(target, "--access-group", "/Anthony")
        assert found(target, "--access-group", "/Anthony/John", *narrowed) == ["G-JOHN", "G-DEEP"]
        assert found(target, "--access-group", "/Anthonyx", *narrowed) == ["G-ANTHONYX"]
        assert found(target, "--access-group", "/Anth", *narrowed) == []  # a segment is matched whole
        assert found(target, "--access-group", "/Anthony/Jo", *narrowed) == []
        assert found(target, "--access-group", "/Other", "--access-group", "/Anthony/John", *narrowed) == [
            "G-JOHN", "G-DEEP", "G-OTHER",
        ]  # fmt: skip
        # `/` covers every access group; a recording without one is not in any
        assert set(found(target, "--access-group", "/", *narrowed)) == set(groups) - {"G-NONE"}
    # partitions are matched exactly
    parts = [recording("P-SALES", 0, media=[{"partitions": ["/sales"]}]),
             recording("P-EMEA", 1, media=[{"partitions": ["/sales/emea"]}])]  # fmt: skip
    write_tree(tmp_path / "partitions", parts)
    assert found(tmp_path / "partitions", "--partition", "/sales") == ["P-SALES"]


def test_text_ignores_case_and_the_accents_of_latin_letters(tmp_path: Path) -> None:
    write_tree(tmp_path, [
        recording("T1", 0, disposition="Rückruf Café CALLBACK"),
        recording("T2", 1, disposition="cafe callback rueckruf"),
        recording("T3", 2, disposition="Straße Øresund"),
    ])  # fmt: skip
    for words in ("cafe", "CAFÉ", "Cafe", "café callback"):
        assert found(tmp_path, "--text", words) == ["T1", "T2"], words
    assert found(tmp_path, "--text", "ruckruf") == ["T1"]  # ü is u with an accent: not "ue"
    assert found(tmp_path, "--text", "RÜCK*") == ["T1"]
    # letters of their own, not accented forms, match only themselves (in any case)
    assert found(tmp_path, "--text", "STRASSE") == []
    assert found(tmp_path, "--text", "STRAßE") == ["T3"]
    assert found(tmp_path, "--text", "oresund") == []
    assert found(tmp_path, "--text", "øresund") == ["T3"]


def test_agent_matches_a_screen_recordings_agent_field_whatever_it_holds(tmp_path: Path) -> None:
    def screen(agent: str) -> dict[str, Any]:
        return {"type": "video/mp4", "parameters": {"agentID": agent, "muxed_mediaIds": ["x"]}}

    write_tree(tmp_path, [
        recording("S-DN", 0, media=[screen("+1 647 838 9077")]),  # the agent's phone number (DN)
        recording("S-NAME", 1, media=[screen("Agent_7")]),
        recording("S-ID", 2, media=[screen("103077")]),
        recording("V-ID", 3, media=[{"parameters": {"agentId": "103077", "username": "agent_7"}}]),
    ])  # fmt: skip
    assert found(tmp_path, "--agent", "+1 647 838 9077") == ["S-DN"]  # the field's value exactly, case ignored
    assert found(tmp_path, "--agent", "+16478389077") == []  # not a number match: that is --phone
    assert found(tmp_path, "--phone", "+16478389077") == ["S-DN"]
    assert found(tmp_path, "--phone", "9077") == ["S-DN"]
    assert found(tmp_path, "--agent", "agent_7") == ["S-NAME", "V-ID"]
    assert found(tmp_path, "--agent", "103077") == ["S-ID", "V-ID"]
    assert found(tmp_path, "--phone", "103077") == ["S-ID"]  # digits only: also a number of the recording
    assert "+1 647 838 9077" in search_json(tmp_path, "--id", "S-DN")["recordings"][0]["agents"]


def test_a_backed_up_screen_recording_is_found_by_its_agent_field(backed_up: Path, emulator: Emulator) -> None:
    records = list(emulator.records())
    rec = next(r for r in records if any(m["type"] == "video/mp4" for m in r["mediaFiles"]))
    agent_field = next(m for m in rec["mediaFiles"] if m["type"] == "video/mp4")["parameters"]["agentID"]
    assert rec["id"] in found(backed_up, "--agent", agent_field)
    assert rec["id"] in found(backed_up, "--phone", agent_field)
