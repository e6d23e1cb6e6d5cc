"""`cxbackup-dev crds`: write the generated CRDs to crds/ (and the Helm chart), or check they are current."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cxbackup_dev.crdgen import render_crds

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=help_text)
    p.add_argument(
        "--out",
        action="append",
        type=Path,
        help="directory to write into (repeatable; default: crds/ and helm/cxbackup/crds/ when present)",
    )
    p.add_argument("--check", action="store_true", help="exit 1 when a file differs from the models")
    p.set_defaults(func=run)


# Hand-written CRDs kept in crds/ (kopf's peering resources), copied as they are into the chart.
STATIC_CRDS = ("kopf-peering.yaml",)


def _files(source: Path, out: Path) -> dict[str, str]:
    files = dict(render_crds())
    if out.resolve() != source.resolve():
        for name in STATIC_CRDS:
            if (source / name).exists():
                files[name] = (source / name).read_text()
    return files


def run(args: argparse.Namespace) -> int:
    outs: list[Path] = args.out or [p for p in (Path("crds"), Path("helm/cxbackup/crds")) if p.parent.exists()]
    stale: list[Path] = []
    for out in outs:
        for file_name, text in _files(Path("crds"), out).items():
            path = out / file_name
            current = path.read_text() if path.exists() else None
            if current == text:
                continue
            if args.check:
                stale.append(path)
                continue
            out.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(path)
            print(f"wrote {path}")
    if stale:
        for path in stale:
            print(f"{path} differs from the API models; run `make crds`", file=sys.stderr)
        return 1
    return 0
