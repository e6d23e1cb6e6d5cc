"""Layout: folder format, the name rule (property-tested), case-insensitive uniqueness, paths stay inside."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxbackup.backup.errors import ConfigError, UnsafePathError
from cxbackup.backup.layout import (
    MAX_NAME,
    FolderFormat,
    check_relative_path,
    is_temp_name,
    media_file_names,
    recording_folder_name,
    recording_paths,
    safe_name,
    temp_name,
)
from cxbackup.backup.records import Recording
from cxbackup.backup.targets import LocalDirectoryTarget

from .fakes import make_record


def test_default_folder_format_is_rcbs() -> None:
    fmt = FolderFormat.parse("yyyy/MM/dd/HH")
    assert fmt.format(datetime(2018, 2, 12, 19, 5, 7)) == "2018/02/12/19"
    assert FolderFormat.parse("yy-M-d_H'h'mm/ss").format(datetime(2018, 2, 3, 4, 5, 6)) == "18-2-3_4h05/06"
    assert FolderFormat.parse("").format(datetime(2018, 2, 3)) == ""


@pytest.mark.parametrize("bad", ["yyyy/MMM", "yyyy\\MM", "/yyyy", "yyyy//MM", "yyyy/'..'", "EEE", "yyyy/'x"])
def test_bad_folder_formats(bad: str) -> None:
    with pytest.raises(ConfigError, match="recordingFolderFormat"):
        FolderFormat.parse(bad)


def test_recording_paths_follow_the_seed_layout() -> None:
    rid = "01F62DGIBGD8369P7GC362LAES00000G"
    rec_json = make_record(rid, 1518462000000, [(f"{rid}_x.mp3.bin", "audio/mp3"), ("W6x+Vq8f_y", "video/mp4")])
    rec = Recording.from_json(rec_json, json.dumps(rec_json))
    paths = recording_paths(rec, FolderFormat.parse("yyyy/MM/dd/HH"))
    assert paths.directory == f"2018/02/12/19/{rid}"
    assert paths.metadata == f"2018/02/12/19/{rid}/{rid}.json"
    assert paths.media == {
        f"{rid}_x.mp3.bin": f"2018/02/12/19/{rid}/{rid}_x.mp3.bin",
        "W6x+Vq8f_y": f"2018/02/12/19/{rid}/W6x+Vq8f_y",
    }


@pytest.mark.parametrize(
    ("name", "kept"),
    [("021L6BI58K8FH7R5USI402LAES00000A_2021-07-21_16-49-00-334B020F.mp3.bin", True), ("a b+c=d", True)],
)
def test_ordinary_names_are_kept(name: str, kept: bool) -> None:
    assert (safe_name(name) == name) is kept


@pytest.mark.parametrize(
    "name",
    ["..", ".", "", "a/b", "../../etc/passwd", "x\x00y", "a\\b", "CON", "nul.txt", ".hidden", "trail.", "é", "a:b"],
)
def test_unsafe_names_are_changed_and_suffixed(name: str) -> None:
    out = safe_name(name)
    assert out != name
    assert "~" in out and len(out.rsplit("~", 1)[1]) == 12


def test_long_names_are_cut_with_a_hash() -> None:
    a, b = "A" * 300 + "1", "A" * 300 + "2"
    assert len(safe_name(a)) == MAX_NAME
    assert safe_name(a) != safe_name(b)


def test_names_differing_only_by_case_do_not_collide() -> None:
    names = media_file_names(["Rec.mp3", "rec.mp3", "other.mp3", "X.JSON"], "X.json")
    assert len({n.casefold() for n in names.values()}) == 4
    assert names["other.mp3"] == "other.mp3"
    assert names["X.JSON"] != "X.JSON"  # would collide with the metadata file
    assert recording_folder_name("01F62DGIBGD8369P7GC362LAES00000G") == "01F62DGIBGD8369P7GC362LAES00000G"
    lower = recording_folder_name("01f62dgibgd8369p7gc362laes00000g")
    assert lower.casefold() != "01F62DGIBGD8369P7GC362LAES00000G".casefold()


def test_temp_names_are_hidden_and_recognised() -> None:
    t = temp_name("abc.mp3.bin")
    assert t.startswith(".abc.mp3.bin.part-") and is_temp_name(t)
    assert not is_temp_name("abc.mp3.bin") and not is_temp_name(".abc.part-xyz")


def test_relative_path_check() -> None:
    assert check_relative_path("2018/01/x") == "2018/01/x"
    for bad in ("", "/abs", "a//b", "a/../b", "./a", "a\\b", "a\x00"):
        with pytest.raises(UnsafePathError):
            check_relative_path(bad)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_safe_name_properties(name: str) -> None:
    out = safe_name(name)
    assert "/" not in out and "\\" not in out and "\x00" not in out
    assert out not in ("", ".", "..")
    assert not out.startswith(".") and not out.endswith((".", " "))
    assert all(" " <= c <= "~" for c in out)
    assert len(out) <= MAX_NAME
    assert len(temp_name(out)) < 255
    assert safe_name(name) == out  # deterministic


@settings(max_examples=100, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=40), min_size=1, max_size=6, unique=True))
def test_media_names_unique_ignoring_case(ids: list[str]) -> None:
    names = media_file_names(ids, "CALL.json")
    folded = [n.casefold() for n in names.values()]
    assert len(set(folded)) == len(ids)
    assert "call.json" not in folded


@settings(max_examples=100, deadline=None)
@given(call_uuid=st.text(min_size=1, max_size=60), media_id=st.text(min_size=1, max_size=60))
def test_every_path_stays_inside_the_target(
    tmp_path_factory: pytest.TempPathFactory, call_uuid: str, media_id: str
) -> None:
    root = tmp_path_factory.getbasetemp() / "inside"
    root.mkdir(exist_ok=True)
    target = LocalDirectoryTarget(root)
    rec_json = make_record(call_uuid, 1518462000000, [(media_id, "audio/mp3")])
    rec = Recording.from_json(rec_json, "{}")
    paths = recording_paths(rec, FolderFormat.parse("yyyy/MM/dd/HH"))
    for p in (paths.directory, paths.metadata, *paths.media.values()):
        resolved = target.resolve(p)
        assert resolved.is_relative_to(root.resolve())
        assert Path(p).parts[:4] == ("2018", "02", "12", "19")
