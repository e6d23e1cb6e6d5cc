"""Deleting backed-up recordings: the retention sweep and erasure, and the ledger that records both.

Both work from the search index (index.py), one shard file at a time, and never delete what a legal
hold protects (holds.py): each reads the target's holds itself, besides those the caller gives, and
stops (HoldsDamagedError) when they cannot be trusted. The caller holds the shard's backup lock (the
worker its own; the commands every shard's), so no run adds entries meanwhile.

Retention sweep (`sweep_shard`): the expired recordings are those whose start time is before
`now - keepFor`; in a dry run they are only counted and listed. Whoever asks for a deleting sweep checks
`keep_for_problem` first: keepFor at least the vendor's retention, or MIN_KEEP_FOR when that is not
known. Deleting goes in batches of BATCH:

1. each recording's folder is removed from the target (targets.py `remove_folder`: media files first,
   the metadata file last, on S3 every version of every object);
2. the batch is recorded in the ledger (below): recording id, start time, when it was deleted, files
   and bytes;
3. its entries are removed from the index.

A crash between 1 and 3 leaves entries whose folders are (partly) gone: the next sweep removes what is
left and records them again, so the ledger may name a recording twice but never misses one. A
recording S3 refuses to delete (Object Lock) or that fails keeps its entry and is counted; its
metadata file stays while any of its media does.

Erasure (`erase`): the recordings a search finds (by phone number, agent or id), except the held ones,
are first written to the ledger as an erasure (ids and times only, no phone number or name): from that
moment every backup run skips them (`erased_ids`), even while the vendor still holds them. Then they
are removed as above, and the erasure's ledger file is rewritten with each one's outcome.

Ledger: `<target>/.cxbackup-ledger/<kind>-<UTC time>-<label>-<random>.jsonl`, kind `retention` or
`erasure`, each file written whole (temporary name then rename; one PUT on S3) and never changed
afterwards except an erasure's outcome. Line 1 describes the operation, each further line one
recording. Nothing in it is personal data: recording ids, times, counts, the request reference the
user gave.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cxbackup.backup.errors import RcbsError, TargetError
from cxbackup.backup.holds import LEDGER_DIR, Hold, held_clause, read_holds
from cxbackup.backup.index import ShardIndex
from cxbackup.backup.search import SearchQuery, where_clauses
from cxbackup.backup.targets import BackupTarget, FolderRemoval, RemovableTarget
from cxbackup.core.times import Period, from_ms, iso, parse_period, to_ms

__all__ = [
    "BATCH",
    "MIN_KEEP_FOR",
    "ErasureOutcome",
    "ErasureReport",
    "SweepSummary",
    "deleted_ids",
    "erase",
    "erased_ids",
    "erasure_candidates",
    "keep_for_problem",
    "ledger_name",
    "remove_batch",
    "sweep_shard",
    "write_ledger",
]

log = logging.getLogger("cxbackup.backup")

BATCH = 500
REMOVE_WORKERS = 16
"""Recording folders removed at a time (each is a listing and a delete on S3)."""
SHOWN = 20
"""Recordings a dry run names (the counts cover all of them)."""


MIN_KEEP_FOR = "P1Y"
"""The shortest keepFor a deleting sweep accepts, unless the vendor's retention period is known or the
keepFor is confirmed. A backup exists to keep recordings longer than the vendor does, and vendors keep them
months; without that period a typo (P7D or P7M for P7Y) cannot be told from a policy. So a shorter keepFor
needs the vendor's period (RecordingBackup `source.retentionDays`: keepFor may then be as short as that),
or a confirmation that repeats it exactly (`retention.confirmKeepFor`, `cxbackup retention
--confirm-keep-for`): a typo is then made twice or refused, and a later change of keepFor is not confirmed
by an old confirmation."""


def keep_for_problem(
    keep_for: str,
    vendor_days: int | None,
    confirmed: str | None,
    *,
    now: datetime,
    names: tuple[str, str, str] = ("keepFor", "retentionDays", "confirmKeepFor"),
) -> str | None:
    """Why a deleting sweep may not use `keep_for` (None when it may): shorter than the vendor's retention
    `vendor_days` (it would delete recordings the vendor still holds, and stop backing them up; no
    confirmation changes that); or, when that is not known, shorter than MIN_KEEP_FOR and not `confirmed`
    (the same duration again). `names` name the three settings in the message."""
    keep, vendor, confirm = names
    period = parse_period(keep_for)
    if vendor_days:
        if now + period < now + parse_period(f"P{vendor_days}D"):
            return (
                f"{keep} ({keep_for}) is shorter than {vendor} ({vendor_days}): with sweep Delete the backup would "
                f"delete recordings the vendor still holds, and stop backing them up; keep them at least "
                f"P{vendor_days}D (or set sweep to DryRun)"
            )
        return None
    if now + period >= now + parse_period(MIN_KEEP_FOR):
        return None
    if confirmed is not None and confirmed.strip().upper() == keep_for.strip().upper():
        return None
    return (
        f"{keep} ({keep_for}) is shorter than {MIN_KEEP_FOR} and {vendor} is not set: a deleting sweep then needs "
        f"{keep} of at least {MIN_KEEP_FOR} (a typo such as P7D for P7Y would delete recordings for good); set "
        f"{vendor} to the vendor's retention period (then {keep} may be as short as that), or confirm this "
        f"{keep} by repeating it in {confirm}, or set sweep to DryRun"
    )


def _protecting(target: BackupTarget, holds: Sequence[Hold]) -> tuple[Hold, ...]:
    """The target's holds (HoldsDamagedError when they cannot be trusted) and `holds`."""
    seen: dict[tuple[str, str], Hold] = {}
    for h in (*read_holds(target).all(), *holds):
        seen.setdefault(h.key(), h)
    return tuple(seen.values())


