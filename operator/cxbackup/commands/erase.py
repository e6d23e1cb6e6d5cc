"""`cxbackup erase (--target DIR | -config FILE) (--phone N | --agent NAME | --id ID | --subject-file FILE)...
--request REF [--from T] [--to T] [--execute] [--json] [--result-file FILE]`: erase a data subject's recordings
from a backup target.

Without --execute (the default) it lists what would be erased and what legal holds keep; nothing is
changed. With --execute it first records the erasure in the target's ledger
(.cxbackup-ledger/erasure-*.jsonl: recording ids, times and the --request reference, no phone number
or name), from which moment no backup run downloads these recordings again, even while the vendor
still holds them; then it deletes their folders (every file; on S3 every version) and their search
index entries, and records each one's outcome. Recordings under a legal hold (`cxbackup hold`, or the
config's legalHolds) are refused and listed. `cxbackup audit` reports erased recordings as erased,
not as missing.

--subject-file names the subject without putting it on the command line: `phone:<number>` or
`agent:<name>` per line (a RecordingErasure's pod reads it from a Secret). --result-file writes the
counts and the first recordings as JSON (what the operator puts in the RecordingErasure's status).

It works from the search index and holds every shard's backup lock while it runs. Exit codes (the
first that applies): 5 the target cannot be read or written, or its holds cannot be trusted; 3 a backup
run holds a lock; 2 bad input or no index; 1 some recordings could not be erased (listed; run it again);
6 (--execute only) every recording found was erased except those legal holds keep (listed as held: the
request is not fully done until the holds are released and the erasure is run again), or 0 with
--exit-zero-when-held (for a caller that reads the held count from --json or --result-file); 0 done:
every recording found was erased, a dry run, or nothing matched (the output says why).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

from cxbackup.api.erasure import MAX_LISTED, ErasureRecording, ErasureResult
from cxbackup.backup.console import write_summary_file
from cxbackup.backup.holds import read_holds
from cxbackup.backup.index import ShardIndex
from cxbackup.backup.removal import ErasureReport, erase
from cxbackup.backup.search import (
    MAX_LIMIT,
    Coverage,
    SearchQuery,
    SearchResult,
    explain_empty,
    parse_phone,
    parse_time_bound,
)
from cxbackup.commands.backuptarget import (
    OpenedTarget,
    add_target_arguments,
    all_shards_locked,
    run_on_target,
)
from cxbackup.commands.export import read_subject_file
from cxbackup.commands.search import arg_type, nonempty
from cxbackup.core.errors import EXIT_CONFIG, EXIT_FAILED, EXIT_OK
from cxbackup.core.logs import setup_logging
from cxbackup.core.times import format_ms
from cxbackup.export.errors import ExportConfigError

__all__ = ["EXIT_HELD", "RESULT_LIMIT", "exit_code", "register", "result_document", "run"]

EXIT_HELD = 6
"""`erase --execute`: everything found was erased except the recordings legal holds keep (none failed)."""


def _request(text: str) -> str:
    value = text.strip()
    if not 1 <= len(value) <= 200 or any(not c.isprintable() for c in value):
        raise ValueError("give a reference of 1 to 200 printable characters (a ticket or case number)")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str) -> None:
    p = sub.add_parser(
        name,
        help=help_text,
        description=(__doc__ or "").split("\n\n")[0],
        epilog="Example: cxbackup erase --target /backup --phone '+1 647 838 9001' --request DSAR-2026-117   "
        "(then add --execute)",
    )
    add_target_arguments(p)
    p.add_argument("--phone", action="append", default=[], type=arg_type(parse_phone), metavar="NUMBER",
                   help="the subject's phone number (recordings with a number ending with it)")  # fmt: skip
    p.add_argument("--agent", action="append", default=[], type=arg_type(nonempty), metavar="NAME",
                   help="the subject's user or agent name, or agent id (case ignored)")  # fmt: skip
    p.add_argument("--id", action="append", default=[], type=arg_type(nonempty), metavar="ID",
                   help="a recording id (callUUID)")  # fmt: skip
    p.add_argument("--subject-file", type=Path, metavar="FILE",
                   help="the subject as phone:<number> / agent:<name> lines (off the command line)")  # fmt: skip
    p.add_argument("--from", dest="start_from", type=arg_type(parse_time_bound), metavar="TIME",
                   help="only recordings that started at or after TIME")  # fmt: skip
    p.add_argument("--to", dest="start_to", type=arg_type(parse_time_bound), metavar="TIME",
                   help="only recordings that started before TIME")  # fmt: skip
    p.add_argument("--request", required=True, type=arg_type(_request), metavar="REF",
                   help="the request's reference, kept in the ledger (a ticket number; no personal data)")  # fmt: skip
    p.add_argument("--execute", action="store_true", help="erase (default: only list what would be erased)")
    p.add_argument("--exit-zero-when-held", action="store_true",
                   help=f"exit 0, not {EXIT_HELD}, when legal holds kept some recordings and the rest were erased "
                   "(the held ones are still listed and counted)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.add_argument("--result-file", metavar="FILE",
                   help=f"also write the counts and the first {MAX_LISTED} recordings as JSON to FILE")  # fmt: skip
    p.set_defaults(func=run, parser=p)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    parser: argparse.ArgumentParser = args.parser
    phones, agents = list(args.phone), list(args.agent)
    if args.subject_file is not None:
        try:
            more_phones, more_agents = read_subject_file(args.subject_file)
        except ExportConfigError as exc:
            parser.error(str(exc))
        for n, text in enumerate(more_phones, 1):
            try:
                phones.append(parse_phone(text))
            except ValueError:
                parser.error(f"--subject-file {args.subject_file}: phone number {n} is not a phone number")
        agents += more_agents
    if not (phones or agents or args.id):
        parser.error("give the subject: at least one of --phone, --agent, --id, --subject-file")
    if args.start_from is not None and args.start_to is not None and args.start_from >= args.start_to:
        parser.error("argument --to: it must be after --from")
    query = SearchQuery(
        phones=tuple(phones),
        agents=tuple(agents),
        ids=tuple(args.id),
        start_from=args.start_from,
        start_to=args.start_to,
        limit=MAX_LIMIT,
    )
    return run_on_target(args, "erase", lambda opened: _erase(args, opened, query))


def _erase(args: argparse.Namespace, opened: OpenedTarget, query: SearchQuery) -> int:
    names = opened.index_names()
    if not names:
        print(f"cxbackup erase: {opened.where} has no search index; {opened.build_hint(args)}", file=sys.stderr)
        return EXIT_CONFIG
    with all_shards_locked(opened, names, "erase"), contextlib.ExitStack() as stack:
        holds = read_holds(opened.target).all() + (opened.config.legal_holds if opened.config else ())
        indexes = [stack.enter_context(opened.editing(name)) for name in names]
        report = erase(opened.target, indexes, query, holds, request=args.request, dry_run=not args.execute)
        why = _nothing_found(indexes, query) if not report.outcomes else ""
    _report(args, opened, report, why)
    if args.result_file:
        write_summary_file(args.result_file, result_document(report, why))
    return exit_code(report, zero_when_held=args.exit_zero_when_held)


def exit_code(report: ErasureReport, *, zero_when_held: bool = False) -> int:
    """1 when a recording could not be erased; EXIT_HELD when an executed erasure left held recordings (and
    not `zero_when_held`); else 0 (all erased, a dry run, or nothing found)."""
    if report.count("failed"):
        return EXIT_FAILED
    if not report.dry_run and report.count("held") and not zero_when_held:
        return EXIT_HELD
    return EXIT_OK


def _nothing_found(indexes: list[ShardIndex], query: SearchQuery) -> str:
    """Why no recording matched, with what the index holds (the criteria by kind, never their values)."""
    rows = [i.select("SELECT count(*), min(start_ms), max(start_ms) FROM recordings")[0] for i in indexes]
    firsts = [r[1] for r in rows if r[1] is not None]
    lasts = [r[2] for r in rows if r[2] is not None]
    coverage = Coverage(sum(int(r[0]) for r in rows), min(firsts, default=None), max(lasts, default=None))
    kinds = [f"{len(v)} {k}" for k, v in (("phone number(s)", query.phones), ("agent(s)", query.agents),
                                           ("id(s)", query.ids)) if v]  # fmt: skip
    result = SearchResult(matches=[], total=0, files=len(indexes), coverage=coverage)
    return explain_empty(result, query, "the subject's " + ", ".join(kinds))


def _report(args: argparse.Namespace, opened: OpenedTarget, report: ErasureReport, why: str) -> None:
    if args.json:
        doc = report.to_json() | {"target": opened.where} | ({"explanation": why} if why else {})
        json.dump(doc, sys.stdout, indent=2)
        print()
        return
    if not report.outcomes:
        print(f"{why} Nothing to erase in {opened.where}.")
        return
    counts = ", ".join(f"{report.count(k)} {k}" for k in ("to-erase", "erased", "held", "failed") if report.count(k))
    if report.dry_run:
        print(f"Dry run on {opened.where}: {counts}. Nothing was changed; run again with --execute to erase.")
    else:
        print(f"Erasure {args.request} on {opened.where}: {counts}. Recorded in {report.ledger}.")
    for o in report.outcomes:
        print(f"  {o.outcome:<8}  {format_ms(o.start_ms)}  {o.id}" + (f"  ({o.detail})" if o.detail else ""))
    held = report.count("held")
    if held and not report.dry_run:
        what = f"{held} recording under a legal hold was" if held == 1 else f"{held} recordings under legal holds were"
        print(
            f"Not complete: {what} not erased; run this erasure again once the hold is released "
            "(`cxbackup hold release`)."
        )


RESULT_LIMIT = 3500
"""Bytes of the result document at most: a pod's termination message holds 4096."""


def result_document(report: ErasureReport, explanation: str) -> str:
    """The report as ErasureResult JSON: every count, and the first recordings that fit (at most MAX_LISTED
    and RESULT_LIMIT bytes in all)."""
    result = ErasureResult(
        dry_run=report.dry_run,
        to_erase=report.count("to-erase"),
        erased=report.count("erased"),
        held=report.count("held"),
        failed=report.count("failed"),
        ledger=report.ledger or "",
        explanation=explanation[:500],
    )
    # held and failed ones first: they are what a person has to act on
    order = {"failed": 0, "held": 1}
    listed: list[ErasureRecording] = []
    for o in sorted(report.outcomes, key=lambda o: order.get(o.outcome, 2))[:MAX_LISTED]:
        row = o.row(**({"detail": o.detail[:200]} if o.detail else {}))
        candidate = [*listed, ErasureRecording.model_validate(row)]
        if len(result.model_copy(update={"recordings": candidate}).model_dump_json(by_alias=True)) > RESULT_LIMIT:
            break
        listed = candidate
    return result.model_copy(update={"recordings": listed or None}).model_dump_json(by_alias=True, exclude_none=True)
