"""`cxbackup retention (--target DIR | -config FILE) [--keep-for P7Y] [--delete [--confirm-keep-for P90D]]
[--json]`: the retention sweep of a backup target.

Without --delete (the default) it is a dry run: it counts the recordings whose start time is more than
--keep-for (else the config's retentionPeriod) ago, how many of them legal holds keep, and names the
first of them; nothing is changed. With --delete it deletes them from the target and the search index,
except the held ones, and records each deletion in the target's ledger (.cxbackup-ledger/retention-*).
Holds: the target's (`cxbackup hold`), and with -config also the config's legalHolds; when the target's
holds cannot be trusted (holds.json missing or damaged), nothing is deleted and the message names the
fix. --delete refuses a keep-for shorter than P1Y unless --confirm-keep-for repeats it exactly (a typo
such as P7D for P7Y would otherwise delete recordings for good).

It works from the search index and holds every shard's backup lock while it runs, so no backup adds
recordings meanwhile. Exit codes: 0 done (recordings legal holds keep are part of done: a sweep is
meant to keep them), 1 some recordings could not be deleted (listed; they are kept and the next sweep
tries again), 2 bad input or no index, 3 a backup run holds a lock, 5 the target cannot be read or
written, or its holds cannot be trusted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime

from cxbackup.backup.holds import read_holds
from cxbackup.backup.removal import MIN_KEEP_FOR, SweepSummary, keep_for_problem, sweep_shard
from cxbackup.commands.backuptarget import (
    OpenedTarget,
    add_target_arguments,
    all_shards_locked,
    label_of,
    run_on_target,
)
from cxbackup.commands.search import arg_type
from cxbackup.core.errors import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from cxbackup.core.logs import setup_logging
from cxbackup.core.times import Period, format_ms, from_ms, iso, parse_period

__all__ = ["held_phrase", "register", "run"]

log = logging.getLogger("cxbackup.backup")


def _period(text: str) -> tuple[str, Period]:
    return text.strip().upper(), parse_period(text)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str) -> None:
    p = sub.add_parser(
        name,
        help=help_text,
        description=(__doc__ or "").split("\n\n")[0],
        epilog="Example: cxbackup retention --target /backup --keep-for P7Y   (then add --delete)",
    )
    add_target_arguments(p)
    p.add_argument(
        "--keep-for",
        type=arg_type(_period),
        metavar="DURATION",
        help="ISO 8601 duration from each recording's start time (P7Y, P90D); default: the config's retentionPeriod",
    )
    p.add_argument("--delete", action="store_true", help="delete the expired recordings (default: dry run)")
    p.add_argument(
        "--confirm-keep-for",
        metavar="DURATION",
        help=f"with --delete, the keep-for again: needed when it is shorter than {MIN_KEEP_FOR}",
    )
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=run, parser=p)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    return run_on_target(args, "retention", lambda opened: _start(args, opened))


def _start(args: argparse.Namespace, opened: OpenedTarget) -> int:
    keep = args.keep_for
    if keep is None and opened.config is not None and opened.config.retention_period:
        keep = (opened.config.retention_period, opened.config.retention)
    if keep is None:
        args.parser.error("give --keep-for DURATION (or a -config with retentionPeriod)")
    if args.delete:
        name = "--keep-for" if args.keep_for is not None else f"the retentionPeriod of {args.config}"
        names = (name, "the vendor's retention", "--confirm-keep-for")
        if keep_for_problem(keep[0], None, args.confirm_keep_for, now=datetime.now(UTC), names=names) is not None:
            args.parser.error(
                f"{name} ({keep[0]}) is shorter than {MIN_KEEP_FOR}: --delete then needs --confirm-keep-for "
                f"{keep[0]} (a typo such as P7D for P7Y would delete recordings for good); leave out --delete "
                "for a dry run"
            )
    return _sweep(args, opened, keep[0], keep[1])


def _sweep(args: argparse.Namespace, opened: OpenedTarget, keep_for: str, period: Period) -> int:
    names = opened.index_names()
    if not names:
        print(f"cxbackup retention: {opened.where} has no search index; {opened.build_hint(args)}", file=sys.stderr)
        return EXIT_CONFIG
    now = datetime.now(UTC)
    total: SweepSummary | None = None
    with all_shards_locked(opened, names, "retention"):
        holds = read_holds(opened.target).all() + (opened.config.legal_holds if opened.config else ())
        for name in names:
            with opened.editing(name) as index:
                result = sweep_shard(
                    opened.target,
                    index,
                    keep_for=keep_for,
                    period=period,
                    holds=holds,
                    now=now,
                    dry_run=not args.delete,
                    label=label_of(name),
                    progress=lambda s: log.info("%d recordings deleted, %d failed", s.deleted, s.failed),
                )
            if total is None:
                total = result
            else:
                total.add(result)
    assert total is not None
    _report(args, opened, total, len({h.key() for h in holds}))
    return EXIT_FAILED if total.failed else EXIT_OK


def held_phrase(held: int, holds: int) -> str:
    """What legal holds kept: `held` recordings (past retention, not deleted), `holds` holds in force
    (distinct holds of the target, and of the configuration, whether or not they kept anything)."""
    if not holds:
        return "no legal hold is in force"
    recordings = f"{held} recording{'' if held == 1 else 's'}"
    return f"{recordings} past retention kept by legal holds ({holds} legal hold{'' if holds == 1 else 's'} in force)"


def _iso(ms: int | None) -> str | None:
    return iso(from_ms(ms)) if ms is not None else None


def _report(args: argparse.Namespace, opened: OpenedTarget, s: SweepSummary, holds: int) -> None:
    if args.json:
        doc = s.to_json() | {
            "holdsInForce": holds,
            "target": opened.where,
            "recordings": [{"id": i, "startTime": _iso(ms)} for i, ms in s.examples],
            "failures": [{"id": i, "reason": r} for i, r in s.failures],
            "ledger": s.ledger,
        }
        json.dump(doc, sys.stdout, indent=2)
        print()
        return
    cutoff = format_ms(s.cutoff_ms)
    kept = held_phrase(s.held, holds)
    if s.dry_run:
        print(
            f"Dry run on {opened.where}: {s.expired} recordings started before {cutoff} (keep for {s.keep_for}) "
            f"would be deleted; {kept}. Nothing was changed; run again with --delete to delete them."
        )
        shown = s.examples
    else:
        print(
            f"Deleted {s.deleted} recordings ({s.deleted_bytes:,} bytes) of {opened.where} started before {cutoff} "
            f"(keep for {s.keep_for}); {kept}; {s.failed} could not be deleted."
        )
        shown = s.examples
    for rec_id, ms in shown:
        print(f"  {format_ms(ms)}  {rec_id}")
    if len(shown) < (s.expired if s.dry_run else s.deleted):
        print(f"  ... and {(s.expired if s.dry_run else s.deleted) - len(shown)} more")
    for rec_id, why in s.failures:
        print(f"  not deleted {rec_id}: {why}", file=sys.stderr)
    if s.ledger:
        print(f"Recorded in {len(s.ledger)} ledger file(s): {s.ledger[0]}{' ...' if len(s.ledger) > 1 else ''}")
