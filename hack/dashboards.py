"""The Grafana dashboards as code, built with Grafana's own SDK (grafana-foundation-sdk, in the `dev` extra).

    python hack/dashboards.py           rewrite dashboards/*.json and the chart's copies (`make dashboards`)
    python hack/dashboards.py --check   exit 1, with a summary of the differences, when a checked-in file is
                                        not what this script builds (a unit test runs the same check)

To change a dashboard, change it here and run `make dashboards`; the JSON files are output, not source.
Every metric name comes from cxbackup.metrics, never spelled here. The SDK places the panels in the
order they are added: a row spans the full width, and the panels after it fill the 24-column grid left
to right by their span, wrapping to a new line. Panel ids count 1, 2, ... in the same order. The output
is deterministic: sorted keys, two-space indent, a trailing newline.

This is development tooling, not part of the cxbackup package: the image does not contain it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, cast

REPO = Path(__file__).resolve().parents[1]
# This checkout's cxbackup package, whichever checkout the virtualenv has installed.
sys.path.insert(0, str(REPO / "operator"))

from grafana_foundation_sdk.builders import bargauge, stat, table, timeseries
from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus as prometheus_builders
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common, prometheus
from grafana_foundation_sdk.models import dashboard as models

from cxbackup import metrics as m

__all__ = ["OUTPUT_DIRS", "build", "drift", "main", "render", "write"]

OUTPUT_DIRS = (REPO / "dashboards", REPO / "helm" / "cxbackup" / "dashboards")
# The dashboard schema version the dashboards declare (the SDK's model would say 36).
SCHEMA_VERSION = 39

DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")
SELECTED = 'namespace=~"$namespace", name=~"$name"'
PER_OBJECT = "{{namespace}}/{{name}}"
RESULT_FAILED = 'result="failed"'
OUTCOME_FAILED = 'outcome="failed"'
OUTCOME_ERASED = 'outcome="erased"'
DAY = 86400
WEEK = 7 * DAY
TWO_WEEKS = 14 * DAY


# ---- queries ------------------------------------------------------------------------------------
def sel(metric: str, *matchers: str) -> str:
    """`metric{namespace=~"$namespace", name=~"$name", <matchers>}`: the series of the chosen objects."""
    return f"{metric}{{{', '.join((SELECTED, *matchers))}}}"


def series(expr: str, *, legend: str = PER_OBJECT, ref: str = "A") -> prometheus_builders.Dataquery:
    """A range query: a line (or bars) per series over the dashboard's time range."""
    return prometheus_builders.Dataquery().datasource(DATASOURCE).expr(expr).legend_format(legend).ref_id(ref).range()


def latest(expr: str, *, legend: str = "", ref: str = "A", as_table: bool = False) -> prometheus_builders.Dataquery:
    """An instant query: the latest value of each series (as table rows when `as_table`)."""
    query = prometheus_builders.Dataquery().datasource(DATASOURCE).expr(expr).legend_format(legend)
    query = query.ref_id(ref).instant()
    return query.format(prometheus.PromQueryFormat.TABLE) if as_table else query


def p90_and_mean(histogram: str) -> list[prometheus_builders.Dataquery]:
    """The 90th percentile and the mean of a histogram's observations in the past day, per object."""
    by_object = "sum by (namespace, name)"
    p90 = f"histogram_quantile(0.9, sum by (le, namespace, name) (increase({sel(f'{histogram}_bucket')}[1d])))"
    mean = (
        f"{by_object} (increase({sel(f'{histogram}_sum')}[1d])) / "
        f"{by_object} (increase({sel(f'{histogram}_count')}[1d]))"
    )
    return [series(p90, legend=f"{PER_OBJECT} p90"), series(mean, legend=f"{PER_OBJECT} mean", ref="B")]


# ---- panels -------------------------------------------------------------------------------------
# Absolute thresholds: (color, from value) steps, the first from None (minus infinity).
Steps = tuple[tuple[str, float | None], ...]
GREEN: Steps = (("green", None),)
RED_FROM_ONE: Steps = (("green", None), ("red", 1))


