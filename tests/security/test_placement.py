"""Placement by the target volume (controller/placement.py), through the real API server: the operator, as the
chart installs it (its RBAC and admission policies apply), reads each claim's access modes and creates Jobs whose
pods go where the volume can be mounted; and the admission policy lets through only that placement.

- ReadWriteOnce: a backup run's shards, a subjectAccess export's pod and an erasure's pod carry the claim's label
  and a required podAffinity to it (one node, where the volume is attached);
- ReadWriteMany and S3: the shards spread softly over nodes, never tied to one;
- ReadWriteOncePod with 3 shards: no Job, a condition and an Event naming spec.replicas;
- a Job with a foreign affinity (a node of the author's choosing, another namespace's pods, another label) is
  refused to the operator's account."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.security.bodies import CREDENTIALS, pvc, ready_condition, resource, secret, vendor_secrets
from tests.security.conftest import VENDOR_HOST
from tests.security.installed import InstalledChart

pytestmark = pytest.mark.integration

CLAIM_LABEL = "cxbackup.io/claim"
HOSTNAME = "kubernetes.io/hostname"


def _backup(name: str, target: dict[str, Any], **spec: Any) -> dict[str, Any]:
    source = {"gwsUriPrefix": f"https://{VENDOR_HOST}/api/v2", "gwsCredentials": {"name": "gws"},
              "s3Credentials": {"name": "s3"}, "retentionDays": 30}  # fmt: skip
    return resource("RecordingBackup", name, {"source": source, "window": {"minAge": 0, "maxAge": 1},
                                              "target": target, "replicas": 3, **spec})  # fmt: skip


def _pvc_target(claim: str, sub: str) -> dict[str, Any]:
    return {"pvc": {"claimName": claim, "subPath": sub}}


def _jobs(chart: InstalledChart, ns: str, label: str, owner: str) -> list[dict[str, Any]]:
    return [j for j in chart.items("jobs", ns) if j["metadata"]["labels"].get(label) == owner]


def _wait_job(chart: InstalledChart, ns: str, label: str, owner: str, kind: str) -> dict[str, Any]:
    def started(_: dict[str, Any]) -> bool:
        return bool(_jobs(chart, ns, label, owner))

    chart.wait_for(kind, ns, owner, started, timeout=60)
    [job] = _jobs(chart, ns, label, owner)
    return job


def _affinitypvc(job: dict[str, Any]) -> str | None:
    """The claim the pods follow (their label and their required podAffinity's), or None when not tied."""
    template = job["spec"]["template"]
    affinity = template["spec"].get("affinity")
    if affinity is None:
        assert CLAIM_LABEL not in template["metadata"]["labels"]
        return None
    [term] = affinity["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert set(affinity) == {"podAffinity"} and term["topologyKey"] == HOSTNAME
    value: str = term["labelSelector"]["matchLabels"][CLAIM_LABEL]
    assert template["metadata"]["labels"][CLAIM_LABEL] == value
    return value


def test_the_jobs_the_operator_creates_carry_the_placement_of_their_volume(chart_hardened: InstalledChart) -> None:
    chart = chart_hardened
    ns = chart.tenant_namespace()
    chart.apply(
        ns,
        pvc("disk", "ReadWriteOnce"),
        pvc("shared", "ReadWriteMany"),
        pvc("solo", "ReadWriteOncePod"),
        pvc("exports", "ReadWriteOnce"),
        *vendor_secrets(),
        secret("dsar", {"subject": b"phone:+1 647 838 9001\n"}, CREDENTIALS),
        secret("requester", {"tls.crt": b"a certificate"}),
    )
    bucket = {"s3": {"bucket": "archive", "credentials": {"name": "s3"}}}
    for body in (
        _backup("on-disk", _pvc_target("disk", "a")),
        _backup("on-shared", _pvc_target("shared", "b")),
        _backup("in-bucket", bucket),
        _backup("on-solo", _pvc_target("solo", "c")),
        _backup("idle", _pvc_target("disk", "d"), suspend=True),  # what the export and the erasure read
    ):
        proc = chart.apply_as_tenant(ns, body)
        assert proc.returncode == 0, proc.stderr

    label = "cxbackup.io/recordingbackup"
    on_disk = _wait_job(chart, ns, label, "on-disk", "rb")
    assert _affinitypvc(on_disk) == "disk"
    assert "topologySpreadConstraints" not in on_disk["spec"]["template"]["spec"]
    for name in ("on-shared", "in-bucket"):
        job = _wait_job(chart, ns, label, name, "rb")
        assert _affinitypvc(job) is None, name
        [spread] = job["spec"]["template"]["spec"]["topologySpreadConstraints"]
        assert spread["topologyKey"] == HOSTNAME and spread["whenUnsatisfiable"] == "ScheduleAnyway"
        assert spread["labelSelector"]["matchLabels"]["cxbackup.io/run"] == job["metadata"]["labels"]["cxbackup.io/run"]

    solo = chart.wait_for(
        "rb", ns, "on-solo", lambda b: (ready_condition(b) or {}).get("reason") == "AccessModeConflict", timeout=60
    )
    message = (ready_condition(solo) or {})["message"]
    assert (
        message.startswith("spec.replicas: 3 pods cannot all mount PersistentVolumeClaim")
        and "set spec.replicas: 1" in message
    )
    assert _jobs(chart, ns, label, "on-solo") == []
    events = json.loads(chart.cp.kubectl("get", "events", "-n", ns, "-o", "json").stdout)["items"]
    assert any(e["reason"] == "AccessModeConflict" and e["involvedObject"]["name"] == "on-solo" for e in events)

    # the pods of the other kinds that mount the same ReadWriteOnce claim follow it too
    export = resource("ExportJob", "dsar-export", {
        "type": "subjectAccess", "subject": {"secret": "dsar"}, "backup": {"recordingBackup": "idle"},
        "certificate": {"secret": "requester"}, "store": {"pvc": "exports"},
    })  # fmt: skip
    erasure = resource("RecordingErasure", "dsar-erasure", {
        "recordingBackup": "idle", "subject": {"secret": "dsar"}, "request": "DSAR-1",
    })  # fmt: skip
    for body in (export, erasure):
        proc = chart.apply_as_tenant(ns, body)
        assert proc.returncode == 0, proc.stderr
    assert _affinitypvc(_wait_job(chart, ns, "cxbackup.io/exportjob", "dsar-export", "ej")) == "disk"
    assert _affinitypvc(_wait_job(chart, ns, "cxbackup.io/recordingerasure", "dsar-erasure", "rerase")) == "disk"


def _as_operator(chart: InstalledChart, job: dict[str, Any]) -> tuple[int, str]:
    proc = chart.cp.kubectl(
        "create", "--dry-run=server", f"--as={chart.operator_user}", "-f", "-", input_text=json.dumps(job), check=False
    )
    return proc.returncode, proc.stderr


def test_only_the_placement_the_operator_builds_is_admitted(chart_hardened: InstalledChart) -> None:
    """Starting from a Job the operator really created (ReadWriteOnce: the claim's podAffinity; ReadWriteMany:
    the run's spread), each foreign placement is refused to the operator's account."""
    chart = chart_hardened
    ns = chart.tenant_namespace()
    chart.apply(
        ns,
        pvc("disk", "ReadWriteOnce"),
        pvc("shared", "ReadWriteMany"),
        *vendor_secrets(),
    )
    for body in (_backup("tied", _pvc_target("disk", "a")), _backup("spread", _pvc_target("shared", "b"))):
        assert chart.apply_as_tenant(ns, body).returncode == 0
    label = "cxbackup.io/recordingbackup"
    tied, spread = (_wait_job(chart, ns, label, n, "rb") for n in ("tied", "spread"))

    def fresh(job: dict[str, Any]) -> dict[str, Any]:
        """The Job as the operator sent it, under a new name (what the API server added, removed)."""
        doc = copy.deepcopy(job)
        doc.pop("status", None)
        meta = doc["metadata"]
        doc["metadata"] = {k: meta[k] for k in ("namespace", "labels", "annotations", "ownerReferences")}
        doc["metadata"]["name"] = meta["name"][:50] + "-x"
        doc["spec"].pop("selector", None)
        template_labels = doc["spec"]["template"]["metadata"]["labels"]
        for generated in ("controller-uid", "batch.kubernetes.io/controller-uid", "job-name",
                          "batch.kubernetes.io/job-name"):  # fmt: skip
            template_labels.pop(generated, None)
        return doc

    def term(job: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = job["spec"]["template"]["spec"]["affinity"]["podAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ][0]
        return found

    def constraint(job: dict[str, Any]) -> dict[str, Any]:
        found: dict[str, Any] = job["spec"]["template"]["spec"]["topologySpreadConstraints"][0]
        return found

    node_affinity = {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchExpressions": [{"key": HOSTNAME, "operator": "In", "values": ["the-authors-node"]}]}]}}  # fmt: skip
    attacks: dict[str, tuple[dict[str, Any], Any]] = {
        "a required nodeAffinity to a node the author picks": (
            tied, lambda j: j["spec"]["template"]["spec"]["affinity"].update(nodeAffinity=node_affinity)),
        "a nodeAffinity instead of the claim's": (
            tied, lambda j: j["spec"]["template"]["spec"].update(affinity={"nodeAffinity": node_affinity})),
        "podAffinity to another namespace's pods": (
            tied, lambda j: term(j).update(namespaces=["kube-system"])),
        "podAffinity to every namespace's pods": (
            tied, lambda j: term(j).update(namespaceSelector={})),
        "podAffinity to other pods' labels": (
            tied, lambda j: term(j).update(labelSelector={"matchLabels": {"app": "database"}})),
        "podAffinity to a claim label the pod does not carry": (
            tied, lambda j: term(j).update(labelSelector={"matchLabels": {CLAIM_LABEL: "their-volume"}})),
        "podAffinity by an expression": (
            tied, lambda j: term(j).update(labelSelector={"matchExpressions": [
                {"key": CLAIM_LABEL, "operator": "Exists"}]})),
        "podAffinity over a zone": (tied, lambda j: term(j).update(topologyKey="topology.kubernetes.io/zone")),
        "podAntiAffinity": (
            tied, lambda j: j["spec"]["template"]["spec"]["affinity"].update(podAntiAffinity={
                "requiredDuringSchedulingIgnoredDuringExecution": [copy.deepcopy(term(j))]})),
        "a hard spread": (spread, lambda j: constraint(j).update(whenUnsatisfiable="DoNotSchedule")),
        "a spread counting other pods": (
            spread, lambda j: constraint(j).update(labelSelector={"matchLabels": {"app": "database"}})),
        "a spread over zones": (spread, lambda j: constraint(j).update(topologyKey="topology.kubernetes.io/zone")),
    }  # fmt: skip
    for base in (tied, spread):
        code, stderr = _as_operator(chart, fresh(base))
        assert code == 0, stderr  # the Jobs as built are admitted: the attacks below fail for their change alone
    admitted = {}
    for what, (base, change) in attacks.items():
        job = fresh(base)
        change(job)
        code, stderr = _as_operator(chart, job)
        if code == 0 or "cxbackup" not in stderr:
            admitted[what] = stderr or "admitted"
    assert admitted == {}
