"""Secrets: a full backup and an export (with a generated RecordingCertificate) through the operator
(LocalStack + emulator) with the emulator's known secret values
(GWS_PASSWORD, AWS_SECRET_ACCESS_KEY); none of them, nor their base64 form, may appear in the operator log, the
pod logs, Events, the CR (status included), /metrics, ConfigMaps, Job specs (credentials only as
secretKeyRef) or any process command line while the run is active."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import urllib.request
from typing import Any

import pytest

from cxbackup_dev.emulator import Emulator, EndpointFaults, FaultConfig
from cxbackup_dev.localcluster.stack import LocalStack
from tests.reliability.operator_helpers import backup_body, kube_json, new_namespace, run_row
from tests.reliability.table import Row
from tests.reliability.test_operator_faults import wait_done
from tests.resources import apply, export_job, generated_certificate

pytestmark = [pytest.mark.e2e, pytest.mark.reliability_full]

SECRET_ENV = ("GWS_PASSWORD", "AWS_SECRET_ACCESS_KEY")


def _ready(body: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in body.get("status", {}).get("conditions") or [])


def _export_finished(body: dict[str, Any]) -> bool:
    history = body.get("status", {}).get("history") or []
    return bool(history) and history[0]["state"] in ("Succeeded", "Failed")


def _leaks(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, value in secrets.items() if value in text]


def test_no_secret_in_logs_events_status_metrics_configmaps_jobs_or_command_lines(
    stack: LocalStack, op_emu: Emulator, row: Any
) -> None:
    env = op_emu.env()
    secrets = {name: env[name] for name in SECRET_ENV}
    secrets |= {f"{n} (base64)": base64.b64encode(v.encode()).decode() for n, v in list(secrets.items())}
    ns = new_namespace(stack, op_emu)
    op_emu.set_faults(FaultConfig({"s3": EndpointFaults(latency_s=0.1)}))
    command_lines: set[str] = set()
    stop = threading.Event()

    def sample_ps() -> None:
        while not stop.is_set():
            out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=False).stdout
            command_lines.update(out.splitlines())
            stop.wait(0.1)

    sampler = threading.Thread(target=sample_ps, daemon=True)
    sampler.start()
    try:
        apply(stack, ns, backup_body(op_emu, replicas=2))
        apply(stack, ns, generated_certificate("rc"))
        stack.wait_for("rcert", ns, "rc", _ready, timeout=90)
        apply(stack, ns, export_job(op_emu))
        body, early = wait_done(stack, ns)
        export = stack.wait_for("ej", ns, "contacts", _export_finished, timeout=120)
    finally:
        stop.set()
        sampler.join(timeout=5)
        op_emu.set_faults(None)
    worker_lines = [c for c in command_lines if "cxbackup" in c]
    pods = kube_json(stack, "pods", "-n", ns)["items"]
    pod_logs = "\n".join(stack.pod_logs(ns, p["metadata"]["name"]) for p in pods)
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=5) as resp:
        metrics = resp.read().decode()
    jobs = kube_json(stack, "jobs", "-n", ns)["items"]
    places: dict[str, str] = {
        "operator log": stack.operator_log(),
        "pod logs": pod_logs,
        "Events": json.dumps(kube_json(stack, "events", "-n", ns)),
        "CR and status": json.dumps(body),
        "ExportJob and status": json.dumps(export),
        "RecordingCertificate and status": json.dumps(kube_json(stack, "rcert", "-n", ns)),
        "/metrics": metrics,
        "ConfigMaps": json.dumps(kube_json(stack, "configmaps", "-n", ns)),
        "Job specs": json.dumps(jobs),
        "Pod specs": json.dumps(pods),
        "process command lines": "\n".join(sorted(command_lines)),
    }
    # Job env: credentials only through secretKeyRef
    credential_env = (*SECRET_ENV, "GWS_USERNAME", "AWS_ACCESS_KEY_ID")
    literal = [
        f"{c['name']}/{e['name']}"
        for j in jobs
        for c in [*j["spec"]["template"]["spec"].get("containers", []),
                  *j["spec"]["template"]["spec"].get("initContainers", [])]
        for e in c.get("env", [])
        if e["name"] in credential_env and "secretKeyRef" not in e.get("valueFrom", {})
    ]  # fmt: skip
    assert export["status"]["history"][0]["state"] == "Succeeded", export["status"]["history"][0]
    assert any(j["metadata"]["labels"].get("cxbackup.io/exportjob") for j in jobs), "the export Job is checked too"
    failed = []
    run = row(
        run_row("secrets: the observed backup run (2 shards)", stack, op_emu, ns, body, checkpoint_seen_early=early)
    )
    if not run.ok:
        failed.append((run.scenario, run.notes))
    checks = []
    for place, text in places.items():
        leaked = _leaks(text, secrets)
        size_ok = len(text) > 0
        checks.append((f"no secret in {place}", not leaked and size_ok,
                       f"{len(text)} chars checked" + (f"; LEAKED {leaked}" if leaked else "")))  # fmt: skip
    checks.append(("Job env: credentials only as secretKeyRef", bool(jobs) and not literal,
                   f"{len(jobs)} Job(s); literal credential env: {literal}"))  # fmt: skip
    checks.append(("worker process seen during the run", bool(worker_lines), f"{len(worker_lines)} command lines"))
    for name, ok, notes in checks:
        r = row(Row(scenario=f"secrets: {name}", expected="0 leaks", ok=ok, notes=notes, level="secrets"))
        if not r.ok:
            failed.append((name, notes))
    assert not failed, failed
