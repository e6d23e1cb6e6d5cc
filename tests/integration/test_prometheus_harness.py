"""The Prometheus harness (cxbackup_dev.localcluster.prometheus), proved without a node.

A real Prometheus 3.16.0 (hack/build-prometheus.sh, cached) scrapes a metrics endpoint served in this
process exactly as the operator serves it (probes.serve_metrics_and_readiness over the default registry,
with the scrape-time state collector), using the scrape job of the chart's rendered ServiceMonitor and
the chart's rendered alert rules, with a 1 s scrape and evaluation interval. Metric state is set the way
the controllers set it: metrics.record_* for finished runs, metrics.STATE for what they last saw of a
backup, a certificate and an export. Then the chart's alerts must fire with the labels their runbooks
use, and the dashboards' panel queries must show the recorded values.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from cxbackup import metrics
from cxbackup.controller.probes import Readiness, serve_metrics_and_readiness
from cxbackup_dev.localcluster.controlplane import free_port
from cxbackup_dev.localcluster.prometheus import (
    Prometheus,
    PrometheusError,
    ScrapeSettings,
    build_prometheus,
    chart_rule_groups,
    chart_scrape_settings,
    dashboard_queries,
    sample_value,
)
from tests.integration.helm_fixtures import Helm

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "cxbackup"
DASHBOARDS = REPO / "dashboards"
FAST = "1s"  # scrape and rule evaluation interval of these tests
POLL = 0.1  # how often a wait asks Prometheus again
RATE_INTERVAL = "5m"  # what $__rate_interval becomes: longer than any test, so every sample is in range
DAY = 86400.0


DISCOVERY_RELOAD = "100ms"
"""How soon Prometheus applies its scrape targets after it starts (`--scrape.discovery-reload-interval`, 5 s by
default: the first scrape of every test waited for it)."""


@pytest.fixture(scope="module")
def prometheus_binary() -> str:
    """prometheus, built once by hack/build-prometheus.sh (a no-op when cached)."""
    return build_prometheus()


@pytest.fixture(scope="module")
def rule_groups(helm: Helm) -> list[dict[str, Any]]:
    return chart_rule_groups(helm.run, CHART)


@pytest.fixture(scope="module")
def scrape(helm: Helm) -> ScrapeSettings:
    """The chart's ServiceMonitor for the release the e2e stack installs (cxbackup in cxbackup-system)."""
    return chart_scrape_settings(helm.run, CHART, release="cxbackup", namespace="cxbackup-system")


def rule(groups: list[dict[str, Any]], alert: str) -> dict[str, Any]:
    found: dict[str, Any] = next(r for g in groups for r in g["rules"] if r.get("alert") == alert)
    return found


@dataclass(frozen=True)
class Objects:
    """One namespace of this test's own (the metrics registry is the process's), and its objects."""

    namespace: str
    backup: str = "nightly"
    certificate: str = "tenant-cert"
    export: str = "gdpr-export"


@pytest.fixture
def objects() -> Iterator[Objects]:
    objs = Objects(namespace=f"prom-{uuid.uuid4().hex[:8]}")
    yield objs
    for kind, name in (("backups", objs.backup), ("certificates", objs.certificate), ("exports", objs.export)):
        metrics.STATE.forget(kind, objs.namespace, name)
    remove_series(objs.namespace)


# The metrics updated when something happens: their series stay in the process's registry until removed.
EVENT_METRICS = (
    metrics.BACKUP_RUNS,
    metrics.BACKUP_RUNS_SKIPPED,
    metrics.BACKUP_RECORDINGS,
    metrics.BACKUP_BYTES,
    metrics.BACKUP_DURATION,
    metrics.CERT_ROTATIONS,
    metrics.EXPORT_RUNS,
    metrics.EXPORT_DURATION,
    metrics.EXPORT_EXPIRED,
)


