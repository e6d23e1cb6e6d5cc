"""`cxbackup --help` lists every sub-command; one that is not built yet says so and fails."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cxbackup.cli import COMMANDS, build_parser, main

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


@pytest.mark.parametrize("name", sorted(name for name, _, module in COMMANDS if module is None))
def test_unbuilt_commands_say_so_and_fail(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([name]) == 2
    assert "not built yet" in capsys.readouterr().err


def test_every_command_has_a_parser() -> None:
    parser = build_parser()
    assert parser.prog == "cxbackup"