def ledger_name(kind: str, label: str, when: datetime) -> str:
    stamp = when.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"{LEDGER_DIR}/{kind}-{stamp}-{label}-{os.urandom(3).hex()}.jsonl"


def write_ledger(target: BackupTarget, name: str, header: dict[str, object], rows: Iterable[dict[str, object]]) -> None:
    """Write ledger file `name` whole: the header line, then one line per row."""
    make = getattr(target, "make_private_folder", None)
    if make is not None:
        make(LEDGER_DIR)
    lines = [json.dumps(header, sort_keys=True)] + [json.dumps(r, sort_keys=True) for r in rows]
    target.write_text_atomic(name, "\n".join(lines) + "\n")


def _ledger_ids(target: BackupTarget, kinds: tuple[str, ...]) -> dict[str, str]:
    """recording id -> kind, of the recordings the ledger files of `kinds` name (not the held ones)."""
    if not isinstance(target, RemovableTarget):
        return {}
    ids: dict[str, str] = {}
    for name in sorted(target.list_folder(LEDGER_DIR)):
        kind = name.partition("-")[0]
        if kind not in kinds or not name.endswith(".jsonl"):
            continue
        text = target.read_text(f"{LEDGER_DIR}/{name}")
        for n, line in enumerate((text or "").splitlines()[1:], 2):
            try:
                row = json.loads(line)
                rec_id, outcome = row["id"], row.get("outcome")
                if not isinstance(rec_id, str):
                    raise TypeError("id is not a string")
            except (ValueError, KeyError, TypeError, AttributeError) as exc:
                # never guess: an erasure that cannot be read must stop the run, not let a recording back
                raise TargetError(
                    f"{LEDGER_DIR}/{name} line {n} cannot be read ({type(exc).__name__}); restore the file from a "
                    "copy of the target (it lists erased or deleted recordings)"
                ) from None
            if outcome != "held":
                ids[rec_id] = kind
    return ids


def erased_ids(target: BackupTarget) -> frozenset[str]:
    """Every recording id an erasure named: a backup run never downloads these again."""
    return frozenset(_ledger_ids(target, ("erasure",)))