def remove_series(namespace: str) -> None:
    """Remove this namespace's series of the event metrics, so that other tests never see them."""
    for metric in EVENT_METRICS:
        for family in metric.collect():
            for sample in family.samples:
                if sample.labels.get("namespace") == namespace:
                    # a sample's labels are the metric's label values in order, then a bucket's `le`
                    with contextlib.suppress(KeyError):
                        metric.remove(*(v for k, v in sample.labels.items() if k != "le"))


@pytest.fixture
def endpoint() -> Iterator[Any]:
    """/metrics served as the operator serves it (controller/main.py): the state collector on the default
    registry, then serve_metrics_and_readiness on loopback. Yields the server; its address is
    server.server_address."""
    metrics.register_state_collector()
    readiness = Readiness(lambda: None)
    readiness.mark_started()
    server = serve_metrics_and_readiness(free_port(), "127.0.0.1", readiness)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def address(server: Any) -> str:
    host, port = server.server_address[:2]
    return f"{host}:{port}"


@pytest.fixture
def start(
    tmp_path: Path, prometheus_binary: str, rule_groups: list[dict[str, Any]], scrape: ScrapeSettings
) -> Iterator[Any]:
    """Starts the harness (1 s scrape and evaluation) against a target; checks afterwards that its
    process is gone."""
    started: list[Prometheus] = []

    def run(target: str, groups: list[dict[str, Any]] | None = None) -> Prometheus:
        prom = Prometheus(
            workdir=tmp_path / f"prometheus-{len(started)}",
            scrape_targets=[target],
            rule_groups=rule_groups if groups is None else groups,
            scrape=scrape,
            scrape_interval=FAST,
            evaluation_interval=FAST,
            binary=prometheus_binary,
            discovery_reload_interval=DISCOVERY_RELOAD,
        )
        started.append(prom)
        return prom

    yield run
    for prom in started:
        pid = prom.pid
        prom.stop()
        if pid is not None:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


def record_state(objs: Objects, now: float) -> None:
    """What the reconcilers record about a backup (a failed run, a skipped one, an erasure, its status), a certificate
    (a failed rotation) and an export (a failed and a successful run, expired artifacts, what is stored)."""
    ns = objs.namespace
    metrics.record_backup_run(
        ns, objs.backup, result="failed", seconds=42, downloaded=0, skipped=0, failed=3, nbytes=0, erased=2,
        retention_deleted=3,
    )  # fmt: skip
    metrics.record_backup_skipped(ns, objs.backup)
    metrics.record_erasure(ns, objs.backup, erased=4, held=1, failed=0)
    metrics.record_certificate_rotation(ns, objs.certificate, ok=False)
    metrics.record_export_run(ns, objs.export, result="failed", seconds=3)
    metrics.record_export_run(ns, objs.export, result="succeeded", seconds=12)
    metrics.record_artifacts_expired(ns, objs.export, 2)
    with metrics.STATE.lock:
        metrics.STATE.backups[(ns, objs.backup)] = metrics.BackupState(
            last_recording_end=now - 3 * 3600,
            last_success=now - 2 * 3600,
            expected_interval=DAY,
            running=True,
            shard_progress={"0": 0.25, "1": 0.75},
            audit_missing=5,
            oldest_unbacked_start=now - 2 * DAY,
            retention_seconds=30 * DAY,
            sweep={"expired": 4, "held": 1, "deleted": 3, "failed": 1},
            index_recordings=1200,
            index_bytes=1_560_000,
        )
        metrics.STATE.certificates[(ns, objs.certificate)] = metrics.CertificateState(
            not_after=now + 40 * DAY, ready=True
        )
        metrics.STATE.exports[(ns, objs.export)] = metrics.ExportState(artifacts=3, artifact_bytes=4096)


def active(prom: Prometheus, alert: str) -> list[dict[str, Any]]:
    return [a for a in prom.alerts() if a["labels"]["alertname"] == alert]


