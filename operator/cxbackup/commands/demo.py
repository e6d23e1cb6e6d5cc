"""`cxbackup demo` (what `make demo` runs): the end-to-end demo. Not built yet: it prints the plan."""

from __future__ import annotations

import argparse
import sys

__all__ = ["register", "run"]

PLAN = """\
cxbackup demo will, once the operator is built (issue 4):
  1. start the test control plane (etcd, kube-apiserver, kube-controller-manager; cached build)
  2. start the vendor-cloud emulator with a generated data set (recording API + S3 with encrypted media)
  3. start the operator and the local pod runner
  4. apply an example RecordingBackup with 3 shards and show its progress
  5. print the backed-up tree, the resource's status and a few metric lines, and decrypt one file with openssl
  6. stop everything it started
"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=help_text)
    p.set_defaults(func=run)


def run(_args: argparse.Namespace) -> int:
    print(PLAN, end="")
    print("cxbackup demo: not built yet in this version", file=sys.stderr)
    return 2
