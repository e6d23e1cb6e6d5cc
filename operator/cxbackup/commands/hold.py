"""`cxbackup hold {list,add,remove} (--target DIR | -config FILE)`: legal holds on a backup target.

    cxbackup hold list   --target DIR [--json]
    cxbackup hold add    --target DIR HOLD... --reason TEXT
    cxbackup hold remove --target DIR HOLD...

HOLD is `id:<recording id>`, `phone:<number>` (every recording with a number ending with it, as
`cxbackup search --phone` matches) or `partition:<name>`. Holds are kept in the target
(.cxbackup-ledger/holds.json), so every retention sweep and erasure on it respects them; `list` also
shows the holds RecordingBackups set (spec.retention.legalHolds), which only they change.
Exit codes: 0 done, 2 bad input, 3 another process is changing the holds, 5 the target cannot be read
or written.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from cxbackup.backup.holds import CLI_SOURCE, Hold, parse_hold, read_holds, update_holds
from cxbackup.backup.targets import BackupTarget, LockHolder
from cxbackup.commands.backuptarget import OpenedTarget, add_target_arguments, run_on_target
from cxbackup.commands.search import arg_type
from cxbackup.core.errors import EXIT_OK
from cxbackup.core.logs import setup_logging

__all__ = ["register", "run"]


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
    add.add_argument("--reason", required=True, help="why (a case reference); shown by `hold list`")
    remove = actions.add_parser("remove", help="remove holds set with `hold add`")
    add_target_arguments(remove)
    remove.add_argument("holds", nargs="+", type=arg_type(parse_hold), metavar="HOLD")
    for q in (listing, add, remove):
        q.set_defaults(func=run, parser=q)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    return run_on_target(args, "hold", lambda opened: _act(args, opened))


def _act(args: argparse.Namespace, opened: OpenedTarget) -> int:
    parser: argparse.ArgumentParser = args.parser
    if args.action == "list":
        return _list(args, opened.target, opened.config.legal_holds if opened.config else ())
    holder = LockHolder.current(datetime.now(UTC).isoformat(timespec="seconds"), "hold")
    wanted: list[Hold] = args.holds
    if args.action == "add":
        reason = args.reason.strip()
        if not reason:
            parser.error("argument --reason: give a reason (a case reference)")
        new = [Hold(h.kind, h.value, reason) for h in wanted]
        after = update_holds(opened.target, CLI_SOURCE, lambda cur: [*cur, *new], holder)
        print(f"{len(after)} hold(s) set with `cxbackup hold` on {opened.target.description}")
        return EXIT_OK
    keys = {h.key() for h in wanted}
    before = read_holds(opened.target).sources.get(CLI_SOURCE, ())
    missing = keys - {h.key() for h in before}
    if missing:
        names = ", ".join(f"{k}:{v}" for k, v in sorted(missing))
        parser.error(f"no such hold set with `cxbackup hold add`: {names} (see `cxbackup hold list`)")
    after = update_holds(opened.target, CLI_SOURCE, lambda cur: [h for h in cur if h.key() not in keys], holder)
    print(f"Removed {len(keys)} hold(s); {len(after)} left set with `cxbackup hold`")
    return EXIT_OK


def _list(args: argparse.Namespace, target: BackupTarget, config_holds: tuple[Hold, ...]) -> int:
    holds = read_holds(target)
    sources = dict(holds.sources)
    if config_holds:
        sources.setdefault("this config (legalHolds)", config_holds)
    if args.json:
        json.dump({src: [h.to_json() for h in hs] for src, hs in sources.items()}, sys.stdout, indent=2)
        print()
        return EXIT_OK
    if not any(sources.values()):
        print("No legal hold on this target.")
        return EXIT_OK
    for src, hs in sorted(sources.items()):
        print(f"{src}:")
        for h in hs:
            since = f"  since {h.since}" if h.since else ""
            print(f"  {h.kind}:{h.value}{since}" + (f"  {h.reason}" if h.reason else ""))
    return EXIT_OK
