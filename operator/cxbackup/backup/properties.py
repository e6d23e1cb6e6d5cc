"""Java `.properties` syntax: a parser that reports line numbers, and the matching writer.

RCBS is a Java tool and its config.properties follows `java.util.Properties.load`:

- natural lines end with LF, CR or CRLF; leading whitespace (space, tab, form feed) is skipped;
- blank lines and lines whose first non-blank character is `#` or `!` are comments (a comment line
  is never continued);
- a line ending in an odd number of backslashes continues on the next line, whose leading whitespace
  is dropped;
- the key ends at the first unescaped `=`, `:` or whitespace; blanks around the separator are skipped;
- escapes: `\\t \\n \\r \\f \\uXXXX`, and a backslash before any other character stands for that
  character (so `C:\\target` reads as `C:<TAB>arget` and `audio\\mp3` as `audiomp3`, as in Java).

Where this parser is stricter or friendlier than Java (all reported with the 1-based line number):

- a line that is only a key (no `=`, `:` or blank after it) is an error, as is an empty key;
- a malformed `\\uXXXX` is an error (Java throws too);
- trailing unescaped whitespace of a value is dropped (Java keeps it; it is almost always accidental);
- a backslash before a letter or digit that is not a known escape gives a warning;
- a duplicated key gives a warning (the last one wins, as in Java).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cxbackup.backup.errors import PropertiesSyntaxError

__all__ = ["PropertyLine", "escape_key", "escape_value", "parse_java_properties", "unescape"]

_BLANK = " \t\f"
_SIMPLE_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", "f": "\f"}
_QUIET_ESCAPES = frozenset("\\=:#! \"'")
_NEWLINE = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class PropertyLine:
    """One key/value pair, with the 1-based line where its logical line starts."""

    key: str
    value: str
    line: int
    raw_value: str = ""  # the value as written, before unescaping (for RCBS-compatibility fix-ups)


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join continued lines; drop comments and blank lines. Returns (first line number, text)."""
    natural = _NEWLINE.split(text)
    out: list[tuple[int, str]] = []
    i = 0
    while i < len(natural):
        start = i
        line = natural[i].lstrip(_BLANK)
        i += 1
        if not line or line[0] in "#!":
            continue
        parts: list[str] = []
        while True:
            trailing = len(line) - len(line.rstrip("\\"))
            if trailing % 2 == 1:
                parts.append(line[:-1])
                if i >= len(natural):
                    break
                line = natural[i].lstrip(_BLANK)
                i += 1
                continue
            parts.append(line)
            break
        out.append((start + 1, "".join(parts)))
    return out


def _unescape(raw: str, source_name: str, line: int, warnings: list[str]) -> list[tuple[str, bool, int]]:
    """Decode escapes; returns (character, was_escaped, raw offset) so callers can tell `\\ ` from ` `."""
    chars: list[tuple[str, bool, int]] = []
    i = 0
    while i < len(raw):
        c = raw[i]
        if c != "\\":
            chars.append((c, False, i))
            i += 1
            continue
        if i + 1 >= len(raw):  # a lone trailing backslash at end of file: Java drops it
            i += 1
            continue
        n = raw[i + 1]
        if n == "u":
            digits = raw[i + 2 : i + 6]
            if len(digits) != 4 or not all(d in "0123456789abcdefABCDEF" for d in digits):
                raise PropertiesSyntaxError(
                    source_name, line, f"malformed \\uXXXX escape {raw[i : i + 6]!r} (needs 4 hex digits)"
                )
            chars.append((chr(int(digits, 16)), True, i))
            i += 6
            continue
        if n in _SIMPLE_ESCAPES:
            chars.append((_SIMPLE_ESCAPES[n], True, i))
        else:
            if n not in _QUIET_ESCAPES and n.isalnum():
                warnings.append(
                    f"{source_name}:{line}: '\\{n}' is not an escape and reads as '{n}' "
                    "(use '/' as the directory separator; write '\\\\' for a backslash)"
                )
            chars.append((n, True, i))
        i += 2
    return chars


