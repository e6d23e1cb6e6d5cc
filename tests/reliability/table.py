"""The reliability table: one `Row` per scenario, rendered as markdown, plus the checks that fill a row.

A scenario measures (it does not assert inside the helpers) so that a failing row still shows every column:

- `present_identical`: "k/n" recordings whose metadata file is there and whose every media file decrypts
  (tenant key) to the emulator's plaintext.
- `duplicates`: recordings whose `<id>.json` appears in more than one folder, plus media files present twice.
- `partial_files`: hidden temporary files (`.<name>.part-<hex>`) left visible in the target.
- `checkpoint_ok`: the last recording end time was not advanced by a failed run and equals the window end
  after the successful one.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cxbackup.backup.index import INDEX_DIR
from cxbackup.backup.layout import is_temp_name, media_file_names, recording_folder_name
from cxbackup.certs.cms import decrypt_with_key, load_private_key

__all__ = ["Row", "TargetReport", "assess_target", "folder_of", "render_markdown"]

COLUMNS = ("scenario", "expected", "present_identical", "duplicates", "partial_files", "checkpoint_ok", "result")


@dataclass
class Row:
    """One scenario's outcome; `ok` is the scenario's own pass verdict (all its checks together)."""

    scenario: str
    expected: int | str
    present_identical: str = "-"
    duplicates: int | str = "-"
    partial_files: int | str = "-"
    checkpoint_ok: bool | str = "-"
    ok: bool = False
    notes: str = ""
    level: str = "worker"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def result(self) -> str:
        return "PASS" if self.ok else "FAIL"

    def cells(self) -> list[str]:
        def show(v: object) -> str:
            if isinstance(v, bool):
                return "yes" if v else "NO"
            return str(v)

        return [
            self.scenario,
            show(self.expected),
            show(self.present_identical),
            show(self.duplicates),
            show(self.partial_files),
            show(self.checkpoint_ok),
            self.result,
        ]


def render_markdown(rows: Iterable[Row], *, title: str | None = None) -> str:
    rows = list(rows)
    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(COLUMNS) + " | notes |")
    lines.append("|" + "---|" * (len(COLUMNS) + 1))
    for r in rows:
        note = r.notes.replace("|", "\\|").replace("\n", " ")
        lines.append("| " + " | ".join(c.replace("|", "\\|") for c in r.cells()) + f" | {note} |")
    passed = sum(r.ok for r in rows)
    lines.append("")
    lines.append(f"{passed}/{len(rows)} scenarios pass.")
    return "\n".join(lines) + "\n"


def folder_of(record: Mapping[str, Any], fmt: str = "%Y/%m/%d/%H") -> str:
    """The folder the layout gives a well-formed emulator record (startTime in the emulator's format)."""
    from cxbackup_dev.emulator import parse_time

    start = datetime.fromtimestamp(parse_time(record["startTime"]) / 1000, UTC)
    return f"{start.strftime(fmt)}/{recording_folder_name(record['id'])}"


@dataclass
class TargetReport:
    expected: int
    identical: int
    duplicates: int
    partial_files: list[str]
    unexpected_files: list[str]
    problems: list[str]

    @property
    def present_identical(self) -> str:
        return f"{self.identical}/{self.expected}"

    @property
    def complete(self) -> bool:
        return (
            self.identical == self.expected
            and self.duplicates == 0
            and not self.partial_files
            and not self.unexpected_files
        )


def _bookkeeping(name: str) -> bool:
    return name.startswith(("last_recording_endtime", ".rcbs-lock-"))


def assess_target(
    root: Path,
    records: Iterable[Mapping[str, Any]],
    plaintext: Mapping[str, bytes] | Any,
    key_path: Path,
    *,
    metadata_only: bool = False,
) -> TargetReport:
    """Compare the target tree with the expected records; `plaintext(media_id)` or a mapping gives the bytes."""
    key = load_private_key(key_path)
    get = plaintext.__getitem__ if isinstance(plaintext, Mapping) else plaintext
    records = list(records)
    expected_files: set[str] = set()
    identical = 0
    problems: list[str] = []
    for rec in records:
        folder = folder_of(rec)
        meta_name = f"{recording_folder_name(rec['id'])}.json"
        meta = root / folder / meta_name
        good = meta.is_file() and json.loads(meta.read_text()) == rec
        expected_files.add(f"{folder}/{meta_name}")
        if not metadata_only:
            ids = [m["mediaId"] for m in rec.get("mediaFiles", []) if m.get("mediaId")]
            names = media_file_names(ids, meta_name)
            for media_id, name in names.items():
                path = root / folder / name
                expected_files.add(f"{folder}/{name}")
                try:
                    same = decrypt_with_key(path.read_bytes(), key) == get(media_id)
                except (OSError, ValueError) as exc:
                    same = False
                    problems.append(f"{rec['id']}/{media_id}: {type(exc).__name__}")
                good = good and same
        identical += good
        if not good and len(problems) < 5:
            problems.append(f"{rec['id']} missing or different")
    # the search index (.cxbackup-index/) is bookkeeping too: its own tests are tests/unit/backup/test_index.py
    files = (
        [p for p in root.rglob("*") if p.is_file() and INDEX_DIR not in p.relative_to(root).parts]
        if root.exists()
        else []
    )
    rel = [str(p.relative_to(root)) for p in files]
    partial = [r for r, p in zip(rel, files, strict=True) if is_temp_name(p.name)]
    unexpected = [
        r
        for r, p in zip(rel, files, strict=True)
        if r not in expected_files and not _bookkeeping(p.name) and r not in partial
    ]
    metas = Counter(p.name for p in files if p.name.endswith(".json") and not _bookkeeping(p.name))
    media = Counter(
        p.name for p in files if not p.name.endswith(".json") and not _bookkeeping(p.name) and not is_temp_name(p.name)
    )
    duplicates = sum(n - 1 for n in metas.values() if n > 1) + sum(n - 1 for n in media.values() if n > 1)
    return TargetReport(len(records), identical, duplicates, partial, unexpected, problems)
