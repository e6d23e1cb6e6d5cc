"""Pure builders: a RecordingBackup run -> its config.properties, ConfigMap and Indexed Job. No I/O.

Every Job manifest cxbackup creates is built here (one place), with the restricted security context,
credentials only as secretKeyRef, owner references, and the labels the controller finds runs by.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cxbackup.api import workerenv
from cxbackup.api.common import API_VERSION, BACKUPS, PodSettings
from cxbackup.api.exportjob import ExportJob
from cxbackup.api.recordingbackup import RecordingBackup
from cxbackup.api.workerenv import StatusResource
from cxbackup.backup.config import RcbsConfig
from cxbackup.backup.window import RecordingWindow
from cxbackup.controller.jobstate import ANNOTATION_ACCOUNTED, ANNOTATION_RUN_START

__all__ = [
    "ANNOTATION_ACCOUNTED",
    "ANNOTATION_REPLICAS",
    "ANNOTATION_RUN_START",
    "ANNOTATION_WINDOW_END",
    "ANNOTATION_WINDOW_START",
    "CONFIG_MOUNT",
    "LABEL_BACKUP",
    "LABEL_RUN",
    "TARGET_MOUNT",
    "JobSettings",
    "backup_properties",
    "build_backup_configmap",
    "build_backup_job",
    "restricted_container_security_context",
    "run_id_for",
]

LABEL_BACKUP = "cxbackup.io/recordingbackup"
LABEL_RUN = "cxbackup.io/run"
ANNOTATION_WINDOW_START = "cxbackup.io/window-start"
ANNOTATION_WINDOW_END = "cxbackup.io/window-end"
ANNOTATION_REPLICAS = "cxbackup.io/replicas"

CONFIG_MOUNT = "/etc/cxbackup"
TARGET_MOUNT = "/backup"
TMP_MOUNT = "/tmp"  # noqa: S108 - a mount point inside the pod (an emptyDir), not a host temp file
RUN_AS = 10001


@dataclass(frozen=True)
class JobSettings:
    """Operator-level settings that go into every worker pod."""

    image: str = "ghcr.io/cxbackup/cxbackup:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    worker_service_account: str = "cxbackup-worker"
    status_report_interval_seconds: float = 5.0


def run_id_for(when: dt.datetime) -> str:
    """A run id from the run's due time (to the second): the same slot always yields the same Job name,
    so a second operator or a restarted one collides with AlreadyExists instead of starting a duplicate."""
    return when.astimezone(dt.UTC).strftime("%Y%m%d-%H%M%S")


def _job_name(backup: RecordingBackup, run_id: str) -> str:
    name: str = backup.metadata["name"]
    suffix = f"-{run_id}"
    return name[: 63 - len(suffix)].rstrip("-.") + suffix


def restricted_container_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RUN_AS,
        "runAsGroup": RUN_AS,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def backup_properties(backup: RecordingBackup, window: RecordingWindow | None) -> RcbsConfig:
    """The RCBS configuration of a run. The window is explicit: all shards cover the same one.
    Without a window: the configuration the operator computes the window from."""
    spec = backup.spec
    src = spec.source
    values: dict[str, object] = {
        "gwsUriPrefix": src.gws_uri_prefix,
        "minAge": str(spec.window.min_age),
        "maxAge": str(spec.window.max_age),
        "mediaTypePattern": spec.media.type_pattern,
        "recordingFolderFormat": spec.media.folder_format,
        "metadataOnly": "true" if spec.media.metadata_only else "false",
        "usePayloadSigning": "true" if src.use_payload_signing else "false",
        "totalRcbsInstances": str(spec.replicas),
        "rcbsInstanceId": "0",
        "concurrency": str(spec.concurrency),
        "mediaTransfer": src.media_transfer,
    }
    if window is not None:
        values["windowStart"] = str(window.start_ms)
        values["windowEnd"] = str(window.end_ms)
    optional: dict[str, object | None] = {
        "gwsRecordingsUri": src.gws_recordings_uri,
        "gwsSettingsUri": src.gws_settings_uri,
        "minDate": spec.window.min_date,
        "maxDate": spec.window.max_date,
        "awsEndpointUrl": src.s3_endpoint_url,
        "awsRegion": src.s3_region,
        "gwsProxyHost": src.gws_proxy.host if src.gws_proxy else None,
        "gwsProxyPort": str(src.gws_proxy.port) if src.gws_proxy else None,
        "awsProxyHost": src.aws_proxy.host if src.aws_proxy else None,
        "awsProxyPort": str(src.aws_proxy.port) if src.aws_proxy else None,
    }
    if spec.filters is not None:
        optional["partitions"] = ",".join(spec.filters.partitions) if spec.filters.partitions else None
        optional["accessGroups"] = ",".join(spec.filters.access_groups) if spec.filters.access_groups else None
        optional["agentHierarchy"] = spec.filters.agent_hierarchy
    target = spec.target
    if target.pvc is not None:
        sub = target.pvc.sub_path.strip("/") if target.pvc.sub_path else ""
        values["targetDir"] = f"{TARGET_MOUNT}/{sub}" if sub else TARGET_MOUNT
    elif target.s3 is not None:
        values["targetS3Bucket"] = target.s3.bucket
        optional["targetS3Prefix"] = target.s3.prefix or None
        optional["targetS3EndpointUrl"] = target.s3.endpoint_url
        optional["targetS3Region"] = target.s3.region
    values.update({k: v for k, v in optional.items() if v is not None})
    return RcbsConfig.from_values(values, source_name=f"RecordingBackup {backup.metadata.get('name')}")


def _owner(kind: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The owner reference that makes Kubernetes delete a run's objects with the resource."""
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _labels(backup: RecordingBackup, run_id: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "cxbackup",
        "app.kubernetes.io/component": "backup-worker",
        "app.kubernetes.io/managed-by": "cxbackup-operator",
        LABEL_BACKUP: backup.metadata["name"],
        LABEL_RUN: run_id,
    }


