"""Pure builders: an ExportJob run or retention sweep -> its Job (only the certificate key is mounted). No I/O."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from cxbackup.api import workerenv
from cxbackup.api.common import PodSettings
from cxbackup.api.exportjob import ExportJob
from cxbackup.controller.jobstate import ANNOTATION_RUN_START
from cxbackup.controller.manifests import (
    LABEL_RUN,
    TMP_MOUNT,
    JobSettings,
    active_deadline,
    owner_reference,
    restricted_container_security_context,
    secret_env,
    tmp_volume,
    worker_pod_spec,
)

__all__ = [
    "ANNOTATION_SWEEP_CUTOFF",
    "CERT_FILE",
    "CERT_MOUNT",
    "EXPORT_STORE_MOUNT",
    "LABEL_EXPORT",
    "LABEL_EXPORT_TASK",
    "CertificateSource",
    "SubjectAccessSources",
    "build_export_job",
    "build_export_sweep_job",
    "export_job_name",
    "export_store_location",
    "subject_access_args",
]

LABEL_EXPORT = "cxbackup.io/exportjob"


LABEL_EXPORT_TASK = "cxbackup.io/export-task"
"""`run` for an export run, `sweep` for a retention sweep."""


ANNOTATION_SWEEP_CUTOFF = "cxbackup.io/sweep-cutoff"
"""The time a sweep was started for: every artifact that expired by then is deleted by it."""


EXPORT_STORE_MOUNT = "/exports"


CERT_MOUNT = "/etc/cxbackup/certificate"


CERT_FILE = "tls.crt"


SUBJECT_MOUNT = "/etc/cxbackup/subject"
SUBJECT_FILE = "subject"
BACKUP_MOUNT = "/backup"


@dataclass(frozen=True)
class CertificateSource:
    """The Secret key holding the PEM certificate artifacts are encrypted to (only this key is mounted)."""

    secret: str
    key: str = "tls.crt"


def export_job_name(export: ExportJob, run_id: str, task: str = "run") -> str:
    """`<name>-<run id>` for runs, `<name>-sweep-<run id>` for sweeps (at most 63 characters)."""
    name: str = export.metadata["name"]
    suffix = f"-{run_id}" if task == "run" else f"-{task}-{run_id}"
    return name[: 63 - len(suffix)].rstrip("-.") + suffix


def export_store_location(export: ExportJob) -> str:
    """The `--store` argument: the PVC's mount (+ subPath) inside the pod, or the s3:// URL."""
    store = export.spec.store
    if store.s3 is not None:
        return store.s3
    sub = (store.sub_path or "").strip("/")
    return f"{EXPORT_STORE_MOUNT}/{sub}" if sub else EXPORT_STORE_MOUNT


def _export_labels(export: ExportJob, run_id: str, task: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "cxbackup",
        "app.kubernetes.io/component": f"export-{task}",
        "app.kubernetes.io/managed-by": "cxbackup-operator",
        LABEL_EXPORT: export.metadata["name"],
        LABEL_EXPORT_TASK: task,
        LABEL_RUN: run_id,
    }


