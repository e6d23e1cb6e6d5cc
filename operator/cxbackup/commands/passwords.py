"""Where the commands take a private key's password from: a file or an environment variable.

A password on the command line is visible to every user of the machine (`ps`, /proc) and stays in the
shell's history, so the commands that open keys (decrypt, cert inspect, export download) take it as:

    --password-file FILE   the file's content, without one trailing line break ("\\n" or "\\r\\n")
    --password-env VAR     the value of the environment variable VAR

`cert inspect` and `export download` also still accept `--password P`, which was documented before; it
prints a warning on stderr. Nothing here ever prints or logs the password itself.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["PasswordError", "add_password_arguments", "password_from"]

LEGACY_WARNING = (
    "warning: --password puts the password on the command line, where other users of this machine can "
    "see it and the shell history keeps it; use --password-file FILE or --password-env VAR instead"
)


class PasswordError(ValueError):
    """The password cannot be read (an unset variable, an unreadable file): a usage error."""


def add_password_arguments(
    parser: argparse.ArgumentParser, *, what: str = "the private key", legacy_flag: bool = False
) -> None:
    """Add --password-file and --password-env (and, with `legacy_flag`, the old --password), exclusive."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--password-file", type=Path, metavar="FILE", help=f"file holding the password of {what}")
    group.add_argument("--password-env", metavar="VAR", help=f"environment variable holding the password of {what}")
    if legacy_flag:
        group.add_argument(
            "--password", metavar="P", help="the password itself (deprecated: visible to other users; prints a warning)"
        )


def password_from(args: argparse.Namespace) -> bytes | None:
    """The password the arguments name, or None; raises PasswordError when it cannot be read."""
    legacy: str | None = getattr(args, "password", None)
    if legacy is not None:
        print(LEGACY_WARNING, file=sys.stderr)
        return legacy.encode("utf-8")
    if args.password_env:
        value = os.environ.get(args.password_env)
        if value is None:
            raise PasswordError(f"--password-env: the environment variable {args.password_env} is not set")
        return os.fsencode(value)
    if args.password_file is not None:
        path = Path(args.password_file)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise PasswordError(f"--password-file: cannot read {path} ({exc.strerror or exc})") from None
        for ending in (b"\r\n", b"\n"):
            if data.endswith(ending):
                return data[: -len(ending)]
        return data
    return None
