"""`cxbackup-dev`: the development tools' command line (emulator, demo, CRD generation)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cxbackup.cli import CommandLine

__all__ = ["COMMANDS", "main"]

COMMANDS: list[tuple[str, str, str]] = [
    ("emulator", "run the local stand-in for the vendor cloud (a test double)", "emulator"),
    (
        "demo",
        "the whole product on this machine: back up a generated data set, then search, decrypt and audit it",
        "demo",
    ),
    ("crds", "generate the CustomResourceDefinitions from the API models", "crds"),
]

CXBACKUP_DEV = CommandLine(
    prog="cxbackup-dev",
    description="cxbackup's development tools (not part of the product).",
    package="cxbackup_dev.commands",
    commands=COMMANDS,
)


def main(argv: Sequence[str] | None = None) -> int:
    return CXBACKUP_DEV.main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
