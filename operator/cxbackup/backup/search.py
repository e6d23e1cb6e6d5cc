"""Searching the index (index.py): the query, the SQL built from it, and results merged over the shard files.

Different criteria must all match; the values of one criterion are alternatives:

- phone numbers: a recording matches when one of its numbers (caller, dialed, the phone numbers of the
  people in eventHistory and of the media files' parameters) ends with the digits given; punctuation
  and `+` are ignored, at least MIN_PHONE_DIGITS digits are needed;
- agents: an agent or user name (`username`, `userName`), or an agent id (`agentId`, and a screen
  recording's `agentID`, whatever it holds), equal ignoring case;
- partitions: equal;
- access groups: the vendor's access rule, as the backup's accessGroups filter applies it (selection.py
  `path_covers`): group G covers a media file's access group when it is G or below G on whole path
  segments (`/Anthony` covers `/Anthony` and `/Anthony/John`, not `/Anthonyx`); `/` covers every access
  group. A leading `/` and trailing `/` are optional on both sides;
- time: the recording's start time in [from, to);
- text: every word appears in the metadata's text values (FTS5; a word ending in `*` is a prefix);
  words are quoted, so FTS5 operators in the input are taken as plain words. The index's tokenizer
  (unicode61) ignores case, and the accents of Latin letters (`Café` finds `cafe`).

Results are ordered by start time (then id), at most `limit` of them; `total` counts the matches, up
to COUNT_CAP per index file (then `total_exact` is false and `total` a lower bound).
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from cxbackup.backup.index import digits_of, fold_text, index_files, open_readonly
from cxbackup.core.times import format_ms, to_ms

__all__ = [
    "COUNT_CAP",
    "MAX_LIMIT",
    "MIN_PHONE_DIGITS",
    "Coverage",
    "Match",
    "MediaMatch",
    "SearchQuery",
    "SearchResult",
    "build_select",
    "explain_empty",
    "fts_query",
    "group_path",
    "parse_phone",
    "parse_time_bound",
    "search_index",
    "where_clauses",
]

MIN_PHONE_DIGITS = 4
COUNT_CAP = 10_000
"""Matches counted per index file; beyond it the total is given as "more than"."""
MAX_LIMIT = 100_000


def parse_phone(text: str) -> str:
    """The digits of a phone number given by a user; ValueError when it is not one."""
    stripped = text.strip()
    if not stripped or any(not (c.isdigit() or c in "+ -().") for c in stripped):
        raise ValueError(f"{text!r} is not a phone number (digits, optionally with + - ( ) and spaces)")
    digits = digits_of(stripped)
    if len(digits) < MIN_PHONE_DIGITS:
        raise ValueError(f"{text!r} has fewer than {MIN_PHONE_DIGITS} digits")
    return digits


def parse_time_bound(text: str) -> int:
    """Epoch ms of `2026-11-20`, `2026-11-20T10:00`, `...Z`, `...+01:00` (no zone: UTC) or epoch ms."""
    value = text.strip()
    if value.isdigit():
        return int(value)
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a time (use 2026-11-20, 2026-11-20T10:00, 2026-11-20T10:00:00Z or epoch ms)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return to_ms(when)


_WORD = re.compile(r"[^\W_]+")


def fts_query(text: str) -> str:
    """An FTS5 query where every word of `text` must appear; ValueError when there is no word.

    Words are split as the index's tokenizer splits them (letters and digits; everything else separates
    words, so `no-sale` is the words `no` and `sale`); each is quoted, so nothing in `text` is FTS5
    syntax. A word ending in `*` matches as a prefix.
    """
    parts = []
    for word in text.split():
        prefix = word.endswith("*")
        tokens = _WORD.findall(word)
        for i, token in enumerate(tokens):
            star = "*" if prefix and i == len(tokens) - 1 else ""
            parts.append(f'"{token}"{star}')
    if not parts:
        raise ValueError(f"{text!r} has no word to search for (letters or digits)")
    return " ".join(parts)


@dataclass(frozen=True)
class SearchQuery:
    phones: tuple[str, ...] = ()  # digits (parse_phone)
    agents: tuple[str, ...] = ()
    partitions: tuple[str, ...] = ()
    access_groups: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()
    start_from: int | None = None  # epoch ms, inclusive
    start_to: int | None = None  # epoch ms, exclusive
    text: str | None = None
    limit: int = 100

    def __post_init__(self) -> None:
        if not 1 <= self.limit <= MAX_LIMIT:
            raise ValueError(f"limit must be 1..{MAX_LIMIT}")
        if self.start_from is not None and self.start_to is not None and self.start_from >= self.start_to:
            raise ValueError("the start of the time range must be before its end")
        if self.text is not None:
            fts_query(self.text)
        for phone in self.phones:
            if not phone.isdigit() or len(phone) < MIN_PHONE_DIGITS:
                raise ValueError(f"{phone!r} is not the digits of a phone number")

    @property
    def is_empty(self) -> bool:
        return not (self.phones or self.agents or self.partitions or self.access_groups or self.ids or self.text) and (
            self.start_from is None and self.start_to is None
        )


def _marks(n: int) -> str:
    return ", ".join("?" * n)


def build_where(query: SearchQuery, *, fts: bool = True) -> tuple[str, list[object]]:
    """The WHERE clause (over `recordings r`) and its parameters. Values are always parameters."""
    clauses, params = where_clauses(query, fts=fts)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def where_clauses(query: SearchQuery, *, fts: bool = True) -> tuple[list[str], list[object]]:
    """The conditions (over `recordings r`, all to be met) and their parameters."""
    clauses: list[str] = []
    params: list[object] = []
    if query.start_from is not None:
        clauses.append("r.start_ms >= ?")
        params.append(query.start_from)
    if query.start_to is not None:
        clauses.append("r.start_ms < ?")
        params.append(query.start_to)
    if query.ids:
        clauses.append(f"r.id IN ({_marks(len(query.ids))})")
        params.extend(query.ids)
    if query.phones:
        # a number ends with the digits <=> its reversed digits start with them: a range on the key
        ranges = " OR ".join("(digits_rev >= ? AND digits_rev < ?)" for _ in query.phones)
        clauses.append(f"r.rec IN (SELECT rec FROM numbers WHERE {ranges})")  # noqa: S608 - only placeholders
        for phone in query.phones:
            params.extend((phone[::-1], phone[::-1] + ":"))  # ':' sorts right after '9'
    if query.agents:
        marks = _marks(len(query.agents))
        clauses.append(f"r.rec IN (SELECT rec FROM names WHERE name IN ({marks}))")  # noqa: S608 - placeholders
        params.extend(a.strip().lower() for a in query.agents)
    # A partition or access group holds a large share of all recordings: with any other criterion it is
    # checked per candidate (EXISTS on tags_rec) rather than listed whole (IN), which would turn a day of
    # one partition into a third of the index read.
    narrowed = bool(
        query.start_from is not None or query.start_to is not None or query.ids or query.phones or query.agents
    ) or (query.text is not None)
    if query.partitions:
        marks = _marks(len(query.partitions))
        if narrowed:
            clauses.append(
                f"EXISTS (SELECT 1 FROM tags t WHERE t.rec = r.rec AND t.kind = 'p' AND t.value IN ({marks}))"  # noqa: S608
            )
        else:
            clauses.append(f"r.rec IN (SELECT rec FROM tags WHERE kind = 'p' AND value IN ({marks}))")  # noqa: S608
        params.extend(query.partitions)
        narrowed = True
    if query.access_groups:
        terms = _group_terms(query.access_groups)
        if narrowed:
            covered = " OR ".join(f"({sql})" for sql, _ in terms)
            clauses.append(f"EXISTS (SELECT 1 FROM tags t WHERE t.rec = r.rec AND t.kind = 'g' AND ({covered}))")  # noqa: S608
        else:
            one = "SELECT t.rec FROM tags t WHERE t.kind = 'g' AND "
            union = " UNION ALL ".join(one + sql for sql, _ in terms)  # only placeholders in `sql`
            clauses.append(f"r.rec IN ({union})")
        params.extend(p for _, values in terms for p in values)
    if query.text is not None:
        if fts:
            clauses.append("r.rec IN (SELECT rowid FROM recording_text WHERE recording_text MATCH ?)")
            params.append(fts_query(query.text))
        else:
            words = _WORD.findall(query.text)  # letters and digits only: nothing for LIKE to interpret
            like = " AND ".join("text LIKE ?" for _ in words)
            clauses.append(f"r.rec IN (SELECT rowid FROM recording_text WHERE {like})")  # noqa: S608 - placeholders
            params.extend(f"%{fold_text(w)}%" for w in words)
    return clauses, params


def group_path(group: str) -> str:
    """An access group as a path: `/` and the segments (`Anthony/John/` -> `/Anthony/John`)."""
    return "/" + group.strip().strip("/")


def _group_terms(groups: Sequence[str]) -> list[tuple[str, list[object]]]:
    """Conditions on `t.value` (an access group of a media file), one of which is true when one of
    `groups` covers it: it is the group or below it on whole path segments, with or without its leading
    `/`, with or without a trailing `/`. Each is an equality or a range on the value: a search of the tags
    table's key, never a scan. `/` covers every access group: no condition on the value (`1`)."""
    terms: list[tuple[str, list[object]]] = []
    for group in groups:
        path = group_path(group)
        if path == "/":
            return [("1", [])]
        # '/' sorts right before '0': the values starting with P + '/' are those in [P + '/', P + '0')
        for form in (path, path[1:]):
            terms.append(("t.value = ?", [form]))
            terms.append(("t.value >= ? AND t.value < ?", [form + "/", form + "0"]))
    return terms


