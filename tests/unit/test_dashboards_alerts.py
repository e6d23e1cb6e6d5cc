"""Grafana dashboards and Prometheus alerts: valid, and built only on metrics the operator exports.

The dashboards (dashboards/*.json, shipped again in helm/cxbackup/dashboards/) and the alert rules
(helm/cxbackup/files/alerts.yaml, rendered by the chart's PrometheusRule) are checked here without
Helm: every PromQL expression must parse and may name only metrics that cxbackup.metrics exports
(plus `up`), every alert carries a severity and a runbook, and the chart's copies of the dashboards
equal the originals. `render_alert_rules` mirrors the chart's `cxbackup.alertRules` helper; the Helm
integration test checks that the two agree.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import promql_parser
import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import Metric

from cxbackup import metrics

__all__ = [
    "ALERTS_FILE",
    "CHART",
    "DASHBOARDS",
    "alert_rules",
    "chart_values",
    "exported_metric_names",
    "metric_names",
    "render_alert_rules",
]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "cxbackup"
DASHBOARDS = REPO / "dashboards"
ALERTS_FILE = CHART / "files" / "alerts.yaml"
DASHBOARD_FILES = sorted(DASHBOARDS.glob("*.json"))

# Metrics that come from Prometheus itself rather than from the operator.
PROMETHEUS_METRICS = {"up"}
# Grafana's built-in variables, replaced by a duration so that the expression parses as PromQL.
GRAFANA_RANGE_VARIABLES = re.compile(
    r"\$(__rate_interval|__interval|__range)\b|\$\{(__rate_interval|__interval|__range)\}"
)
# A metric name starting with cxbackup_, followed by a selector, a range, a closing parenthesis,
# whitespace or the end: the names a PromQL expression reads.
METRIC_NAME = re.compile(r"\b(cxbackup_[a-zA-Z0-9_]+)(?=[{\[)\s]|$)")
PLACEHOLDER = re.compile(r"\$\{alerts\.([A-Za-z0-9_]+)\.([A-Za-z0-9_]+)\}")
DURATION = re.compile(r"^([0-9]+(ms|s|m|h|d|w|y))+$")

REQUIRED_ALERTS = {
    "CxbackupBackupRunFailed",
    "CxbackupBackupLagHigh",
    "CxbackupBackupRetentionMarginLow",
    "CxbackupNoRecentSuccess",
    "CxbackupCertificateExpiring",
    "CxbackupCertificateRotationFailed",
    "CxbackupExportFailed",
    "CxbackupOperatorDown",
}


# ---- what the operator exports ------------------------------------------------------------------
def _series_names(family: Metric) -> set[str]:
    """The names a family's samples carry in the exposition format."""
    if family.type == "counter":
        return {f"{family.name}_total"}
    if family.type == "histogram":
        return {f"{family.name}_{suffix}" for suffix in ("bucket", "sum", "count")}
    return {family.name}


def exported_metric_names() -> set[str]:
    """Every series name cxbackup exports: the module's counters/histograms and the scrape-time gauges."""
    names: set[str] = set()
    for family in REGISTRY.collect():
        if family.name.startswith("cxbackup_"):
            names |= _series_names(family)
    scrape_time = CollectorRegistry()
    metrics.register_state_collector(scrape_time, states=metrics.ObjectStates(), clock=lambda: 0.0)
    for family in scrape_time.collect():
        names |= _series_names(family)
    return names


