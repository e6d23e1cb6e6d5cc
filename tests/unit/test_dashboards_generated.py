"""The dashboards are generated: dashboards/*.json and the chart's copies are exactly what hack/dashboards.py
builds with grafana-foundation-sdk, and the generator takes every metric name from cxbackup.metrics.

A change to the generator, or to a metric's name, without `make dashboards` fails here; the tests below
also show that the comparison notices a changed query, a missing file and a stray one.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import tokenize
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cxbackup import metrics

REPO = Path(__file__).resolve().parents[2]
GENERATOR = REPO / "hack" / "dashboards.py"
BACKUPS = "cxbackup-backups.json"


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboards_generator", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def boards(generator: ModuleType) -> dict[str, dict[str, Any]]:
    built: dict[str, dict[str, Any]] = generator.build()
    return built


def _panel(board: dict[str, Any], title: str) -> dict[str, Any]:
    panel: dict[str, Any] = next(p for p in board["panels"] if p["title"] == title)
    return panel


def test_checked_in_dashboards_are_what_the_generator_builds(generator: ModuleType, boards: dict[str, Any]) -> None:
    assert sorted(boards) == sorted(p.name for p in (REPO / "dashboards").glob("*.json"))
    report = generator.drift(boards)
    assert report == [], "\n".join([*report, "run `make dashboards` (python hack/dashboards.py)"])


def test_check_mode_passes_on_the_repository(generator: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    assert generator.main(["--check"]) == 0
    assert "3 dashboards up to date" in capsys.readouterr().out


def test_drift_reports_a_changed_panel_query(generator: ModuleType, boards: dict[str, Any], tmp_path: Path) -> None:
    dirs = (tmp_path / "dashboards", tmp_path / "chart")
    generator.write(boards, dirs)
    assert generator.drift(boards, dirs) == []
    edited = copy.deepcopy(boards)
    target = _panel(edited[BACKUPS], "Worst lag")["targets"][0]
    target["expr"] = target["expr"].replace("max(", "min(")
    report = generator.drift(edited, dirs)
    summaries = [line for line in report if not line.startswith(" ")]
    assert summaries == [f"{d / BACKUPS}: differs from the generated dashboard in 1 field" for d in dirs]
    details = [line.strip() for line in report if line.startswith(" ")]
    assert len(details) == 2
    assert details[0] == details[1]
    assert details[0].startswith("panels[3 'Worst lag'].targets[0].expr: \"max(cxbackup_backup_lag_seconds{")
    assert '-> "min(cxbackup_backup_lag_seconds{' in details[0]


def test_check_mode_fails_on_drift_and_make_dashboards_repairs_it(
    generator: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    dirs = (tmp_path / "dashboards", tmp_path / "chart")
    monkeypatch.setattr(generator, "OUTPUT_DIRS", dirs)
    assert generator.main([]) == 0
    assert sorted(p.name for p in dirs[1].iterdir()) == sorted(generator.build())
    capsys.readouterr()

    hand_edited = dirs[1] / BACKUPS
    board = json.loads(hand_edited.read_text())
    _panel(board, "Runs by result")["targets"][0]["expr"] = "sum(cxbackup_backup_runs_total)"
    hand_edited.write_text(generator.render(board))
    (dirs[0] / "cxbackup-exports.json").unlink()
    (dirs[0] / "cxbackup-old.json").write_text("{}\n")

    assert generator.main(["--check"]) == 1
    out = capsys.readouterr().out
    assert f"{hand_edited}: differs from the generated dashboard in 1 field" in out
    assert "panels[8 'Runs by result'].targets[0].expr" in out
    assert f"{dirs[0] / 'cxbackup-exports.json'}: missing" in out
    assert f"{dirs[0] / 'cxbackup-old.json'}: not built by hack/dashboards.py" in out

    (dirs[0] / "cxbackup-old.json").unlink()
    assert generator.main([]) == 0
    assert generator.main(["--check"]) == 0


def test_output_is_deterministic_sorted_and_ends_with_a_newline(generator: ModuleType) -> None:
    first, second = generator.build(), generator.build()
    for name, board in first.items():
        text = generator.render(board)
        assert text == generator.render(second[name])
        assert text.endswith("}\n") and not text.endswith("\n\n")
        assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_generator_spells_no_metric_name() -> None:
    """Metric names come from cxbackup.metrics: no string in hack/dashboards.py names one."""
    names = re.compile(r"cxbackup_[a-z]")
    with GENERATOR.open("rb") as source:
        strings = [t.string for t in tokenize.tokenize(source.readline) if t.type == tokenize.STRING]
    assert strings, "no string tokens found"
    assert [s for s in strings if names.search(s)] == []


def test_a_renamed_metric_renames_its_queries(generator: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    """The one definition: renaming a metric in cxbackup.metrics changes every query that reads it."""
    old, new = metrics.BACKUP_LAG_SECONDS, "cxbackup_backup_lag_renamed_seconds"
    monkeypatch.setattr(metrics, "BACKUP_LAG_SECONDS", new)
    board = generator.build()[BACKUPS]
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert sum(new in e for e in exprs) == 3  # "Worst lag", "Backup lag" and the table's "Lag" column
    assert not any(old in e for e in exprs)
    report = generator.drift({BACKUPS: board}, [REPO / "dashboards"])
    assert f"dashboards/{BACKUPS}: differs from the generated dashboard in 3 fields" in report
