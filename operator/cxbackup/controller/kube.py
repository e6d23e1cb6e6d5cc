"""All Kubernetes API access of the controller, in one module (the `kubernetes` client, synchronous).

Handlers call these functions; nothing else in controller/ talks to the API server. Errors from the
API are raised as `KubeError` with the object named; 404 is a value (None/False), 409 on create is
"already exists" (returned as False) so that creating a run twice is harmless.
"""

from __future__ import annotations

import base64
import functools
import os
from dataclasses import dataclass
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException

__all__ = [
    "KubeError",
    "api_client",
    "create_object",
    "delete_configmap",
    "delete_job",
    "list_custom",
    "list_jobs",
    "patch_job_annotations",
    "pvc_exists",
    "secret_keys",
]


class KubeError(RuntimeError):
    """A Kubernetes API call failed for a reason other than not-found / already-exists."""


@functools.cache
def api_client() -> client.ApiClient:
    """In-cluster configuration when running in a pod, else KUBECONFIG / ~/.kube/config."""
    if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
        config.load_incluster_config()
    else:
        config.load_kube_config()
    return client.ApiClient()


def _core() -> client.CoreV1Api:
    return client.CoreV1Api(api_client())


def _batch() -> client.BatchV1Api:
    return client.BatchV1Api(api_client())


def _custom() -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client())


def _fail(what: str, exc: ApiException) -> KubeError:
    return KubeError(f"{what}: HTTP {exc.status} {exc.reason}")


def secret_keys(namespace: str, name: str) -> set[str] | None:
    """The keys of a Secret, or None when it does not exist. Values are never read into the operator."""
    try:
        secret = _core().read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise _fail(f"reading Secret {namespace}/{name}", exc) from exc
    return set((secret.data or {}).keys()) | set((secret.string_data or {}).keys())


