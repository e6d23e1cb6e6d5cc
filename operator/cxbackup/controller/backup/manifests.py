"""Pure builders: a RecordingBackup run -> its config.properties, ConfigMap and Indexed Job; the audit's Job. No I/O."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cxbackup.api import workerenv
from cxbackup.api.common import BACKUPS, PodSettings
from cxbackup.api.recordingbackup import RecordingBackup
from cxbackup.api.workerenv import StatusResource
from cxbackup.backup.config import RcbsConfig
from cxbackup.backup.window import RecordingWindow
from cxbackup.controller.jobstate import ANNOTATION_RUN_START
from cxbackup.controller.manifests import (
    CONFIG_MOUNT,
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
from cxbackup.controller.placement import S3_TARGET, Placement, TargetVolume, place
from cxbackup.controller.references import Blocked

__all__ = [
    "ANNOTATION_REPLICAS",
    "ANNOTATION_WINDOW_END",
    "ANNOTATION_WINDOW_START",
    "LABEL_AUDIT",
    "LABEL_BACKUP",
    "TARGET_MOUNT",
    "audit_configmap_name",
    "backup_properties",
    "build_audit_configmap",
    "build_audit_job",
    "build_backup_configmap",
    "build_backup_job",
    "build_target_configmap",
    "placement_problem",
    "target_credentials_env",
    "target_placement",
    "target_volume",
]

LABEL_BACKUP = "cxbackup.io/recordingbackup"


ANNOTATION_WINDOW_START = "cxbackup.io/window-start"


ANNOTATION_WINDOW_END = "cxbackup.io/window-end"


ANNOTATION_REPLICAS = "cxbackup.io/replicas"


TARGET_MOUNT = "/backup"


def _job_name(backup: RecordingBackup, run_id: str) -> str:
    name: str = backup.metadata["name"]
    suffix = f"-{run_id}"
    return name[: 63 - len(suffix)].rstrip("-.") + suffix


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
        "maxRecordingsPerRun": str(spec.window.max_recordings_per_run) if spec.window.max_recordings_per_run else None,
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
        optional["targetS3ObjectLock"] = target.s3.object_lock
    if spec.retention is not None:
        optional["retentionPeriod"] = spec.retention.keep_for
        optional["retentionSweep"] = {"Off": None, "DryRun": "dry-run", "Delete": "delete"}[spec.retention.sweep]
        optional["legalHolds"] = ",".join(h.property_value() for h in spec.retention.legal_holds) or None
        # always: a hold removed from the spec is then removed from the target's holds too
        optional["legalHoldsSource"] = (
            f"RecordingBackup {backup.metadata.get('namespace')}/{backup.metadata.get('name')}"
        )
    values.update({k: v for k, v in optional.items() if v is not None})
    return RcbsConfig.from_values(values, source_name=f"RecordingBackup {backup.metadata.get('name')}")


def target_credentials_env(backup: RecordingBackup) -> list[dict[str, Any]]:
    """The S3 target's credentials as TARGET_AWS_* secretKeyRefs (none for a PVC target)."""
    if backup.spec.target.s3 is None:
        return []
    creds = backup.spec.target.s3.credentials
    return [
        secret_env("TARGET_AWS_ACCESS_KEY_ID", creds.name, creds.access_key_id_key),
        secret_env("TARGET_AWS_SECRET_ACCESS_KEY", creds.name, creds.secret_access_key_key),
    ]


