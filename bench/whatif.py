"""Run `cxbackup download` with a guarantee switched off, as a monkeypatch (bench only; operator/ is
unchanged), to measure what each of the worker's extra guarantees costs next to the peer tools, which
give none of them.

    python bench/whatif.py PATCHES -- download -config FILE ...

PATCHES is a comma-separated list (or "none"):

- nomd5:    no MD5 check of downloaded media against the ETag (sizes are still checked), where Python
            checks it (mediaTransfer crt or boto3; the native program checks its files itself).
- nofsync:  no fsync at all, of files or folders (the peers' behaviour), by Python (not the native program).
- fixedcrt: the CRT S3 client sized as it was before it followed `concurrency` (memory limit 256 MiB,
            8 MiB parts, 10 Gbps target: 16 GETs in flight at most), for before/after runs.
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


def _patch_fixedcrt() -> None:
    from cxbackup.backup import crtsource

    fixed = crtsource.CrtSizing(requests=16, part_bytes=8 << 20, memory_limit=256 << 20, throughput_target_gbps=10.0)
    crtsource.crt_sizing = lambda downloads: fixed  # looked up when the source is built


def _patch_noindex() -> None:
    from cxbackup.backup import worker

    worker._open_index = lambda *args, **kwargs: (None, None)  # type: ignore[assignment]


def main() -> int:
    argv = sys.argv[1:]
    sep = argv.index("--")
    patches = {p for p in argv[0].split(",") if p and p != "none"} if sep > 0 else set()
    unknown = patches - {"nomd5", "nofsync", "fixedcrt", "noindex"}
    if unknown:
        print(f"unknown patches: {sorted(unknown)}", file=sys.stderr)
        return 2
    if "nomd5" in patches:
        _patch_nomd5()
    if "nofsync" in patches:
        _patch_nofsync()
    if "fixedcrt" in patches:
        _patch_fixedcrt()
    if "noindex" in patches:
        _patch_noindex()
    from cxbackup.cli import main as cli_main

    return cli_main(argv[sep + 1 :])


if __name__ == "__main__":
    sys.exit(main())
