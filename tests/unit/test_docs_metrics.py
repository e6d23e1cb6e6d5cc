"""docs/reference/metrics.md: its table is what hack/docs_metrics.py renders from cxbackup.metrics.

The check must be able to fail: a table with a row dropped, a help text changed or the markers removed
is reported, by the function and by `hack/docs_metrics.py --check` (exit 1).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from tests.unit.test_dashboards_alerts import exported_metric_names

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "hack" / "docs_metrics.py"


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_metrics", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("docs_metrics", module)
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


@pytest.fixture(scope="module")
def table() -> str:
    rendered: str = gen.render_table(gen.metric_rows())
    return rendered


def test_the_metrics_table_in_the_docs_is_current(table: str) -> None:
    diff = gen.drift(gen.DOC.read_text(encoding="utf-8"), table)
    assert not diff, "docs/reference/metrics.md is out of date; run python hack/docs_metrics.py\n" + "\n".join(diff)


def test_the_table_lists_every_series_the_operator_exports() -> None:
    """Against the dashboards test's view of what the operator exports (computed independently)."""
    rows = gen.metric_rows()
    series: set[str] = set()
    for row in rows:
        if row.type == "histogram":
            series |= {f"{row.name}_{suffix}" for suffix in ("bucket", "sum", "count")}
        else:
            series.add(row.name)
    exported = exported_metric_names()
    assert exported <= series, f"exported but not in the table: {sorted(exported - series)}"
    on_event = {name for name in series if not any(r.name == name and r.updated == "at scrape" for r in rows)}
    assert on_event <= exported, f"in the table but not exported: {sorted(on_event - exported)}"
    assert {r.name for r in rows if r.updated == "at scrape"} >= {
        "cxbackup_backup_lag_seconds",
        "cxbackup_certificate_expiry_timestamp_seconds",
        "cxbackup_export_artifacts",
    }


def test_rows_carry_type_labels_help_and_when_they_change() -> None:
    rows = {row.name: row for row in gen.metric_rows()}
    runs = rows["cxbackup_backup_runs_total"]
    assert (runs.type, runs.labels, runs.updated) == ("counter", ("namespace", "name", "result"), "on event")
    progress = rows["cxbackup_backup_shard_progress_ratio"]
    assert (progress.type, progress.labels, progress.updated) == ("gauge", ("namespace", "name", "shard"), "at scrape")
    assert all(row.help for row in rows.values())


def _drop_lag_row(table: str) -> str:
    return "\n".join(line for line in table.splitlines() if "cxbackup_backup_lag_seconds" not in line)


MUTATIONS: dict[str, Callable[[str], str]] = {
    "row dropped": _drop_lag_row,
    "help changed": lambda t: t.replace("Duration of export runs.", "Duration of runs."),
    "type changed": lambda t: t.replace("| counter |", "| gauge |", 1),
    "row added": lambda t: t + "\n| `cxbackup_gone_total` | counter | none | on event | Removed. |",
}
EMPTY_DOCUMENT = "# Metrics\n\nintro\n\n<!-- metrics-table:start -->\n<!-- metrics-table:end -->\n"


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
def test_a_changed_table_is_detected(table: str, mutation: str) -> None:
    document = gen.replace_table(EMPTY_DOCUMENT, table)
    assert gen.drift(document, table) == []
    changed = gen.replace_table(document, MUTATIONS[mutation](table))
    assert changed != document
    assert gen.drift(changed, table)


def test_missing_markers_are_an_error(table: str) -> None:
    with pytest.raises(gen.TableMarkersMissing):
        gen.drift("# Metrics\n\nno table here\n", table)
    with pytest.raises(gen.TableMarkersMissing):
        gen.drift(f"{gen.END}\n{gen.START}\n", table)


def test_check_exits_1_on_drift_and_0_when_current(tmp_path: Path) -> None:
    current = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, timeout=120, check=False
    )
    assert current.returncode == 0, current.stderr
    stale = tmp_path / "metrics.md"
    stale.write_text(gen.DOC.read_text(encoding="utf-8").replace("on event", "sometimes"), encoding="utf-8")
    drifted = subprocess.run(
        [sys.executable, str(SCRIPT), "--check", "--doc", str(stale)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert drifted.returncode == 1
    assert "out of date" in drifted.stderr
    fixed = subprocess.run(
        [sys.executable, str(SCRIPT), "--doc", str(stale)], capture_output=True, text=True, timeout=120, check=False
    )
    assert fixed.returncode == 0, fixed.stderr
    assert gen.drift(stale.read_text(encoding="utf-8"), gen.render_table(gen.metric_rows())) == []