_COLUMNS = "r.rec, r.id, r.start_ms, r.stop_ms, r.caller, r.dialed, r.folder"


def build_select(query: SearchQuery, *, fts: bool = True) -> tuple[str, list[object]]:
    """The SELECT of the first `limit` matches in start time order, and its parameters."""
    where, params = build_where(query, fts=fts)
    sql = f"SELECT {_COLUMNS} FROM recordings r{where} ORDER BY r.start_ms, r.id LIMIT ?"  # noqa: S608
    return sql, [*params, query.limit]


def build_count(query: SearchQuery, *, fts: bool = True, cap: int = COUNT_CAP) -> tuple[str, list[object]]:
    """Count the matches, stopping at `cap` + 1 (a count of a quarter of a million costs a scan of them)."""
    where, params = build_where(query, fts=fts)
    return f"SELECT count(*) FROM (SELECT 1 FROM recordings r{where} LIMIT ?)", [*params, cap + 1]  # noqa: S608


@dataclass(frozen=True)
class MediaMatch:
    media_id: str
    type: str | None
    size: int | None
    path: str | None  # relative to the target; None when this media file was not backed up


@dataclass(frozen=True)
class Match:
    id: str
    start_ms: int | None
    stop_ms: int | None
    caller: str | None
    dialed: str | None
    folder: str
    metadata: str  # path relative to the target
    names: tuple[str, ...]
    partitions: tuple[str, ...]
    access_groups: tuple[str, ...]
    media: tuple[MediaMatch, ...]

    def to_json(self) -> dict[str, object]:
        def iso(ms: int | None) -> str | None:
            if ms is None:
                return None
            return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")

        return {
            "id": self.id,
            "startTime": iso(self.start_ms),
            "stopTime": iso(self.stop_ms),
            "callerPhoneNumber": self.caller,
            "dialedPhoneNumber": self.dialed,
            "agents": list(self.names),
            "partitions": list(self.partitions),
            "accessGroups": list(self.access_groups),
            "folder": self.folder,
            "metadata": self.metadata,
            "media": [{"mediaId": m.media_id, "type": m.type, "size": m.size, "path": m.path} for m in self.media],
        }