def build_backup_configmap(backup: RecordingBackup, run_id: str, window: RecordingWindow) -> dict[str, Any]:
    config = backup_properties(backup, window)
    header = (
        f"RecordingBackup {backup.metadata.get('namespace')}/{backup.metadata['name']} run {run_id}, "
        f"window {window.describe()}; written by the cxbackup operator"
    )
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"{_job_name(backup, run_id)}-config",
            "namespace": backup.metadata["namespace"],
            "labels": _labels(backup, run_id),
            "ownerReferences": [_owner("RecordingBackup", backup.metadata)],
        },
        "data": {"config.properties": config.to_properties(header=header)},
    }


def _secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def _pod_settings(backup: RecordingBackup) -> PodSettings:
    return backup.spec.pod or PodSettings()


def _worker_pod_spec(
    pod: PodSettings,
    settings: JobSettings,
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
    *,
    automount_token: bool | None = None,
) -> dict[str, Any]:
    """The pod spec every worker Job uses: never restarted, the worker account, the restricted pod
    security context, and the user's scheduling settings."""
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": pod.service_account_name or settings.worker_service_account,
    }
    if automount_token is not None:
        pod_spec["automountServiceAccountToken"] = automount_token
    pod_spec.update(
        securityContext={
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        containers=[container],
        volumes=volumes,
    )
    if pod.node_selector:
        pod_spec["nodeSelector"] = pod.node_selector
    if pod.tolerations:
        pod_spec["tolerations"] = pod.tolerations
    return pod_spec


def build_backup_job(
    backup: RecordingBackup,
    run_id: str,
    window: RecordingWindow,
    settings: JobSettings,
    *,
    run_start: dt.datetime,
) -> dict[str, Any]:
    """The Indexed Job of one run: completions = parallelism = replicas, shard = completion index."""
    spec = backup.spec
    src = spec.source
    ns: str = backup.metadata["namespace"]
    name = _job_name(backup, run_id)
    env: list[dict[str, Any]] = [
        _secret_env("GWS_USERNAME", src.gws_credentials.name, src.gws_credentials.username_key),
        _secret_env("GWS_PASSWORD", src.gws_credentials.name, src.gws_credentials.password_key),
    ]
    if src.s3_credentials is not None and not spec.media.metadata_only:
        creds = src.s3_credentials
        env.append(_secret_env("AWS_ACCESS_KEY_ID", creds.name, creds.access_key_id_key))
        env.append(_secret_env("AWS_SECRET_ACCESS_KEY", creds.name, creds.secret_access_key_key))
    if spec.target.s3 is not None:
        tcreds = spec.target.s3.credentials
        env.append(_secret_env("TARGET_AWS_ACCESS_KEY_ID", tcreds.name, tcreds.access_key_id_key))
        env.append(_secret_env("TARGET_AWS_SECRET_ACCESS_KEY", tcreds.name, tcreds.secret_access_key_key))
    env += [
        {"name": workerenv.STATUS_RESOURCE, "value": str(StatusResource(BACKUPS, ns, backup.metadata["name"]))},
        {"name": workerenv.RUN_ID, "value": run_id},
        {"name": workerenv.STATUS_INTERVAL, "value": str(settings.status_report_interval_seconds)},
        {"name": "HOME", "value": TMP_MOUNT},
    ]
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": f"{name}-config"}},
        {"name": "tmp", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
        {"name": "tmp", "mountPath": TMP_MOUNT},
    ]
    if spec.target.pvc is not None:
        volumes.append({"name": "target", "persistentVolumeClaim": {"claimName": spec.target.pvc.claim_name}})
        mounts.append({"name": "target", "mountPath": TARGET_MOUNT})
    pod = _pod_settings(backup)
    container: dict[str, Any] = {
        "name": "worker",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["cxbackup"],
        "args": [
            "download",
            "-config",
            f"{CONFIG_MOUNT}/config.properties",
            "--rcbs-instance-id",
            "$(JOB_COMPLETION_INDEX)",
            "--summary-file",
            "/dev/termination-log",
        ],
        "env": env,
        "volumeMounts": mounts,
        "securityContext": restricted_container_security_context(),
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if pod.resources:
        container["resources"] = pod.resources
    pod_spec = _worker_pod_spec(pod, settings, container, volumes)
    labels = _labels(backup, run_id)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": labels,
            "annotations": {
                ANNOTATION_WINDOW_START: str(window.start_ms),
                ANNOTATION_WINDOW_END: str(window.end_ms),
                ANNOTATION_REPLICAS: str(spec.replicas),
                ANNOTATION_RUN_START: run_start.astimezone(dt.UTC).isoformat(),
            },
            "ownerReferences": [_owner("RecordingBackup", backup.metadata)],
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": spec.replicas,
            "parallelism": spec.replicas,
            "backoffLimitPerIndex": spec.backoff_limit_per_index,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


LABEL_AUDIT = "cxbackup.io/audit"


def audit_configmap_name(backup: RecordingBackup) -> str:
    name: str = backup.metadata["name"]
    return f"{name[:50].rstrip('-.')}-audit-config"


def build_audit_configmap(backup: RecordingBackup, window: RecordingWindow) -> dict[str, Any]:
    """The audit's configuration: the backup's, with the audited window (the vendor's retained range)."""
    config = backup_properties(backup, window)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": audit_configmap_name(backup),
            "namespace": backup.metadata["namespace"],
            "labels": {"app.kubernetes.io/name": "cxbackup", LABEL_AUDIT: backup.metadata["name"]},
            "ownerReferences": [_owner("RecordingBackup", backup.metadata)],
        },
        "data": {"config.properties": config.to_properties(header=f"audit of {window.describe()}")},
    }