def _join(chars: list[tuple[str, bool, int]]) -> str:
    text = "".join(c for c, _, _ in chars)
    if any("\ud800" <= c <= "\udfff" for c, _, _ in chars):  # \uD83D\uDE00 pairs -> one code point
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def parse_java_properties(text: str, source_name: str) -> tuple[list[PropertyLine], list[str]]:
    """Parse properties text; returns the entries in file order and warnings (strings with line numbers).

    Raises PropertiesSyntaxError (with the line number) for a malformed line.
    """
    warnings: list[str] = []
    entries: list[PropertyLine] = []
    seen: dict[str, int] = {}
    if text.startswith("\ufeff"):
        text = text[1:]
    for line_no, logical in _logical_lines(text):
        chars = _unescape(logical, source_name, line_no, warnings)
        # The key ends at the first unescaped separator or blank.
        k = 0
        while k < len(chars) and not (not chars[k][1] and chars[k][0] in "=:" + _BLANK):
            k += 1
        key = _join(chars[:k])
        if not key:
            raise PropertiesSyntaxError(source_name, line_no, f"line has no key: {logical.strip()!r}")
        if k >= len(chars):
            raise PropertiesSyntaxError(
                source_name, line_no, f"{key!r} has no value; expected 'key=value' or 'key: value'"
            )
        v = k
        while v < len(chars) and not chars[v][1] and chars[v][0] in _BLANK:
            v += 1
        if v < len(chars) and not chars[v][1] and chars[v][0] in "=:":
            v += 1
            while v < len(chars) and not chars[v][1] and chars[v][0] in _BLANK:
                v += 1
        value_chars = chars[v:]
        while value_chars and not value_chars[-1][1] and value_chars[-1][0] in _BLANK:
            value_chars.pop()
        if key in seen:
            warnings.append(
                f"{source_name}:{line_no}: {key} is set again (first on line {seen[key]}); the last value wins"
            )
        seen[key] = line_no
        raw_value = logical[chars[v][2] :].rstrip(_BLANK) if v < len(chars) else ""
        entries.append(PropertyLine(key=key, value=_join(value_chars), line=line_no, raw_value=raw_value))
    return entries, warnings


def unescape(raw: str, source_name: str = "<value>", line: int = 0) -> str:
    """Decode the escapes of a raw value the way `parse_java_properties` does."""
    return _join(_unescape(raw, source_name, line, []))


def _escape(text: str, *, is_key: bool) -> str:
    out: list[str] = []
    for i, c in enumerate(text):
        if c == "\\":
            out.append("\\\\")
        elif c in "\t\n\r\f":
            out.append({"\t": "\\t", "\n": "\\n", "\r": "\\r", "\f": "\\f"}[c])
        elif c == " " and (is_key or i == 0):
            out.append("\\ ")
        elif (is_key and c in "=:#!") or (not is_key and i == 0 and c in "=:"):
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) > 0x7E:
            raw = c.encode("utf-16-be", "surrogatepass")
            for j in range(0, len(raw), 2):
                out.append(f"\\u{raw[j] << 8 | raw[j + 1]:04X}")
        else:
            out.append(c)
    return "".join(out)


def escape_key(key: str) -> str:
    """Escape a key so that `parse_java_properties` (and Java) reads it back unchanged."""
    return _escape(key, is_key=True)


def escape_value(value: str) -> str:
    """Escape a value (ASCII-only output; other characters as \\uXXXX) so it reads back unchanged.

    A value ending in a blank keeps it by escaping the last blank, because the parser drops trailing
    unescaped whitespace.
    """
    escaped = _escape(value, is_key=False)
    if value and value[-1] == " " and len(value) > 1:
        escaped = escaped[:-1] + "\\ "
    return escaped
