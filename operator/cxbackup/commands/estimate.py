"""`cxbackup estimate --calls-per-day N --avg-duration S`: RCBS's disk-usage estimate, with the numbers."""

from __future__ import annotations

import argparse

from cxbackup.backup.estimate import estimate_disk
from cxbackup.core.errors import EXIT_CONFIG, EXIT_OK

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=__doc__)
    p.add_argument("--calls-per-day", type=float, required=True, metavar="N", help="recorded calls per day")
    p.add_argument("--avg-duration", type=float, required=True, metavar="S", help="average call duration, seconds")
    p.add_argument(
        "--bitrate", type=float, metavar="KBPS", help="recording bitrate in kbps (default 32 voice, 256 screen)"
    )
    p.add_argument("--screen", action="store_true", help="screen recordings (metadata 8 KB, 256 kbps muxed)")
    p.add_argument("--days", type=int, default=1, metavar="D", help="also show the total for D days")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        est = estimate_disk(
            args.calls_per_day, args.avg_duration, screen=args.screen, bitrate_kbps=args.bitrate, days=args.days
        )
    except ValueError as exc:
        print(f"cxbackup estimate: {exc}")
        return EXIT_CONFIG
    for line in est.explain():
        print(line)
    return EXIT_OK
