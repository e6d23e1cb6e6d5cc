"""What the commands that work on a backup target share: `--target DIR | -config FILE`, opening it, its
index files, and taking the backups' own shard locks.

`-config FILE` is a backup's config.properties: its targetDir, or its S3 target (targetS3Bucket and
friends, credentials from TARGET_AWS_* as for the backup); its legalHolds also apply.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cxbackup.backup.config import RcbsConfig
from cxbackup.backup.index import INDEX_DIR, NAME_PATTERN, ShardIndex, editing_index, index_files
from cxbackup.backup.s3target import S3BucketTarget
from cxbackup.backup.sharding import ShardAssignment
from cxbackup.backup.state import lock_name
from cxbackup.backup.targets import LocalDirectoryTarget, LockHolder

__all__ = [
    "TARGET_FLAGS",
    "OpenedTarget",
    "TargetChoiceError",
    "add_target_arguments",
    "open_backup_target",
    "resolve_target_dir",
    "run_on_target",
    "shard_locker",
    "target_dir_of",
]

_LABEL = re.compile(r"^(\d+)-of-(\d+)$")


class TargetChoiceError(Exception):
    """The target named on the command line cannot be used (the message says why)."""


def add_target_arguments(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--target", type=Path, metavar="DIR", help="the backup target folder (targetDir)")
    where.add_argument(
        "-config", "--config", dest="config", metavar="FILE", help="config.properties: its targetDir or S3 bucket"
    )
    p.add_argument("--verbose", action="store_true", help="debug logging")


def _load(path: str) -> RcbsConfig:
    from cxbackup.backup.console import load_config_file

    return load_config_file(path)


TARGET_FLAGS = ("--target", "-config")
"""The options naming the target folder and the config file, as the target commands spell them."""


def resolve_target_dir(args: argparse.Namespace) -> Path:
    """The target folder from --target or from the config's targetDir (TargetChoiceError otherwise)."""
    return target_dir_of(args.target, args.config)


def target_dir_of(target: Path | None, config_path: str | None, flags: tuple[str, str] = TARGET_FLAGS) -> Path:
    """The target folder `target`, or the targetDir of the config file (TargetChoiceError otherwise);
    `flags` name the two options in messages."""
    if target is not None:
        if not target.is_dir():
            raise TargetChoiceError(f"{flags[0]} {target}: no such folder")
        return Path(target)
    assert config_path is not None
    config = _load(config_path)
    if config.target_dir is None:
        raise TargetChoiceError(f"{flags[1]} {config_path}: the target is an S3 bucket; this works on targetDir only")
    path = Path(config.target_dir)
    if not path.is_dir():
        raise TargetChoiceError(f"{flags[1]} {config_path}: targetDir {path} is not a folder")
    return path


@dataclass
class OpenedTarget:
    target: LocalDirectoryTarget | S3BucketTarget
    config: RcbsConfig | None

    @property
    def where(self) -> str:
        return self.target.description

    def index_names(self) -> list[str]:
        """The index files' names (shard-<i>-of-<N>.sqlite3)."""
        if isinstance(self.target, LocalDirectoryTarget):
            return [p.name for p in index_files(self.target.root / INDEX_DIR)]
        return sorted(n for n in self.target.list_folder(INDEX_DIR) if NAME_PATTERN.match(n))

    @contextlib.contextmanager
    def editing(self, name: str) -> Iterator[ShardIndex]:
        """Index file `name` opened for writing (hold its shard's lock)."""
        local = self.target.root / INDEX_DIR / name if isinstance(self.target, LocalDirectoryTarget) else None
        with editing_index(self.target, f"{INDEX_DIR}/{name}", local) as index:
            yield index

    def build_hint(self, args: argparse.Namespace) -> str:
        if args.config is not None:
            return f"build it with `cxbackup index -config {args.config}`"
        return f"build it from the backed-up tree with `cxbackup index --target {args.target}`"


def open_backup_target(args: argparse.Namespace) -> OpenedTarget:
    """The target of --target or -config (TargetChoiceError, ConfigError, or TargetError when it cannot be
    reached)."""
    if args.config is None:
        return OpenedTarget(LocalDirectoryTarget(resolve_target_dir(args), create=False), None)
    config = _load(args.config)
    if not config.target_s3_bucket:
        return OpenedTarget(LocalDirectoryTarget(resolve_target_dir(args), create=False), config)
    from cxbackup.backup.config import Credentials
    from cxbackup.backup.connections import open_target

    target = open_target(config, Credentials.from_env(os.environ), create=False)
    assert isinstance(target, S3BucketTarget)
    return OpenedTarget(target, config)


def run_on_target(args: argparse.Namespace, command: str, work: Callable[[OpenedTarget], int]) -> int:
    """Open the target of --target/-config and run `work` on it, with the errors every target command maps
    the same way: a bad --target or -config is a usage error (exit 2, naming the option); an RcbsError exits
    with its code (3 a backup run holds a lock, 5 the target cannot be reached); any other I/O error is 5."""
    import sqlite3
    import sys

    from cxbackup.backup.errors import ConfigError, RcbsError
    from cxbackup.core.errors import EXIT_UNAVAILABLE

    parser: argparse.ArgumentParser = args.parser
    try:
        opened = open_backup_target(args)
    except TargetChoiceError as exc:
        parser.error(str(exc))
    except ConfigError as exc:
        parser.error(f"-config: {exc}")
    except RcbsError as exc:
        print(f"cxbackup {command}: {exc}", file=sys.stderr)
        return exc.exit_code
    try:
        return work(opened)
    except RcbsError as exc:
        print(f"cxbackup {command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except (OSError, sqlite3.Error) as exc:
        print(f"cxbackup {command}: {opened.where}: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE


def shard_locker(
    target: LocalDirectoryTarget | S3BucketTarget, holder_name: str
) -> Callable[[str], contextlib.AbstractContextManager[None]]:
    """Shard label (`<i>-of-<N>`) -> the backup's own lock of that shard on `target`."""
    holder = LockHolder.current(datetime.now(UTC).isoformat(timespec="seconds"), holder_name)

    @contextlib.contextmanager
    def lock(label: str) -> Iterator[None]:
        m = _LABEL.match(label)
        assert m is not None, label
        with target.lock(lock_name(ShardAssignment(int(m[1]), int(m[2]))), holder):
            yield

    return lock


def label_of(index_name: str) -> str:
    m = NAME_PATTERN.match(index_name)
    assert m is not None, index_name
    return f"{m[1]}-of-{m[2]}"


@contextlib.contextmanager
def all_shards_locked(opened: OpenedTarget, names: Sequence[str], holder_name: str) -> Iterator[None]:
    """Every shard lock of `names`' shards (LockHeldError, exit 3, while a backup run holds one)."""
    lock = shard_locker(opened.target, holder_name)
    with contextlib.ExitStack() as stack:
        for name in names:
            stack.enter_context(lock(label_of(name)))
        yield
