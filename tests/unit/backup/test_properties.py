"""Java .properties syntax: separators, comments, continuations, escapes, errors with line numbers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cxbackup.backup.errors import PropertiesSyntaxError
from cxbackup.backup.properties import escape_key, escape_value, parse_java_properties


def pairs(text: str) -> dict[str, str]:
    entries, _ = parse_java_properties(text, "config.properties")
    return {e.key: e.value for e in entries}


def test_separators_comments_and_whitespace() -> None:
    text = (
        "# a comment\n"
        "! another comment\n"
        "\n"
        "   gwsUriPrefix = https://example.com/api/v2   \n"
        "targetDir:/target\n"
        "maxAge 3\n"
        "\tminAge\t=\tPT30M\n"
        "empty=\n"
    )
    assert pairs(text) == {
        "gwsUriPrefix": "https://example.com/api/v2",
        "targetDir": "/target",
        "maxAge": "3",
        "minAge": "PT30M",
        "empty": "",
    }


def test_line_numbers_and_crlf() -> None:
    entries, _ = parse_java_properties("# c\r\na=1\r\n\r\nb=2\rc=3", "x")
    assert [(e.key, e.line) for e in entries] == [("a", 2), ("b", 4), ("c", 5)]


def test_continuation_lines_join_and_drop_leading_blanks() -> None:
    text = "mediaTypePattern = audio/mp3 \\\n    video/mp4\nnext=1\n"
    entries, _ = parse_java_properties(text, "x")
    assert entries[0].value == "audio/mp3 video/mp4"
    assert entries[0].line == 1
    assert entries[1].line == 3


def test_even_backslashes_do_not_continue_and_comments_never_continue() -> None:
    text = "a=x\\\\\nb=y\n# comment \\\nc=z\n"
    assert pairs(text) == {"a": "x\\", "b": "y", "c": "z"}


def test_escapes_as_java_reads_them() -> None:
    entries, _ = parse_java_properties("k\\=ey=v\\:al\\tue\\u00e9\\ud83d\\ude00\nw=C:\\target\n", "x")
    assert entries[0].key == "k=ey"
    assert entries[0].value == "v:al\tue\u00e9\U0001f600"
    assert entries[1].value == "C:\target"  # \t is a TAB, as in Java


def test_unknown_escape_warns_with_line() -> None:
    _, warnings = parse_java_properties("# c\nmediaTypePattern=audio\\mp3\n", "config.properties")
    assert any(w.startswith("config.properties:2:") and "'\\m'" in w for w in warnings)


def test_escaped_trailing_space_is_kept_plain_one_dropped() -> None:
    assert pairs("a=x\\ \nb=y   \n") == {"a": "x ", "b": "y"}


def test_duplicate_key_warns_and_last_wins() -> None:
    entries, warnings = parse_java_properties("a=1\na=2\n", "c.p")
    assert entries[-1].value == "2"
    assert any("c.p:2: a is set again (first on line 1)" in w for w in warnings)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("a=1\ngwsUriPrefix\n", 2, "'gwsUriPrefix' has no value"),
        ("a=1\n\n= value\n", 3, "line has no key"),
        ("x=\\u12G4\n", 1, "malformed \\uXXXX"),
        ("# c\n# d\nk=\\u12\n", 3, "malformed \\uXXXX"),
    ],
)
def test_malformed_lines_name_the_line(text: str, line: int, fragment: str) -> None:
    with pytest.raises(PropertiesSyntaxError) as info:
        parse_java_properties(text, "config.properties")
    assert info.value.line == line
    assert str(info.value).startswith(f"config.properties:{line}: ")
    assert fragment in str(info.value)


_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)


@given(key=_text.filter(bool), value=_text)
def test_escape_round_trips_any_text(key: str, value: str) -> None:
    line = f"{escape_key(key)}={escape_value(value)}\n"
    entries, _ = parse_java_properties(line, "x")
    assert len(entries) == 1
    assert (entries[0].key, entries[0].value) == (key, value)
    assert line.isascii()
