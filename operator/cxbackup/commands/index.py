"""`cxbackup index (--target DIR | -config FILE) [--shards N]`: rebuild the search index from the tree (a
folder, or with -config an S3 target's bucket).

Reads every recording's metadata (`<callUUID>/<callUUID>.json`) and the media files next to it, and
writes the index files anew (one per shard) under temporary names, renamed into place. It holds every
shard's backup lock from start to end, so no backup run adds entries meanwhile: while a run holds a
lock, it stops with exit 3 before writing anything. Exit codes: 0 done, 1 some metadata files could not be read (listed;
everything else is indexed), 2 bad input, 3 a backup run holds a lock, 5 the target cannot be written.
"""

from __future__ import annotations

import argparse
import logging
import re
import sqlite3
import sys
from pathlib import Path

from cxbackup.backup.config import RcbsConfig
from cxbackup.backup.errors import ConfigError, RcbsError
from cxbackup.backup.index import INDEX_DIR, RebuildSummary, index_files, rebuild_index, rebuild_object_index
from cxbackup.backup.s3target import S3BucketTarget
from cxbackup.backup.targets import LocalDirectoryTarget
from cxbackup.commands.backuptarget import TargetChoiceError, add_target_arguments, resolve_target_dir, shard_locker
from cxbackup.core.errors import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE
from cxbackup.core.logs import setup_logging

__all__ = ["register", "run"]

log = logging.getLogger("cxbackup.backup")

_LAYOUT = re.compile(r"-(\d+)-of-(\d+)\.(?:txt|sqlite3)$")


def _shards(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 1 to 1000")
    return int(text)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=(__doc__ or "").split("\n\n")[0])
    add_target_arguments(p)
    p.add_argument(
        "--shards",
        type=_shards,
        metavar="N",
        help="number of shards (totalRcbsInstances) the backups run with; default: the config's, else the "
        "number the target's files show, else 1",
    )
    p.set_defaults(func=run, parser=p)


def detect_shards(root: Path) -> int | None:
    """The shard count the target's checkpoint and index files name, when they agree on one."""
    names = [p.name for p in root.glob("last_recording_endtime-*-of-*.txt")]
    names += [p.name for p in index_files(root / INDEX_DIR)]
    totals = {int(m[2]) for n in names if (m := _LAYOUT.search(n))}
    return totals.pop() if len(totals) == 1 else None


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    parser: argparse.ArgumentParser = args.parser
    config = None
    try:
        if args.config is not None:
            from cxbackup.backup.console import load_config_file

            config = load_config_file(args.config)
        if config is not None and config.target_s3_bucket:
            return _run_bucket(args, config)
        root = resolve_target_dir(args)
    except TargetChoiceError as exc:
        parser.error(str(exc))
    except ConfigError as exc:
        parser.error(f"-config: {exc}")
    total = args.shards or (config.total_rcbs_instances if config is not None else None)
    total = total or detect_shards(root) or 1
    target = LocalDirectoryTarget(root, create=False)
    log.info("Indexing %s as %d shard file(s)", root, total)
    try:
        summary = rebuild_index(
            target.root, total, lock=shard_locker(target, "index"), progress=lambda n: log.info("%d recordings read", n)
        )
    except RcbsError as exc:  # LockHeldError (exit 3), TargetError
        log.error("%s; nothing was replaced", exc)
        return exc.exit_code
    except (OSError, sqlite3.Error) as exc:
        log.error("writing the index in %s failed: %s; nothing was replaced", root / INDEX_DIR, exc)
        return EXIT_UNAVAILABLE
    return _report(summary, str(root))


def _run_bucket(args: argparse.Namespace, config: RcbsConfig) -> int:
    """The rebuild of an S3 target's index: one listing of the bucket, 16 metadata reads at a time."""
    import os

    from cxbackup.backup.config import Credentials
    from cxbackup.backup.connections import open_target

    total = args.shards or config.total_rcbs_instances
    try:
        target = open_target(config, Credentials.from_env(os.environ), create=False)
        assert isinstance(target, S3BucketTarget)
        log.info("Indexing %s as %d shard file(s)", target.description, total)
        summary = rebuild_object_index(
            target, total, lock=shard_locker(target, "index"), progress=lambda n: log.info("%d recordings read", n)
        )
    except RcbsError as exc:  # LockHeldError (exit 3), TargetError (the bucket cannot be read or written)
        log.error("%s; nothing was replaced", exc)
        return exc.exit_code
    except (OSError, sqlite3.Error) as exc:
        log.error("building the index failed: %s; nothing was replaced", exc)
        return EXIT_UNAVAILABLE
    return _report(summary, target.description)


def _report(summary: RebuildSummary, where: str) -> int:
    files = ", ".join(f"{n}: {c}" for n, c in summary.files.items())
    print(f"Indexed {summary.recordings} recordings of {where} ({files})")
    for name in summary.removed:
        print(f"Removed {name} (another number of shards)")
    if summary.skipped:
        print(f"{len(summary.skipped)} metadata files could not be indexed:", file=sys.stderr)
        for path, why in summary.skipped:
            print(f"  {path}: {why}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