def until(condition: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not true after {timeout:.0f}s"
        time.sleep(0.1)


# ---- tests --------------------------------------------------------------------------------------
def test_the_scrape_job_is_the_chart_servicemonitors(scrape: ScrapeSettings, rule_groups: list[dict[str, Any]]) -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    monitor = values["metrics"]["serviceMonitor"]
    assert scrape.interval == monitor["interval"] and scrape.timeout == monitor["scrapeTimeout"]
    assert scrape.path == "/metrics"
    # the Prometheus operator names the job after the Service (the release's full name: cxbackup)
    assert scrape.job == "cxbackup"
    assert dict(scrape.target_labels) == {"namespace": "cxbackup-system", "service": "cxbackup", "endpoint": "metrics"}
    # the operator-down alert selects that job
    assert re.fullmatch(values["alerts"]["operatorDown"]["jobRegex"], scrape.job)
    assert (
        f'up{{job=~"{values["alerts"]["operatorDown"]["jobRegex"]}"}}'
        in rule(rule_groups, "CxbackupOperatorDown")["expr"]
    )
    # the objects' own namespace label must win over the target's (the alerts group by it)
    assert scrape.honor_labels is True


def test_prometheus_scrapes_the_operator_and_the_failed_run_alert_fires(
    start: Any, endpoint: Any, objects: Objects, rule_groups: list[dict[str, Any]], scrape: ScrapeSettings
) -> None:
    record_state(objects, time.time())
    with start(address(endpoint)) as prom:
        up = prom.wait_for(f'up{{job="{scrape.job}"}} == 1', timeout=20, poll=POLL)
        assert up[0]["metric"] == {"__name__": "up", "job": scrape.job, "instance": address(endpoint),
                                   **scrape.target_labels}  # fmt: skip
        (target,) = prom.targets()
        assert target["health"] == "up" and target["scrapeUrl"] == f"http://{address(endpoint)}/metrics"
        # the operator-down alert's expression is empty while the operator is scraped
        assert prom.query(rule(rule_groups, "CxbackupOperatorDown")["expr"]) == []

        failed = rule(rule_groups, "CxbackupBackupRunFailed")
        alert = prom.wait_for_alert(
            "CxbackupBackupRunFailed", {"namespace": objects.namespace, "name": objects.backup}, timeout=20
        )
        # no `for:`: it fires at the first evaluation that sees the failure; with a `for:` pending is enough
        assert alert["state"] == ("pending" if "for" in failed else "firing")
        assert alert["labels"] == {
            "alertname": "CxbackupBackupRunFailed",
            "namespace": objects.namespace,
            "name": objects.backup,
            "severity": failed["labels"]["severity"],
        }
        assert f"{objects.namespace}/{objects.backup} failed" in alert["annotations"]["summary"]
        assert float(alert["value"]) == 1  # one failed run
        # the rule loaded from the rendered chart and ran without error
        health = {r["name"]: (r["health"], r.get("lastError", "")) for g in prom.rules() for r in g["rules"]}
        assert set(health) == {r["alert"] for g in rule_groups for r in g["rules"]}
        assert {name: h for name, h in health.items() if h[0] == "err"} == {}


def test_every_dashboard_query_shows_the_recorded_data(start: Any, endpoint: Any, objects: Objects) -> None:
    ns, backup = objects.namespace, objects.backup
    record_state(objects, time.time())
    selector = f'namespace="{ns}", name="{backup}"'
    with start(address(endpoint)) as prom:
        # the counters' zero samples are in the TSDB before the successful run adds to them
        prom.wait_for(f"cxbackup_backup_bytes_total{{{selector}}} == 0", timeout=20, poll=POLL)
        metrics.record_backup_run(
            ns, backup, result="succeeded", seconds=300, downloaded=7, skipped=2, failed=0, nbytes=123456
        )
        prom.wait_for(f"cxbackup_backup_bytes_total{{{selector}}} == 123456", timeout=20, poll=POLL)
        # evaluate at the newest sample's time: rates then cover exactly the recorded increase
        at = sample_value(prom.query(f"timestamp(cxbackup_backup_bytes_total{{{selector}}})")[0])

        everything = dashboard_queries(DASHBOARDS, rate_interval=RATE_INTERVAL)
        assert len(everything) >= 30 and {d for d, _, _ in everything} == {
            "cxbackup-backups",
            "cxbackup-certificates",
            "cxbackup-exports",
        }
        empty = [(d, title, expr) for d, title, expr in everything if not prom.query(expr, at=at)]
        assert empty == [], "dashboard queries without data"

        # the same queries with the namespace variable set to this test's: the objects' own labels
        ours: dict[tuple[str, str], list[list[dict[str, Any]]]] = {}
        for dashboard, title, expr in dashboard_queries(
            DASHBOARDS, variables={"namespace": ns}, rate_interval=RATE_INTERVAL
        ):
            result = prom.query(expr, at=at)
            assert result, f"{dashboard} / {title}: no data for namespace {ns}: {expr}"
            ours.setdefault((dashboard, title), []).append(result)

        def single(dashboard: str, title: str, query: int = 0) -> float:
            (sample,) = ours[(dashboard, title)][query]
            return sample_value(sample)

        rate_seconds = 300
        assert single("cxbackup-backups", "Throughput (bytes/s)") * rate_seconds == pytest.approx(123456)
        by_outcome = {
            s["metric"]["outcome"]: sample_value(s) for s in ours[("cxbackup-backups", "Recordings/s by outcome")][0]
        }
        assert by_outcome["downloaded"] * rate_seconds == pytest.approx(7)
        assert by_outcome["skipped"] * rate_seconds == pytest.approx(2)
        assert single("cxbackup-backups", "Missing recordings (audit)") == 5
        assert single("cxbackup-backups", "Runs active") == 1
        assert single("cxbackup-backups", "Last success per backup", 1) == DAY
        shards = {
            s["metric"]["shard"]: sample_value(s) for s in ours[("cxbackup-backups", "Shard progress (active runs)")][0]
        }
        assert shards == {"0": 0.25, "1": 0.75}
        assert single("cxbackup-backups", "Lowest retention margin") == pytest.approx(28 * DAY, abs=60)
        assert single("cxbackup-certificates", "Certificates") == 1
        assert single("cxbackup-certificates", "Soonest expiry (days)") == pytest.approx(40, abs=0.01)
        assert single("cxbackup-exports", "Artifacts stored") == 3
        assert single("cxbackup-exports", "Artifact bytes stored") == 4096


def test_the_operator_down_alert_pends_when_the_target_goes_away(
    start: Any, endpoint: Any, rule_groups: list[dict[str, Any]], scrape: ScrapeSettings
) -> None:
    down = rule(rule_groups, "CxbackupOperatorDown")
    with start(address(endpoint)) as prom:
        prom.wait_for(f'up{{job="{scrape.job}"}} == 1', timeout=20, poll=POLL)
        # an evaluation before the first scrape may have made it pending; the next one after it clears it
        until(lambda: not active(prom, "CxbackupOperatorDown"), timeout=10)
        endpoint.shutdown()
        endpoint.server_close()
        prom.wait_for(f'up{{job="{scrape.job}"}} == 0', timeout=20, poll=POLL)
        alert = prom.wait_for_alert("CxbackupOperatorDown", states=("pending",), timeout=20)
        assert alert["labels"] == {"alertname": "CxbackupOperatorDown", "severity": down["labels"]["severity"]}
        assert "for" in down  # pending until its `for:` is over (5m by default)


def test_a_rule_file_prometheus_rejects_is_a_clear_error(start: Any, endpoint: Any) -> None:
    broken = [{"name": "broken", "rules": [{"alert": "Broken", "expr": "sum(rate(up[5m]"}]}]
    prom = start(address(endpoint), groups=broken)
    with pytest.raises(PrometheusError) as failed:
        prom.start()
    message = str(failed.value)
    assert "prometheus exited with code" in message
    assert str(prom.log_file) in message
    assert "rules.yaml" in message and "Broken" in message
    assert prom.pid is None  # nothing left running
