"""Pure builders: an ExportJob run or retention sweep -> its Job (only the certificate key is mounted), and a
subjectAccess run's backup ConfigMap. No I/O."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from cxbackup.api import workerenv
from cxbackup.api.common import PodSettings
from cxbackup.api.exportjob import ExportJob
from cxbackup.api.recordingbackup import RecordingBackup
from cxbackup.controller.backup.manifests import (
    build_target_configmap,
    target_credentials_env,
    target_placement,
    target_volume,
)
from cxbackup.controller.jobstate import ANNOTATION_RUN_START
from cxbackup.controller.manifests import (
    TMP_MOUNT,
    JobSettings,
    active_deadline,
    apply_placement,
    owner_reference,
    restricted_container_security_context,
    run_labels,
    secret_env,
    tmp_volume,
    worker_pod_spec,
)

__all__ = [
    "ANNOTATION_SWEEP_CUTOFF",
    "BACKUP_CONFIG_MOUNT",
    "CERT_FILE",
    "CERT_MOUNT",
    "EXPORT_STORE_MOUNT",
    "LABEL_EXPORT",
    "LABEL_EXPORT_TASK",
    "CertificateSource",
    "Decryption",
    "SubjectAccessSources",
    "backup_configmap_name",
    "build_backup_configmap",
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
KEYRING_MOUNT = "/etc/cxbackup/keyring"
SUBJECT_FILE = "subject"


BACKUP_CONFIG_MOUNT = "/etc/cxbackup/backup"
"""Where a subjectAccess run's backup ConfigMap is mounted: config.properties, read with --backup-config."""


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
    return run_labels(f"export-{task}", LABEL_EXPORT, export.metadata["name"], run_id, **{LABEL_EXPORT_TASK: task})


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
            for item in (
                secret_env("TARGET_AWS_ACCESS_KEY_ID", creds.name, creds.access_key_id_key),
                secret_env("TARGET_AWS_SECRET_ACCESS_KEY", creds.name, creds.secret_access_key_key),
            ):
                if item not in env:  # already there when an S3 backup target shares the store's credentials
                    assert all(e["name"] != item["name"] for e in env), f"{item['name']} set twice"
                    env.append(item)
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
class Decryption:
    """spec.decryptMedia, consented to (cxbackup.controller.export.consent): the keyring Secret, mounted whole
    (every key it ever had), and what the operator approved, which the pod checks against what it mounts
    (cxbackup.export.approval): the subject's digest and the requester certificate's SHA-256 fingerprint."""

    keyring_secret: str
    subject_digest: str
    certificate_fingerprint: str


@dataclass(frozen=True)
class SubjectAccessSources:
    """What a subjectAccess run reads: the Secret key naming the subject (mounted alone, read-only) and the
    RecordingBackup whose target it reads (a PVC mounted read-only, or an S3 bucket with the target's
    credentials), described to the pod by the run's backup ConfigMap."""

    subject: CertificateSource
    backup: RecordingBackup
    decryption: Decryption | None = None
    """spec.decryptMedia, consented to by the key owner."""
    target_access_modes: tuple[str, ...] | None = None
    """The backup's target PVC's spec.accessModes (None: not known, taken as ReadWriteOnce): the pod, which mounts
    it read-only, is placed by them (placement.py) next to the other pods mounting a ReadWriteOnce claim."""


def backup_configmap_name(job_name: str) -> str:
    """The backup ConfigMap of the run Job `job_name`."""
    return f"{job_name}-backup"


def build_backup_configmap(export: ExportJob, run_id: str, backup: RecordingBackup) -> dict[str, Any]:
    """The ConfigMap of a subjectAccess run (owned by the ExportJob): config.properties describing the backup's
    target (targetDir, or the S3 bucket, prefix, endpoint and region; never a credential) and its legal holds,
    as the backup's own runs see them."""
    job_name = export_job_name(export, run_id)
    header = (
        f"ExportJob {export.metadata.get('namespace')}/{export.metadata['name']} run {run_id}: the target of "
        f"RecordingBackup {backup.metadata.get('namespace')}/{backup.metadata['name']}; written by the cxbackup "
        "operator"
    )
    return build_target_configmap(
        backup,
        backup_configmap_name(job_name),
        ("ExportJob", export.metadata),
        _export_labels(export, run_id, "run"),
        header,
    )


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
    secretKeyRefs. A subjectAccess run gets the subject as a file (never in the pod spec) and reads the backup
    through `--backup-config`: the run's backup ConfigMap (`build_backup_configmap`, created before the Job),
    with a PVC target's volume mounted read-only or an S3 target's credentials as TARGET_AWS_* secretKeyRefs
    (the handler makes sure an S3 store uses the same ones).
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
        job_name = export_job_name(export, run_id)
        args += ["--subject-file", f"{SUBJECT_MOUNT}/{SUBJECT_FILE}"]
        args += ["--backup-config", f"{BACKUP_CONFIG_MOUNT}/config.properties"]
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
        volumes.append({"name": "backup-config", "configMap": {"name": backup_configmap_name(job_name)}})
        mounts.append({"name": "backup-config", "mountPath": BACKUP_CONFIG_MOUNT, "readOnly": True})
        target_volumes, target_mounts = target_volume(subject_access.backup, read_only=True)
        volumes += target_volumes
        mounts += target_mounts
        env += target_credentials_env(subject_access.backup)
        decryption = subject_access.decryption
        if decryption is not None:
            args += ["--decrypt-media", "--keyring", KEYRING_MOUNT]
            # what the operator approved; the pod refuses to run when what it mounted differs
            args += ["--verify-subject", decryption.subject_digest]
            args += ["--verify-certificate", decryption.certificate_fingerprint]
            volumes.append(
                {"name": "keyring", "secret": {"secretName": decryption.keyring_secret, "defaultMode": 0o440}}
            )
            mounts.append({"name": "keyring", "mountPath": KEYRING_MOUNT, "readOnly": True})
    annotations = {ANNOTATION_RUN_START: run_start.astimezone(dt.UTC).isoformat()}
    job = _export_job(export, run_id, "run", args, env, volumes, mounts, annotations, settings)
    if subject_access is not None:
        template = job["spec"]["template"]
        placed = target_placement(
            subject_access.backup, subject_access.target_access_modes, 1, template["metadata"]["labels"],
            read_only=True,
        )  # fmt: skip
        apply_placement(template, placed)
    return job


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