# ---- PromQL -------------------------------------------------------------------------------------
def _as_promql(expr: str) -> str:
    """A Grafana or alert expression with Grafana's range variables replaced, ready to parse."""
    return GRAFANA_RANGE_VARIABLES.sub("5m", expr)


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads: from the parsed AST, and (cross-check) by regex."""
    promql = _as_promql(expr)
    ast = promql_parser.parse(promql)  # raises ValueError on a syntax error
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql_parser.walk(ast, visit)
    return names | set(METRIC_NAME.findall(promql))


def unknown_metrics(expr: str, exported: set[str]) -> set[str]:
    return {n for n in metric_names(expr) if n not in exported and n not in PROMETHEUS_METRICS}


LABEL_VALUES = re.compile(r"^label_values\((.+),\s*[a-zA-Z_][a-zA-Z0-9_]*\)$")


def _variable_query(query: Any) -> str | None:
    """The PromQL selector inside a Grafana query variable (`label_values(<selector>, label)`)."""
    text = query.get("query") if isinstance(query, dict) else query
    if not isinstance(text, str) or not text:
        return None
    match = LABEL_VALUES.match(text.strip())
    assert match, f"unsupported variable query {text!r}"
    return match.group(1)


def dashboard_exprs(board: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, expression) for every panel target and query variable of a dashboard."""

    def panels(items: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in items:
            yield panel
            yield from panels(panel.get("panels", []))

    for panel in panels(board["panels"]):
        for target in panel.get("targets", []):
            yield f"panel {panel['id']} {panel['title']!r} {target['refId']}", target["expr"]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            selector = _variable_query(variable["query"])
            if selector is not None:
                yield f"variable {variable['name']}", selector


def _load(path: Path) -> dict[str, Any]:
    board: dict[str, Any] = json.loads(path.read_text())
    return board


def _all_panels(board: Mapping[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for panel in board["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))
    return out


# ---- alerts -------------------------------------------------------------------------------------
def chart_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


def _helm_string(value: object) -> str:
    """What Helm's `toString` prints for a value from YAML (numbers are float64 there)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def render_alert_rules(alerts: Mapping[str, Any]) -> dict[str, Any]:
    """files/alerts.yaml rendered with the chart values `alerts` (as the chart's helper does)."""

    def value(match: re.Match[str]) -> str:
        group, key = match.groups()
        settings = alerts.get(group)
        if not isinstance(settings, Mapping) or key not in settings:
            raise KeyError(f"files/alerts.yaml uses {match.group(0)}, which is not in values (alerts)")
        return _helm_string(settings[key])

    text = PLACEHOLDER.sub(value, ALERTS_FILE.read_text())
    rules: dict[str, Any] = yaml.safe_load(text)
    extra = dict(alerts.get("extraLabels") or {})
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["labels"] = {**extra, **(rule.get("labels") or {})}
    return rules


def alert_rules(alerts: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    rendered = render_alert_rules(chart_values()["alerts"] if alerts is None else alerts)
    return [rule for group in rendered["groups"] for rule in group["rules"]]


# ---- tests: dashboards --------------------------------------------------------------------------
def test_there_are_three_dashboards() -> None:
    assert [p.name for p in DASHBOARD_FILES] == [
        "cxbackup-backups.json",
        "cxbackup-certificates.json",
        "cxbackup-exports.json",
    ]


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_is_importable(path: Path) -> None:
    board = _load(path)
    assert board["uid"] == path.stem, "uid should equal the file name, so links and provisioning are stable"
    assert len(board["uid"]) <= 40, "Grafana uids are at most 40 characters"
    assert board["title"].startswith("cxbackup / ")
    assert 36 <= board["schemaVersion"] <= 41
    assert board["id"] is None, "an id would clash with existing dashboards on import"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert set(variables) >= {"datasource", "namespace", "name"}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in _all_panels(board):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert 'namespace=~"$namespace"' in target["expr"], f"{panel['title']!r} ignores $namespace"
            assert 'name=~"$name"' in target["expr"], f"{panel['title']!r} ignores $name"
        assert panel.get("description"), f"panel {panel['title']!r} has no description"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_panel_ids_unique_and_layout_fits(path: Path) -> None:
    board = _load(path)
    panels = _all_panels(board)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), f"duplicate panel ids in {path.name}: {ids}"
    cells: dict[tuple[int, int], int] = {}
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, f"panel {panel['id']} is wider than the grid"
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"panels {cells[(x, y)]} and {panel['id']} overlap"
                cells[(x, y)] = panel["id"]


def test_dashboard_uids_unique() -> None:
    uids = [_load(p)["uid"] for p in DASHBOARD_FILES]
    assert len(uids) == len(set(uids))


def test_chart_ships_the_same_dashboards() -> None:
    chart_copies = sorted((CHART / "dashboards").glob("*.json"))
    assert [p.name for p in chart_copies] == [p.name for p in DASHBOARD_FILES]
    for original in DASHBOARD_FILES:
        copy = CHART / "dashboards" / original.name
        assert copy.read_bytes() == original.read_bytes(), f"{copy} differs from {original}: copy it again"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboard_queries_parse_and_use_exported_metrics(path: Path) -> None:
    exported = exported_metric_names()
    seen = 0
    for where, expr in dashboard_exprs(_load(path)):
        assert not unknown_metrics(expr, exported), f"{path.name} {where}: {expr}"
        seen += 1
    assert seen > 5


@pytest.mark.parametrize(
    ("dashboard", "wanted"),
    [
        (
            "cxbackup-backups.json",
            {
                "cxbackup_backup_runs_total",
                "cxbackup_backup_lag_seconds",
                "cxbackup_backup_bytes_total",
                "cxbackup_backup_recordings_total",
                "cxbackup_backup_shard_progress_ratio",
                "cxbackup_backup_retention_margin_seconds",
                "cxbackup_backup_audit_missing_recordings",
                "cxbackup_backup_last_success_timestamp_seconds",
            },
        ),
        (
            "cxbackup-certificates.json",
            {
                "cxbackup_certificate_seconds_to_expiry",
                "cxbackup_certificate_ready",
                "cxbackup_certificate_rotations_total",
            },
        ),
        (
            "cxbackup-exports.json",
            {
                "cxbackup_export_runs_total",
                "cxbackup_export_artifacts",
                "cxbackup_export_artifact_bytes",
                "cxbackup_export_artifacts_expired_total",
            },
        ),
    ],
)
def test_dashboards_show_what_operators_need(dashboard: str, wanted: set[str]) -> None:
    used: set[str] = set()
    for _, expr in dashboard_exprs(_load(DASHBOARDS / dashboard)):
        used |= metric_names(expr)
    assert wanted <= used, f"{dashboard} has no panel for {sorted(wanted - used)}"


# ---- tests: the metric name constants -----------------------------------------------------------
def test_metric_name_constants_are_the_exported_names() -> None:
    """metrics.METRIC_NAMES names every family the operator exports, once each, as PromQL spells it."""
    exported = exported_metric_names()
    assert len(metrics.METRIC_NAMES) == len(set(metrics.METRIC_NAMES))
    queried: set[str] = set()
    for name in metrics.METRIC_NAMES:
        histogram = {f"{name}_{suffix}" for suffix in ("bucket", "sum", "count")}
        queried |= histogram if histogram <= exported else {name}
    assert queried == exported
    assert metrics.BACKUP_RUNS_TOTAL == "cxbackup_backup_runs_total"  # a counter's constant keeps `_total`
    assert f"{metrics.BACKUP_RUN_DURATION_SECONDS}_bucket" in exported  # a histogram's is the base name


# ---- tests: the checker itself ------------------------------------------------------------------
def test_metric_check_rejects_unknown_names_and_bad_syntax() -> None:
    exported = exported_metric_names()
    assert "cxbackup_backup_runs_total" in exported
    assert "cxbackup_backup_run_duration_seconds_bucket" in exported
    assert "cxbackup_backup_lag_seconds" in exported  # a scrape-time gauge
    assert "cxbackup_backup_runs_total_total" not in exported
    assert unknown_metrics("sum(rate(cxbackup_backup_runs_total[5m]))", exported) == set()
    assert unknown_metrics("rate(cxbackup_backup_downloads_total[$__rate_interval])", exported) == {
        "cxbackup_backup_downloads_total"
    }
    assert unknown_metrics("cxbackup_backup_run_duration_seconds_bucket > 0", exported) == set()
    assert unknown_metrics("cxbackup_backup_run_duration_seconds > 0", exported) == {
        "cxbackup_backup_run_duration_seconds"
    }
    assert unknown_metrics('absent(up{job="x"}) or node_load1 > 1', exported) == {"node_load1"}
    with pytest.raises(ValueError):
        metric_names("sum(rate(cxbackup_backup_runs_total[5m])")


# ---- tests: alerts ------------------------------------------------------------------------------
def test_alert_rules_parse_and_use_exported_metrics() -> None:
    exported = exported_metric_names()
    rules = alert_rules()
    assert rules
    for rule in rules:
        assert not unknown_metrics(rule["expr"], exported), f"{rule['alert']}: {rule['expr']}"


def test_every_alert_has_severity_and_runbook() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    assert set(names) >= REQUIRED_ALERTS, f"missing alerts: {sorted(REQUIRED_ALERTS - set(names))}"
    for rule in rules:
        assert rule["alert"].startswith("Cxbackup")
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        annotations = rule["annotations"]
        for key in ("summary", "description", "runbook"):
            assert isinstance(annotations.get(key), str), f"{rule['alert']} has no {key}"
        assert len(annotations["runbook"]) > 80, f"{rule['alert']}: the runbook should say what to check and do"
        if "for" in rule:
            assert DURATION.match(rule["for"]), f"{rule['alert']}: bad duration {rule['for']!r}"


def test_alerts_file_uses_only_known_values() -> None:
    alerts = chart_values()["alerts"]
    for group, key in PLACEHOLDER.findall(ALERTS_FILE.read_text()):
        assert key in alerts[group], f"${{alerts.{group}.{key}}} is not in values.yaml"
    broken = {**alerts, "backupLag": {"for": "1h", "severity": "warning"}}
    with pytest.raises(KeyError, match="maxLagDays"):
        render_alert_rules(broken)


def test_alert_thresholds_come_from_values() -> None:
    alerts = chart_values()["alerts"]
    custom = {
        **alerts,
        "extraLabels": {"team": "contact-center", "severity": "ignored"},
        "backupLag": {**alerts["backupLag"], "maxLagDays": 21},
        "retentionMargin": {**alerts["retentionMargin"], "minDays": 3.5},
        "certificateExpiring": {**alerts["certificateExpiring"], "days": 45},
        "noRecentSuccess": {**alerts["noRecentSuccess"], "intervalMultiplier": 3},
        "operatorDown": {**alerts["operatorDown"], "jobRegex": "ops-cxb", "severity": "info"},
    }
    by_name = {rule["alert"]: rule for rule in alert_rules(custom)}
    assert "> 21 * 86400" in by_name["CxbackupBackupLagHigh"]["expr"]
    assert "21 days" in by_name["CxbackupBackupLagHigh"]["annotations"]["description"]
    assert "< 3.5 * 86400" in by_name["CxbackupBackupRetentionMarginLow"]["expr"]
    assert "< 45 * 86400" in by_name["CxbackupCertificateExpiring"]["expr"]
    assert (
        "> 3 * max by (namespace, name) (cxbackup_backup_expected_interval_seconds)"
        in (by_name["CxbackupNoRecentSuccess"]["expr"])
    )
    assert 'up{job=~"ops-cxb"}' in by_name["CxbackupOperatorDown"]["expr"]
    assert by_name["CxbackupOperatorDown"]["labels"] == {"team": "contact-center", "severity": "info"}
    for rule in by_name.values():
        assert rule["labels"]["team"] == "contact-center"
        assert rule["labels"]["severity"] != "ignored", "a rule's own severity wins over extraLabels"


def test_default_thresholds() -> None:
    by_name = {rule["alert"]: rule for rule in alert_rules()}
    assert "> 14 * 86400" in by_name["CxbackupBackupLagHigh"]["expr"]
    assert "several weeks before deletion" in by_name["CxbackupBackupLagHigh"]["annotations"]["description"]
    # Per backup's own schedule, not a fixed 25h: twice the expected interval.
    no_success = by_name["CxbackupNoRecentSuccess"]["expr"]
    assert "time() - max by (namespace, name) (" in no_success
    # before a first success, counted from the backup's creation
    assert (
        "cxbackup_backup_last_success_timestamp_seconds\n    or\n    cxbackup_backup_created_timestamp_seconds"
        in no_success
    )
    assert "> 2 * max by (namespace, name) (cxbackup_backup_expected_interval_seconds)" in no_success
    down = by_name["CxbackupOperatorDown"]
    assert down["expr"] == 'absent(up{job=~".*cxbackup.*"} == 1)'
    assert down["for"] == "5m"
    assert down["labels"]["severity"] == "critical"
    failed = by_name["CxbackupBackupRunFailed"]["expr"]
    assert 'increase(cxbackup_backup_runs_total{result="failed"}[1h])' in failed
