"""An in-memory `Cluster` for the reconcilers' unit tests: Secrets, PVCs, ConfigMaps, Jobs and their pods,
and cxbackup objects, behaving like the API server where the controllers rely on it (409 on create is
False, 404 is a value, Secret patches honour resourceVersion). `fail` makes a named call raise
ClusterError, as an unreachable or refusing API server would."""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import yaml

from cxbackup import metrics
from cxbackup.api.common import CREDENTIALS_LABEL
from cxbackup.controller.cluster import ClusterError, SecretView
from cxbackup.controller.conditions import condition
from cxbackup.controller.events import EventSpec
from cxbackup.controller.jobstate import ANNOTATION_ACCOUNTED
from cxbackup.controller.references import EndpointPolicy
from cxbackup.controller.settings import OperatorSettings, load_settings

__all__ = ["FakeClock", "FakeCluster", "ReconcileHarness"]

NS = "ns"
CHART = Path(__file__).resolve().parents[3] / "helm" / "cxbackup"
VENDOR_HOSTS = ("example.com", "vendor.example", "*.vendor.example", "x")
"""The vendor hosts of the unit tests' resources, named as an installer names them (the chart's default,
like OperatorSettings(), names none and so refuses every vendor endpoint)."""
SETTINGS = OperatorSettings(endpoints=EndpointPolicy(vendor_hosts=VENDOR_HOSTS))
"""The settings a harness reconciles with unless a test gives others."""


def chart_default_settings() -> OperatorSettings:
    """The operator's settings as the chart's default values set them (values.yaml `security`, passed as the
    deployment template passes them)."""
    security = yaml.safe_load((CHART / "values.yaml").read_text())["security"]
    env = {
        "CXBACKUP_ALLOW_PLAIN_HTTP": str(security["allowPlainHttp"]).lower(),
        "CXBACKUP_VENDOR_HOSTS": ",".join(security["vendorHosts"]),
    }
    return load_settings(env)


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _matches(labels: dict[str, str], selector: str) -> bool:
    key, _, value = selector.partition("=")
    return labels.get(key) == value


