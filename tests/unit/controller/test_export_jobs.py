"""The export Job builders: the certificate alone is mounted, secrets only by reference, restricted pods."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import yaml

from cxbackup.api.exportjob import ExportJob
from cxbackup.controller.export.manifests import (
    ANNOTATION_SWEEP_CUTOFF,
    LABEL_EXPORT,
    LABEL_EXPORT_TASK,
    CertificateSource,
    build_export_job,
    build_export_sweep_job,
    export_job_name,
)
from cxbackup.controller.manifests import JobSettings, restricted_container_security_context
from cxbackup.export.request import ExportRequest

REPO = Path(__file__).resolve().parents[3]
NOW = dt.datetime(2026, 8, 25, 0, 15, tzinfo=dt.UTC)


def _export(**spec_changes: Any) -> ExportJob:
    doc = yaml.safe_load((REPO / "examples" / "exportjob.yaml").read_text())
    doc["metadata"].update(namespace="cc", uid="ej-uid")
    doc["spec"].update(spec_changes)
    return ExportJob.model_validate(doc)


def _run_job(export: ExportJob, cert: CertificateSource | None = None) -> dict[str, Any]:
    request = ExportRequest.from_spec(export.spec, export.metadata["name"])
    cert = cert or CertificateSource("recording-cert-tls")
    return build_export_job(export, "20260825-001500", request.to_args(), cert, JobSettings(), run_start=NOW)


def _container(job: dict[str, Any]) -> dict[str, Any]:
    container: dict[str, Any] = job["spec"]["template"]["spec"]["containers"][0]
    return container


def test_run_job_arguments_labels_and_owner() -> None:
    export = _export()
    job = _run_job(export)
    args = _container(job)["args"]
    request = ExportRequest.from_spec(export.spec, "gdpr-user-4711")
    assert args == [
        "export", "run", *request.to_args(),
        "--cert", "/etc/cxbackup/certificate/tls.crt",
        "--store", "/exports",
        "--result-file", "/dev/termination-log",
    ]  # fmt: skip
    meta = job["metadata"]
    assert meta["name"] == "gdpr-user-4711-20260825-001500"
    assert meta["labels"][LABEL_EXPORT] == "gdpr-user-4711"
    assert meta["labels"][LABEL_EXPORT_TASK] == "run"
    assert meta["ownerReferences"][0] == {
        "apiVersion": "cxbackup.io/v1alpha1", "kind": "ExportJob", "name": "gdpr-user-4711", "uid": "ej-uid",
        "controller": True, "blockOwnerDeletion": True,
    }  # fmt: skip
    assert job["spec"]["backoffLimit"] == 0
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert _container(job)["terminationMessagePath"] == "/dev/termination-log"


def test_only_the_certificate_is_mounted_read_only_and_no_private_key_anywhere() -> None:
    job = _run_job(_export(), CertificateSource("uploaded", "cert.pem"))
    pod = job["spec"]["template"]["spec"]
    cert_volumes = [v for v in pod["volumes"] if "secret" in v]
    assert cert_volumes == [
        {
            "name": "certificate",
            "secret": {
                "secretName": "uploaded",
                "items": [{"key": "cert.pem", "path": "tls.crt"}],
                "defaultMode": 0o444,
            },
        }
    ]
    mount = next(m for m in _container(job)["volumeMounts"] if m["name"] == "certificate")
    assert mount == {"name": "certificate", "mountPath": "/etc/cxbackup/certificate", "readOnly": True}
    text = json.dumps(job)
    assert "tls.key" not in text and "PRIVATE KEY" not in text


def test_secrets_only_by_reference_and_restricted_security_context() -> None:
    export = _export(
        store={"s3": "s3://bucket/exports/", "s3EndpointUrl": "http://s3.local:9000", "s3Credentials": {"name": "s3"}}
    )
    job = _run_job(export)
    container = _container(job)
    env = {e["name"]: e for e in container["env"]}
    for name, secret, key in [
        ("GWS_USERNAME", "gws-credentials", "GWS_USERNAME"),
        ("GWS_PASSWORD", "gws-credentials", "GWS_PASSWORD"),
        ("TARGET_AWS_ACCESS_KEY_ID", "s3", "AWS_ACCESS_KEY_ID"),
        ("TARGET_AWS_SECRET_ACCESS_KEY", "s3", "AWS_SECRET_ACCESS_KEY"),
    ]:
        assert env[name] == {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}
    assert env["TARGET_AWS_ENDPOINT_URL"]["value"] == "http://s3.local:9000"
    assert env["CXBACKUP_EXPORT_API"]["value"] == "https://example.com/api/v2"
    assert all("value" in e or "secretKeyRef" in e["valueFrom"] for e in container["env"])
    assert container["args"][container["args"].index("--store") + 1] == "s3://bucket/exports/"
    assert not any("persistentVolumeClaim" in v for v in job["spec"]["template"]["spec"]["volumes"])
    assert container["securityContext"] == restricted_container_security_context()
    pod_sc = job["spec"]["template"]["spec"]["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and pod_sc["seccompProfile"] == {"type": "RuntimeDefault"}


def test_pvc_store_with_sub_path() -> None:
    job = _run_job(_export(store={"pvc": "exports", "subPath": "/cdds/"}))
    pod = job["spec"]["template"]["spec"]
    assert {"name": "store", "persistentVolumeClaim": {"claimName": "exports"}} in pod["volumes"]
    assert {"name": "store", "mountPath": "/exports"} in _container(job)["volumeMounts"]
    assert _container(job)["args"][_container(job)["args"].index("--store") + 1] == "/exports/cdds"


def test_sweep_job_has_no_certificate_and_records_its_cutoff() -> None:
    export = _export(store={"pvc": "exports", "subPath": "cdds"})
    job = build_export_sweep_job(export, "20260925-001500", JobSettings(), cutoff=NOW)
    assert _container(job)["args"] == ["export", "sweep", "--store", "/exports/cdds"]
    assert job["metadata"]["name"] == "gdpr-user-4711-sweep-20260925-001500"
    assert job["metadata"]["labels"][LABEL_EXPORT_TASK] == "sweep"
    assert job["metadata"]["annotations"][ANNOTATION_SWEEP_CUTOFF] == "2026-08-25T00:15:00+00:00"
    pod = job["spec"]["template"]["spec"]
    assert not any("secret" in v for v in pod["volumes"])
    assert not any("valueFrom" in e for e in _container(job)["env"])
    assert _container(job)["securityContext"] == restricted_container_security_context()


def test_long_names_fit_in_63_characters() -> None:
    export = _export()
    export.metadata["name"] = "x" * 80
    assert len(export_job_name(export, "20260825-001500", "sweep")) == 63
