"""The `cxbackup` command line: one sub-command per module in cxbackup.commands.

Each command module exposes `register(subparsers, name, help_text) -> None`, which adds its parser and
sets `func` (a callable taking the parsed namespace and returning the exit code).

`main` imports only the module of the command being run (the others get a parser with their one-line
help): a worker pod's `cxbackup download` does not load the operator, export or certificate code.
`CommandLine` is also what the development tools' `cxbackup-dev` is built from.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["COMMANDS", "CommandLine", "build_parser", "main"]

# (name, one-line help, module under cxbackup.commands)
COMMANDS: list[tuple[str, str, str]] = [
    ("operator", "run the Kubernetes operator (kopf)", "operator"),
    ("download", "back up recordings from the vendor cloud (an RCBS-compatible worker)", "download"),
    ("verify", "check S3 credentials and access to every bucket the vendor names", "verify"),
    ("decrypt", "decrypt downloaded media (CMS enveloped-data) to a separate tree", "decrypt"),
    ("audit", "compare the vendor's recording list with a backup target", "audit"),
    ("export", "encrypted contact-history and GDPR chat exports", "export"),
    ("cert", "generate, inspect and validate recording certificates", "cert"),
    ("estimate", "estimate the disk space a day of recordings needs", "estimate"),
    ("search", "find backed-up recordings by phone number, agent, time, partition or text", "search"),
    ("index", "rebuild the search index of a backup target from its files", "index"),
    ("retention", "delete backed-up recordings past their retention (dry run unless --delete)", "retention"),
    ("erase", "erase a data subject's recordings from a backup target (dry run unless --execute)", "erase"),
    ("hold", "legal holds: recordings no retention sweep or erasure may delete", "hold"),
]


@dataclass(frozen=True)
class CommandLine:
    """A program with lazily imported sub-commands, each a module `<package>.<module>`."""

    prog: str
    description: str
    package: str
    commands: Sequence[tuple[str, str, str]]

    def build_parser(self, only: str | None = None) -> argparse.ArgumentParser:
        """The whole command line; with `only`, just that command's module is imported."""
        parser = argparse.ArgumentParser(prog=self.prog, description=self.description)
        sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
        for name, help_text, module in self.commands:
            if only is not None and name != only:
                sub.add_parser(name, help=help_text, description=help_text)
                continue
            importlib.import_module(f"{self.package}.{module}").register(sub, name, help_text)
        return parser

    def main(self, argv: Sequence[str] | None = None) -> int:
        args_list = list(sys.argv[1:] if argv is None else argv)
        known = {name for name, _, _ in self.commands}
        parser = self.build_parser(args_list[0] if args_list and args_list[0] in known else None)
        args = parser.parse_args(args_list)
        func: Callable[[argparse.Namespace], int] = args.func
        return func(args)


CXBACKUP = CommandLine(
    prog="cxbackup",
    description="Back up contact-center recordings, export contact data encrypted, and manage recording certificates.",
    package="cxbackup.commands",
    commands=COMMANDS,
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    return CXBACKUP.build_parser(only)


def main(argv: Sequence[str] | None = None) -> int:
    if os.environ.get("CXBACKUP_CA_CERTIFICATES", "").strip():
        from cxbackup.core.errors import ConfigurationError
        from cxbackup.core.tls import trust_extra_cas

        try:
            trust_extra_cas()  # every command's HTTPS clients trust these CAs too
        except ConfigurationError as exc:
            print(f"cxbackup: error: {exc}", file=sys.stderr)
            return exc.exit_code
    return CXBACKUP.main(argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