def _export_job(
    export: ExportJob,
    run_id: str,
    task: str,
    args: list[str],
    env: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
    annotations: dict[str, str],
    settings: JobSettings,
) -> dict[str, Any]:
    """A one-pod Job (backoffLimit 0: one pod, one result) with the store and its credentials added."""
    store = export.spec.store
    env = list(env)
    pod = export.spec.pod or PodSettings()
    volumes = [*volumes, tmp_volume(pod, settings)]
    mounts = [*mounts, {"name": "tmp", "mountPath": TMP_MOUNT}]
    if store.pvc is not None:
        volumes.append({"name": "store", "persistentVolumeClaim": {"claimName": store.pvc}})
        mounts.append({"name": "store", "mountPath": EXPORT_STORE_MOUNT})
    else:
        if store.s3_credentials is not None:
            creds = store.s3_credentials
            env.append(secret_env("TARGET_AWS_ACCESS_KEY_ID", creds.name, creds.access_key_id_key))
            env.append(secret_env("TARGET_AWS_SECRET_ACCESS_KEY", creds.name, creds.secret_access_key_key))
        if store.s3_endpoint_url:
            env.append({"name": "TARGET_AWS_ENDPOINT_URL", "value": store.s3_endpoint_url})
    env.append({"name": "HOME", "value": TMP_MOUNT})
    container: dict[str, Any] = {
        "name": "export",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["cxbackup"],
        "args": ["export", *args],
        "env": env,
        "volumeMounts": mounts,
        "securityContext": restricted_container_security_context(),
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
    }
    pod_spec = worker_pod_spec(pod, settings, container, volumes, automount_token=False)
    labels = _export_labels(export, run_id, task)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": export_job_name(export, run_id, task),
            "namespace": export.metadata["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [owner_reference("ExportJob", export.metadata)],
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": active_deadline(pod, settings),
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


@dataclass(frozen=True)
class SubjectAccessSources:
    """What a subjectAccess run reads: the Secret key naming the subject (mounted alone, read-only) and the
    backup's PVC (mounted read-only)."""

    subject: CertificateSource
    backup_claim: str
    backup_sub_path: str = ""


def subject_access_args(export: ExportJob) -> list[str]:
    """`cxbackup export run` arguments of a subjectAccess ExportJob (without the mounts' paths)."""
    spec = export.spec
    args = ["--name", export.metadata["name"], "--type", "subjectAccess"]
    if spec.range is not None and spec.range.from_ is not None:
        args += ["--from", spec.range.from_.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")]
    if spec.range is not None and spec.range.to is not None:
        args += ["--to", spec.range.to.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")]
    return [*args, "--encryption", spec.encryption, "--retention-days", str(spec.retention_days)]


def build_export_job(
    export: ExportJob,
    run_id: str,
    request_args: list[str],
    certificate: CertificateSource,
    settings: JobSettings,
    *,
    run_start: dt.datetime,
    subject_access: SubjectAccessSources | None = None,
) -> dict[str, Any]:
    """The Job of one export run: `cxbackup export run <request args> --cert --store --result-file`.

    `request_args` are `ExportRequest.to_args()` (or `subject_access_args`). Only the certificate key of the
    Secret is mounted (as tls.crt, read-only): the private key never reaches the pod. Vendor credentials are
    secretKeyRefs. A subjectAccess run gets the subject as a file (never in the pod spec) and the backup's
    volume read-only.
    """
    src = export.spec.source
    args = [
        "run",
        *request_args,
        "--cert",
        f"{CERT_MOUNT}/{CERT_FILE}",
        "--store",
        export_store_location(export),
        "--result-file",
        "/dev/termination-log",
    ]
    env: list[dict[str, Any]] = []
    if src is not None:
        env += [
            {"name": workerenv.EXPORT_API, "value": src.api_uri_prefix},
            secret_env("GWS_USERNAME", src.credentials_secret, "GWS_USERNAME"),
            secret_env("GWS_PASSWORD", src.credentials_secret, "GWS_PASSWORD"),
        ]
    volumes = [
        {
            "name": "certificate",
            "secret": {
                "secretName": certificate.secret,
                "items": [{"key": certificate.key, "path": CERT_FILE}],
                "defaultMode": 0o444,
            },
        }
    ]
    mounts = [{"name": "certificate", "mountPath": CERT_MOUNT, "readOnly": True}]
    if subject_access is not None:
        sub = subject_access.backup_sub_path.strip("/")
        args += ["--subject-file", f"{SUBJECT_MOUNT}/{SUBJECT_FILE}"]
        args += ["--backup-target", f"{BACKUP_MOUNT}/{sub}" if sub else BACKUP_MOUNT]
        volumes.append(
            {
                "name": "subject",
                "secret": {
                    "secretName": subject_access.subject.secret,
                    "items": [{"key": subject_access.subject.key, "path": SUBJECT_FILE}],
                    "defaultMode": 0o440,  # the pod's group (fsGroup) reads it, nobody else
                },
            }
        )
        mounts.append({"name": "subject", "mountPath": SUBJECT_MOUNT, "readOnly": True})
        volumes.append(
            {"name": "backup", "persistentVolumeClaim": {"claimName": subject_access.backup_claim, "readOnly": True}}
        )
        mounts.append({"name": "backup", "mountPath": BACKUP_MOUNT, "readOnly": True})
    annotations = {ANNOTATION_RUN_START: run_start.astimezone(dt.UTC).isoformat()}
    return _export_job(export, run_id, "run", args, env, volumes, mounts, annotations, settings)


def build_export_sweep_job(
    export: ExportJob, run_id: str, settings: JobSettings, *, cutoff: dt.datetime
) -> dict[str, Any]:
    """The Job of one retention sweep: `cxbackup export sweep --store ...` deletes the artifacts of ours whose
    expiresAt has come (and nothing else in the store)."""
    args = ["sweep", "--store", export_store_location(export)]
    annotations = {
        ANNOTATION_RUN_START: cutoff.astimezone(dt.UTC).isoformat(),
        ANNOTATION_SWEEP_CUTOFF: cutoff.astimezone(dt.UTC).isoformat(),
    }
    return _export_job(export, run_id, "sweep", args, [], [], [], annotations, settings)