@dataclass(frozen=True)
class Coverage:
    """What the index files hold: the range of their start times, and (when nothing matched) how many
    recordings."""

    recordings: int
    first_start_ms: int | None
    last_start_ms: int | None


@dataclass
class SearchResult:
    matches: list[Match]
    total: int  # a lower bound when not total_exact
    files: int
    total_exact: bool = True
    coverage: Coverage = field(default_factory=lambda: Coverage(0, None, None))


def _details(db: sqlite3.Connection, row: Sequence[object]) -> Match:
    rec = row[0]
    folder = str(row[6])
    names = tuple(r[0] for r in db.execute("SELECT name FROM names WHERE rec = ? ORDER BY name", (rec,)))
    tags = db.execute("SELECT kind, value FROM tags WHERE rec = ? ORDER BY kind, value", (rec,)).fetchall()
    media = tuple(
        MediaMatch(media_id=m[0], type=m[1], size=m[2], path=f"{folder}/{m[4] or m[0]}" if m[3] else None)
        for m in db.execute(
            "SELECT media_id, type, size, stored, name FROM media WHERE rec = ? ORDER BY media_id", (rec,)
        )
    )
    return Match(
        id=str(row[1]),
        start_ms=row[2],  # type: ignore[arg-type]
        stop_ms=row[3],  # type: ignore[arg-type]
        caller=row[4],  # type: ignore[arg-type]
        dialed=row[5],  # type: ignore[arg-type]
        folder=folder,
        metadata=f"{folder}/{folder.rpartition('/')[2]}.json",  # layout.py: <folder>/<folder>.json
        names=names,
        partitions=tuple(v for k, v in tags if k == "p"),
        access_groups=tuple(v for k, v in tags if k == "g"),
        media=media,
    )


