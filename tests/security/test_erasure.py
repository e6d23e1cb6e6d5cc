"""An erasure cannot skip its dry run, on a real API server with the generated CRD: the API server refuses a
RecordingErasure created with `execute: true` and `execute: true` set together with any other change; and
the operator's reconcile, talking to the same API server, refuses to execute when the last completed dry run
(status.plan, which only the operator writes) was of another request, and executes when it was of this one."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from kubernetes import config

from cxbackup.api.erasure import RecordingErasure
from cxbackup.controller.cluster import KubeCluster
from cxbackup.controller.erasure.handler import reconcile_erasure
from cxbackup.controller.erasure.manifests import request_digest
from cxbackup.controller.settings import OperatorSettings
from cxbackup_dev.localcluster.controlplane import ControlPlane
from tests.resources import example, kubectl_apply

pytestmark = pytest.mark.integration

NAME = "dsar-2026-117"
NOW = dt.datetime(2026, 11, 30, 12, 0, tzinfo=dt.UTC)


def _get(cp: ControlPlane, ns: str) -> dict[str, Any]:
    got: dict[str, Any] = json.loads(cp.kubectl("get", "rerase", NAME, "-n", ns, "-o", "json").stdout)
    return got


def _patch_status(cp: ControlPlane, ns: str, status: dict[str, Any]) -> None:
    """Write status as the operator does (the status subresource)."""
    cp.kubectl("patch", "rerase", NAME, "-n", ns, "--subresource=status", "--type=merge",
               "-p", json.dumps({"status": status}))  # fmt: skip


def test_an_erasure_cannot_be_created_executing(control_plane: ControlPlane, namespace: str) -> None:
    doc = example("recordingerasure.yaml")
    doc["spec"]["execute"] = True
    code, out = kubectl_apply(control_plane, namespace, doc)
    assert code != 0 and "a RecordingErasure starts with a dry run" in out, out
    listed = control_plane.kubectl("get", "rerase", "-n", namespace, "-o", "name").stdout
    assert listed.strip() == ""


CHANGES = [
    ("request", "DSAR-2026-999"),
    ("recordingBackup", "other-backup"),
    ("subject", {"secret": "another-person"}),
    ("range", {"from": "2026-01-01T00:00:00Z"}),
    ("pod", {"activeDeadlineSeconds": 600}),
]


@pytest.mark.parametrize(("field", "value"), CHANGES, ids=[c[0] for c in CHANGES])
def test_execute_cannot_be_set_together_with_another_change(
    control_plane: ControlPlane, namespace: str, field: str, value: Any
) -> None:
    doc = example("recordingerasure.yaml")
    assert kubectl_apply(control_plane, namespace, doc)[0] == 0
    changed = json.loads(json.dumps(doc))
    changed["spec"][field] = value
    changed["spec"]["execute"] = True
    code, out = kubectl_apply(control_plane, namespace, changed)
    assert code != 0 and "set execute: true alone" in out, out
    assert _get(control_plane, namespace)["spec"]["execute"] is False
    doc["spec"]["execute"] = True  # alone, it is accepted (the operator then checks the dry run)
    code, out = kubectl_apply(control_plane, namespace, doc)
    assert code == 0, out


def _references(cp: ControlPlane, ns: str) -> None:
    """The example's RecordingBackup, its PVC and the subject's Secret (opted in)."""
    assert kubectl_apply(cp, ns, example("recordingbackup.yaml"))[0] == 0
    pvc = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "recordings-backup"},
           "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}}  # fmt: skip
    assert kubectl_apply(cp, ns, pvc)[0] == 0
    cp.kubectl("create", "secret", "generic", NAME, "-n", ns, "--from-literal=subject=phone:+1 647 838 9001")
    cp.kubectl("label", "secret", NAME, "-n", ns, "cxbackup.io/credentials=true")


def _reconcile(cp: ControlPlane, ns: str, cluster: KubeCluster) -> list[Any]:
    """One reconcile of the stored object by the operator's code; its status changes written back."""
    events: list[Any] = []
    changes = reconcile_erasure(_get(cp, ns), cluster=cluster, emit=events.append, now=NOW,
                                settings=OperatorSettings())  # fmt: skip
    if changes:
        _patch_status(cp, ns, changes)
    return events


def _execute_jobs(cp: ControlPlane, ns: str) -> list[str]:
    jobs = json.loads(cp.kubectl("get", "jobs", "-n", ns, "-o", "json").stdout)["items"]
    return [
        j["metadata"]["name"] for j in jobs if "--execute" in j["spec"]["template"]["spec"]["containers"][0]["args"]
    ]


def _plan_of(cp: ControlPlane, ns: str, request: str) -> dict[str, Any]:
    """status.plan as the operator writes it when a dry run of `request` finished, at the current generation."""
    body = _get(cp, ns)
    body["spec"]["request"] = request
    secret = json.loads(cp.kubectl("get", "secret", NAME, "-n", ns, "-o", "json").stdout)
    version = secret["metadata"]["resourceVersion"]
    digest = request_digest(RecordingErasure.model_validate(body), version)
    return {"digest": digest, "subjectVersion": version, "jobName": "dry-run", "toErase": 3, "held": 0,
            "observedGeneration": body["metadata"]["generation"]}  # fmt: skip


def test_execute_after_a_dry_run_of_another_request_is_refused_by_the_operator(
    control_plane: ControlPlane, namespace: str
) -> None:
    cp, ns = control_plane, namespace
    _references(cp, ns)
    doc = example("recordingerasure.yaml")
    assert kubectl_apply(cp, ns, doc)[0] == 0
    cluster = KubeCluster(config.new_client_from_config(config_file=str(cp.kubeconfig)))
    [started] = [e for e in _reconcile(cp, ns, cluster) if e.reason == "ErasureStarted"]
    assert "dry run" in started.message and _execute_jobs(cp, ns) == []
    cp.kubectl("delete", "jobs", "--all", "-n", ns)  # there is no node: the dry run is recorded as if it ran
    _patch_status(cp, ns, {"phase": "Planned", "plan": _plan_of(cp, ns, "DSAR-2026-117")})

    # the request changes (allowed while it is a dry run), then execute is set alone (allowed by the API server)
    doc["spec"]["request"] = "DSAR-2026-999"
    assert kubectl_apply(cp, ns, doc)[0] == 0
    doc["spec"]["execute"] = True
    assert kubectl_apply(cp, ns, doc)[0] == 0
    events = _reconcile(cp, ns, cluster)
    assert [(e.warning, e.reason) for e in events] == [(True, "DryRunRequired")], events
    status = _get(cp, ns)["status"]
    [ready] = [c for c in status["conditions"] if c["type"] == "Ready"]
    assert status["phase"] == "Invalid" and "was of another request" in ready["message"], status
    assert _execute_jobs(cp, ns) == []

    # the control: a completed dry run of this very request, recorded before execute was set, lets it run
    plan = _plan_of(cp, ns, "DSAR-2026-999") | {"observedGeneration": _get(cp, ns)["metadata"]["generation"] - 1}
    _patch_status(cp, ns, {"plan": plan})
    [run] = [e for e in _reconcile(cp, ns, cluster) if e.reason == "ErasureStarted"]
    assert "erasure on" in run.message and len(_execute_jobs(cp, ns)) == 1
