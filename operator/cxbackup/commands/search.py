"""`cxbackup search (--target DIR | -config FILE) [criteria] [--json]`: find backed-up recordings.

Criteria (all must match; a repeated option matches any of its values): --phone (a number ending with
these digits), --agent (agent or user name, or agent id, also a screen recording's agentID; case
ignored), --from/--to (start time), --partition (exact), --access-group (the group and every group
under it: /Anthony covers /Anthony/John, not /Anthonyx; / covers all), --id, --text (words in the
metadata; case and the accents of Latin letters ignored). Prints a table, or JSON with --json.
Exit codes: 0 done (also when nothing matches: the output says why), 2 bad input or no index, 5 an
index file cannot be read.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sqlite3
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cxbackup.backup.errors import ConfigError, RcbsError
from cxbackup.backup.index import INDEX_DIR, index_files
from cxbackup.backup.search import (
    MAX_LIMIT,
    SearchQuery,
    SearchResult,
    explain_empty,
    fts_query,
    parse_phone,
    parse_time_bound,
    search_index,
)
from cxbackup.commands.backuptarget import TARGET_FLAGS, TargetChoiceError, add_target_arguments, target_dir_of
from cxbackup.core.errors import EXIT_CONFIG, EXIT_OK, EXIT_UNAVAILABLE
from cxbackup.core.logs import setup_logging
from cxbackup.core.times import format_ms

if TYPE_CHECKING:
    from cxbackup.backup.config import RcbsConfig
    from cxbackup.backup.s3target import S3BucketTarget
    from cxbackup.backup.targets import BackupTarget

__all__ = [
    "OpenedIndex",
    "arg_type",
    "check_index",
    "index_read_error",
    "nonempty",
    "open_index",
    "register",
    "run",
]

log = logging.getLogger("cxbackup.backup")


def arg_type(parse: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse type from a parser raising ValueError (argparse then names the option, exit 2)."""

    def convert(text: str) -> object:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def _limit(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise ValueError(f"{text!r} is not a number from 1 to {MAX_LIMIT}")
    return int(text)


def _text(text: str) -> str:
    fts_query(text)
    return text


def nonempty(text: str) -> str:
    if not text.strip():
        raise ValueError("an empty value matches nothing")
    return text.strip()


@dataclass(frozen=True)
class OpenedIndex:
    """A backup target opened for reading through its search index."""

    root: Path
    """The folder holding INDEX_DIR: the target folder, or a private temporary copy of an S3 target's index."""
    where: str
    """The target's description (its folder, or s3://bucket/prefix/)."""
    build_hint: str
    """How to build the index when there is none."""
    target: BackupTarget
    """The target itself, to read the recordings' files from."""


def _s3_index_copy(config: RcbsConfig, stack: contextlib.ExitStack) -> tuple[Path, S3BucketTarget]:
    """The index files of the config's S3 target, downloaded into a private temporary folder (removed on
    exit), and the target."""
    import shutil
    import tempfile

    from cxbackup.backup.config import Credentials
    from cxbackup.backup.connections import open_target
    from cxbackup.backup.index import NAME_PATTERN
    from cxbackup.backup.s3target import S3BucketTarget

    target = open_target(config, Credentials.from_env(os.environ), create=False)
    assert isinstance(target, S3BucketTarget)
    root = Path(tempfile.mkdtemp(prefix="cxbackup-search-"))
    stack.callback(shutil.rmtree, root, True)
    (root / INDEX_DIR).mkdir()
    names = [n for n in target.list_folder(INDEX_DIR) if NAME_PATTERN.match(n)]
    for name in names:
        log.info("Reading the search index %s%s/%s", target.description, INDEX_DIR, name)
        target.download_to(f"{INDEX_DIR}/{name}", root / INDEX_DIR / name)
    return root, target


def open_index(
    target: Path | None, config_path: str | None, stack: contextlib.ExitStack, flags: tuple[str, str] = TARGET_FLAGS
) -> OpenedIndex:
    """The target of `target` (a folder) or of the config file `config_path` (its targetDir or S3 bucket)
    with its index; TargetChoiceError or RcbsError (ConfigError: the config; else the bucket cannot be
    read) when it cannot be opened. `flags` name the two options in messages and hints."""
    from cxbackup.backup.targets import LocalDirectoryTarget

    if config_path is not None:
        from cxbackup.backup.console import load_config_file

        config = load_config_file(config_path)
        if config.target_s3_bucket:
            root, s3 = _s3_index_copy(config, stack)
            hint = f"build it from the bucket with `cxbackup index -config {config_path}`"
            return OpenedIndex(root, s3.description, hint, s3)
    root = target_dir_of(target, config_path, flags)
    hint = f"build it from the backed-up tree with `cxbackup index --target {root}`"
    return OpenedIndex(root, str(root), hint, LocalDirectoryTarget(root, create=False))


def check_index(index: OpenedIndex) -> str | None:
    """Why the index cannot be searched (no index files, files readable by their owner only), or None."""
    files = index_files(index.root / INDEX_DIR)
    if not files:
        return f"{index.where} has no search index; {index.build_hint}"
    unreadable = [p for p in files if not os.access(p, os.R_OK)]
    if unreadable:
        owner = unreadable[0].stat().st_uid
        return (
            f"{unreadable[0]} is readable by its owner only (user id {owner}; it holds phone numbers): run the "
            "search as that user"
        )
    return None


def index_read_error(exc: sqlite3.Error, where: str) -> str:
    """What to say when an index file of `where` cannot be read."""
    if getattr(exc, "sqlite_errorname", "") == "SQLITE_READONLY_ROLLBACK":
        why = (
            "a backup run stopped while writing it, and a search never writes: the next backup run of "
            "that shard repairs it, or rebuild the index with"
        )
    else:
        why = f"{exc}; rebuild the index with"
    return f"an index file of {where} cannot be read ({why} `cxbackup index`)"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str) -> None:
    p = sub.add_parser(
        name,
        help=help_text,
        description=(__doc__ or "").split("\n\n")[0],
        epilog="Example: cxbackup search --target /backup --phone '+1 647 838 9001' --from 2026-11-01 --to 2026-12-01",
    )
    add_target_arguments(p)
    p.add_argument(
        "--phone",
        action="append",
        default=[],
        type=arg_type(parse_phone),
        metavar="NUMBER",
        help="a phone number (caller, dialed, or of a participant); matches numbers ending with it",
    )
    p.add_argument(
        "--agent",
        action="append",
        default=[],
        type=arg_type(nonempty),
        metavar="NAME",
        help="agent or user name, or agent id, also a screen recording's agentID (exactly; case ignored)",
    )
    p.add_argument(
        "--from",
        dest="start_from",
        type=arg_type(parse_time_bound),
        metavar="TIME",
        help="recordings that started at or after TIME (2026-11-20, 2026-11-20T10:00, ...Z, epoch ms; UTC "
        "when no zone is given)",
    )
    p.add_argument(
        "--to",
        dest="start_to",
        type=arg_type(parse_time_bound),
        metavar="TIME",
        help="recordings that started before TIME",
    )
    p.add_argument(
        "--partition", action="append", default=[], type=arg_type(nonempty), metavar="P", help="partition (exactly)"
    )
    p.add_argument(
        "--access-group",
        action="append",
        default=[],
        type=arg_type(nonempty),
        metavar="G",
        help="access group G or one under it (/Anthony covers /Anthony/John, not /Anthonyx; / covers all)",
    )
    p.add_argument(
        "--id", action="append", default=[], type=arg_type(nonempty), metavar="ID", help="recording id (callUUID)"
    )
    p.add_argument(
        "--text",
        type=arg_type(_text),
        metavar="WORDS",
        help="words that must all appear in the metadata (word* for a prefix; case and accents ignored)",
    )
    p.add_argument("--limit", type=arg_type(_limit), default=100, metavar="N", help="show at most N (default 100)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=run, parser=p)


def _criteria(args: argparse.Namespace) -> str:
    parts = [f"--phone {p}" for p in args.phone] + [f"--agent {a}" for a in args.agent]
    parts += [f"--partition {p}" for p in args.partition] + [f"--access-group {g}" for g in args.access_group]
    parts += [f"--id {i}" for i in args.id]
    if args.start_from is not None:
        parts.append(f"--from {format_ms(args.start_from)}")
    if args.start_to is not None:
        parts.append(f"--to {format_ms(args.start_to)}")
    if args.text is not None:
        parts.append(f"--text {args.text!r}")
    return " ".join(parts)


def _table(result: SearchResult) -> list[str]:
    header = ("START (UTC)", "ID", "CALLER", "DIALED", "AGENTS", "MEDIA", "FOLDER")
    rows = [
        (
            format_ms(m.start_ms),
            m.id,
            m.caller or "-",
            m.dialed or "-",
            ",".join(m.names) or "-",
            f"{sum(1 for x in m.media if x.path)}/{len(m.media)}",
            m.folder,
        )
        for m in result.matches
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]]


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    parser: argparse.ArgumentParser = args.parser
    query_args = (args.phone, args.agent, args.partition, args.access_group, args.id, args.text)
    if not any(query_args) and args.start_from is None and args.start_to is None:
        parser.error("give at least one of --phone, --agent, --from, --to, --partition, --access-group, --id, --text")
    if args.start_from is not None and args.start_to is not None and args.start_from >= args.start_to:
        parser.error(f"argument --to: {format_ms(args.start_to)} is not after --from {format_ms(args.start_from)}")
    with contextlib.ExitStack() as stack:
        try:
            index = open_index(args.target, args.config, stack)
        except TargetChoiceError as exc:
            parser.error(str(exc))
        except RcbsError as exc:
            if isinstance(exc, ConfigError):
                parser.error(f"-config: {exc}")
            print(f"cxbackup search: {exc}", file=sys.stderr)  # the bucket cannot be read
            return exc.exit_code
        return _search(args, index)