def thresholds_of(steps: Steps) -> dashboard_builders.ThresholdsConfig:
    return (
        dashboard_builders.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps([models.Threshold(value=start, color=color) for color, start in steps])
    )


def color_by(mode: models.FieldColorModeId) -> dashboard_builders.FieldColor:
    return dashboard_builders.FieldColor().mode(mode)


def last_not_null() -> common_builders.ReduceDataOptions:
    return common_builders.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def stat_panel(
    title: str,
    description: str,
    expr: str,
    *,
    span: int,
    unit: str = "short",
    thresholds: Steps = GREEN,
    decimals: int | None = None,
) -> stat.Panel:
    """One number, its background colored by the thresholds."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .height(4)
        .span(span)
        .with_target(latest(expr))
        .unit(unit)
        .thresholds(thresholds_of(thresholds))
        .color_scheme(color_by(models.FieldColorModeId.THRESHOLDS))
        .reduce_options(last_not_null())
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .justify_mode(common.BigValueJustifyMode.AUTO)
        .text_mode(common.BigValueTextMode.VALUE)
        .orientation(common.VizOrientation.AUTO)
    )
    return panel if decimals is None else panel.decimals(decimals)


def timeseries_panel(
    title: str,
    description: str,
    queries: list[prometheus_builders.Dataquery],
    *,
    span: int = 12,
    unit: str = "short",
    bars: bool = False,
    thresholds: Steps = GREEN,
    threshold_lines: bool = False,
    min_max: tuple[float, float] | None = None,
) -> timeseries.Panel:
    """Lines, or stacked bars for counts per interval, with a table legend of the last and the largest values."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .height(8)
        .span(span)
        .unit(unit)
        .thresholds(thresholds_of(thresholds))
        .color_scheme(color_by(models.FieldColorModeId.PALETTE_CLASSIC))
        .draw_style(common.GraphDrawStyle.BARS if bars else common.GraphDrawStyle.LINE)
        .line_width(1)
        .fill_opacity(60 if bars else 10)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(True)
        .stacking(
            common_builders.StackingConfig()
            .mode(common.StackingMode.NORMAL if bars else common.StackingMode.NONE)
            .group("A")
        )
        .thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(
                common.GraphThresholdsStyleMode.LINE if threshold_lines else common.GraphThresholdsStyleMode.OFF
            )
        )
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
            .calcs(["lastNotNull", "max"])
        )
        .tooltip(
            common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING)
        )
    )
    for query in queries:
        panel = panel.with_target(query)
    return panel if min_max is None else panel.min(min_max[0]).max(min_max[1])


def bargauge_panel(
    title: str,
    description: str,
    query: prometheus_builders.Dataquery,
    *,
    unit: str,
    thresholds: Steps,
    display_mode: common.BarGaugeDisplayMode,
    min_value: float,
    max_value: float | None = None,
    decimals: int | None = None,
) -> bargauge.Panel:
    """A horizontal bar per series, colored by the thresholds."""
    panel = (
        bargauge.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .height(8)
        .span(12)
        .with_target(query)
        .unit(unit)
        .thresholds(thresholds_of(thresholds))
        .color_scheme(color_by(models.FieldColorModeId.THRESHOLDS))
        .min(min_value)
        .display_mode(display_mode)
        .orientation(common.VizOrientation.HORIZONTAL)
        .show_unfilled(True)
        .value_mode(common.BarGaugeValueMode.COLOR)
        .reduce_options(last_not_null())
        .min_viz_height(16)
        .min_viz_width(8)
    )
    if max_value is not None:
        panel = panel.max(max_value)
    return panel if decimals is None else panel.decimals(decimals)


