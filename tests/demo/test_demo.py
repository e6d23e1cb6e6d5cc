"""`make demo` as a user runs it: `cxbackup-dev demo` from the venv, which starts the test node (one node per
machine: this package runs before or after the e2e package, never beside it). Every step must print what it
verified, with the numbers the emulator's data set says it must find, and the demo must exit 0."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cxbackup_dev.emulator import Dataset, DatasetSpec

pytestmark = [pytest.mark.e2e, pytest.mark.node, pytest.mark.timeout(1800)]

HOURS, PER_HOUR, SEED = 24, 8, 7
"""The demo's default data set (`--hours`, `--per-hour`; the seed is the demo's)."""


def _records() -> list[dict[str, Any]]:
    """The demo's recordings: ids, media files and sizes depend on the seed and the slot, not on the clock."""
    return list(Dataset(DatasetSpec(hours=HOURS, recordings_per_hour=PER_HOUR, seed=SEED)).iter_records())


def _verified(out: str, number: int, name: str) -> str:
    found = re.findall(rf"^    OK step {number} \({name}\): (.*)$", out, re.MULTILINE)
    assert len(found) == 1, f"no verified line for step {number} ({name}):\n{out[-4000:]}"
    return str(found[0])


def test_make_demo_verifies_every_step() -> None:
    demo = Path(sys.executable).parent / "cxbackup-dev"
    proc = subprocess.run([str(demo), "demo"], capture_output=True, text=True, check=False, timeout=1700)
    out = proc.stdout
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out[-6000:]}\n{proc.stderr[-3000:]}"
    assert "FAILED" not in out + proc.stderr

    records = _records()
    n, media = len(records), sum(len(r["mediaFiles"]) for r in records)
    assert n == HOURS * PER_HOUR

    cluster = _verified(out, 1, "cluster")
    assert f"emulator holds {n} recordings ({media} media files)" in cluster
    assert re.search(
        r"helm release cxbackup deployed \(revision 1\); operator pod cxbackup-\S+ Running and Ready", cluster
    )

    backup = _verified(out, 2, "backup")
    assert re.match(
        rf"run recordings-\d{{8}}-\d{{6}} Succeeded; the emulator holds {n} recordings in the run's window", backup
    )
    assert f"status: downloaded {n}, failed 0, skipped 0, " in backup
    assert backup.endswith(f"metrics: runs succeeded 1, recordings downloaded {n}, failed 0, in the search index {n}")

    tree = _verified(out, 3, "tree")
    assert tree.startswith(f"{n} recordings (metadata files) and {media} media files, exactly the emulator's")

    search = _verified(out, 4, "search")
    m = re.match(r"cxbackup search --phone (\+\d+) found (\d+) recording\(s\), (.*), as the data set has$", search)
    assert m, search
    phone, count, ids = m.group(1), int(m.group(2)), m.group(3).split(", ")
    theirs = sorted(r["id"] for r in records if r["callerPhoneNumber"] == phone)
    assert theirs and ids == theirs and count == len(theirs)
    assert "1 match" in out or f"{count} matches" in out  # the CLI's own table was shown

    decrypt = _verified(out, 5, "decrypt")
    m = re.match(
        r"(\d+) media file\(s\) of (\w+) decrypted \((\d+) encrypted bytes -> (\d+) bytes\): equal byte", decrypt
    )
    assert m, decrypt
    person = next(r for r in records if r["id"] == m.group(2))
    assert person["id"] in theirs
    assert int(m.group(1)) == len(person["mediaFiles"])
    assert int(m.group(4)) == sum(int(f["size"]) for f in person["mediaFiles"])
    assert int(m.group(3)) > int(m.group(4))  # the envelope around the media
    assert f"decrypted {len(person['mediaFiles'])}, copied 1, skipped 0, failed 0" in out  # the CLI's summary

    audit = _verified(out, 6, "audit")
    assert audit == f"cxbackup audit --key: {n} of {n} recordings ok (media test-decrypted), nothing missing, exit 0"

    steps = ", ".join(rf"{name} \d+ s" for name in ("cluster", "backup", "tree", "search", "decrypt", "audit"))
    assert re.search(rf"^demo: all 6 steps verified in \d+ s \({steps}\)$", out, re.MULTILINE)
