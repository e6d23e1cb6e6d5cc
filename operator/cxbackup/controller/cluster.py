"""The controller's only door to the API server: the `Cluster` port and `KubeCluster`, its implementation.

Reconcilers take a `Cluster` (tests pass an in-memory fake); nothing else in controller/ talks to the API
server. Errors are mapped once, in `_call`: 404 becomes a value where the caller asked for one (None,
False, nothing to do), 409 on create is "already exists" (False) so that creating a run twice is harmless,
and every other failure is a `ClusterError` naming the object. There is deliberately no call that deletes
a Secret or removes a key from one: recording keys must outlive everything.
"""

from __future__ import annotations

import base64
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from kubernetes import client
from kubernetes.client.rest import ApiException

from cxbackup.api.common import GROUP, VERSION
from cxbackup.kubeclient import api_client

__all__ = ["Cluster", "ClusterError", "KubeCluster", "SecretView", "termination_messages"]

T = TypeVar("T")


class ClusterError(RuntimeError):
    """A Kubernetes API call failed for a reason other than not-found / already-exists."""


@dataclass(frozen=True)
class SecretView:
    """A Secret as the controllers need it: data decoded to bytes, labels, resourceVersion."""

    namespace: str
    name: str
    data: dict[str, bytes]
    labels: dict[str, str]
    annotations: dict[str, str]
    resource_version: str
    type: str
    immutable: bool = False
    """Whether its data can no longer change (`immutable: true`)."""
    created: dt.datetime | None = None
    """metadata.creationTimestamp."""


class Cluster(Protocol):
    """Every Kubernetes call the controllers make."""

    def read_secret(self, namespace: str, name: str) -> SecretView | None: ...

    def create_secret(
        self,
        namespace: str,
        name: str,
        data: dict[str, bytes],
        *,
        secret_type: str = ...,
        labels: dict[str, str] | None = ...,
        annotations: dict[str, str] | None = ...,
    ) -> bool: ...

    def patch_secret(
        self,
        namespace: str,
        name: str,
        *,
        data: dict[str, bytes],
        resource_version: str,
        labels: dict[str, str] | None = ...,
        annotations: dict[str, str] | None = ...,
    ) -> None: ...

    def secret_keys(self, namespace: str, name: str) -> set[str] | None: ...

    def pvc_access_modes(self, namespace: str, name: str) -> tuple[str, ...] | None: ...

    def create_object(self, obj: dict[str, Any]) -> bool: ...

    def apply_configmap(self, obj: dict[str, Any]) -> None: ...

    def delete_configmap(self, namespace: str, name: str) -> None: ...

    def list_jobs(self, namespace: str, label_selector: str) -> list[dict[str, Any]]: ...

    def patch_job_annotations(self, namespace: str, name: str, annotations: dict[str, str]) -> None: ...

    def delete_job(self, namespace: str, name: str) -> None: ...

    def job_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]: ...

    def list_custom(self, namespace: str | None, plural: str) -> list[dict[str, Any]]: ...

    def read_custom(self, namespace: str, plural: str, name: str) -> dict[str, Any] | None: ...


class _Raise:
    """Marker: no value stands for this status; raise ClusterError."""


_RAISE = _Raise()


def _call(what: str, call: Callable[[], T], *, missing: Any = _RAISE, exists: Any = _RAISE) -> Any:
    """Run one API call; 404 returns `missing` and 409 returns `exists` when given, else ClusterError."""
    try:
        return call()
    except ApiException as exc:
        if exc.status == 404 and missing is not _RAISE:
            return missing
        if exc.status == 409 and exists is not _RAISE:
            return exists
        raise ClusterError(f"{what}: HTTP {exc.status} {exc.reason}") from exc


def _encode(data: dict[str, bytes]) -> dict[str, str]:
    return {k: base64.b64encode(v).decode("ascii") for k, v in data.items()}


def termination_messages(pods: list[dict[str, Any]]) -> list[str]:
    """The terminated.message of every finished container of the pods, newest pod first."""
    items = sorted(pods, key=lambda p: str(p.get("metadata", {}).get("creationTimestamp", "")), reverse=True)
    messages: list[str] = []
    for pod in items:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            message = ((status.get("state") or {}).get("terminated") or {}).get("message")
            if message:
                messages.append(str(message))
    return messages