def build_audit_job(
    backup: RecordingBackup, audit_id: str, window: RecordingWindow, settings: JobSettings
) -> dict[str, Any]:
    """One pod running `cxbackup audit` over the window; it reports status.audit itself."""
    job = build_backup_job(backup, audit_id, window, settings, run_start=dt.datetime.now(dt.UTC))
    name = f"{backup.metadata['name'][:40].rstrip('-.')}-audit-{audit_id}"
    labels = {
        "app.kubernetes.io/name": "cxbackup",
        "app.kubernetes.io/component": "backup-audit",
        "app.kubernetes.io/managed-by": "cxbackup-operator",
        LABEL_AUDIT: backup.metadata["name"],
    }
    job["metadata"]["name"] = name
    job["metadata"]["labels"] = labels
    job["metadata"]["annotations"] = {
        ANNOTATION_WINDOW_START: str(window.start_ms),
        ANNOTATION_WINDOW_END: str(window.end_ms),
    }
    spec = job["spec"]
    spec.pop("completionMode")
    spec.pop("backoffLimitPerIndex")
    spec.update(completions=1, parallelism=1, backoffLimit=2, ttlSecondsAfterFinished=3600)
    pod = spec["template"]
    pod["metadata"]["labels"] = labels
    container = pod["spec"]["containers"][0]
    container["name"] = "audit"
    container["args"] = [
        "audit", "-config", f"{CONFIG_MOUNT}/config.properties", "--problems-only",
        "--window-start", str(window.start_ms), "--window-end", str(window.end_ms),
    ]  # fmt: skip
    container["env"] = [e for e in container["env"] if e["name"] != workerenv.RUN_ID]
    for volume in pod["spec"]["volumes"]:
        if volume["name"] == "config":
            volume["configMap"]["name"] = audit_configmap_name(backup)
    return job