def target_volume(
    backup: RecordingBackup, *, read_only: bool = False
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, mounts) that put a PVC target at TARGET_MOUNT, where backup_properties' targetDir points
    (none for an S3 target)."""
    pvc = backup.spec.target.pvc
    if pvc is None:
        return [], []
    claim: dict[str, Any] = {"claimName": pvc.claim_name} | ({"readOnly": True} if read_only else {})
    mount: dict[str, Any] = {"name": "target", "mountPath": TARGET_MOUNT} | ({"readOnly": True} if read_only else {})
    return [{"name": "target", "persistentVolumeClaim": claim}], [mount]


def target_placement(
    backup: RecordingBackup,
    access_modes: tuple[str, ...] | None,
    replicas: int,
    pod_labels: dict[str, str],
    *,
    read_only: bool = False,
    field: str = "spec.replicas",
) -> Placement | Blocked:
    """Where `replicas` pods labelled `pod_labels` that mount the backup's target go (placement.py): by the PVC's
    `access_modes` (None: not known, taken as ReadWriteOnce), or spread for an S3 target."""
    pvc = backup.spec.target.pvc
    if pvc is None:
        return place(S3_TARGET, replicas, pod_labels, field=field)
    volume = TargetVolume("pvc", pvc.claim_name, backup.metadata["namespace"], access_modes, read_only)
    return place(volume, replicas, pod_labels, field=field)


def placement_problem(backup: RecordingBackup, access_modes: tuple[str, ...] | None) -> Blocked | None:
    """Blocked when the backup's runs cannot be placed on its target at all (more than one shard on a
    ReadWriteOncePod claim), naming spec.replicas and the fix; else None."""
    placed = target_placement(backup, access_modes, backup.spec.replicas, {})
    return placed if isinstance(placed, Blocked) else None


def build_target_configmap(
    backup: RecordingBackup,
    name: str,
    owner: tuple[str, dict[str, Any]],
    labels: dict[str, str],
    header: str,
) -> dict[str, Any]:
    """A ConfigMap whose config.properties describes the backup's target (and its legal holds), for a
    command that works on it with `-config` (erasure, subject access) in a pod with `target_volume` and
    `target_credentials_env`. `owner` is (kind, metadata) of the resource the pod runs for."""
    config = backup_properties(backup, None)
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": name,
            "namespace": backup.metadata["namespace"],
            "labels": labels,
            "ownerReferences": [owner_reference(owner[0], owner[1])],
        },
        "data": {"config.properties": config.to_properties(header=header)},
    }


def _labels(backup: RecordingBackup, run_id: str) -> dict[str, str]:
    return run_labels("backup-worker", LABEL_BACKUP, backup.metadata["name"], run_id)


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
            "ownerReferences": [owner_reference("RecordingBackup", backup.metadata)],
        },
        "data": {"config.properties": config.to_properties(header=header)},
    }


def _pod_settings(backup: RecordingBackup) -> PodSettings:
    return backup.spec.pod or PodSettings()


def build_backup_job(
    backup: RecordingBackup,
    run_id: str,
    window: RecordingWindow,
    settings: JobSettings,
    *,
    run_start: dt.datetime,
    access_modes: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """The Indexed Job of one run: completions = parallelism = replicas, shard = completion index; its pods placed
    by the target PVC's `access_modes` (placement.py; None: not known, taken as ReadWriteOnce)."""
    job = _unplaced_backup_job(backup, run_id, window, settings, run_start=run_start)
    template = job["spec"]["template"]
    apply_placement(
        template, target_placement(backup, access_modes, backup.spec.replicas, template["metadata"]["labels"])
    )
    return job


def _unplaced_backup_job(
    backup: RecordingBackup,
    run_id: str,
    window: RecordingWindow,
    settings: JobSettings,
    *,
    run_start: dt.datetime,
) -> dict[str, Any]:
    spec = backup.spec
    src = spec.source
    ns: str = backup.metadata["namespace"]
    name = _job_name(backup, run_id)
    env: list[dict[str, Any]] = [
        secret_env("GWS_USERNAME", src.gws_credentials.name, src.gws_credentials.username_key),
        secret_env("GWS_PASSWORD", src.gws_credentials.name, src.gws_credentials.password_key),
    ]
    if src.s3_credentials is not None and not spec.media.metadata_only:
        creds = src.s3_credentials
        env.append(secret_env("AWS_ACCESS_KEY_ID", creds.name, creds.access_key_id_key))
        env.append(secret_env("AWS_SECRET_ACCESS_KEY", creds.name, creds.secret_access_key_key))
    env += target_credentials_env(backup)
    env += [
        {"name": workerenv.STATUS_RESOURCE, "value": str(StatusResource(BACKUPS, ns, backup.metadata["name"]))},
        {"name": workerenv.RUN_ID, "value": run_id},
        {"name": workerenv.STATUS_INTERVAL, "value": str(settings.status_report_interval_seconds)},
        {"name": "HOME", "value": TMP_MOUNT},
    ]
    pod = _pod_settings(backup)
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": f"{name}-config"}},
        tmp_volume(pod, settings),
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True},
        {"name": "tmp", "mountPath": TMP_MOUNT},
    ]
    target_volumes, target_mounts = target_volume(backup)
    volumes += target_volumes
    mounts += target_mounts
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
    pod_spec = worker_pod_spec(pod, settings, container, volumes)
    labels = _labels(backup, run_id)
    template: dict[str, Any] = {"metadata": {"labels": labels}, "spec": pod_spec}
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
            "ownerReferences": [owner_reference("RecordingBackup", backup.metadata)],
        },
        "spec": {
            "completionMode": "Indexed",
            "completions": spec.replicas,
            "parallelism": spec.replicas,
            "backoffLimitPerIndex": spec.backoff_limit_per_index,
            "activeDeadlineSeconds": active_deadline(pod, settings),
            "template": template,
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
            "ownerReferences": [owner_reference("RecordingBackup", backup.metadata)],
        },
        "data": {"config.properties": config.to_properties(header=f"audit of {window.describe()}")},
    }


def build_audit_job(
    backup: RecordingBackup,
    audit_id: str,
    window: RecordingWindow,
    settings: JobSettings,
    *,
    run_start: dt.datetime,
    access_modes: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """One pod running `cxbackup audit` over the window; it reports status.audit itself. It mounts the target
    like a run's pods, so it is placed like them (one pod: nothing to spread)."""
    job = _unplaced_backup_job(backup, audit_id, window, settings, run_start=run_start)  # placed below, as one pod
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
    apply_placement(pod, target_placement(backup, access_modes, 1, labels))
    container["env"] = [e for e in container["env"] if e["name"] != workerenv.RUN_ID]
    for volume in pod["spec"]["volumes"]:
        if volume["name"] == "config":
            volume["configMap"]["name"] = audit_configmap_name(backup)
    return job