def deleted_ids(target: BackupTarget) -> dict[str, str]:
    """recording id -> `erasure` or `retention`: every deletion the ledger records (for the audit)."""
    return _ledger_ids(target, ("retention", "erasure"))


@dataclass(frozen=True)
class Candidate:
    rec: int
    id: str
    start_ms: int | None
    folder: str


@dataclass
class Removed:
    """Outcome of one recording's removal."""

    candidate: Candidate
    removal: FolderRemoval | None = None
    error: str | None = None

    @property
    def deleted(self) -> bool:
        return self.error is None and self.removal is not None and not self.removal.kept


def remove_batch(target: RemovableTarget, batch: Sequence[Candidate], workers: int = REMOVE_WORKERS) -> list[Removed]:
    """Remove the folders of `batch`, `workers` at a time; never raises for one recording."""

    def one(c: Candidate) -> Removed:
        try:
            removal = target.remove_folder(c.folder)
        except (OSError, RcbsError, ValueError) as exc:
            return Removed(c, error=getattr(exc, "strerror", None) or str(exc))
        if removal.kept:
            return Removed(c, removal, error="the target refused: " + "; ".join(removal.kept[:3]))
        return Removed(c, removal)

    if len(batch) <= 1 or workers <= 1:
        return [one(c) for c in batch]
    with ThreadPoolExecutor(max_workers=min(workers, len(batch)), thread_name_prefix="remove") as pool:
        return list(pool.map(one, batch))


def _start_time(ms: int | None) -> str | None:
    return iso(from_ms(ms)) if ms is not None else None


def _row(r: Removed, when: datetime) -> dict[str, object]:
    c = r.candidate
    row: dict[str, object] = {"id": c.id, "startTime": _start_time(c.start_ms)}
    if r.deleted:
        assert r.removal is not None
        row.update(deletedAt=iso(when), files=r.removal.files, bytes=r.removal.bytes)
    return row


# ============================================================================== retention sweep


@dataclass
class SweepSummary:
    """One shard's sweep (or the sum of several)."""

    keep_for: str
    cutoff_ms: int
    dry_run: bool
    expired: int = 0  # expired and not held: deleted, or to be deleted in a dry run
    held: int = 0  # expired but under a legal hold: kept
    deleted: int = 0
    deleted_bytes: int = 0
    failed: int = 0  # could not be deleted (the target refused, or an error): kept, counted again next time
    examples: list[tuple[str, int | None]] = field(default_factory=list)  # (id, start) of the first SHOWN
    failures: list[tuple[str, str]] = field(default_factory=list)
    ledger: list[str] = field(default_factory=list)

    def add(self, other: SweepSummary) -> None:
        self.expired += other.expired
        self.held += other.held
        self.deleted += other.deleted
        self.deleted_bytes += other.deleted_bytes
        self.failed += other.failed
        self.examples = (self.examples + other.examples)[:SHOWN]
        self.failures = (self.failures + other.failures)[:100]
        self.ledger += other.ledger

    def to_json(self) -> dict[str, object]:
        return {
            "keepFor": self.keep_for,
            "expiredBefore": iso(from_ms(self.cutoff_ms)),
            "dryRun": self.dry_run,
            "expired": self.expired,
            "held": self.held,
            "deleted": self.deleted,
            "deletedBytes": self.deleted_bytes,
            "failed": self.failed,
        }