class KubeCluster:
    """`Cluster` over the `kubernetes` client (synchronous; kopf runs handlers in its thread pool)."""

    def __init__(self, api: client.ApiClient | None = None) -> None:
        self._api = api

    @property
    def api(self) -> client.ApiClient:
        if self._api is None:
            self._api = api_client()
        return self._api

    @property
    def _core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def _batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api)

    @property
    def _custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def _items(self, result: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.api.sanitize_for_serialization(result).get("items", [])
        return items

    # ---- Secrets: read, create, add to; never delete ---------------------------------------------------

    def read_secret(self, namespace: str, name: str) -> SecretView | None:
        """A Secret with its data decoded, or None when it does not exist."""
        secret = _call(
            f"reading Secret {namespace}/{name}",
            lambda: self._core.read_namespaced_secret(name, namespace),
            missing=None,
        )
        if secret is None:
            return None
        meta = secret.metadata
        return SecretView(
            namespace=namespace,
            name=name,
            data={k: base64.b64decode(v) for k, v in (secret.data or {}).items()},
            labels=dict(meta.labels or {}),
            annotations=dict(meta.annotations or {}),
            resource_version=str(meta.resource_version or ""),
            type=str(secret.type or "Opaque"),
            immutable=bool(secret.immutable),
            created=meta.creation_timestamp,
        )

    def secret_keys(self, namespace: str, name: str) -> set[str] | None:
        """The keys of a Secret, or None when it does not exist (the values are not kept)."""
        view = self.read_secret(namespace, name)
        return None if view is None else set(view.data)

    def create_secret(
        self,
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
            "metadata": {
                "name": name,
                "namespace": namespace,
                "labels": labels or {},
                "annotations": annotations or {},
            },
            "data": _encode(data),
        }
        created = _call(
            f"creating Secret {namespace}/{name}",
            lambda: self._core.create_namespaced_secret(namespace, body),
            exists=False,
        )
        return created is not False

    def patch_secret(
        self,
        namespace: str,
        name: str,
        *,
        data: dict[str, bytes],
        resource_version: str,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> None:
        """Set the given data keys (others are kept) and add labels/annotations, only if the Secret is still at
        `resource_version` (otherwise ClusterError: someone else changed it; read it again)."""
        metadata: dict[str, Any] = {"resourceVersion": resource_version}
        if labels:
            metadata["labels"] = labels
        if annotations:
            metadata["annotations"] = annotations
        _call(
            f"updating Secret {namespace}/{name}",
            lambda: self._core.patch_namespaced_secret(name, namespace, {"metadata": metadata, "data": _encode(data)}),
        )

    # ---- PVCs, ConfigMaps, Jobs, pods -------------------------------------------------------------------

    def pvc_access_modes(self, namespace: str, name: str) -> tuple[str, ...] | None:
        """A claim's `spec.accessModes` (what it asked for, known before it is bound), or None when it does not
        exist. Where its worker pods may run follows from them (placement.py)."""
        claim = _call(
            f"reading PersistentVolumeClaim {namespace}/{name}",
            lambda: self._core.read_namespaced_persistent_volume_claim(name, namespace),
            missing=None,
        )
        if claim is None:
            return None
        return tuple(str(m) for m in (claim.spec.access_modes or ()))

    def create_object(self, obj: dict[str, Any]) -> bool:
        """Create a ConfigMap or Job; False when it already exists."""
        ns = obj["metadata"]["namespace"]
        what = f"creating {obj['kind']} {ns}/{obj['metadata']['name']}"
        creators = {"ConfigMap": self._core.create_namespaced_config_map, "Job": self._batch.create_namespaced_job}
        if obj["kind"] not in creators:  # pragma: no cover - programming error
            raise ClusterError(f"{what}: unsupported kind")
        created = _call(what, lambda: creators[obj["kind"]](ns, obj), exists=False)
        return created is not False

    def apply_configmap(self, obj: dict[str, Any]) -> None:
        """Create a ConfigMap, or replace its data when it exists (the audit's rendered configuration)."""
        ns, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        if not self.create_object(obj):
            _call(
                f"updating ConfigMap {ns}/{name}",
                lambda: self._core.patch_namespaced_config_map(name, ns, {"data": obj["data"]}),
            )

    def delete_configmap(self, namespace: str, name: str) -> None:
        _call(
            f"deleting ConfigMap {namespace}/{name}",
            lambda: self._core.delete_namespaced_config_map(name, namespace),
            missing=None,
        )

    def list_jobs(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        jobs = _call(
            f"listing Jobs in {namespace}",
            lambda: self._batch.list_namespaced_job(namespace, label_selector=label_selector),
        )
        return self._items(jobs)

    def patch_job_annotations(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        _call(
            f"annotating Job {namespace}/{name}",
            lambda: self._batch.patch_namespaced_job(name, namespace, {"metadata": {"annotations": annotations}}),
            missing=None,
        )

    def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and (in the background) its pods."""
        _call(
            f"deleting Job {namespace}/{name}",
            lambda: self._batch.delete_namespaced_job(name, namespace, propagation_policy="Background"),
            missing=None,
        )

    def job_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        """The pods of a Job, as plain dicts."""
        pods = _call(
            f"listing the pods of Job {namespace}/{job_name}",
            lambda: self._core.list_namespaced_pod(
                namespace, label_selector=f"batch.kubernetes.io/job-name={job_name}"
            ),
        )
        return self._items(pods)

    # ---- cxbackup.io objects and the peering object ----------------------------------------------------

    def list_custom(self, namespace: str | None, plural: str) -> list[dict[str, Any]]:
        if namespace:
            out = _call(
                f"listing {plural}",
                lambda: self._custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural),
            )
        else:
            out = _call(f"listing {plural}", lambda: self._custom.list_cluster_custom_object(GROUP, VERSION, plural))
        items: list[dict[str, Any]] = out.get("items", [])
        return items

    def read_custom(self, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
        """A cxbackup.io object, or None when it does not exist."""
        obj: dict[str, Any] | None = _call(
            f"reading {plural} {namespace}/{name}",
            lambda: self._custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name),
            missing=None,
        )
        return obj

    def read_peering(self, name: str, namespace: str | None) -> None:
        """Read the operator's kopf peering object (cluster-wide, or in `namespace`); ClusterError when the API
        server does not answer or the object is missing (readiness)."""
        if namespace is None:
            _call(
                f"reading the peering object {name}",
                lambda: self._custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", name),
            )
        else:
            _call(
                f"reading the peering object {name}",
                lambda: self._custom.get_namespaced_custom_object("kopf.dev", "v1", namespace, "kopfpeerings", name),
            )
