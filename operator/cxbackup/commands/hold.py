"""`cxbackup hold {list,add,release,restore} (--target DIR | -config FILE)`: legal holds on a backup target.

    cxbackup hold list    --target DIR [--json]
    cxbackup hold add     --target DIR HOLD... --reason TEXT
    cxbackup hold release --target DIR [--source SOURCE] HOLD... --reason TEXT
    cxbackup hold restore --target DIR

HOLD is `id:<recording id>`, `phone:<number>` (every recording with a number ending with it, as
`cxbackup search --phone` matches) or `partition:<name>`. Holds are kept in the target twice
(.cxbackup-ledger/holds.json, and a record of every change in the ledger, .cxbackup-ledger/hold-*.jsonl),
so every retention sweep and erasure on it respects them, and losing one file lifts none. `list` also
shows the holds RecordingBackups set (spec.retention.legalHolds, source `RecordingBackup <namespace>/<name>`).
A hold is lifted only by `release`, with a reason, recorded in the ledger: a hold removed from a
RecordingBackup's spec stays until it is released with `--source 'RecordingBackup <namespace>/<name>'`.
`restore` rebuilds a missing or damaged holds.json from the ledger's records (a damaged file is kept
next to it): until then no sweep or erasure deletes anything.
Exit codes: 0 done, 2 bad input, 3 another process is changing the holds, 5 the target cannot be read or
written, or its holds cannot be trusted (the message names the file and the fix).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from cxbackup.backup.holds import (
    CLI_SOURCE,
    Hold,
    HoldsDamagedError,
    parse_hold,
    read_hold_state,
    release_holds,
    restore_holds,
    update_holds,
)
from cxbackup.backup.targets import LockHolder
from cxbackup.commands.backuptarget import OpenedTarget, add_target_arguments, run_on_target
from cxbackup.commands.search import arg_type
from cxbackup.core.errors import EXIT_OK, EXIT_UNAVAILABLE
from cxbackup.core.logs import setup_logging

__all__ = ["register", "run"]


def _reason(text: str) -> str:
    value = text.strip()
    if not value:
        raise ValueError("give a reason (a case reference)")
    return value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=(__doc__ or "").split("\n\n")[0])
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="show every hold on the target")
    add_target_arguments(listing)
    listing.add_argument("--json", action="store_true", help="print one JSON document")
    add = actions.add_parser(
        "add",
        help="add holds",
        epilog="Example: cxbackup hold add --target /backup phone:+16478389001 --reason 'case 2026-44'",
    )
    add_target_arguments(add)
    add.add_argument("holds", nargs="+", type=arg_type(parse_hold), metavar="HOLD",
                     help="id:<recording id>, phone:<number> or partition:<name>")  # fmt: skip
    add.add_argument(
        "--reason", required=True, type=arg_type(_reason), help="why (a case reference); shown by `hold list`"
    )
    release = actions.add_parser(
        "release",
        aliases=["remove"],
        help="lift holds, with a reason (recorded in the target's ledger)",
        epilog="Example: cxbackup hold release --target /backup --source 'RecordingBackup cc/recordings' "
        "partition:/legal --reason 'case 2026-44 closed'",
    )
    add_target_arguments(release)
    release.add_argument("holds", nargs="+", type=arg_type(parse_hold), metavar="HOLD")
    release.add_argument("--reason", required=True, type=arg_type(_reason),
                         help="why the hold ends (a case reference); kept in the ledger")  # fmt: skip
    release.add_argument("--source", default=CLI_SOURCE, metavar="SOURCE",
                         help="whose holds: `cli` (default, set with `hold add`) or "
                         "`RecordingBackup <namespace>/<name>` (as `hold list` shows them)")  # fmt: skip
    restore = actions.add_parser("restore", help="rebuild a missing or damaged holds.json from the ledger's records")
    add_target_arguments(restore)
    for q, action in ((listing, "list"), (add, "add"), (release, "release"), (restore, "restore")):
        q.set_defaults(func=run, parser=q, hold_action=action)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    return run_on_target(args, "hold", lambda opened: _act(args, opened))


def _holder() -> LockHolder:
    return LockHolder.current(datetime.now(UTC).isoformat(timespec="seconds"), "hold")


def _act(args: argparse.Namespace, opened: OpenedTarget) -> int:
    parser: argparse.ArgumentParser = args.parser
    action: str = args.hold_action
    if action == "list":
        return _list(args, opened)
    if action == "restore":
        restored = restore_holds(opened.target, _holder())
        kept = f"; the damaged file is kept as {restored.kept_damaged}" if restored.kept_damaged else ""
        print(f"Rebuilt the holds of {opened.target.description} from its ledger: {len(restored.holds.all())} "
              f"hold(s){kept}. Check them with `cxbackup hold list`.")  # fmt: skip
        return EXIT_OK
    wanted: list[Hold] = args.holds
    if action == "add":
        new = [Hold(h.kind, h.value, args.reason) for h in wanted]
        after = update_holds(opened.target, CLI_SOURCE, lambda cur: [*cur, *new], _holder())
        problem = read_hold_state(opened.target).problem
        if problem is not None:
            print(f"cxbackup hold: the hold(s) are recorded in the target's ledger, but {problem}", file=sys.stderr)
            return EXIT_UNAVAILABLE
        print(f"{len(after)} hold(s) set with `cxbackup hold` on {opened.target.description}")
        return EXIT_OK
    state = read_hold_state(opened.target)
    if state.problem is not None:
        raise HoldsDamagedError(state.problem)
    keys = {h.key() for h in wanted}
    have = {h.key() for h in state.holds.of(args.source)}
    missing = keys - have
    if missing:
        names = ", ".join(f"{k}:{v}" for k, v in sorted(missing))
        sources = ", ".join(repr(s) for s in sorted(state.holds.sources)) or "none"
        parser.error(f"no such hold of source {args.source!r}: {names} (sources with holds: {sources}; see "
                     "`cxbackup hold list`)")  # fmt: skip
    released = release_holds(opened.target, args.source, keys, args.reason, _holder())
    left = len(read_hold_state(opened.target).holds.of(args.source))
    print(f"Released {len(released)} hold(s) of {args.source!r} ({args.reason}), recorded in the target's ledger; "
          f"{left} left of that source")  # fmt: skip
    return EXIT_OK


def _list(args: argparse.Namespace, opened: OpenedTarget) -> int:
    state = read_hold_state(opened.target)
    sources = dict(state.holds.sources)
    if opened.config and opened.config.legal_holds:
        sources.setdefault("this config (legalHolds)", opened.config.legal_holds)
    if args.json:
        doc: dict[str, object] = {src: [h.to_json() for h in hs] for src, hs in sources.items()}
        json.dump(doc, sys.stdout, indent=2)
        print()
    elif not any(sources.values()):
        print("No legal hold on this target.")
    else:
        for src, hs in sorted(sources.items()):
            print(f"{src}:")
            for h in hs:
                since = f"  since {h.since}" if h.since else ""
                print(f"  {h.kind}:{h.value}{since}" + (f"  {h.reason}" if h.reason else ""))
    if state.problem is not None:
        print(f"cxbackup hold: {state.problem}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    return EXIT_OK