def sweep_shard(
    target: BackupTarget,
    index: ShardIndex,
    *,
    keep_for: str,
    period: Period,
    holds: Sequence[Hold],
    now: datetime,
    dry_run: bool,
    label: str,
    progress: Callable[[SweepSummary], object] | None = None,
) -> SweepSummary:
    """Delete (or with `dry_run` count) the recordings of `index` that started before `now - period` and
    are not held (by `holds` or by the target's own holds); see the module docstring for the order of the
    steps. HoldsDamagedError, before anything is deleted, when the target's holds cannot be trusted."""
    holds = _protecting(target, holds)
    cutoff = to_ms(now - period)
    summary = SweepSummary(keep_for, cutoff, dry_run)
    held_sql, held_params = held_clause(holds, fts=index.uses_fts)
    expired_sql = "r.start_ms IS NOT NULL AND r.start_ms < ?"
    counts = index.select(
        f"SELECT count(*), coalesce(sum({held_sql}), 0) FROM recordings r WHERE {expired_sql}",  # noqa: S608
        [*held_params, cutoff],
    )[0]
    summary.held = int(counts[1])
    summary.expired = int(counts[0]) - summary.held
    if summary.expired == 0:
        return summary
    select = (
        f"SELECT r.rec, r.id, r.start_ms, r.folder FROM recordings r WHERE {expired_sql} AND NOT {held_sql} "  # noqa: S608
        "AND (r.start_ms > ? OR (r.start_ms = ? AND r.id > ?)) ORDER BY r.start_ms, r.id LIMIT ?"
    )
    after: tuple[int, str] = (-(1 << 62), "")
    if dry_run:
        rows = index.select(select, [cutoff, *held_params, after[0], after[0], after[1], SHOWN])
        summary.examples = [(str(r[1]), r[2]) for r in rows]
        return summary
    if not isinstance(target, RemovableTarget):
        raise TargetError(f"{target.description} cannot delete recordings")
    while True:
        rows = index.select(select, [cutoff, *held_params, after[0], after[0], after[1], BATCH])
        if not rows:
            break
        after = (int(rows[-1][2]), str(rows[-1][1]))
        batch = [Candidate(int(r[0]), str(r[1]), r[2], str(r[3])) for r in rows]
        outcome = remove_batch(target, batch)
        when = datetime.now(UTC)
        done = [r for r in outcome if r.deleted]
        if done:
            name = ledger_name("retention", label, when)
            header = {
                "kind": "retention",
                "at": iso(when),
                "keepFor": keep_for,
                "expiredBefore": iso(from_ms(cutoff)),
                "recordings": len(done),
            }
            write_ledger(target, name, header, (_row(r, when) for r in done))
            summary.ledger.append(name)
            index.remove(r.candidate.id for r in done)
        for r in outcome:
            if r.deleted:
                assert r.removal is not None
                summary.deleted += 1
                summary.deleted_bytes += r.removal.bytes
                if len(summary.examples) < SHOWN:
                    summary.examples.append((r.candidate.id, r.candidate.start_ms))
            else:
                summary.failed += 1
                if len(summary.failures) < 100:
                    summary.failures.append((r.candidate.id, r.error or "not deleted"))
        if progress is not None:
            progress(summary)
    return summary


# ============================================================================== erasure


@dataclass(frozen=True)
class ErasureOutcome:
    id: str
    start_ms: int | None
    outcome: str  # erased | held | failed | to-erase (dry run)
    detail: str = ""

    def row(self, outcome: str | None = None, **extra: object) -> dict[str, object]:
        """Its line in a report or the ledger: id, start time, outcome (or `outcome`), and `extra`."""
        return {"id": self.id, "startTime": _start_time(self.start_ms), "outcome": outcome or self.outcome, **extra}


def erasure_candidates(
    index: ShardIndex, query: SearchQuery, holds: Sequence[Hold]
) -> tuple[list[Candidate], list[tuple[Candidate, str]]]:
    """(the recordings of `index` that `query` finds and no hold protects, the held ones with the hold)."""
    clauses, params = where_clauses(query, fts=index.uses_fts)
    if not clauses:
        raise ValueError("an erasure needs at least one criterion")
    rows = index.select(
        f"SELECT r.rec, r.id, r.start_ms, r.folder FROM recordings r WHERE {' AND '.join(clauses)} "  # noqa: S608
        "ORDER BY r.start_ms, r.id",
        params,
    )
    found = [Candidate(int(r[0]), str(r[1]), r[2], str(r[3])) for r in rows]
    held: dict[int, str] = {}
    for h in holds:
        h_clauses, h_params = where_clauses(h.query(), fts=index.uses_fts)
        marks = ", ".join("?" * len(found))
        for chunk_start in range(0, len(found), 900):
            chunk = found[chunk_start : chunk_start + 900]
            marks = ", ".join("?" * len(chunk))
            for (rec,) in index.select(
                f"SELECT r.rec FROM recordings r WHERE r.rec IN ({marks}) AND {' AND '.join(h_clauses)}",  # noqa: S608
                [*(c.rec for c in chunk), *h_params],
            ):
                held.setdefault(int(rec), h.safe_describe())
    free = [c for c in found if c.rec not in held]
    return free, [(c, held[c.rec]) for c in found if c.rec in held]


