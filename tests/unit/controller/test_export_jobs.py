"""The export Job builders: the certificate alone is mounted, secrets only by reference, restricted pods."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cxbackup.api.exportjob import ExportJob
from cxbackup.api.recordingbackup import RecordingBackup
from cxbackup.backup.config import parse_properties
from cxbackup.controller.export.manifests import (
    ANNOTATION_SWEEP_CUTOFF,
    LABEL_EXPORT,
    LABEL_EXPORT_TASK,
    CertificateSource,
    SubjectAccessSources,
    build_backup_configmap,
    build_export_job,
    build_export_sweep_job,
    export_job_name,
    subject_access_args,
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
    job = _run_job(_export(store={"pvc": "exports", "subPath": "cdds"}))
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


def _subject_export(**spec_changes: Any) -> ExportJob:
    doc = yaml.safe_load((REPO / "examples" / "exportjob.yaml").read_text())
    doc["metadata"].update(namespace="cc", uid="ej-uid")
    for vendor_only in ("users", "source", "range"):
        doc["spec"].pop(vendor_only)
    doc["spec"] |= {"type": "subjectAccess", "subject": {"secret": "dsar-117"}, "backup": {"recordingBackup": "rb"}}
    doc["spec"].update(spec_changes)
    return ExportJob.model_validate(doc)


def _backup(target: dict[str, Any]) -> RecordingBackup:
    doc = yaml.safe_load((REPO / "examples" / "recordingbackup.yaml").read_text())
    doc["metadata"].update(name="rb", namespace="cc", uid="rb-uid")
    doc["spec"]["target"] = target
    doc["spec"]["retention"] = {"keepFor": "P90D", "legalHolds": [{"phoneNumber": "+1 647 838 9001"}]}
    return RecordingBackup.model_validate(doc)


PVC_TARGET = {"pvc": {"claimName": "recordings-backup", "subPath": "contact-center"}}
S3_TARGET = {
    "s3": {"bucket": "archive", "prefix": "cc/", "endpointUrl": "https://s3.customer.example",
           "credentials": {"name": "archive-s3"}},
}  # fmt: skip


def _subject_job(export: ExportJob, backup: RecordingBackup) -> dict[str, Any]:
    sources = SubjectAccessSources(CertificateSource("dsar-117", "subject"), backup)
    return build_export_job(
        export, "20260825-001500", subject_access_args(export), CertificateSource("recording-cert-tls"), JobSettings(),
        run_start=NOW, subject_access=sources,
    )  # fmt: skip


@pytest.mark.parametrize("target", [PVC_TARGET, S3_TARGET], ids=["pvc", "s3"])
def test_a_subject_access_run_reads_the_backup_through_its_configmap(target: dict[str, Any]) -> None:
    export, backup = _subject_export(), _backup(target)
    job = _subject_job(export, backup)
    container, pod = _container(job), job["spec"]["template"]["spec"]
    args = container["args"]
    assert args[args.index("--backup-config") + 1] == "/etc/cxbackup/backup/config.properties"
    assert args[args.index("--subject-file") + 1] == "/etc/cxbackup/subject/subject"
    assert "--backup-target" not in args
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert volumes["backup-config"] == {
        "name": "backup-config",
        "configMap": {"name": f"{job['metadata']['name']}-backup"},
    }
    assert mounts["backup-config"] == {"name": "backup-config", "mountPath": "/etc/cxbackup/backup", "readOnly": True}
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert all("value" in e or "valueFrom" in e for e in container["env"])
    if "pvc" in target:
        assert volumes["target"]["persistentVolumeClaim"] == {"claimName": "recordings-backup", "readOnly": True}
        assert mounts["target"] == {"name": "target", "mountPath": "/backup", "readOnly": True}
        assert refs == {}
    else:
        assert "target" not in volumes and "target" not in mounts
        assert refs == {
            "TARGET_AWS_ACCESS_KEY_ID": {"name": "archive-s3", "key": "AWS_ACCESS_KEY_ID"},
            "TARGET_AWS_SECRET_ACCESS_KEY": {"name": "archive-s3", "key": "AWS_SECRET_ACCESS_KEY"},
        }
    assert not any("persistentVolumeClaim" in v for n, v in volumes.items() if n not in ("target", "store"))


@pytest.mark.parametrize("target", [PVC_TARGET, S3_TARGET], ids=["pvc", "s3"])
def test_a_subject_access_runs_configmap_describes_the_target_and_holds_no_secret(target: dict[str, Any]) -> None:
    export, backup = _subject_export(), _backup(target)
    configmap = build_backup_configmap(export, "20260825-001500", backup)
    job = _subject_job(export, backup)
    meta = configmap["metadata"]
    assert (meta["name"], meta["namespace"]) == (f"{job['metadata']['name']}-backup", "cc")
    assert meta["ownerReferences"] == job["metadata"]["ownerReferences"]  # the ExportJob's, as its Job's
    assert meta["ownerReferences"][0]["kind"] == "ExportJob" and meta["ownerReferences"][0]["uid"] == "ej-uid"
    assert meta["labels"][LABEL_EXPORT] == "gdpr-user-4711" and meta["labels"][LABEL_EXPORT_TASK] == "run"
    text = configmap["data"]["config.properties"]
    assert text.startswith("# ExportJob cc/gdpr-user-4711 run 20260825-001500: the target of RecordingBackup cc/rb")
    config = parse_properties(text, "configmap")
    if "pvc" in target:
        assert config.target_dir == "/backup/contact-center" and config.target_s3_bucket is None
    else:
        assert config.target_dir is None
        assert (config.target_s3_bucket, config.target_s3_prefix) == ("archive", "cc/")
        assert config.target_s3_endpoint_url == "https://s3.customer.example"
    assert config.legal_holds  # as the backup's runs see them (phone numbers: docs/security.md)
    assert "archive-s3" not in text and "SECRET" not in text.upper() and "PASSWORD" not in text.upper()


def test_an_s3_store_sharing_the_backup_targets_secret_sets_each_variable_once() -> None:
    store = {"s3": "s3://dsar/out", "s3EndpointUrl": "https://store.example", "s3Credentials": {"name": "archive-s3"}}
    job = _subject_job(_subject_export(store=store), _backup(S3_TARGET))
    names = [e["name"] for e in _container(job)["env"]]
    assert len(names) == len(set(names))
    env = {e["name"]: e for e in _container(job)["env"]}
    assert env["TARGET_AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "archive-s3"
    assert env["TARGET_AWS_ENDPOINT_URL"]["value"] == "https://store.example"  # the store's; the backup's: config


@pytest.mark.parametrize(
    ("store_endpoint", "backup_endpoint"),
    [("https://store.example", "https://backup.example"), ("https://store.example", None),
     (None, "https://backup.example")],
)  # fmt: skip
def test_in_the_export_pod_the_store_and_the_backup_bucket_each_reach_their_own_endpoint(
    store_endpoint: str | None, backup_endpoint: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pod's environment and config.properties as the operator builds them, read the way `cxbackup export
    run` reads them: the store's endpoint is TARGET_AWS_ENDPOINT_URL, the backup bucket's is the config's
    targetS3EndpointUrl (that client ignores endpoint variables), so neither reaches the other's."""
    import argparse
    import os

    from cxbackup.backup.config import Credentials
    from cxbackup.backup.connections import target_s3_options
    from cxbackup.backup.s3source import make_s3_client
    from cxbackup.commands.export import open_store_from_args
    from cxbackup.export.store import S3ArtifactStore

    target = {"s3": {**S3_TARGET["s3"], "endpointUrl": backup_endpoint}}
    if backup_endpoint is None:
        del target["s3"]["endpointUrl"]
    store = {"s3": "s3://dsar/out", "s3Credentials": {"name": "archive-s3"}}
    if store_endpoint:
        store["s3EndpointUrl"] = store_endpoint
    export, backup = _subject_export(store=store), _backup(target)
    container = _container(_subject_job(export, backup))
    env = {e["name"]: e.get("value", "from-the-secret") for e in container["env"]}
    for name in [n for n in os.environ if n.startswith(("AWS_", "TARGET_AWS_"))]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    text = build_backup_configmap(export, "20260825-001500", backup)["data"]["config.properties"]
    config = parse_properties(text, "configmap")
    backup_client = make_s3_client(target_s3_options(config, Credentials.from_env(env)))
    opened = open_store_from_args(
        argparse.Namespace(store="s3://dsar/out", store_endpoint=None, store_region=None), env
    )
    assert isinstance(opened, S3ArtifactStore)
    store_url, backup_url = opened.client.meta.endpoint_url, backup_client.meta.endpoint_url
    assert store_url == (store_endpoint or "https://s3.amazonaws.com")
    assert backup_url == (backup_endpoint or "https://s3.amazonaws.com")
