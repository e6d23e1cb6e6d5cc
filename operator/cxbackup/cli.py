"""The `cxbackup` command line: one sub-command per module in cxbackup.commands.

Each command module exposes `register(subparsers) -> None`, which adds its parser and sets
`func=run` (a callable taking the parsed namespace and returning the exit code). A command that is
not built yet is registered by `_not_built`, says so and exits 2.

`main` imports only the module of the command being run (the others get a parser with their one-line
help): a worker pod's `cxbackup download` does not load the operator, export or certificate code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence

__all__ = ["COMMANDS", "build_parser", "main"]

# (name, one-line help, module under cxbackup.commands or None when not built yet)
COMMANDS: list[tuple[str, str, str | None]] = [
    ("operator", "run the Kubernetes operator (kopf)", "operator"),
    ("download", "back up recordings from the vendor cloud (an RCBS-compatible worker)", "download"),
    ("verify", "check S3 credentials and access to every bucket the vendor names", "verify"),
    ("decrypt", "decrypt downloaded media (CMS enveloped-data) to a separate tree", "decrypt"),
    ("audit", "compare the vendor's recording list with a backup target", "audit"),
    ("export", "encrypted contact-history and GDPR chat exports", "export"),
    ("cert", "generate, inspect and validate recording certificates", "cert"),
    ("estimate", "estimate the disk space a day of recordings needs", "estimate"),
    ("emulator", "run the local stand-in for the vendor cloud", "emulator"),
    ("demo", "start everything and back up a generated data set", "demo"),
    ("crds", "generate the CustomResourceDefinitions from the API models", "crds"),
]


def _not_built(name: str) -> Callable[[argparse.Namespace], int]:
    def run(_args: argparse.Namespace) -> int:
        print(f"cxbackup {name}: not built yet in this version", file=sys.stderr)
        return 2

    return run


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; with `only`, just that command's module is imported."""
    parser = argparse.ArgumentParser(
        prog="cxbackup",
        description="Back up contact-center recordings, export contact data encrypted, "
        "and manage recording certificates.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text, module in COMMANDS:
        if module is None:
            p = sub.add_parser(name, help=f"{help_text} (not built yet)", description=help_text)
            p.set_defaults(func=_not_built(name))
            continue
        if only is not None and name != only:
            sub.add_parser(name, help=help_text, description=help_text)
            continue
        mod = importlib.import_module(f"cxbackup.commands.{module}")
        mod.register(sub, name, help_text)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    known = {name for name, _, _ in COMMANDS}
    parser = build_parser(args_list[0] if args_list and args_list[0] in known else None)
    args = parser.parse_args(args_list)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