@dataclass
class FakeCluster:
    secrets: dict[tuple[str, str], SecretView] = field(default_factory=dict)
    pvcs: set[tuple[str, str]] = field(default_factory=set)
    pvc_modes: dict[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    """spec.accessModes of the claims in `pvcs` (ReadWriteOnce, the common disk, when not set)."""
    configmaps: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    jobs: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    pods: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    objects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    fail_patch: set[str] = field(default_factory=set)
    fail: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    _version: int = 0

    # ---- test set-up ------------------------------------------------------------------------------------

    def _next(self) -> str:
        self._version += 1
        return str(self._version)

    def _check(self, call: str) -> None:
        if call in self.fail:
            raise ClusterError(f"{call}: HTTP 500 Internal Server Error")

    def put(
        self,
        name: str,
        data: dict[str, bytes],
        labels: dict[str, str] | None = None,
        namespace: str = NS,
        *,
        annotations: dict[str, str] | None = None,
        immutable: bool = False,
        created: dt.datetime | None = None,
    ) -> None:
        self.secrets[(namespace, name)] = SecretView(
            namespace, name, dict(data), labels or {}, dict(annotations or {}), self._next(), "Opaque",
            immutable=immutable, created=created,
        )  # fmt: skip

    def put_credentials(
        self,
        name: str,
        data: dict[str, bytes],
        namespace: str = NS,
        *,
        immutable: bool = False,
        created: dt.datetime | None = None,
    ) -> None:
        """A Secret opted in as credentials (labelled cxbackup.io/credentials=true)."""
        self.put(name, data, {CREDENTIALS_LABEL: "true"}, namespace, immutable=immutable, created=created)

    def put_pvc(self, name: str, namespace: str = NS, *, access_modes: tuple[str, ...] = ("ReadWriteOnce",)) -> None:
        self.pvcs.add((namespace, name))
        self.pvc_modes[(namespace, name)] = access_modes

    def job(self, name: str, namespace: str = NS) -> dict[str, Any]:
        return self.jobs[(namespace, name)]

    def job_names(self, namespace: str = NS) -> list[str]:
        return sorted(n for ns, n in self.jobs if ns == namespace)

    def finish_job(
        self,
        name: str,
        *,
        succeeded: bool,
        at: dt.datetime,
        reason: str = "BackoffLimitExceeded",
        message: str = "Job has reached the specified backoff limit",
        namespace: str = NS,
    ) -> None:
        """Set the Job's terminal condition as the Job controller does."""
        status = self.jobs[(namespace, name)].setdefault("status", {})
        if succeeded:
            status["conditions"] = [{"type": "Complete", "status": "True", "lastTransitionTime": _iso(at)}]
            status["completionTime"] = _iso(at)
        else:
            status["conditions"] = [
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": _iso(at),
                }
            ]

    def add_pod(self, job_name: str, pod: dict[str, Any], namespace: str = NS) -> None:
        self.pods.setdefault((namespace, job_name), []).append(pod)

    def accounted(self, name: str, namespace: str = NS) -> bool:
        ann = self.jobs[(namespace, name)]["metadata"].get("annotations") or {}
        return ann.get(ANNOTATION_ACCOUNTED) == "true"

    # ---- Cluster ----------------------------------------------------------------------------------------

    def read_secret(self, namespace: str, name: str) -> SecretView | None:
        self._check("read_secret")
        return copy.deepcopy(self.secrets.get((namespace, name)))

    def secret_keys(self, namespace: str, name: str) -> set[str] | None:
        view = self.read_secret(namespace, name)
        return None if view is None else set(view.data)

    def create_secret(
        self,
        namespace: str,
        name: str,
        data: dict[str, bytes],
        *,
        secret_type: str = "Opaque",  # noqa: S107 - a Secret type
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
    ) -> bool:
        self.calls.append(f"create {name}")
        self._check("create_secret")
        if (namespace, name) in self.secrets:
            return False
        self.secrets[(namespace, name)] = SecretView(
            namespace, name, dict(data), dict(labels or {}), dict(annotations or {}), self._next(), secret_type
        )
        return True

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
        self.calls.append(f"patch {name}")
        if name in self.fail_patch:
            raise ClusterError(f"updating Secret {namespace}/{name}: HTTP 500 Internal Server Error")
        old = self.secrets[(namespace, name)]
        if old.resource_version != resource_version:
            raise ClusterError(f"updating Secret {namespace}/{name}: HTTP 409 Conflict")
        self.secrets[(namespace, name)] = SecretView(
            namespace,
            name,
            {**old.data, **data},
            {**old.labels, **(labels or {})},
            {**old.annotations, **(annotations or {})},
            self._next(),
            old.type,
            immutable=old.immutable,
            created=old.created,
        )

    def pvc_access_modes(self, namespace: str, name: str) -> tuple[str, ...] | None:
        self._check("pvc_access_modes")
        if (namespace, name) not in self.pvcs:
            return None
        return self.pvc_modes.get((namespace, name), ("ReadWriteOnce",))

    def create_object(self, obj: dict[str, Any]) -> bool:
        self._check("create_object")
        meta = obj["metadata"]
        key = (meta["namespace"], meta["name"])
        store = self.jobs if obj["kind"] == "Job" else self.configmaps
        self.calls.append(f"create {obj['kind']} {meta['name']}")
        if key in store:
            return False
        store[key] = copy.deepcopy(obj)
        return True

    def apply_configmap(self, obj: dict[str, Any]) -> None:
        if not self.create_object(obj):
            meta = obj["metadata"]
            self.configmaps[(meta["namespace"], meta["name"])]["data"] = copy.deepcopy(obj["data"])

    def delete_configmap(self, namespace: str, name: str) -> None:
        self._check("delete_configmap")
        if self.configmaps.pop((namespace, name), None) is not None:
            self.deleted.append(f"ConfigMap {name}")

    def list_jobs(self, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        self._check("list_jobs")
        return [
            copy.deepcopy(job)
            for (ns, _), job in sorted(self.jobs.items())
            if ns == namespace and _matches(job["metadata"].get("labels") or {}, label_selector)
        ]

    def patch_job_annotations(self, namespace: str, name: str, annotations: dict[str, str]) -> None:
        self._check("patch_job_annotations")
        job = self.jobs.get((namespace, name))
        if job is not None:
            job["metadata"].setdefault("annotations", {}).update(annotations)

    def delete_job(self, namespace: str, name: str) -> None:
        self._check("delete_job")
        if self.jobs.pop((namespace, name), None) is not None:
            self.deleted.append(f"Job {name}")

    def job_pods(self, namespace: str, job_name: str) -> list[dict[str, Any]]:
        self._check("job_pods")
        return copy.deepcopy(self.pods.get((namespace, job_name), []))

    def list_custom(self, namespace: str | None, plural: str) -> list[dict[str, Any]]:
        self._check("list_custom")
        return [copy.deepcopy(o) for o in self.objects.get(plural, [])]

    def read_custom(self, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
        self._check("read_custom")
        for obj in self.objects.get(plural, []):
            meta = obj.get("metadata") or {}
            if meta.get("name") == name and meta.get("namespace", namespace) == namespace:
                return copy.deepcopy(obj)
        return None


class FakeClock:
    """A monotonic clock the test moves by hand (`clock.now += 5`)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class ReconcileHarness:
    """One resource reconciled as the kopf timer would, through `reconciler`, with its status changes
    applied like the API server applies a merge patch (None removes a field). Subclasses name the resource
    and the reconciler; `events` collects what the reconciler posts."""

    spec: dict[str, Any]
    cluster: FakeCluster = field(default_factory=FakeCluster)
    status: dict[str, Any] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    events: list[EventSpec] = field(default_factory=list)
    states: metrics.ObjectStates = field(default_factory=metrics.ObjectStates)
    generation: int = 1
    last_changes: dict[str, Any] = field(default_factory=dict)

    name: ClassVar[str] = "obj"
    created: ClassVar[str] = "2026-01-01T00:00:00Z"
    reconciler: ClassVar[Callable[..., dict[str, Any]]]

    def body(self) -> dict[str, Any]:
        meta = {
            "name": self.name, "namespace": NS, "uid": "u", "generation": self.generation,
            "creationTimestamp": self.created, "annotations": dict(self.annotations),
        }  # fmt: skip
        return {"metadata": meta, "spec": copy.deepcopy(self.spec), "status": copy.deepcopy(self.status)}

    def reconcile(self, now: dt.datetime, settings: OperatorSettings | None = None) -> dict[str, Any]:
        return type(self).reconciler(
            self.body(), cluster=self.cluster, emit=self.events.append, now=now,
            settings=settings or SETTINGS, states=self.states,
        )  # fmt: skip

    def tick(self, now: dt.datetime, settings: OperatorSettings | None = None) -> list[EventSpec]:
        """One reconcile; returns the Events it posted."""
        before = len(self.events)
        self.apply(self.reconcile(now, settings))
        return self.events[before:]

    def apply(self, changes: dict[str, Any]) -> None:
        for key, value in changes.items():
            if value is None:
                self.status.pop(key, None)
            else:
                self.status[key] = copy.deepcopy(value)
        self.last_changes = changes

    def cond(self, ctype: str) -> dict[str, Any]:
        found = condition(self.status.get("conditions"), ctype)
        assert found is not None, ctype
        return found