def pvc_exists(namespace: str, name: str) -> bool:
    try:
        _core().read_namespaced_persistent_volume_claim(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise _fail(f"reading PersistentVolumeClaim {namespace}/{name}", exc) from exc
    return True


def create_object(obj: dict[str, Any]) -> bool:
    """Create a ConfigMap or Job; False when it already exists."""
    ns = obj["metadata"]["namespace"]
    what = f"creating {obj['kind']} {ns}/{obj['metadata']['name']}"
    try:
        if obj["kind"] == "ConfigMap":
            _core().create_namespaced_config_map(ns, obj)
        elif obj["kind"] == "Job":
            _batch().create_namespaced_job(ns, obj)
        else:  # pragma: no cover - programming error
            raise KubeError(f"{what}: unsupported kind")
    except ApiException as exc:
        if exc.status == 409:
            return False
        raise _fail(what, exc) from exc
    return True


def list_jobs(namespace: str, label_selector: str) -> list[dict[str, Any]]:
    try:
        jobs = _batch().list_namespaced_job(namespace, label_selector=label_selector)
    except ApiException as exc:
        raise _fail(f"listing Jobs in {namespace}", exc) from exc
    result: list[dict[str, Any]] = api_client().sanitize_for_serialization(jobs)["items"]
    return result


def list_custom(namespace: str | None, plural: str) -> list[dict[str, Any]]:
    try:
        if namespace:
            out = _custom().list_namespaced_custom_object("cxbackup.io", "v1alpha1", namespace, plural)
        else:
            out = _custom().list_cluster_custom_object("cxbackup.io", "v1alpha1", plural)
    except ApiException as exc:
        raise _fail(f"listing {plural}", exc) from exc
    items: list[dict[str, Any]] = out.get("items", [])
    return items


def patch_job_annotations(namespace: str, name: str, annotations: dict[str, str]) -> None:
    try:
        _batch().patch_namespaced_job(name, namespace, {"metadata": {"annotations": annotations}})
    except ApiException as exc:
        if exc.status == 404:
            return
        raise _fail(f"annotating Job {namespace}/{name}", exc) from exc


def delete_job(namespace: str, name: str) -> None:
    """Delete a Job and (in the background) its pods."""
    try:
        _batch().delete_namespaced_job(name, namespace, propagation_policy="Background")
    except ApiException as exc:
        if exc.status != 404:
            raise _fail(f"deleting Job {namespace}/{name}", exc) from exc


def delete_configmap(namespace: str, name: str) -> None:
    try:
        _core().delete_namespaced_config_map(name, namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise _fail(f"deleting ConfigMap {namespace}/{name}", exc) from exc


# ---- Secrets holding recording keys (RecordingCertificate) --------------------------------------------
# Read, create and add to; there is deliberately no function that deletes a Secret or removes a key from
# one: recording keys must outlive everything (old recordings stay readable only with them).

__all__ += ["SecretView", "create_secret", "patch_secret", "read_secret"]


@dataclass(frozen=True)
class SecretView:
    """A Secret as the certificate controller needs it: data decoded to bytes, labels, resourceVersion."""

    namespace: str
    name: str
    data: dict[str, bytes]
    labels: dict[str, str]
    annotations: dict[str, str]
    resource_version: str
    type: str


def read_secret(namespace: str, name: str) -> SecretView | None:
    """A Secret with its data decoded, or None when it does not exist."""
    try:
        secret = _core().read_namespaced_secret(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise _fail(f"reading Secret {namespace}/{name}", exc) from exc
    meta = secret.metadata
    return SecretView(
        namespace=namespace,
        name=name,
        data={k: base64.b64decode(v) for k, v in (secret.data or {}).items()},
        labels=dict(meta.labels or {}),
        annotations=dict(meta.annotations or {}),
        resource_version=str(meta.resource_version or ""),
        type=str(secret.type or "Opaque"),
    )


def _encode(data: dict[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode("ascii") for k, v in data.items()}


def create_secret(
    namespace: str,
    name: str,
    data: dict[str, bytes],
    *,
    secret_type: str = "Opaque",  # noqa: S107 - a Secret type, not a password
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> bool:
    """Create a Secret (no owner reference: it outlives whatever made it); False when it already exists."""
    body = {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": secret_type,
        "metadata": {"name": name, "namespace": namespace, "labels": labels or {}, "annotations": annotations or {}},
        "data": _encode(data),
    }
    try:
        _core().create_namespaced_secret(namespace, body)
    except ApiException as exc:
        if exc.status == 409:
            return False
        raise _fail(f"creating Secret {namespace}/{name}", exc) from exc
    return True


def patch_secret(
    namespace: str,
    name: str,
    *,
    data: dict[str, bytes],
    resource_version: str,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> None:
    """Set the given data keys (others are kept) and add labels/annotations, only if the Secret is still at
    `resource_version` (otherwise KubeError: someone else changed it; read it again)."""
    metadata: dict[str, Any] = {"resourceVersion": resource_version}
    if labels:
        metadata["labels"] = labels
    if annotations:
        metadata["annotations"] = annotations
    try:
        _core().patch_namespaced_secret(name, namespace, {"metadata": metadata, "data": _encode(data)})
    except ApiException as exc:
        raise _fail(f"updating Secret {namespace}/{name}", exc) from exc


# ---- ExportJob: the RecordingCertificate it names, and the result its pod reports ----------------------

__all__ += ["job_pods", "job_termination_messages", "read_custom", "read_peering"]


def read_custom(namespace: str, plural: str, name: str) -> dict[str, Any] | None:
    """A cxbackup.io/v1alpha1 object, or None when it does not exist."""
    try:
        obj: dict[str, Any] = _custom().get_namespaced_custom_object("cxbackup.io", "v1alpha1", namespace, plural, name)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise _fail(f"reading {plural} {namespace}/{name}", exc) from exc
    return obj


def read_peering(name: str, namespace: str | None) -> None:
    """Read the operator's kopf peering object (cluster-wide, or in `namespace`); raises KubeError when the
    API server does not answer or the object is missing (readiness)."""
    try:
        if namespace is None:
            _custom().get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", name)
        else:
            _custom().get_namespaced_custom_object("kopf.dev", "v1", namespace, "kopfpeerings", name)
    except ApiException as exc:
        raise _fail(f"reading the peering object {name}", exc) from exc


def job_pods(namespace: str, job_name: str) -> list[dict[str, Any]]:
    """The pods of a Job, as plain dicts."""
    try:
        pods = _core().list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job_name}")
    except ApiException as exc:
        raise _fail(f"listing the pods of Job {namespace}/{job_name}", exc) from exc
    items: list[dict[str, Any]] = api_client().sanitize_for_serialization(pods).get("items", [])
    return items


def job_termination_messages(namespace: str, job_name: str) -> list[str]:
    """The terminated.message of every finished container of the Job's pods, newest pod first."""
    items = job_pods(namespace, job_name)
    items.sort(key=lambda p: str(p.get("metadata", {}).get("creationTimestamp", "")), reverse=True)
    messages: list[str] = []
    for pod in items:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            message = ((status.get("state") or {}).get("terminated") or {}).get("message")
            if message:
                messages.append(str(message))
    return messages


def apply_configmap(obj: dict[str, Any]) -> None:
    """Create a ConfigMap, or replace its data when it exists (the audit's rendered configuration)."""
    ns = obj["metadata"]["namespace"]
    name = obj["metadata"]["name"]
    try:
        _core().create_namespaced_config_map(ns, obj)
        return
    except ApiException as exc:
        if exc.status != 409:
            raise _fail(f"creating ConfigMap {ns}/{name}", exc) from exc
    try:
        _core().patch_namespaced_config_map(name, ns, {"data": obj["data"]})
    except ApiException as exc:
        raise _fail(f"updating ConfigMap {ns}/{name}", exc) from exc
