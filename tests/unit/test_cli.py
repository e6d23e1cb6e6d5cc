"""`cxbackup --help` lists every sub-command; one that is not built yet says so and fails."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cxbackup.cli import COMMANDS, build_parser

EXPECTED = {
    "operator", "download", "verify", "decrypt", "audit", "export", "cert", "estimate", "emulator", "demo", "crds",
}  # fmt: skip


def test_help_lists_every_subcommand() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "cxbackup", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for name in EXPECTED:
        assert f"    {name} " in out or f"    {name}\n" in out, name
    assert {name for name, _, _ in COMMANDS} == EXPECTED


def test_a_command_not_built_says_so_and_fails(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from cxbackup.cli import _not_built

    assert _not_built("future")(argparse.Namespace()) == 2
    assert "not built yet" in capsys.readouterr().err


def test_every_listed_command_is_built() -> None:
    assert [name for name, _, module in COMMANDS if module is None] == []


def test_every_command_has_a_parser() -> None:
    parser = build_parser()
    assert parser.prog == "cxbackup"
