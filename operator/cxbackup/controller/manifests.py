"""What every Job manifest cxbackup creates has in common, built in one place: the worker pod spec with the
restricted security context, credentials only as secretKeyRef, owner references, run ids. Pure, no I/O.

Each kind's own Jobs are built from these in controller/backup/manifests.py and controller/export/manifests.py.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cxbackup.api.common import API_VERSION, PodSettings

__all__ = [
    "CONFIG_MOUNT",
    "LABEL_RUN",
    "RUN_AS",
    "TMP_MOUNT",
    "JobSettings",
    "restricted_container_security_context",
    "run_id_for",
]

LABEL_RUN = "cxbackup.io/run"


CONFIG_MOUNT = "/etc/cxbackup"


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


def owner_reference(kind: str, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The owner reference that makes Kubernetes delete a run's objects with the resource."""
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "name": metadata["name"],
        "uid": metadata["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def secret_env(name: str, secret: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": secret, "key": key}}}


def worker_pod_spec(
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
