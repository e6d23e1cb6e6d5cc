"""`cxbackup verify s3 -config config.properties`: check GWS login, S3 credentials and every bucket.

The same as `cxbackup download -config FILE -verify s3`. Downloads nothing; exits 1 when a check failed.
"""

from __future__ import annotations

import argparse
import logging
import os

from cxbackup.backup.config import Credentials
from cxbackup.backup.console import load_config_file
from cxbackup.backup.errors import RcbsError
from cxbackup.backup.verify import run_verify
from cxbackup.commands.download import add_common_arguments
from cxbackup.core.errors import EXIT_FAILED, EXIT_OK
from cxbackup.core.logs import setup_logging

__all__ = ["register", "run"]

log = logging.getLogger("cxbackup.backup")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("what", choices=["s3"], help="what to verify (s3: credentials and bucket access)")
    add_common_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    setup_logging(args.verbose)
    try:
        config = load_config_file(args.config)
        result = run_verify(config, Credentials.from_env(os.environ))
    except RcbsError as exc:
        log.error("%s", exc)
        return exc.exit_code
    return EXIT_OK if result.ok else EXIT_FAILED
