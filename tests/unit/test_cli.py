"""`cxbackup --help` lists what a user runs and nothing else; `cxbackup-dev --help` lists the development tools."""

from __future__ import annotations

import subprocess
import sys

from cxbackup.cli import COMMANDS, build_parser
from cxbackup_dev.cli import COMMANDS as DEV_COMMANDS

USER_COMMANDS = {
    "operator",
    "download",
    "verify",
    "decrypt",
    "audit",
    "export",
    "cert",
    "estimate",
    "search",
    "index",
    "retention",
    "erase",
    "hold",
}
DEV_TOOLS = {"emulator", "demo", "crds"}


def _help(module: str) -> str:
    return subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True).stdout


def _listed(out: str) -> set[str]:
    names = USER_COMMANDS | DEV_TOOLS
    return {name for name in names if f"    {name} " in out or f"    {name}\n" in out}


def test_help_lists_every_user_command_and_no_development_tool() -> None:
    assert _listed(_help("cxbackup")) == USER_COMMANDS
    assert {name for name, _, _ in COMMANDS} == USER_COMMANDS


def test_development_tools_have_their_own_command() -> None:
    assert _listed(_help("cxbackup_dev")) == DEV_TOOLS
    assert {name for name, _, _ in DEV_COMMANDS} == DEV_TOOLS


def test_every_command_has_a_parser() -> None:
    parser = build_parser()
    assert parser.prog == "cxbackup"
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == USER_COMMANDS  # type: ignore[arg-type]