def _search(args: argparse.Namespace, index: OpenedIndex) -> int:
    index_dir = index.root / INDEX_DIR
    problem = check_index(index)
    if problem is not None:
        print(f"cxbackup search: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    query = SearchQuery(
        phones=tuple(args.phone),
        agents=tuple(args.agent),
        partitions=tuple(args.partition),
        access_groups=tuple(args.access_group),
        ids=tuple(args.id),
        start_from=args.start_from,
        start_to=args.start_to,
        text=args.text,
        limit=args.limit,
    )
    try:
        result = search_index(index_dir, query)
    except sqlite3.Error as exc:
        print(f"cxbackup search: {index_read_error(exc, index.where)}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    explanation = explain_empty(result, query, _criteria(args)) if not result.matches else None
    if args.json:
        doc: dict[str, object] = {
            "total": result.total,
            "totalIsExact": result.total_exact,
            "shown": len(result.matches),
            "recordings": [m.to_json() for m in result.matches],
        }
        if explanation:
            doc["explanation"] = explanation
        json.dump(doc, sys.stdout, indent=2)
        print()
        return EXIT_OK
    if explanation:
        print(explanation)
        return EXIT_OK
    for line in _table(result):
        print(line)
    if result.total > len(result.matches):
        total = f"{result.total:,}" if result.total_exact else f"more than {result.total:,}"
        print(
            f"{len(result.matches)} of {total} matches shown (in start time order); narrow the search or raise --limit"
        )
    else:
        print(f"{result.total} {'match' if result.total == 1 else 'matches'}")
    return EXIT_OK