def table_panel(
    title: str,
    description: str,
    columns: Mapping[str, str],
    *,
    unit: str,
    overrides: Mapping[str, models.DynamicConfigValue] | None = None,
) -> table.Panel:
    """One row per object: each column (title: instant query) joined on the labels, without the time."""
    refs = [chr(ord("A") + i) for i in range(len(columns))]
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .height(8)
        .span(12)
        .targets([latest(expr, ref=ref, as_table=True) for ref, expr in zip(refs, columns.values(), strict=True)])
        .unit(unit)
        .thresholds(thresholds_of(GREEN))
        .color_scheme(color_by(models.FieldColorModeId.PALETTE_CLASSIC))
        .show_header(True)
        .cell_height(common.TableCellHeight.SM)
        # A hidden footer; Grafana's own default for its `fields` is the empty string.
        .footer(common_builders.TableFooterOptions().show(False).reducer(["sum"]).fields(cast(list[str], "")))
        .with_transformation(models.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            models.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True},
                    "renameByName": {f"Value #{ref}": name for ref, name in zip(refs, columns, strict=True)},
                },
            )
        )
    )
    for column, setting in (overrides or {}).items():
        panel = panel.override_by_name(column, [setting])
    return panel


def row(title: str) -> dashboard_builders.Row:
    return dashboard_builders.Row(title).collapsed(False)


# ---- dashboards ---------------------------------------------------------------------------------
Item = dashboard_builders.Row | Builder[models.Panel]


