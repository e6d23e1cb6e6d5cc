"""What platform engineers watch, against the operator on a real node: a real Prometheus 3.16 scrapes the
operator pod with the chart's ServiceMonitor settings and evaluates the chart's alert rules.

A failed backup run makes the failed-run alert fire with the backup's namespace and name; after a
successful run, an export and a certificate in the same namespace, every panel query of every dashboard
returns data for that namespace, and the values match the resources' status (recordings, bytes, lag,
audit findings, artifacts). Scrape and rule evaluation run every second here (the chart's own intervals
are 30 s), so the test takes about as long as the runs it watches.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cxbackup.core.times import parse_time
from cxbackup_dev.emulator import Emulator, FaultConfig
from cxbackup_dev.emulator.faults import EndpointFaults
from cxbackup_dev.localcluster.prometheus import (
    Prometheus,
    chart_rule_groups,
    chart_scrape_settings,
    dashboard_queries,
    sample_value,
)
from cxbackup_dev.localcluster.stack import CHART, LocalStack
from tests.resources import apply, export_job, generated_certificate, history, recording_backup

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
FAST = "1s"
RATE_INTERVAL = "10m"  # what $__rate_interval becomes: longer than the test, so every sample is in range


@pytest.fixture(scope="module")
def prometheus(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prometheus]:
    pod = stack.wait_operator_ready()
    scrape = chart_scrape_settings(
        stack.helm_run, CHART, stack.values, release=stack.release, namespace=stack.operator_namespace,
        pod=pod["metadata"]["name"], container="operator",
    )  # fmt: skip
    with Prometheus(
        workdir=tmp_path_factory.mktemp("prometheus"),
        scrape_targets=[f"127.0.0.1:{stack.metrics_port}"],
        rule_groups=chart_rule_groups(stack.helm_run, CHART, stack.values),
        scrape=scrape,
        scrape_interval=FAST,
        evaluation_interval=FAST,
        discovery_reload_interval="100ms",
    ) as prom:
        prom.wait_for(f'up{{job="{scrape.job}"}} == 1', timeout=60)
        yield prom


def _one(prom: Prometheus, expr: str, at: float | None = None) -> float:
    result = prom.query(expr, at=at)
    assert len(result) == 1, (expr, result)
    return sample_value(result[0])


def test_alerts_fire_and_every_dashboard_shows_the_resources_status(
    stack: LocalStack, emulator: Emulator, prometheus: Prometheus
) -> None:
    prom = prometheus
    ns = stack.new_namespace("e2e-obs")
    stack.prepare_namespace(ns, emulator.env())
    selector = f'namespace="{ns}", name="rb"'

    # a failed run: the vendor's S3 answers 500 to every request
    emulator.set_faults(FaultConfig(endpoints={"s3": EndpointFaults(error_rate=1.0, error_status=500)}))
    apply(
        stack,
        ns,
        recording_backup(
            emulator,
            "rb",
            target={"pvc": {"claimName": "recordings", "subPath": "cc"}},
            replicas=2,
            backoffLimitPerIndex=1,
            schedule="0 3 * * *",
            audit={"enabled": True},
            retention={"keepFor": "P7Y", "sweep": "DryRun"},
        ),
    )
    body = stack.wait_for("rb", ns, "rb", lambda b: len(history(b)) >= 1, timeout=240)
    assert history(body)[0]["result"] == "Failed"
    alert = prom.wait_for_alert("CxbackupBackupRunFailed", {"namespace": ns, "name": "rb"}, timeout=60)
    assert alert["labels"]["severity"] and alert["annotations"]["runbook"]

    # a successful run (watched while its shards are active), a certificate and an export beside it
    emulator.set_faults(None)
    apply(stack, ns, generated_certificate("rc", commonName="Genesys Recording", organization="Genesys"))
    stack.cp.kubectl("annotate", "rb", "rb", "-n", ns, "cxbackup.io/run-now=retry-1")
    prom.wait_for(f"cxbackup_backup_shard_progress_ratio{{{selector}}}", timeout=120)
    body = stack.wait_for("rb", ns, "rb", lambda b: len(history(b)) >= 2, timeout=240)
    run = history(body)[0]
    assert run["result"] == "Succeeded", run
    apply(stack, ns, export_job(emulator, retentionDays=30))
    export = stack.wait_for(
        "ej", ns, "contacts", lambda b: b.get("status", {}).get("phase") in ("Succeeded", "Failed"), timeout=120
    )
    assert export["status"]["phase"] == "Succeeded", export["status"]
    body = stack.wait_for("rb", ns, "rb", lambda b: "missing" in (b.get("status", {}).get("audit") or {}), timeout=180)
    status = body["status"]

    # the values Prometheus holds are the resources' own
    downloaded = sum(h["counts"]["downloaded"] for h in history(body))
    written = sum(h["counts"]["bytes"] for h in history(body))
    assert downloaded > 0 and written > 0
    prom.wait_for(f"cxbackup_backup_bytes_total{{{selector}}} == {written}", timeout=30)
    prom.wait_for(f"cxbackup_backup_audit_missing_recordings{{{selector}}} == {status['audit']['missing']}", timeout=30)
    prom.wait_for(f'cxbackup_export_artifacts{{namespace="{ns}"}} == {len(export["status"]["artifacts"])}', timeout=30)
    prom.wait_for(f"cxbackup_backup_index_recordings{{{selector}}} == {status['index']['recordings']}", timeout=30)
    assert status["index"]["recordings"] == downloaded and status["retention"]["dryRun"] is True
    prom.wait_for(f'cxbackup_backup_retention_sweep_recordings{{{selector}, state="expired"}} == 0', timeout=30)
    at = _one(prom, f"timestamp(cxbackup_backup_bytes_total{{{selector}}})")
    assert _one(prom, f'cxbackup_backup_recordings_total{{{selector}, outcome="downloaded"}}', at) == downloaded
    assert _one(prom, f'cxbackup_backup_runs_total{{{selector}, result="failed"}}', at) == 1
    end = parse_time(status["lastRecordingEndTime"])
    assert end is not None
    assert _one(prom, f"cxbackup_backup_lag_seconds{{{selector}}}", at) == pytest.approx(at - end.timestamp(), abs=15)

    # every panel of every dashboard has data for this namespace, except what only an active run shows
    # (checked above while the run was active)
    queries = dashboard_queries(REPO / "dashboards", variables={"namespace": ns}, rate_interval=RATE_INTERVAL)
    assert {board for board, _, _ in queries} == {"cxbackup-backups", "cxbackup-certificates", "cxbackup-exports"}
    empty = [
        (board, title, expr)
        for board, title, expr in queries
        if "active runs" not in title and not prom.query(expr, at=at)
    ]
    assert empty == [], "dashboard panels without data"
