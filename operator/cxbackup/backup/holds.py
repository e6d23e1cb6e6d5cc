"""Legal holds on backed-up recordings: what neither a retention sweep nor an erasure may delete.

A hold names recordings by recording id, by phone number (every number of the recording, as
`cxbackup search --phone` matches them: numbers ending with these digits), or by partition, with a
reason. Holds live in the target itself, next to the recordings they protect:

    <target>/.cxbackup-ledger/holds.json

so every tool that deletes from the target (the worker's sweep, `cxbackup retention`, `cxbackup
erase`) reads the same holds, whoever set them. The file keeps one list per source: `cli` for holds
set with `cxbackup hold`, and `RecordingBackup <namespace>/<name>` for the holds a RecordingBackup's
`spec.retention.legalHolds` states (its worker writes its own list at the start of each run, so a hold
removed from the resource is removed from the target; no source touches another's list). A recording
is held when any hold of any source matches it.

The file is rewritten whole (temporary name then rename; one PUT on S3) while holding the lock
`.cxbackup-ledger/.holds-lock`, so two writers never lose each other's change.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from cxbackup.backup.errors import ConfigError, LockHeldError, TargetError
from cxbackup.backup.search import MIN_PHONE_DIGITS, SearchQuery, parse_phone, where_clauses
from cxbackup.backup.targets import BackupTarget, LockHolder

__all__ = [
    "CLI_SOURCE",
    "HOLDS_FILE",
    "HOLDS_LOCK",
    "LEDGER_DIR",
    "Hold",
    "HoldKind",
    "Holds",
    "held_clause",
    "parse_hold",
    "parse_holds_property",
    "read_holds",
    "update_holds",
]

LEDGER_DIR = ".cxbackup-ledger"
HOLDS_FILE = f"{LEDGER_DIR}/holds.json"
HOLDS_LOCK = f"{LEDGER_DIR}/.holds-lock"
CLI_SOURCE = "cli"
HoldKind = Literal["id", "phone", "partition"]
KINDS: tuple[HoldKind, ...] = ("id", "phone", "partition")
_MAX_BYTES = 16 << 20


@dataclass(frozen=True)
class Hold:
    kind: HoldKind
    value: str  # a recording id, the digits of a phone number, or a partition
    reason: str = ""
    since: str = ""  # when it was set (ISO 8601 UTC)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"{self.kind!r} is not a kind of hold (id, phone or partition)")
        if not self.value.strip():
            raise ValueError(f"a {self.kind} hold needs a value")
        if self.kind == "phone" and (not self.value.isdigit() or len(self.value) < MIN_PHONE_DIGITS):
            raise ValueError(f"{self.value!r} is not the digits of a phone number")

    def query(self) -> SearchQuery:
        """The search that finds what this hold protects."""
        if self.kind == "id":
            return SearchQuery(ids=(self.value,))
        if self.kind == "phone":
            return SearchQuery(phones=(self.value,))
        return SearchQuery(partitions=(self.value,))

    def describe(self) -> str:
        return f"{self.kind} {self.value}" + (f" ({self.reason})" if self.reason else "")

    def key(self) -> tuple[str, str]:
        return self.kind, self.value

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "value": self.value, "reason": self.reason, "since": self.since}


def parse_hold(text: str, reason: str = "") -> Hold:
    """`id:<recording id>`, `phone:<number>` or `partition:<name>`; ValueError naming what is wrong."""
    kind, sep, value = text.partition(":")
    kind = kind.strip().lower()
    if not sep or kind not in KINDS:
        raise ValueError(f"{text!r} is not a hold: write id:<recording id>, phone:<number> or partition:<name>")
    value = value.strip()
    if kind == "phone":
        value = parse_phone(value)
    return Hold(kind, value, reason)


def parse_holds_property(text: str | None) -> tuple[Hold, ...]:
    """The `legalHolds` property: comma-separated `kind:value` (a reason cannot be given there)."""
    holds = []
    for item in (text or "").split(","):
        if item.strip():
            try:
                holds.append(parse_hold(item))
            except ValueError as exc:
                raise ConfigError(f"legalHolds: {exc}") from None
    return tuple(holds)


@dataclass(frozen=True)
class Holds:
    """Every source's holds, as in the file."""

    sources: dict[str, tuple[Hold, ...]]

    def all(self) -> tuple[Hold, ...]:
        seen: dict[tuple[str, str], Hold] = {}
        for holds in self.sources.values():
            for h in holds:
                seen.setdefault(h.key(), h)
        return tuple(seen.values())

    def to_text(self) -> str:
        doc = {
            "version": 1,
            "sources": {src: [h.to_json() for h in holds] for src, holds in sorted(self.sources.items()) if holds},
        }
        return json.dumps(doc, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_text(cls, text: str | None, where: str) -> Holds:
        if text is None or not text.strip():
            return cls({})
        try:
            doc = json.loads(text)
            sources = {
                str(src): tuple(
                    Hold(h["kind"], str(h["value"]), str(h.get("reason", "")), str(h.get("since", ""))) for h in items
                )
                for src, items in doc["sources"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            # never guess: a hold that cannot be read must stop deletions, not be ignored
            raise TargetError(f"{where} cannot be read ({exc}); fix or restore it before deleting anything") from None
        return cls(sources)


def read_holds(target: BackupTarget) -> Holds:
    """The target's holds (none when it has no holds file); TargetError when the file is damaged."""
    text = target.read_text(HOLDS_FILE) if target.size_of(HOLDS_FILE) is not None else None
    if text is not None and len(text) > _MAX_BYTES:
        raise TargetError(f"{HOLDS_FILE} is larger than {_MAX_BYTES} bytes")
    return Holds.from_text(text, f"{target.description.rstrip('/')}/{HOLDS_FILE}")


@contextlib.contextmanager
def _holds_lock(
    target: BackupTarget, holder: LockHolder, wait: float, sleep: Callable[[float], None]
) -> Iterator[None]:
    """The holds lock, waiting up to `wait` seconds for another writer (the shards of one backup start
    together and each writes its list)."""
    deadline = time.monotonic() + wait
    while True:
        try:
            with target.lock(HOLDS_LOCK, holder):
                yield
            return
        except LockHeldError:
            if time.monotonic() >= deadline:
                raise
            sleep(0.2 + random.random() * 0.8)


def update_holds(
    target: BackupTarget,
    source: str,
    change: Callable[[tuple[Hold, ...]], Sequence[Hold]],
    holder: LockHolder,
    *,
    wait: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[Hold, ...]:
    """Replace `source`'s holds with `change(current)` under the holds lock; returns the new list.
    New holds get their `since` time; the file is written only when something changed. When the file
    already holds exactly that list, nothing is locked or written (every shard of every run syncs its
    backup's holds at its start: usually a no-op, and shards must not queue for the lock)."""
    unlocked = read_holds(target).sources.get(source, ())
    if [h.key() for h in unlocked] == [h.key() for h in _unique(change(unlocked))]:
        return unlocked
    _ensure_ledger(target)
    with _holds_lock(target, holder, wait, sleep):
        current = read_holds(target)
        before = current.sources.get(source, ())
        now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        known = {h.key(): h for h in before}
        after = tuple(
            known.get(h.key()) or Hold(h.kind, h.value, h.reason, h.since or now) for h in _unique(change(before))
        )
        if after != before:
            sources = dict(current.sources)
            sources[source] = after
            target.write_text_atomic(HOLDS_FILE, Holds(sources).to_text())
        return after


def _unique(holds: Iterable[Hold]) -> list[Hold]:
    seen: dict[tuple[str, str], Hold] = {}
    for h in holds:
        seen.setdefault(h.key(), h)
    return list(seen.values())


def _ensure_ledger(target: BackupTarget) -> None:
    make = getattr(target, "make_private_folder", None)
    if make is not None:
        make(LEDGER_DIR)


def held_clause(holds: Sequence[Hold], *, fts: bool = True) -> tuple[str, list[object]]:
    """An SQL condition over `recordings r` true for a held recording ("0" when there is no hold)."""
    if not holds:
        return "0", []
    parts: list[str] = []
    params: list[object] = []
    for h in holds:
        clauses, p = where_clauses(h.query(), fts=fts)
        parts.append("(" + " AND ".join(clauses) + ")")
        params.extend(p)
    return "(" + " OR ".join(parts) + ")", params
