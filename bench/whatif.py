"""Run `cxbackup download` with a guarantee switched off, as a monkeypatch (bench only; operator/ is
unchanged), to measure what each of the worker's extra guarantees costs next to the peer tools, which
give none of them.

    python bench/whatif.py PATCHES -- download -config FILE ...

PATCHES is a comma-separated list (or "none"):

- nomd5:    no MD5 check of downloaded media against the ETag (sizes are still checked).
- nofsync:  no fsync at all, of files or folders (the peers' behaviour).
- noindex:  no search index (what keeping it costs a run).

Neither is a proposal: both guard the backup (a corrupt transfer, a power loss right after a rename).
"""

from __future__ import annotations

import os
import sys


def _patch_nomd5() -> None:
    from cxbackup.backup import worker

    # looked up by name when each download runs its check
    worker._check_md5 = lambda ref, expected, actual: None  # type: ignore[assignment]


def _patch_nofsync() -> None:
    os.fsync = lambda fd: None


def _patch_noindex() -> None:
    from cxbackup.backup import worker

    worker._open_index = lambda target, shard: (None, None)  # type: ignore[assignment]


def main() -> int:
    argv = sys.argv[1:]
    sep = argv.index("--")
    patches = {p for p in argv[0].split(",") if p and p != "none"} if sep > 0 else set()
    unknown = patches - {"nomd5", "nofsync", "noindex"}
    if unknown:
        print(f"unknown patches: {sorted(unknown)}", file=sys.stderr)
        return 2
    if "nomd5" in patches:
        _patch_nomd5()
    if "nofsync" in patches:
        _patch_nofsync()
    if "noindex" in patches:
        _patch_noindex()
    from cxbackup.cli import main as cli_main

    return cli_main(argv[sep + 1 :])


if __name__ == "__main__":
    sys.exit(main())
