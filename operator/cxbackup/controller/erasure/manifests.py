"""Pure builders: a RecordingErasure run -> its ConfigMap (the backup's target) and its Job. No I/O."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from typing import Any

from cxbackup.api.common import PodSettings
from cxbackup.api.erasure import RecordingErasure
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
    tmp_volume,
    worker_pod_spec,
)

__all__ = [
    "ANNOTATION_DIGEST",
    "ANNOTATION_MODE",
    "ANNOTATION_SUBJECT_VERSION",
    "LABEL_ERASURE",
    "MODE_DRY_RUN",
    "MODE_EXECUTE",
    "build_erasure_configmap",
    "build_erasure_job",
    "erasure_job_name",
    "request_digest",
]

LABEL_ERASURE = "cxbackup.io/recordingerasure"
ANNOTATION_DIGEST = "cxbackup.io/request-digest"
"""On a run's Job: `request_digest` of the request it runs (a dry run's becomes status.plan.digest)."""
ANNOTATION_MODE = "cxbackup.io/erasure-mode"
"""On a run's Job: MODE_DRY_RUN or MODE_EXECUTE, as the operator started it."""
ANNOTATION_SUBJECT_VERSION = "cxbackup.io/subject-version"
"""On a run's Job: the subject Secret's resourceVersion when it started."""
MODE_DRY_RUN = "dry-run"
MODE_EXECUTE = "execute"
CONFIG_DIR = "/etc/cxbackup/backup"
SUBJECT_DIR = "/etc/cxbackup/subject"
SUBJECT_FILE = "subject"
RETRIES = 3
"""Pods a run may use: an erasure that finds a backup run holding a lock (exit 3) or some recordings
not erased (exit 1) is tried again; every try is safe (the ledger is written before anything is deleted)."""


def request_digest(erasure: RecordingErasure, subject_version: str) -> str:
    """What a dry run is of, as one value: this object (its uid: a deleted and recreated erasure starts over),
    its spec but `execute`, and the subject Secret's resourceVersion (a subject changed after the dry run is
    another request)."""
    spec = erasure.spec.model_dump(by_alias=True, mode="json", exclude={"execute"}, exclude_none=True)
    doc = {"uid": erasure.metadata.get("uid", ""), "spec": spec, "subjectVersion": subject_version}
    return "sha256:" + hashlib.sha256(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def erasure_job_name(erasure: RecordingErasure, run_id: str) -> str:
    name: str = erasure.metadata["name"]
    suffix = f"-{run_id}"
    return name[: 63 - len(suffix)].rstrip("-.") + suffix


def _labels(erasure: RecordingErasure, run_id: str) -> dict[str, str]:
    return run_labels("erasure", LABEL_ERASURE, erasure.metadata["name"], run_id)


def build_erasure_configmap(erasure: RecordingErasure, backup: RecordingBackup, run_id: str) -> dict[str, Any]:
    """The backup's target (and its legal holds) as config.properties, owned by the RecordingErasure."""
    name = erasure_job_name(erasure, run_id)
    header = f"RecordingErasure {erasure.metadata['namespace']}/{erasure.metadata['name']} run {run_id}: the target "
    header += f"of RecordingBackup {backup.metadata['name']}; written by the cxbackup operator"
    owner = ("RecordingErasure", erasure.metadata)
    return build_target_configmap(backup, f"{name}-config", owner, _labels(erasure, run_id), header)


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def erase_args(erasure: RecordingErasure) -> list[str]:
    """`cxbackup erase` arguments of a run: the subject from its file, never on the command line."""
    spec = erasure.spec
    args = [
        "erase",
        "-config", f"{CONFIG_DIR}/config.properties",
        "--subject-file", f"{SUBJECT_DIR}/{SUBJECT_FILE}",
        "--request", spec.request,
        "--result-file", "/dev/termination-log",
    ]  # fmt: skip
    if spec.range is not None and spec.range.from_ is not None:
        args += ["--from", _iso(spec.range.from_)]
    if spec.range is not None and spec.range.to is not None:
        args += ["--to", _iso(spec.range.to)]
    # held recordings are reported in status from the result file (they are not a failure to retry)
    return [*args, "--execute", "--exit-zero-when-held"] if spec.execute else args


def build_erasure_job(
    erasure: RecordingErasure,
    backup: RecordingBackup,
    run_id: str,
    settings: JobSettings,
    *,
    run_start: dt.datetime,
    digest: str = "",
    subject_version: str = "",
    access_modes: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """One pod running `cxbackup erase` on the backup's target: the target as the backups reach it (PVC
    mount or S3 credentials as secretKeyRefs), the subject's Secret key mounted alone as a file, no API
    token (it reports through its termination message). Annotated with the request's `digest` and whether
    it is a dry run. Placed by the target PVC's `access_modes` (placement.py; None: not known, taken as
    ReadWriteOnce): next to a backup run's pods on a ReadWriteOnce claim."""
    pod = erasure.spec.pod or PodSettings()
    subject = erasure.spec.subject
    target_volumes, target_mounts = target_volume(backup)
    volumes: list[dict[str, Any]] = [
        {"name": "config", "configMap": {"name": f"{erasure_job_name(erasure, run_id)}-config"}},
        {
            "name": "subject",
            "secret": {
                "secretName": subject.secret,
                "items": [{"key": subject.key, "path": SUBJECT_FILE}],
                "defaultMode": 0o440,  # the pod's group (fsGroup) reads it, nobody else
            },
        },
        tmp_volume(pod, settings),
        *target_volumes,
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "subject", "mountPath": SUBJECT_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": TMP_MOUNT},
        *target_mounts,
    ]
    container: dict[str, Any] = {
        "name": "erase",
        "image": settings.image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["cxbackup"],
        "args": erase_args(erasure),
        "env": [*target_credentials_env(backup), {"name": "HOME", "value": TMP_MOUNT}],
        "volumeMounts": mounts,
        "securityContext": restricted_container_security_context(),
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    labels = _labels(erasure, run_id)
    template: dict[str, Any] = {
        "metadata": {"labels": labels},
        "spec": worker_pod_spec(pod, settings, container, volumes, automount_token=False),
    }
    apply_placement(template, target_placement(backup, access_modes, 1, labels))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": erasure_job_name(erasure, run_id),
            "namespace": erasure.metadata["namespace"],
            "labels": labels,
            "annotations": {
                ANNOTATION_RUN_START: run_start.astimezone(dt.UTC).isoformat(),
                ANNOTATION_DIGEST: digest,
                ANNOTATION_SUBJECT_VERSION: subject_version,
                ANNOTATION_MODE: MODE_EXECUTE if erasure.spec.execute else MODE_DRY_RUN,
            },
            "ownerReferences": [owner_reference("RecordingErasure", erasure.metadata)],
        },
        "spec": {
            "backoffLimit": RETRIES,
            "activeDeadlineSeconds": active_deadline(pod, settings),
            "template": template,
        },
    }