def _uses_fts(db: sqlite3.Connection) -> bool:
    row = db.execute("SELECT value FROM meta WHERE key = 'text'").fetchone()
    return row is None or row[0] == "fts5"


def search_index(index_dir: Path, query: SearchQuery, *, count: bool = True) -> SearchResult:
    """Run `query` over every index file in `index_dir` and merge (by start time, each id once).

    Each file gives its first `limit` matches; the details (names, groups, media) are read only for the
    `limit` shown after the merge.
    """
    files = index_files(index_dir)
    found: dict[str, tuple[tuple[int, str], sqlite3.Connection, Sequence[object]]] = {}
    total = 0
    exact = True
    first: int | None = None
    last: int | None = None
    dbs: list[sqlite3.Connection] = []
    try:
        for path in files:
            db = open_readonly(path)
            dbs.append(db)
            fts = _uses_fts(db)
            sql, params = build_select(query, fts=fts)
            for row in db.execute(sql, params):
                start = row[2] if isinstance(row[2], int) else -1
                found.setdefault(str(row[1]), ((start, str(row[1])), db, row))
            if count:
                sql, params = build_count(query, fts=fts)
                counted = int(db.execute(sql, params).fetchone()[0])
                exact = exact and counted <= COUNT_CAP
                total += min(counted, COUNT_CAP)
            lo = db.execute("SELECT min(start_ms) FROM recordings").fetchone()[0]
            hi = db.execute("SELECT max(start_ms) FROM recordings").fetchone()[0]
            if lo is not None:
                first = lo if first is None else min(first, lo)
                last = hi if last is None else max(last, hi)
        shown = sorted(found.values(), key=lambda item: item[0])[: query.limit]
        matches = [_details(db, row) for _, db, row in shown]
        recordings = 0
        if not matches:  # only to explain an empty result (a full count costs a scan)
            recordings = sum(int(db.execute("SELECT count(*) FROM recordings").fetchone()[0]) for db in dbs)
    finally:
        for db in dbs:
            db.close()
    return SearchResult(
        matches=matches,
        total=total if count else len(matches),
        total_exact=exact,
        files=len(files),
        coverage=Coverage(recordings, first, last),
    )


def explain_empty(result: SearchResult, query: SearchQuery, criteria: str) -> str:
    """Why nothing matched, with what the index holds: an empty index, a time range outside what it
    covers, or criteria nothing meets. `criteria` describes the query to whoever reads the explanation
    (the search command shows its options; an export, which is logged, describes them without values)."""
    cov = result.coverage
    if cov.first_start_ms is None:
        return "No recording matches: the index is empty (no backup run has completed a recording yet)."
    held = (
        f"the index holds {cov.recordings} recordings started from {format_ms(cov.first_start_ms)} to "
        f"{format_ms(cov.last_start_ms)}"
    )
    if query.start_from is not None and cov.last_start_ms is not None and query.start_from > cov.last_start_ms:
        return f"No recording matches: --from is after the last indexed recording; {held}."
    if query.start_to is not None and query.start_to <= cov.first_start_ms:
        return f"No recording matches: --to is before the first indexed recording; {held}."
    return f"No recording matches {criteria}; {held}."
