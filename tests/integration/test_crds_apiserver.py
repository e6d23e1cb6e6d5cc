"""The generated CRDs on a real kube-apiserver: examples accepted, bad input rejected naming the field."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from cxbackup_dev.localcluster.controlplane import ControlPlane
from tests.resources import example, kubectl_apply

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "name", ["recordingbackup.yaml", "exportjob.yaml", "recordingcertificate.yaml", "recordingerasure.yaml"]
)
def test_examples_are_accepted(control_plane: ControlPlane, namespace: str, name: str) -> None:
    code, out = kubectl_apply(control_plane, namespace, example(name))
    assert code == 0, out
    kind = example(name)["kind"].lower()
    got = json.loads(control_plane.kubectl("get", kind, "-n", namespace, "-o", "json").stdout)
    assert len(got["items"]) == 1


def test_defaults_are_applied(control_plane: ControlPlane, namespace: str) -> None:
    doc = example("recordingbackup.yaml")
    del doc["spec"]["concurrency"]
    code, out = kubectl_apply(control_plane, namespace, doc)
    assert code == 0, out
    got = json.loads(control_plane.kubectl("get", "rb", "recordings", "-n", namespace, "-o", "json").stdout)
    assert got["spec"]["concurrency"] == 64
    assert got["spec"]["concurrencyPolicy"] == "Forbid"


def test_retention_with_a_sweep_and_legal_holds_is_accepted_with_defaults(
    control_plane: ControlPlane, namespace: str
) -> None:
    holds = [{"recordingId": "abc"}, {"phoneNumber": "+1 (647) 838-9001", "reason": "case 44"}, {"partition": "/x"}]
    doc = _mutate(example("recordingbackup.yaml"), "spec.retention", {"keepFor": "P7Y", "legalHolds": holds})
    code, out = kubectl_apply(control_plane, namespace, doc)
    assert code == 0, out
    got = json.loads(control_plane.kubectl("get", "rb", "recordings", "-n", namespace, "-o", "json").stdout)
    assert got["spec"]["retention"]["sweep"] == "Off" and got["spec"]["retention"]["legalHolds"] == holds


def _mutate(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, leaf = path.split(".")
    node = doc
    for part in parents:
        node = node.setdefault(part, {})
    if value is _DELETE:
        node.pop(leaf)
    else:
        node[leaf] = value
    return doc


class _Deleted:
    """The value of a field a case removes (its repr names it, so that the test ids are the same in every
    process: xdist's workers must collect the same ids)."""

    def __repr__(self) -> str:
        return "<deleted>"


_DELETE = _Deleted()

BAD_BACKUPS = [
    ("spec.replicas", 0, "spec.replicas"),
    ("spec.replicas", 65, "spec.replicas"),
    ("spec.replicas", "three", "spec.replicas"),
    ("spec.window.minAge", 3, "minAge must be less than window.maxAge"),
    ("spec.window.maxAge", "P30X", "spec.window.maxAge"),
    ("spec.window.minDate", "2018/01/04", "spec.window.minDate"),
    ("spec.source.gwsUriPrefix", "ftp://x", "spec.source.gwsUriPrefix"),
    ("spec.source.gwsCredentials", _DELETE, "spec.source.gwsCredentials"),
    ("spec.target", _DELETE, "spec.target"),
    (
        "spec.target.s3",
        {"bucket": "abc", "credentials": {"name": "s"}},
        "exactly one of target.pvc or target.s3",
    ),
    ("spec.concurrencyPolicy", "Allow", "spec.concurrencyPolicy"),
    ("spec.source.s3Credentials", _DELETE, "source.s3Credentials is required"),
    ("spec.target.pvc.subPath", "a/../../etc", "must not have an empty, '.' or '..' segment"),
    ("spec.source.mediaTransfer", "fast", "spec.source.mediaTransfer"),
    ("spec.media.typePattern", "a" * 300, "spec.media.typePattern"),
    (
        "spec.source",
        example("recordingbackup.yaml")["spec"]["source"]
        | {"mediaTransfer": "crt", "awsProxy": {"host": "proxy.corp", "port": 3128}},
        "mediaTransfer crt cannot use awsProxy",
    ),
    (
        "spec",
        example("recordingbackup.yaml")["spec"]
        | {
            "source": example("recordingbackup.yaml")["spec"]["source"] | {"mediaTransfer": "native"},
            "target": {"s3": {"bucket": "archive", "credentials": {"name": "s"}}},
        },
        "source.mediaTransfer native writes into a PVC",
    ),
    (
        "spec.target",
        {"s3": {"bucket": "archive", "credentials": {"name": "s"}, "objectLock": "COMPLIANCE"}},
        "target.s3.objectLock needs retention.keepFor",
    ),
    (
        "spec.target",
        {"s3": {"bucket": "archive", "credentials": {"name": "s"}, "objectLock": "FOREVER"}},
        "spec.target.s3.objectLock",
    ),
    ("spec.retention", {"keepFor": "PT"}, "an empty duration"),
    ("spec.retention", {"keepFor": "7 years"}, "spec.retention.keepFor"),
    ("spec.retention", {"keepFor": "P7Y", "sweep": "Always"}, "spec.retention.sweep"),
    (
        "spec.retention",
        {"keepFor": "P7Y", "legalHolds": [{"recordingId": "a", "partition": "/legal"}]},
        "set exactly one of recordingId, phoneNumber, partition",
    ),
    ("spec.retention", {"keepFor": "P7Y", "legalHolds": [{"reason": "x"}]}, "set exactly one of"),
    ("spec.retention", {"keepFor": "P7Y", "legalHolds": [{"phoneNumber": "12-3"}]}, "phoneNumber"),
    ("spec.retention", {"keepFor": "P7Y", "legalHolds": [{"partition": "/a,/b"}]}, "partition"),
]


@pytest.mark.parametrize(("path", "value", "expected"), BAD_BACKUPS, ids=[f"{p}={v!r}" for p, v, _ in BAD_BACKUPS])
def test_invalid_recordingbackups_are_rejected(
    control_plane: ControlPlane, namespace: str, path: str, value: Any, expected: str
) -> None:
    doc = _mutate(example("recordingbackup.yaml"), path, value)
    code, out = kubectl_apply(control_plane, namespace, doc)
    assert code != 0, f"accepted: {path}={value!r}"
    assert expected in out, out


BAD_EXPORTS = [
    ("spec.users", [f"u{i}" for i in range(11)], "spec.users"),
    ("spec.users", _DELETE, "needs users"),
    ("spec.type", "allChats", "spec.type"),
    ("spec.decryptMedia", {"recordingCertificate": "rc"}, "decryptMedia applies only to type subjectAccess"),
    ("spec.encryption", "DES", "spec.encryption"),
    (
        "spec.range",
        {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"},
        "range.from must be before",
    ),
    ("spec.source", _DELETE, "contactHistory and gdprChat exports need source and range"),
    ("spec.subject", {"secret": "dsar"}, "subject and backup apply only to type subjectAccess"),
]

SUBJECT_ACCESS = {
    "type": "subjectAccess",
    "subject": {"secret": "dsar-117"},
    "backup": {"recordingBackup": "recordings"},
    "certificate": {"recordingCertificate": "requester"},
    "store": {"pvc": "exports"},
}
BAD_SUBJECT_ACCESS = [
    ("spec.subject", _DELETE, "a subjectAccess export needs subject"),
    ("spec.backup", _DELETE, "a subjectAccess export needs subject"),
    ("spec.source", {"apiUriPrefix": "https://x/api/v2", "credentialsSecret": "g"}, "remove source"),
    ("spec.range", {"last": "P30D"}, "not range.last"),
    ("spec.users", ["u1"], "users applies only to type gdprChat"),
]


def test_a_subject_access_export_is_accepted(control_plane: ControlPlane, namespace: str) -> None:
    doc = example("exportjob.yaml")
    doc["spec"] = dict(SUBJECT_ACCESS)
    code, out = kubectl_apply(control_plane, namespace, doc)
    assert code == 0, out


@pytest.mark.parametrize(("path", "value", "expected"), BAD_SUBJECT_ACCESS, ids=[p for p, _, _ in BAD_SUBJECT_ACCESS])
def test_invalid_subject_access_exports_are_rejected(
    control_plane: ControlPlane, namespace: str, path: str, value: Any, expected: str
) -> None:
    doc = example("exportjob.yaml")
    doc["spec"] = dict(SUBJECT_ACCESS)
    code, out = kubectl_apply(control_plane, namespace, _mutate(doc, path, value))
    assert code != 0, f"accepted: {path}={value!r}"
    assert expected in out, out


@pytest.mark.parametrize("target", ["pvc", "s3", "pvc-decrypting"])
def test_a_subject_access_runs_configmap_and_job_pass_server_side_validation(
    control_plane: ControlPlane, namespace: str, target: str
) -> None:
    """The ConfigMap and Job of a subjectAccess run as the operator builds them (a PVC backup into a PVC store;
    an S3 backup into an S3 store sharing its Secret), server-side applied as a dry run: strict field
    validation, and every env variable set once (an associative list)."""
    import datetime as dt

    from cxbackup.api.exportjob import ExportJob
    from cxbackup.api.recordingbackup import RecordingBackup
    from cxbackup.controller.export.manifests import (
        CertificateSource,
        Decryption,
        SubjectAccessSources,
        build_backup_configmap,
        build_export_job,
        subject_access_args,
    )
    from cxbackup.controller.manifests import JobSettings

    rb = example("recordingbackup.yaml")
    rb["metadata"].update(namespace=namespace, uid="11111111-2222-3333-4444-555555555555")
    ej = example("exportjob.yaml")
    ej["metadata"].update(namespace=namespace, uid="66666666-7777-8888-9999-000000000000")
    for vendor_only in ("users", "source", "range"):
        ej["spec"].pop(vendor_only)
    ej["spec"] |= {"type": "subjectAccess", "subject": {"secret": "dsar"}, "backup": {"recordingBackup": "recordings"}}
    if target == "s3":
        rb["spec"]["target"] = {"s3": {"bucket": "archive", "endpointUrl": "https://s3.example",
                                       "credentials": {"name": "archive-s3"}}}  # fmt: skip
        ej["spec"]["store"] = {"s3": "s3://dsar/out", "s3EndpointUrl": "https://store.example",
                               "s3Credentials": {"name": "archive-s3"}}  # fmt: skip
    export, backup = ExportJob.model_validate(ej), RecordingBackup.model_validate(rb)
    decryption = (
        Decryption(
            "recording-cert-keyring", "scrypt:66666666-7777-8888-9999-000000000000:" + "ab" * 32, "AB:" * 31 + "CD"
        )
        if target == "pvc-decrypting"
        else None
    )
    sources = SubjectAccessSources(CertificateSource("dsar", "subject"), backup, decryption)
    run_id = "20260825-001500"
    job = build_export_job(
        export, run_id, subject_access_args(export), CertificateSource("recording-cert-tls"), JobSettings(),
        run_start=dt.datetime(2026, 8, 25, tzinfo=dt.UTC), subject_access=sources,
    )  # fmt: skip
    manifests = [build_backup_configmap(export, run_id, backup), job]
    proc = control_plane.kubectl(
        "apply", "--server-side", "--dry-run=server", "--validate=strict", "-f", "-",
        input_text="\n---\n".join(json.dumps(m) for m in manifests), check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "(server dry run)" in proc.stdout and "Warning" not in proc.stderr, proc.stderr


@pytest.mark.parametrize(("path", "value", "expected"), BAD_EXPORTS, ids=[f"{p}={v!r}"[:60] for p, v, _ in BAD_EXPORTS])
def test_invalid_exportjobs_are_rejected(
    control_plane: ControlPlane, namespace: str, path: str, value: Any, expected: str
) -> None:
    doc = _mutate(example("exportjob.yaml"), path, value)
    code, out = kubectl_apply(control_plane, namespace, doc)
    assert code != 0, f"accepted: {path}={value!r}"
    assert expected in out, out


BAD_CERTS = [
    ("spec.generate.keySize", 1024, "spec.generate.keySize"),
    ("spec.generate.country", "USA", "spec.generate.country"),
    ("spec.usages", ["voice", "fax"], "spec.usages"),
    ("spec.secretRef", {"name": "x"}, "exactly one of secretRef"),
    ("spec.generate.validityDays", 1, "must be at least 7 while rotation is enabled"),
]


@pytest.mark.parametrize(("path", "value", "expected"), BAD_CERTS, ids=[f"{p}={v!r}" for p, v, _ in BAD_CERTS])
def test_invalid_certificates_are_rejected(
    control_plane: ControlPlane, namespace: str, path: str, value: Any, expected: str
) -> None:
    doc = _mutate(example("recordingcertificate.yaml"), path, value)
    code, out = kubectl_apply(control_plane, namespace, doc)
    assert code != 0, f"accepted: {path}={value!r}"
    assert expected in out, out


def test_kubectl_explain_shows_field_descriptions(control_plane: ControlPlane) -> None:
    out = control_plane.kubectl("explain", "recordingbackup.spec.replicas").stdout
    assert "Number of shards" in out
    out = control_plane.kubectl("explain", "rcert.spec.generate.country").stdout
    assert "two-letter country code" in out


def test_printer_columns(control_plane: ControlPlane, namespace: str) -> None:
    code, out = kubectl_apply(control_plane, namespace, example("recordingbackup.yaml"))
    assert code == 0, out
    header = control_plane.kubectl("get", "rb", "-n", namespace).stdout.splitlines()[0]
    for column in ("PHASE", "PROGRESS", "LAST SUCCESS", "AGE"):
        assert column in header
    listed = control_plane.kubectl("get", "cxbackup", "-n", namespace, "-o", "name").stdout
    assert "recordingbackup.cxbackup.io/recordings" in listed


BAD_ERASURES = [
    ("spec.request", "", "spec.request"),
    ("spec.request", "line\nbreak", "spec.request"),
    ("spec.recordingBackup", "", "spec.recordingBackup"),
    ("spec.subject", _DELETE, "spec.subject"),
    ("spec.range", {"from": "2026-02-01T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "range.from must be before"),
    ("spec.phone", "+1 647 838 9001", "unknown field"),
]


@pytest.mark.parametrize(
    ("path", "value", "expected"), BAD_ERASURES, ids=[f"{p}={v!r}"[:50] for p, v, _ in BAD_ERASURES]
)
def test_invalid_erasures_are_rejected(
    control_plane: ControlPlane, namespace: str, path: str, value: Any, expected: str
) -> None:
    code, out = kubectl_apply(control_plane, namespace, _mutate(example("recordingerasure.yaml"), path, value))
    assert code != 0, f"accepted: {path}={value!r}"
    assert expected in out, out


def test_an_executed_erasure_cannot_be_changed(control_plane: ControlPlane, namespace: str) -> None:
    doc = example("recordingerasure.yaml")
    assert kubectl_apply(control_plane, namespace, doc)[0] == 0
    doc["spec"]["request"] = "DSAR-2026-118"  # a dry run may still change
    assert kubectl_apply(control_plane, namespace, doc)[0] == 0
    doc["spec"]["execute"] = True
    assert kubectl_apply(control_plane, namespace, doc)[0] == 0
    doc["spec"]["request"] = "DSAR-2026-119"
    code, out = kubectl_apply(control_plane, namespace, doc)
    assert code != 0 and "an executed erasure cannot be changed" in out, out
    doc["spec"]["request"], doc["spec"]["execute"] = "DSAR-2026-118", False
    code, out = kubectl_apply(control_plane, namespace, doc)
    assert code != 0 and "an executed erasure cannot be changed" in out, out


def test_a_recordingbackup_name_over_35_characters_is_refused_by_the_crd_alone(
    control_plane: ControlPlane, namespace: str
) -> None:
    """The CRD's own rule (no chart, so no admission policy): a worker pod's name carries its backup's whole
    name only up to 35 characters. Refused naming metadata.name and why; 35 characters are fine."""
    policies = control_plane.kubectl("get", "validatingadmissionpolicies", "-o", "name").stdout.split()
    assert not [p for p in policies if p.endswith("-names")], policies  # nothing but the CRD decides here
    doc = example("recordingbackup.yaml")
    doc["metadata"]["name"] = "n" * 36
    code, out = kubectl_apply(control_plane, namespace, doc)
    assert code != 0 and "metadata.name has at most 35 characters" in out, out
    assert "worker pods carry it whole" in out, out
    doc["metadata"]["name"] = "n" * 35
    code, out = kubectl_apply(control_plane, namespace, doc)
    assert code == 0, out
