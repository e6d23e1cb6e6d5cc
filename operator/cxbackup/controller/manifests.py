"""What every Job manifest cxbackup creates has in common, built in one place: the worker pod spec with the
restricted security context, credentials only as secretKeyRef, owner references, run ids. Pure, no I/O.

Each kind's own Jobs are built from these in controller/backup/manifests.py, controller/export/manifests.py and
controller/erasure/manifests.py; where their pods go (by what the target volume allows) is placement.py's, put into
the pod template by `apply_placement`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cxbackup.api import workerenv
from cxbackup.api.common import API_VERSION, PodSettings
from cxbackup.controller.placement import Placement
from cxbackup.controller.podlimits import PodLimits, bounded_resources, pod_problem
from cxbackup.controller.references import Blocked

__all__ = [
    "CONFIG_MOUNT",
    "DEFAULT_WORKER_RESOURCES",
    "LABEL_RUN",
    "RUN_AS",
    "TMP_MOUNT",
    "JobSettings",
    "active_deadline",
    "apply_placement",
    "pod_settings_problem",
    "restricted_container_security_context",
    "run_id_for",
    "run_labels",
    "tmp_volume",
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
    default_resources: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_WORKER_RESOURCES))
    """Container resources of worker pods whose resource sets none (spec.pod.resources)."""
    active_deadline_seconds: int = 86400
    tmp_size_limit: str = "1Gi"
    ca_certificates: str = ""
    """PEM of extra certificate authorities worker pods trust (the chart's security.caCertificates)."""
    limits: PodLimits = field(default_factory=PodLimits)
    """What a resource's spec.pod may ask for (the chart's worker.limits and worker.allowed*): podlimits.py."""
    vendor_hosts: tuple[str, ...] = ()
    """The installer's vendor hosts (security.vendorHosts, the operator's EndpointPolicy), given to every worker
    pod as CXBACKUP_VENDOR_HOSTS: the worker checks its vendor endpoints against them again."""


DEFAULT_WORKER_RESOURCES: Mapping[str, Any] = {
    "requests": {"cpu": "100m", "memory": "128Mi", "ephemeral-storage": "64Mi"},
    "limits": {"memory": "1Gi", "ephemeral-storage": "2Gi"},
}
"""The chart's defaults (worker.resources), used when the operator runs without the chart."""


def run_id_for(when: dt.datetime) -> str:
    """A run id from the run's due time (to the second): the same slot always yields the same Job name,
    so a second operator or a restarted one collides with AlreadyExists instead of starting a duplicate."""
    return when.astimezone(dt.UTC).strftime("%Y%m%d-%H%M%S")


def run_labels(component: str, owner_label: str, owner: str, run_id: str, **more: str) -> dict[str, str]:
    """The labels of a run's Job, pods and ConfigMaps: cxbackup's, the component, the owning resource's name
    under `owner_label`, the run id, and `more`."""
    return {
        "app.kubernetes.io/name": "cxbackup",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/managed-by": "cxbackup-operator",
        owner_label: owner,
        **more,
        LABEL_RUN: run_id,
    }


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


def tmp_volume(pod: PodSettings, settings: JobSettings) -> dict[str, Any]:
    """The worker's /tmp: an emptyDir with a size limit (the spec's, else the chart's)."""
    return {"name": "tmp", "emptyDir": {"sizeLimit": pod.tmp_size_limit or settings.tmp_size_limit}}


def active_deadline(pod: PodSettings, settings: JobSettings) -> int:
    """Seconds a run's Job may take before Kubernetes stops it (the spec's, else the chart's)."""
    return pod.active_deadline_seconds or settings.active_deadline_seconds


def pod_settings_problem(pod: PodSettings | None, settings: JobSettings) -> Blocked | None:
    """What in `pod` (a resource's spec.pod) is over the installer's caps (podlimits.py), or None."""
    return pod_problem(pod, settings.default_resources, settings.tmp_size_limit, settings.limits)


def worker_pod_spec(
    pod: PodSettings,
    settings: JobSettings,
    container: dict[str, Any],
    volumes: list[dict[str, Any]],
    *,
    automount_token: bool | None = None,
) -> dict[str, Any]:
    """The pod spec every worker Job uses: never restarted, the worker account, the restricted pod
    security context, the installer's vendor hosts (CXBACKUP_VENDOR_HOSTS, set even when empty: then the
    worker sends no vendor credential anywhere), bounded resources (the spec's or the chart's, with a limit for
    every resource the installer caps), and the user's scheduling settings. Raises Blocked when `pod` asks for
    more than the installer allows: the handlers check first, this makes sure no Job over the caps is ever built."""
    problem = pod_settings_problem(pod, settings)
    if problem is not None:
        raise problem
    container.setdefault("resources", bounded_resources(pod.resources, settings.default_resources, settings.limits))
    env = container.setdefault("env", [])
    if settings.ca_certificates:
        env.append({"name": workerenv.CA_CERTIFICATES, "value": settings.ca_certificates})
    env.append({"name": workerenv.VENDOR_HOSTS, "value": ",".join(settings.vendor_hosts)})
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "serviceAccountName": settings.worker_service_account,
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


def apply_placement(template: dict[str, Any], placement: Placement | Blocked) -> None:
    """Put `placement` (placement.place) into a Job's pod `template`: its labels (cxbackup.io/claim) added to the
    template's, its affinity and topologySpreadConstraints replacing any there. The user's nodeSelector and
    tolerations (worker_pod_spec) stay as they are. Raises a Blocked: the handlers check first, this makes sure no
    Job whose pods could never all start is ever built."""
    if isinstance(placement, Blocked):
        raise placement
    metadata = template.setdefault("metadata", {})
    metadata["labels"] = {**metadata.get("labels", {}), **placement.labels}  # a copy: not the Job's own labels
    spec = template["spec"]
    spec.pop("affinity", None)
    spec.pop("topologySpreadConstraints", None)
    spec.update(placement.pod_spec_fields())
