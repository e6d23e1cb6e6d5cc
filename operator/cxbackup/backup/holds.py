"""Legal holds on backed-up recordings: what neither a retention sweep nor an erasure may delete.

A hold names recordings by recording id, by phone number (every number of the recording, as
`cxbackup search --phone` matches them: numbers ending with these digits), or by partition, with a
reason. Holds live in the target itself, next to the recordings they protect, so every tool that deletes
from the target (the worker's sweep, `cxbackup retention`, `cxbackup erase`) reads the same holds, whoever
set them. They are kept twice, so that losing one file never lifts a hold:

    <target>/.cxbackup-ledger/holds.json                       every source's current holds
    <target>/.cxbackup-ledger/hold-<UTC time>-<label>-<random>.jsonl   one file per change (the hold records)

holds.json keeps one list per source: `cli` for holds set with `cxbackup hold`, and `RecordingBackup
<namespace>/<name>` for the holds a RecordingBackup's `spec.retention.legalHolds` states. A hold record
is written whole and never changed: its first line says who changed what and when, each further line is
one `set` or `release` of one hold of one source, with its reason. Replaying the records in order gives
the holds again.

The holds that protect are those of holds.json together with those the records give (`read_holds`), so
a holds.json replaced by an old or empty copy, or a lost record, never lifts one. Deleting needs both:
once the ledger holds a hold record, a holds.json that is missing, empty or cannot be read stops every
deletion (`HoldsDamagedError`, naming the file and the fix: `cxbackup hold restore`, which rebuilds it
from the records); a record that cannot be read stops them too.

A hold is lifted only by a release (`release_holds`, `cxbackup hold release --reason`), which is
recorded. `update_holds`, the sync of a source's list (each backup run writes its RecordingBackup's
`legalHolds`), adds holds and never removes one: a hold the source no longer states is kept, and logged,
until it is released.

Every change is made while holding the lock `.cxbackup-ledger/.holds-lock`: the record is written
first, then holds.json whole (temporary name then rename; one PUT on S3), so a crash in between leaves
the record, which keeps the hold (a release then takes effect when it is run again).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
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
    "RECORD_PREFIX",
    "Hold",
    "HoldChange",
    "HoldKind",
    "HoldState",
    "Holds",
    "HoldsDamagedError",
    "Restored",
    "held_clause",
    "parse_hold",
    "parse_holds_property",
    "read_hold_state",
    "read_holds",
    "release_holds",
    "restore_holds",
    "update_holds",
]

log = logging.getLogger("cxbackup.backup")

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

    def safe_describe(self) -> str:
        """As `describe`, a phone number only by its last four digits (for reports that leave the target)."""
        value = f"ending {self.value[-4:]}" if self.kind == "phone" else self.value
        return f"{self.kind} {value}" + (f" ({self.reason})" if self.reason else "")

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


class HoldsDamagedError(TargetError):
    """The target's holds cannot be trusted (holds.json missing although holds were recorded, or a file that
    cannot be read): nothing may be deleted until it is repaired; the message names the file and the fix."""


RECORD_PREFIX = "hold-"
"""Hold records in the ledger: `hold-<UTC time>-<label>-<random>.jsonl`."""
_RESTORE_HINT = (
    "run `cxbackup hold restore` on this target (it rebuilds the file from the ledger's hold records), or restore "
    "it from a copy of the target"
)


def _stamp(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _unique(holds: Iterable[Hold]) -> list[Hold]:
    seen: dict[tuple[str, str], Hold] = {}
    for h in holds:
        seen.setdefault(h.key(), h)
    return list(seen.values())


@dataclass(frozen=True)
class Holds:
    """Every source's holds."""

    sources: dict[str, tuple[Hold, ...]]

    def all(self) -> tuple[Hold, ...]:
        return tuple(_unique(h for holds in self.sources.values() for h in holds))

    def of(self, source: str) -> tuple[Hold, ...]:
        return self.sources.get(source, ())

    def keys(self) -> set[tuple[str, str, str]]:
        """(source, kind, value) of every hold."""
        return {(src, *h.key()) for src, holds in self.sources.items() for h in holds}

    def union(self, other: Holds) -> Holds:
        """Every hold of either (this one's first, so its reason and time are kept)."""
        merged = {src: tuple(_unique([*self.of(src), *other.of(src)])) for src in {*self.sources, *other.sources}}
        return Holds({src: holds for src, holds in merged.items() if holds})

    def to_text(self) -> str:
        doc = {
            "version": 1,
            "sources": {src: [h.to_json() for h in holds] for src, holds in sorted(self.sources.items()) if holds},
        }
        return json.dumps(doc, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_text(cls, text: str, where: str) -> Holds:
        """holds.json's text; HoldsDamagedError when it is empty or not such a document (never guess: a hold
        that cannot be read must stop deletions, not be ignored)."""
        try:
            if not text.strip():
                raise ValueError("the file is empty")
            doc = json.loads(text)
            if not isinstance(doc, dict) or not isinstance(doc["sources"], dict):
                raise TypeError("not a holds document")
            sources = {
                str(src): tuple(
                    Hold(h["kind"], str(h["value"]), str(h.get("reason", "")), str(h.get("since", ""))) for h in items
                )
                for src, items in doc["sources"].items()
            }
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise HoldsDamagedError(f"{where} cannot be read ({exc})") from None
        return cls(sources)


@dataclass(frozen=True)
class HoldChange:
    """One line of a hold record: a hold of a source set or released."""

    action: Literal["set", "release"]
    source: str
    hold: Hold

    def to_json(self) -> dict[str, str]:
        return {"action": self.action, "source": self.source, **self.hold.to_json()}


@dataclass(frozen=True)
class HoldState:
    """The target's holds as both copies give them, and whether they can be trusted."""

    where: str
    """holds.json, as a path or URL of the target."""
    file: Holds | None
    """holds.json (None when it is missing or cannot be read)."""
    file_error: str | None
    """Why holds.json cannot be read (None when it is missing or fine)."""
    recorded: Holds
    """What replaying the ledger's hold records gives."""
    records: int
    """Hold records in the ledger (0: no hold was ever recorded on this target)."""
    record_error: str | None = None

    @property
    def holds(self) -> Holds:
        """Every hold either copy names: what protects recordings."""
        return (self.file or Holds({})).union(self.recorded)

    @property
    def problem(self) -> str | None:
        """Why nothing may be deleted, with the fix; None when the holds can be trusted."""
        if self.record_error is not None:
            return self.record_error
        if self.file_error is not None:
            fix = _RESTORE_HINT if self.records else "restore it from a copy of the target"
            return f"{self.file_error}; nothing is deleted until it is repaired: {fix}"
        if self.file is None and self.records:
            return (
                f"{self.where} is missing, but the ledger records legal holds ({self.records} hold record(s) in "
                f"{LEDGER_DIR}); nothing is deleted until it is back: {_RESTORE_HINT}"
            )
        return None

    def check(self) -> Holds:
        """The holds, or HoldsDamagedError naming the file and the fix."""
        if (problem := self.problem) is not None:
            raise HoldsDamagedError(problem)
        return self.holds


def _where(target: BackupTarget, path: str) -> str:
    return f"{target.description.rstrip('/')}/{path}"


def _read_small(target: BackupTarget, path: str) -> str | None:
    """The text of `path` (None when it does not exist); HoldsDamagedError when it is too large or not UTF-8."""
    size = target.size_of(path)
    if size is None:
        return None
    if size > _MAX_BYTES:
        raise HoldsDamagedError(f"{_where(target, path)} cannot be read (larger than {_MAX_BYTES} bytes)")
    try:
        return target.read_bytes(path).decode("utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise HoldsDamagedError(f"{_where(target, path)} cannot be read (not UTF-8 text)") from None


def _record_names(target: BackupTarget) -> list[str]:
    lister = getattr(target, "list_folder", None)
    if lister is None:
        return []
    return sorted(n for n in lister(LEDGER_DIR) if n.startswith(RECORD_PREFIX) and n.endswith(".jsonl"))


def _replay(target: BackupTarget, names: Sequence[str]) -> tuple[Holds, str | None]:
    """The holds the records `names` give, in order; and why one cannot be read."""
    current: dict[str, dict[tuple[str, str], Hold]] = {}
    for name in names:
        path = f"{LEDGER_DIR}/{name}"
        try:
            text = _read_small(target, path) or ""
        except HoldsDamagedError as exc:
            return Holds({}), f"{exc}; nothing is deleted until it is restored from a copy of the target"
        for n, line in enumerate(text.splitlines()[1:], 2):
            try:
                row = json.loads(line)
                hold = Hold(row["kind"], str(row["value"]), str(row.get("reason", "")), str(row.get("since", "")))
                action, source = row["action"], str(row["source"])
                if action not in ("set", "release"):
                    raise ValueError(f"unknown action {action!r}")
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                return Holds({}), (
                    f"{_where(target, path)} line {n} cannot be read ({type(exc).__name__}); it records legal holds: "
                    "nothing is deleted until it is restored from a copy of the target"
                )
            held = current.setdefault(source, {})
            if action == "set":
                held.setdefault(hold.key(), hold)
            else:
                held.pop(hold.key(), None)
    return Holds({src: tuple(h.values()) for src, h in current.items() if h}), None


def read_hold_state(target: BackupTarget) -> HoldState:
    """Both copies of the target's holds; never raises for a damaged holds.json (see `HoldState.problem`)."""
    where = _where(target, HOLDS_FILE)
    file: Holds | None = None
    file_error: str | None = None
    try:
        text = _read_small(target, HOLDS_FILE)
        if text is not None:
            file = Holds.from_text(text, where)
    except HoldsDamagedError as exc:
        file_error = str(exc)
    names = _record_names(target)
    recorded, record_error = _replay(target, names)
    return HoldState(where, file, file_error, recorded, len(names), record_error)


def read_holds(target: BackupTarget) -> Holds:
    """The holds that protect the target's recordings (holds.json's and the ledger's records'); HoldsDamagedError
    when they cannot be trusted: callers that delete stop, callers that list say so."""
    return read_hold_state(target).check()


@contextlib.contextmanager
def _holds_lock(
    target: BackupTarget, holder: LockHolder, wait: float, sleep: Callable[[float], None]
) -> Iterator[None]:
    """The holds lock, waiting up to `wait` seconds for another writer (the shards of one backup start
    together and each writes its list)."""
    _ensure_ledger(target)
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


def _record(
    target: BackupTarget, holder: LockHolder, changes: Sequence[HoldChange], note: str = "", *, always: bool = False
) -> str | None:
    """Write one hold record (nothing when there is no change, unless `always`); returns its path."""
    if not changes and not always:
        return None
    when = datetime.now(UTC)
    label = "".join(c if c.isalnum() or c in "-_" else "-" for c in holder.shard)[:40] or "hold"
    name = f"{LEDGER_DIR}/{RECORD_PREFIX}{when.strftime('%Y%m%dT%H%M%S%fZ')}-{label}-{os.urandom(3).hex()}.jsonl"
    header: dict[str, object] = {"kind": "hold", "at": _stamp(when), "by": holder.describe(), "changes": len(changes)}
    if note:
        header["note"] = note
    lines = [json.dumps(header, sort_keys=True), *(json.dumps(c.to_json(), sort_keys=True) for c in changes)]
    target.write_text_atomic(name, "\n".join(lines) + "\n")
    return name


def update_holds(
    target: BackupTarget,
    source: str,
    change: Callable[[tuple[Hold, ...]], Sequence[Hold]],
    holder: LockHolder,
    *,
    wait: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[Hold, ...]:
    """Add the holds `change(current)` names to `source`'s; returns the source's holds after. A hold of the
    source that `change` leaves out is not lifted: it is kept, and logged, until `release_holds` lifts it.

    New holds are recorded in the ledger first (with their `since` time), then written into holds.json, under
    the holds lock. When both copies already hold exactly that, nothing is locked or written (every shard of
    every run syncs its backup's holds at its start: usually a no-op, and shards must not queue for the lock).
    When holds.json cannot be trusted (`HoldState.problem`), new holds are recorded in the ledger only (they
    protect from then on, and `cxbackup hold restore` puts them into the file) and the problem is logged:
    holds.json is never rewritten over a damaged or missing file."""
    state = read_hold_state(target)
    wanted = _unique(change(state.holds.of(source)))
    if _in_sync(state, source, wanted):
        _say_kept(source, state.holds.of(source), wanted)
        return state.holds.of(source)
    with _holds_lock(target, holder, wait, sleep):
        state = read_hold_state(target)
        current = state.holds.of(source)
        known = {h.key(): h for h in current}
        now = _stamp(datetime.now(UTC))
        added = [Hold(h.kind, h.value, h.reason, h.since or now) for h in wanted if h.key() not in known]
        after = (*current, *added)
        # first the record: what holds.json has and the records lack (a hold set before holds were recorded),
        # and the new holds
        _record(target, holder, [*_unrecorded(state), *(HoldChange("set", source, h) for h in added)])
        if state.problem is not None:
            log.error("Legal holds of %s recorded in the ledger only: %s", source, state.problem)
        else:
            holds = Holds({**state.holds.sources, source: after})
            if state.file is None or state.file.keys() != holds.keys():
                target.write_text_atomic(HOLDS_FILE, holds.to_text())
    _say_kept(source, after, wanted)
    return after


def _in_sync(state: HoldState, source: str, wanted: Sequence[Hold]) -> bool:
    """True when there is nothing to write: every wanted hold is held, and both copies agree (or holds.json
    cannot be trusted, and then only a new hold would be recorded)."""
    have = {h.key() for h in state.holds.of(source)}
    if not all(h.key() in have for h in wanted):
        return False
    if state.problem is not None:
        return True
    if state.file is None:
        return state.records == 0 and not state.holds.sources
    return state.file.keys() == state.recorded.keys()


def _unrecorded(state: HoldState) -> list[HoldChange]:
    """`set` changes for the holds holds.json has and the records do not."""
    recorded = state.recorded.keys()
    return [
        HoldChange("set", src, h) for src, holds in state.holds.sources.items() for h in holds
        if (src, *h.key()) not in recorded
    ]  # fmt: skip


def _say_kept(source: str, holds: Sequence[Hold], wanted: Sequence[Hold]) -> None:
    keys = {h.key() for h in wanted}
    for h in holds:
        if h.key() not in keys:
            log.warning(
                "Legal hold %s of %s is no longer in its list but is kept: a hold is lifted only by `cxbackup hold "
                "release --source '%s' %s:<value> --reason TEXT` (see `cxbackup hold list`)",
                h.safe_describe(), source, source, h.kind,
            )  # fmt: skip


def release_holds(
    target: BackupTarget,
    source: str,
    keys: Iterable[tuple[str, str]],
    reason: str,
    holder: LockHolder,
    *,
    wait: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[Hold, ...]:
    """Lift `source`'s holds `keys` ((kind, value)), with `reason`: recorded in the ledger, then removed from
    holds.json. Returns the released holds. HoldsDamagedError when the holds cannot be trusted (restore
    them first); KeyError naming the keys the source does not hold."""
    wanted = set(keys)
    with _holds_lock(target, holder, wait, sleep):
        state = read_hold_state(target)
        current = state.check().of(source)
        missing = wanted - {h.key() for h in current}
        if missing:
            raise KeyError(sorted(missing))
        released = [h for h in current if h.key() in wanted]
        note = f"released: {reason}"
        _record(target, holder, [HoldChange("release", source, h) for h in released], note)
        sources = dict(state.holds.sources)
        sources[source] = tuple(h for h in current if h.key() not in wanted)
        target.write_text_atomic(HOLDS_FILE, Holds(sources).to_text())
    for h in released:
        log.warning("Legal hold %s of %s released: %s", h.safe_describe(), source, reason)
    return tuple(released)


@dataclass(frozen=True)
class Restored:
    holds: Holds
    kept_damaged: str | None
    """Where the damaged holds.json was kept, when there was one."""


def restore_holds(target: BackupTarget, holder: LockHolder, *, wait: float = 60.0) -> Restored:
    """Rebuild holds.json from the ledger's hold records (and what holds.json still holds, when it can be read),
    keeping a damaged file as `holds.json.damaged-<time>`; recorded in the ledger. HoldsDamagedError when a
    record cannot be read or there is nothing to rebuild from."""
    with _holds_lock(target, holder, wait, time.sleep):
        state = read_hold_state(target)
        if state.record_error is not None:
            raise HoldsDamagedError(state.record_error)
        if state.records == 0 and state.file_error is not None:
            raise HoldsDamagedError(
                f"{state.file_error}, and the ledger holds no hold record to rebuild it from: restore it from a "
                "copy of the target"
            )
        kept = None
        size = target.size_of(HOLDS_FILE)
        if state.file_error is not None and size is not None and size <= _MAX_BYTES:
            kept = f"{HOLDS_FILE}.damaged-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}"
            target.write_text_atomic(kept, target.read_bytes(HOLDS_FILE).decode("utf-8", errors="replace"))
        holds = state.holds
        _record(target, holder, _unrecorded(state), "holds.json restored", always=True)
        target.write_text_atomic(HOLDS_FILE, holds.to_text())
    log.warning("%s rebuilt from the ledger's hold records: %d hold(s)", state.where, len(holds.all()))
    return Restored(holds, kept)


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
