"""The in-process runner of the command line (tests/integration/cli.py) gives what the process gives, and leaves
this process as it found it."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from cxbackup.core.errors import EXIT_CONFIG
from cxbackup_dev.emulator import TestCA
from tests.integration.cli import run_cli, run_cli_process

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "args",
    [
        ["search", "--help"],
        ["search", "--target", ".", "--colour", "red"],  # argparse's exit 2
        ["erase", "--target", "/nonexistent", "--request", "R"],  # the command's own exit 2
        ["no-such-command"],
    ],
)
def test_the_same_exit_code_and_output_as_the_process(args: list[str]) -> None:
    inside, process = run_cli(args), run_cli_process(args)
    assert (inside.returncode, inside.stdout, inside.stderr) == (process.returncode, process.stdout, process.stderr)


def test_the_environment_cwd_logger_and_streams_are_put_back(tmp_path: Path) -> None:
    ca = TestCA.create(tmp_path / "ca")
    before_env, before_cwd = dict(os.environ), Path.cwd()
    logger = logging.getLogger("cxbackup")
    before_logger = (logger.level, list(logger.handlers), logger.propagate)
    streams = (sys.stdout, sys.stderr, sys.stdin)
    # CXBACKUP_CA_CERTIFICATES makes the command line set AWS_CA_BUNDLE and SSL_CERT_FILE for the process;
    # --verbose sets the cxbackup logger's level and handler
    done = run_cli(["search", "--target", str(tmp_path), "--agent", "a", "--verbose"],
                   {"CXBACKUP_CA_CERTIFICATES": ca.pem}, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 2 and "has no search index" in done.stderr, done.stderr
    assert dict(os.environ) == before_env and Path.cwd() == before_cwd
    assert (logger.level, list(logger.handlers), logger.propagate) == before_logger
    assert (sys.stdout, sys.stderr, sys.stdin) == streams
    refused = run_cli(["audit", "--help"], {"CXBACKUP_CA_CERTIFICATES": "not a certificate"})
    assert refused.returncode == EXIT_CONFIG and "CXBACKUP_CA_CERTIFICATES" in refused.stderr
    assert dict(os.environ) == before_env