def scoped_variable(name: str, label: str, selector: str) -> dashboard_builders.QueryVariable:
    """A multi-value variable of the label `name` of the series `selector`, "All" selected."""
    query = f"label_values({selector}, {name})"
    return (
        dashboard_builders.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query({"query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery", "qryType": 1})
        .include_all(True)
        .multi(True)
        .all_value(".*")
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(models.VariableSort.ALPHABETICAL_ASC)
        .regex("")
        .current(models.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .hide(models.VariableHide.DONT_HIDE)
        .options([])
    )


def dashboard(uid: str, title: str, description: str, *, variables_from: str, items: Sequence[Item]) -> dict[str, Any]:
    """A cxbackup dashboard: Prometheus picked in $datasource, objects in $namespace and $name (read from
    the labels of `variables_from`), linked to the other cxbackup dashboards, and the given rows and panels."""
    builder = (
        dashboard_builders.Dashboard(f"cxbackup / {title}")
        .uid(uid)
        .description(description)
        .tags(["cxbackup"])
        .editable()
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .time("now-7d", "now")
        .timezone("")
        .week_start("")
        .fiscal_year_start_month(0)
        .refresh("1m")
        .version(1)
        .annotation(
            dashboard_builders.AnnotationQuery()
            .built_in(1)
            .datasource(models.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .name("Annotations & Alerts")
            .type("dashboard")
        )
        .link(
            dashboard_builders.DashboardLink("cxbackup")
            .type(models.DashboardLinkType.DASHBOARDS)
            .tags(["cxbackup"])
            .as_dropdown(False)
            .icon("external link")
            .include_vars(True)
            .keep_time(True)
            .target_blank(False)
        )
        .with_variable(
            dashboard_builders.DatasourceVariable("datasource")
            .label("Data source")
            .type("prometheus")
            .regex("")
            .hide(models.VariableHide.DONT_HIDE)
            .include_all(False)
            .multi(False)
        )
        .with_variable(scoped_variable("namespace", "Namespace", variables_from))
        .with_variable(scoped_variable("name", "Name", f'{variables_from}{{namespace=~"$namespace"}}'))
    )
    for item in items:
        builder = builder.with_row(item) if isinstance(item, dashboard_builders.Row) else builder.with_panel(item)
    model = builder.build()
    model.schema_version = SCHEMA_VERSION
    for number, panel in enumerate(model.panels or [], start=1):
        panel.id_val = number
    board: dict[str, Any] = json.loads(json.dumps(model, cls=JSONEncoder))
    return _beyond_the_sdk(board)


def _beyond_the_sdk(board: dict[str, Any]) -> dict[str, Any]:
    """Fields Grafana writes that the SDK's dashboard schema leaves out, as a dashboard saved by Grafana has them."""
    board["id"] = None  # imported as a new dashboard, never over another one's numeric id
    board["timepicker"] = {}  # Grafana's default time picker (the SDK would spell out the default intervals)
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            variable["definition"] = variable["query"]["query"]  # what the variables list shows
        elif variable["type"] == "datasource":
            variable.update(current={}, options=[], refresh=models.VariableRefresh.ON_DASHBOARD_LOAD.value)
    return board


def backups() -> dict[str, Any]:
    runs_failed = sel(m.BACKUP_RUNS_TOTAL, RESULT_FAILED)
    return dashboard(
        "cxbackup-backups",
        "Recording backups",
        "RecordingBackup runs, lag behind the vendor's retention, throughput, shard progress and audits.",
        variables_from=m.BACKUP_RUNNING,
        items=[
            row("Overview"),
            stat_panel(
                "Runs active",
                "RecordingBackups with a run in progress.",
                f"sum({sel(m.BACKUP_RUNNING)})",
                span=4,
            ),
            stat_panel(
                "Failed runs (24h)",
                "Backup runs that failed in the last 24 hours.",
                f"sum(increase({runs_failed}[24h]))",
                span=4,
                thresholds=RED_FROM_ONE,
                decimals=0,
            ),
            stat_panel(
                "Worst lag",
                "Largest time between now and the end of the last fully backed-up window.",
                f"max({sel(m.BACKUP_LAG_SECONDS)})",
                span=4,
                unit="s",
                thresholds=(("green", None), ("orange", WEEK), ("red", TWO_WEEKS)),
            ),
            stat_panel(
                "Lowest retention margin",
                "Shortest time until the vendor deletes a recording that is not backed up yet.",
                f"min({sel(m.BACKUP_RETENTION_MARGIN_SECONDS)})",
                span=4,
                unit="s",
                thresholds=(("red", None), ("orange", WEEK), ("green", TWO_WEEKS)),
            ),
            stat_panel(
                "Missing recordings (audit)",
                "Recordings the vendor holds that the last audits did not find in the target.",
                f"sum({sel(m.BACKUP_AUDIT_MISSING_RECORDINGS)})",
                span=4,
                thresholds=RED_FROM_ONE,
                decimals=0,
            ),
            stat_panel(
                "Skipped runs (24h)",
                "Runs not started because the previous run was still active (concurrencyPolicy Forbid).",
                f"sum(increase({sel(m.BACKUP_RUNS_SKIPPED_TOTAL)}[24h]))",
                span=4,
                thresholds=(("green", None), ("orange", 1)),
                decimals=0,
            ),
            row("Runs"),
            timeseries_panel(
                "Runs by result",
                "Finished backup runs per interval, by result.",
                [
                    series(
                        f"sum by (result) (increase({sel(m.BACKUP_RUNS_TOTAL)}[$__rate_interval]))",
                        legend="{{result}}",
                    )
                ],
                bars=True,
            ),
            timeseries_panel(
                "Failures",
                "Failed runs and failed recordings per interval, by backup.",
                [
                    series(
                        f"sum by (namespace, name) (increase({runs_failed}[$__rate_interval]))",
                        legend=f"{PER_OBJECT} failed runs",
                    ),
                    series(
                        "sum by (namespace, name) "
                        f"(increase({sel(m.BACKUP_RECORDINGS_TOTAL, OUTCOME_FAILED)}[$__rate_interval]))",
                        legend=f"{PER_OBJECT} failed recordings",
                        ref="B",
                    ),
                ],
                bars=True,
            ),
            timeseries_panel(
                "Backup lag",
                "Now minus the end of the last fully backed-up window (status.lastRecordingEndTime). Keep it "
                "well under the vendor's retention.",
                [series(f"max by (namespace, name) ({sel(m.BACKUP_LAG_SECONDS)})")],
                unit="s",
                thresholds=(("green", None), ("red", TWO_WEEKS)),
                threshold_lines=True,
            ),
            timeseries_panel(
                "Retention margin",
                "Time until the vendor deletes the oldest recording not yet backed up; zero means recordings "
                "are being lost.",
                [series(f"min by (namespace, name) ({sel(m.BACKUP_RETENTION_MARGIN_SECONDS)})")],
                unit="s",
                thresholds=(("red", None), ("green", WEEK)),
                threshold_lines=True,
            ),
            row("Throughput"),
            timeseries_panel(
                "Throughput (bytes/s)",
                "Bytes written to the target per second. Counted when a run finishes, so long runs show as a "
                "spike at their end.",
                [series(f"sum by (namespace, name) (rate({sel(m.BACKUP_BYTES_TOTAL)}[$__rate_interval]))")],
                unit="Bps",
            ),
            timeseries_panel(
                "Recordings/s by outcome",
                "Recordings handled per second by outcome (downloaded, skipped because already in the target, "
                "failed). Counted when a run finishes.",
                [
                    series(
                        f"sum by (outcome) (rate({sel(m.BACKUP_RECORDINGS_TOTAL)}[$__rate_interval]))",
                        legend="{{outcome}}",
                    )
                ],
            ),
            bargauge_panel(
                "Shard progress (active runs)",
                "Progress of each shard of the runs in progress.",
                latest(
                    f"max by (namespace, name, shard) ({sel(m.BACKUP_SHARD_PROGRESS_RATIO)})",
                    legend=f"{PER_OBJECT} shard {{{{shard}}}}",
                ),
                unit="percentunit",
                thresholds=(("blue", None), ("green", 1)),
                display_mode=common.BarGaugeDisplayMode.GRADIENT,
                min_value=0,
                max_value=1,
            ),
            timeseries_panel(
                "Run duration",
                "90th percentile and mean duration of the runs that finished in the past day.",
                p90_and_mean(m.BACKUP_RUN_DURATION_SECONDS),
                unit="s",
            ),
            row("Schedule and audit"),
            table_panel(
                "Last success per backup",
                "Time since the last successful run, the schedule's interval, and the lag, per backup. A backup "
                "whose time since success exceeds twice its interval raises CxbackupNoRecentSuccess.",
                {
                    "Since last success": "time() - max by (namespace, name) "
                    f"({sel(m.BACKUP_LAST_SUCCESS_TIMESTAMP_SECONDS)})",
                    "Schedule interval": f"max by (namespace, name) ({sel(m.BACKUP_EXPECTED_INTERVAL_SECONDS)})",
                    "Lag": f"max by (namespace, name) ({sel(m.BACKUP_LAG_SECONDS)})",
                },
                unit="s",
            ),
            timeseries_panel(
                "Audit: missing recordings",
                "Recordings the vendor holds that the last audit did not find in the target.",
                [series(f"max by (namespace, name) ({sel(m.BACKUP_AUDIT_MISSING_RECORDINGS)})")],
                thresholds=RED_FROM_ONE,
                threshold_lines=True,
            ),
            row("Retention, legal holds, erasure and the search index"),
            timeseries_panel(
                "Last retention sweep",
                "Recordings past spec.retention.keepFor at the last sweep: expired (not held: deleted, or to be "
                "deleted when the sweep is DryRun), held (kept by a legal hold), deleted, failed (could not be "
                "deleted, e.g. under S3 Object Lock; kept and tried again next run).",
                [
                    series(
                        f"sum by (state) ({sel(m.BACKUP_RETENTION_SWEEP_RECORDINGS)})",
                        legend="{{state}}",
                    )
                ],
            ),
            timeseries_panel(
                "Deleted by retention, erased, and erased recordings not backed up again",
                "Recordings the retention sweep deleted, recordings RecordingErasure requests erased (and, apart, "
                "those a legal hold kept or that could not be erased), and recordings the vendor still lists that a "
                "backup run did not download because an erasure removed them, per interval.",
                [
                    series(
                        "sum by (namespace, name) "
                        f"(increase({sel(m.BACKUP_RETENTION_DELETED_TOTAL)}[$__rate_interval]))",
                        legend=f"{PER_OBJECT} deleted",
                    ),
                    series(
                        "sum by (namespace, name) "
                        f"(increase({sel(m.BACKUP_RECORDINGS_TOTAL, OUTCOME_ERASED)}[$__rate_interval]))",
                        legend=f"{PER_OBJECT} erased, skipped",
                        ref="B",
                    ),
                    series(
                        "sum by (namespace, name, outcome) "
                        f"(increase({sel(m.BACKUP_ERASURE_RECORDINGS_TOTAL)}[$__rate_interval]))",
                        legend=f"{PER_OBJECT} erasure: {{{{outcome}}}}",
                        ref="C",
                    ),
                ],
                bars=True,
            ),
            timeseries_panel(
                "Search index: recordings",
                "Recordings in the target's search index (all shards) after the last run.",
                [series(f"max by (namespace, name) ({sel(m.BACKUP_INDEX_RECORDINGS)})")],
            ),
            timeseries_panel(
                "Search index: size",
                "Size of the target's search index files (all shards) after the last run.",
                [series(f"max by (namespace, name) ({sel(m.BACKUP_INDEX_BYTES)})")],
                unit="bytes",
            ),
        ],
    )


def certificates() -> dict[str, Any]:
    days_to_expiry = f"min by (namespace, name) ({sel(m.CERTIFICATE_SECONDS_TO_EXPIRY)}) / {DAY}"
    ready = f"max by (namespace, name) ({sel(m.CERTIFICATE_READY)})"
    expiry_colors: Steps = (("red", None), ("orange", 7), ("green", 30))
    return dashboard(
        "cxbackup-certificates",
        "Recording certificates",
        "RecordingCertificate validity, days to expiry and rotations.",
        variables_from=m.CERTIFICATE_READY,
        items=[
            row("Overview"),
            stat_panel(
                "Certificates",
                "RecordingCertificates the operator sees.",
                f"count({sel(m.CERTIFICATE_READY)})",
                span=6,
                decimals=0,
            ),
            stat_panel(
                "Not ready",
                "Certificates that are expired, not yet valid or invalid.",
                f"count({sel(m.CERTIFICATE_READY)} == 0) or vector(0)",
                span=6,
                thresholds=RED_FROM_ONE,
                decimals=0,
            ),
            stat_panel(
                "Soonest expiry (days)",
                "Days until the first certificate expires.",
                f"min({sel(m.CERTIFICATE_SECONDS_TO_EXPIRY)}) / {DAY}",
                span=6,
                unit="none",
                thresholds=expiry_colors,
                decimals=0,
            ),
            stat_panel(
                "Failed rotations (7d)",
                "Rotations that failed in the last 7 days.",
                f"sum(increase({sel(m.CERTIFICATE_ROTATIONS_TOTAL, RESULT_FAILED)}[7d]))",
                span=6,
                thresholds=RED_FROM_ONE,
                decimals=0,
            ),
            row("Expiry"),
            bargauge_panel(
                "Days to expiry",
                "Days until each certificate expires.",
                latest(days_to_expiry, legend=PER_OBJECT),
                unit="none",
                thresholds=expiry_colors,
                display_mode=common.BarGaugeDisplayMode.BASIC,
                min_value=0,
                decimals=0,
            ),
            table_panel(
                "Certificates",
                "Ready (1) or not (0), expiry date and days to expiry, per certificate.",
                {
                    "Ready": ready,
                    "Expires": f"max by (namespace, name) ({sel(m.CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS)}) * 1000",
                    "Days to expiry": days_to_expiry,
                },
                unit="none",
                overrides={
                    "Expires": models.DynamicConfigValue(id_val="unit", value="dateTimeAsIso"),
                    "Days to expiry": models.DynamicConfigValue(id_val="decimals", value=0),
                },
            ),
            timeseries_panel(
                "Days to expiry over time",
                "Days until each certificate expires; a rotation makes it jump up.",
                [series(days_to_expiry)],
                unit="none",
                thresholds=(("green", None), ("red", 30)),
                threshold_lines=True,
            ),
            timeseries_panel(
                "Ready",
                "1 when the certificate is valid, 0 when not.",
                [series(ready)],
                unit="none",
                min_max=(0, 1),
            ),
            row("Rotations"),
            timeseries_panel(
                "Rotations by result",
                "Certificate rotations per interval, by result.",
                [
                    series(
                        "sum by (namespace, name, result) "
                        f"(increase({sel(m.CERTIFICATE_ROTATIONS_TOTAL)}[$__rate_interval]))",
                        legend=f"{PER_OBJECT} {{{{result}}}}",
                    )
                ],
                span=24,
                bars=True,
            ),
        ],
    )


def exports() -> dict[str, Any]:
    return dashboard(
        "cxbackup-exports",
        "Exports",
        "ExportJob runs, stored encrypted artifacts and the retention sweep.",
        variables_from=m.EXPORT_RUNS_TOTAL,
        items=[
            row("Overview"),
            stat_panel(
                "Failed exports (24h)",
                "Export runs that failed in the last 24 hours.",
                f"sum(increase({sel(m.EXPORT_RUNS_TOTAL, RESULT_FAILED)}[24h]))",
                span=6,
                thresholds=RED_FROM_ONE,
                decimals=0,
            ),
            stat_panel(
                "Artifacts stored",
                "Encrypted artifacts currently kept.",
                f"sum({sel(m.EXPORT_ARTIFACTS)})",
                span=6,
                decimals=0,
            ),
            stat_panel(
                "Artifact bytes stored",
                "Bytes of the artifacts currently kept.",
                f"sum({sel(m.EXPORT_ARTIFACT_BYTES)})",
                span=6,
                unit="bytes",
            ),
            stat_panel(
                "Artifacts expired (7d)",
                "Artifacts deleted by the retention sweep in the last 7 days.",
                f"sum(increase({sel(m.EXPORT_ARTIFACTS_EXPIRED_TOTAL)}[7d]))",
                span=6,
                decimals=0,
            ),
            row("Runs"),
            timeseries_panel(
                "Export runs by result",
                "Finished export runs per interval, by result.",
                [
                    series(
                        f"sum by (result) (increase({sel(m.EXPORT_RUNS_TOTAL)}[$__rate_interval]))",
                        legend="{{result}}",
                    )
                ],
                bars=True,
            ),
            timeseries_panel(
                "Export duration",
                "90th percentile and mean duration of the exports that finished in the past day.",
                p90_and_mean(m.EXPORT_DURATION_SECONDS),
                unit="s",
            ),
            row("Artifacts"),
            timeseries_panel(
                "Artifacts stored",
                "Encrypted artifacts kept per ExportJob (deleted after its retentionDays).",
                [series(f"max by (namespace, name) ({sel(m.EXPORT_ARTIFACTS)})")],
                span=8,
            ),
            timeseries_panel(
                "Artifact bytes",
                "Bytes of the artifacts kept per ExportJob.",
                [series(f"max by (namespace, name) ({sel(m.EXPORT_ARTIFACT_BYTES)})")],
                span=8,
                unit="bytes",
            ),
            timeseries_panel(
                "Artifacts expired",
                "Artifacts deleted by the retention sweep per interval.",
                [
                    series(
                        "sum by (namespace, name) "
                        f"(increase({sel(m.EXPORT_ARTIFACTS_EXPIRED_TOTAL)}[$__rate_interval]))"
                    )
                ],
                span=8,
                bars=True,
            ),
        ],
    )


# ---- files --------------------------------------------------------------------------------------
def build() -> dict[str, dict[str, Any]]:
    """Every dashboard as Grafana's JSON model, by file name (the uid plus .json)."""
    boards = (backups(), certificates(), exports())
    return {f"{board['uid']}.json": board for board in boards}


def render(board: Mapping[str, Any]) -> str:
    return json.dumps(board, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


SHOWN_DIFFERENCES = 12


def drift(boards: Mapping[str, Mapping[str, Any]], dirs: Sequence[Path] | None = None) -> list[str]:
    """What differs between `boards` and the JSON files in `dirs` (default OUTPUT_DIRS): per file a summary
    line and the first differing fields (JSON paths, panels named by title). Empty when every file is
    exactly what `boards` renders to and there is no other dashboard file."""
    report: list[str] = []
    for directory in OUTPUT_DIRS if dirs is None else dirs:
        for path in sorted({*(directory / name for name in boards), *directory.glob("*.json")}):
            if path.name not in boards:
                report.append(f"{_shown(path)}: not built by hack/dashboards.py (delete it, or add it there)")
                continue
            if not path.exists():
                report.append(f"{_shown(path)}: missing")
                continue
            want, have = render(boards[path.name]), path.read_text()
            if want == have:
                continue
            try:
                fields = list(_differences(json.loads(have), json.loads(want), ""))
            except json.JSONDecodeError as err:
                report.append(f"{_shown(path)}: not valid JSON ({err})")
                continue
            if not fields:
                report.append(f"{_shown(path)}: same content, other formatting")
                continue
            count = f"{len(fields)} field{'s' if len(fields) > 1 else ''}"
            report.append(f"{_shown(path)}: differs from the generated dashboard in {count}")
            report.extend(f"    {field}" for field in fields[:SHOWN_DIFFERENCES])
            if len(fields) > SHOWN_DIFFERENCES:
                report.append(f"    ... and {len(fields) - SHOWN_DIFFERENCES} more")
    return report


def _differences(have: Any, want: Any, where: str) -> Iterator[str]:
    """`where: checked in -> generated` for every field that differs, depth first."""
    if isinstance(have, dict) and isinstance(want, dict):
        for key in sorted(have.keys() | want.keys()):
            at = f"{where}.{key}" if where else key
            if key not in want:
                yield f"{at}: only in the file"
            elif key not in have:
                yield f"{at}: only generated"
            else:
                yield from _differences(have[key], want[key], at)
    elif isinstance(have, list) and isinstance(want, list) and len(have) == len(want):
        for index, (a, b) in enumerate(zip(have, want, strict=True)):
            title = b.get("title") if isinstance(b, dict) else None
            yield from _differences(a, b, f"{where}[{index}{f' {title!r}' if title else ''}]")
    elif have != want or type(have) is not type(want):
        yield f"{where}: {_short(have)} -> {_short(want)}"


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _shown(path: Path) -> Path:
    return path.relative_to(REPO) if path.is_relative_to(REPO) else path


def write(boards: Mapping[str, Mapping[str, Any]], dirs: Sequence[Path] | None = None) -> list[Path]:
    """Write every dashboard into every directory of `dirs` (default OUTPUT_DIRS); return the files that
    changed."""
    changed: list[Path] = []
    for directory in OUTPUT_DIRS if dirs is None else dirs:
        directory.mkdir(parents=True, exist_ok=True)
        for name, board in boards.items():
            path, text = directory / name, render(board)
            if not path.exists() or path.read_text() != text:
                path.write_text(text)
                changed.append(path)
    return changed


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the Grafana dashboards (dashboards/ and the chart's copies).")
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when a file differs")
    args = parser.parse_args(argv)
    boards = build()
    if not args.check:
        for path in write(boards):
            print(f"wrote {_shown(path)}")
    report = drift(boards)
    if report:
        print("\n".join(report))
        print("The dashboards differ from hack/dashboards.py: run `make dashboards`.", file=sys.stderr)
        return 1
    print(f"{len(boards)} dashboards up to date in {', '.join(str(_shown(d)) for d in OUTPUT_DIRS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