@dataclass
class ErasureReport:
    request: str
    dry_run: bool
    outcomes: list[ErasureOutcome] = field(default_factory=list)
    ledger: str | None = None

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes if o.outcome == outcome)

    def to_json(self) -> dict[str, object]:
        return {
            "request": self.request,
            "dryRun": self.dry_run,
            "ledger": self.ledger,
            "counts": {k: self.count(k) for k in ("to-erase", "erased", "held", "failed") if self.count(k)},
            "recordings": [o.row(**({"detail": o.detail} if o.detail else {})) for o in self.outcomes],
        }


def erase(
    target: BackupTarget,
    indexes: Sequence[ShardIndex],
    query: SearchQuery,
    holds: Sequence[Hold],
    *,
    request: str,
    dry_run: bool,
    now: datetime | None = None,
) -> ErasureReport:
    """Erase what `query` finds in `indexes` (every shard's file, opened for writing under every shard's
    lock), except recordings `holds` or the target's own holds protect; see the module docstring. With
    `dry_run`, only report. HoldsDamagedError, before anything is changed, when the target's holds cannot be
    trusted."""
    holds = _protecting(target, holds)
    report = ErasureReport(request, dry_run)
    plan: list[tuple[ShardIndex, list[Candidate]]] = []
    seen: set[str] = set()
    for index in indexes:
        free, held = erasure_candidates(index, query, holds)
        for c, why in held:
            if c.id not in seen:
                seen.add(c.id)
                report.outcomes.append(ErasureOutcome(c.id, c.start_ms, "held", f"legal hold: {why}"))
        mine = [c for c in free if c.id not in seen]
        seen.update(c.id for c in mine)
        plan.append((index, free))
        report.outcomes += [ErasureOutcome(c.id, c.start_ms, "to-erase") for c in mine]
    if dry_run or not report.outcomes:
        return report
    if not isinstance(target, RemovableTarget):
        raise TargetError(f"{target.description} cannot delete recordings")
    when = now or datetime.now(UTC)
    report.ledger = ledger_name("erasure", "request", when)
    header: dict[str, object] = {"kind": "erasure", "at": iso(when), "request": request}

    # first the ledger: from now on no backup run downloads these again, whatever happens next
    pending = (o.row(outcome="pending" if o.outcome == "to-erase" else o.outcome) for o in report.outcomes)
    write_ledger(target, report.ledger, header, pending)
    results: dict[str, Removed] = {}
    total = sum(len(free) for _, free in plan)
    for index, free in plan:
        for start in range(0, len(free), BATCH):
            outcome = remove_batch(target, free[start : start + BATCH])
            index.remove(r.candidate.id for r in outcome if r.deleted)
            results.update((r.candidate.id, r) for r in outcome)
            log.info("Erasure %s: %d of %d recordings handled", request, len(results), total)
    done_at = datetime.now(UTC)
    final: list[ErasureOutcome] = []
    for o in report.outcomes:
        r = results.get(o.id)
        if o.outcome != "to-erase":
            final.append(o)
        elif r is not None and r.deleted:
            final.append(ErasureOutcome(o.id, o.start_ms, "erased"))
        else:
            final.append(ErasureOutcome(o.id, o.start_ms, "failed", (r.error if r else None) or "not removed"))
    report.outcomes = final
    header["completedAt"] = iso(done_at)
    rows = (o.row(**({"erasedAt": iso(done_at)} if o.outcome == "erased" else {})) for o in final)
    write_ledger(target, report.ledger, header, rows)
    return report