# ---- ExportJob: export runs and retention sweeps ------------------------------------------------------

__all__ += [
    "ANNOTATION_SWEEP_CUTOFF",
    "CERT_MOUNT",
    "EXPORT_STORE_MOUNT",
    "LABEL_EXPORT",
    "LABEL_EXPORT_TASK",
    "CertificateSource",
    "build_export_job",
    "build_export_sweep_job",
    "export_job_name",
    "export_store_location",
]

LABEL_EXPORT = "cxbackup.io/exportjob"
LABEL_EXPORT_TASK = "cxbackup.io/export-task"
"""`run` for an export run, `sweep` for a retention sweep."""
ANNOTATION_SWEEP_CUTOFF = "cxbackup.io/sweep-cutoff"
"""The time a sweep was started for: every artifact that expired by then is deleted by it."""
EXPORT_STORE_MOUNT = "/exports"
CERT_MOUNT = "/etc/cxbackup/certificate"
CERT_FILE = "tls.crt"


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
    volumes = [*volumes, {"name": "tmp", "emptyDir": {}}]
    mounts = [*mounts, {"name": "tmp", "mountPath": TMP_MOUNT}]
    if store.pvc is not None:
        volumes.append({"name": "store", "persistentVolumeClaim": {"claimName": store.pvc}})
        mounts.append({"name": "store", "mountPath": EXPORT_STORE_MOUNT})
    else:
        if store.s3_credentials is not None:
            creds = store.s3_credentials
            env.append(_secret_env("TARGET_AWS_ACCESS_KEY_ID", creds.name, creds.access_key_id_key))
            env.append(_secret_env("TARGET_AWS_SECRET_ACCESS_KEY", creds.name, creds.secret_access_key_key))
        if store.s3_endpoint_url:
            env.append({"name": "TARGET_AWS_ENDPOINT_URL", "value": store.s3_endpoint_url})
    env.append({"name": "HOME", "value": TMP_MOUNT})
    pod = export.spec.pod or PodSettings()
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
    if pod.resources:
        container["resources"] = pod.resources
    pod_spec = _worker_pod_spec(pod, settings, container, volumes, automount_token=False)
    labels = _export_labels(export, run_id, task)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": export_job_name(export, run_id, task),
            "namespace": export.metadata["namespace"],
            "labels": labels,
            "annotations": annotations,
            "ownerReferences": [_owner("ExportJob", export.metadata)],
        },
        "spec": {
            "backoffLimit": 0,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def build_export_job(
    export: ExportJob,
    run_id: str,
    request_args: list[str],
    certificate: CertificateSource,
    settings: JobSettings,
    *,
    run_start: dt.datetime,
) -> dict[str, Any]:
    """The Job of one export run: `cxbackup export run <request args> --cert --store --result-file`.

    `request_args` are `ExportRequest.to_args()`. Only the certificate key of the Secret is mounted (as
    tls.crt, read-only): the private key never reaches the pod. Vendor credentials are secretKeyRefs.
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
    env: list[dict[str, Any]] = [
        {"name": workerenv.EXPORT_API, "value": src.api_uri_prefix},
        _secret_env("GWS_USERNAME", src.credentials_secret, "GWS_USERNAME"),
        _secret_env("GWS_PASSWORD", src.credentials_secret, "GWS_PASSWORD"),
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
