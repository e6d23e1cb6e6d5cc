"""What the installer lets a resource's `spec.pod` ask for, and the resources every worker container gets.

A resource's author chooses its pods' resources, /tmp size, tolerations and node selector; without a cap
they could ask for a pod without limits, a 100000Gi /tmp or a toleration of every taint (the control
plane's nodes). The chart's values set the caps (`PodLimits`, from worker.limits and
worker.allowedTolerationKeys / worker.allowedNodeSelectorKeys):

- every worker container has a limit for each resource of `max_resources` (cpu, memory and
  ephemeral-storage by default): the resource's own, else the chart's worker.resources limit, else the cap
  itself; no limit or request may be over its cap, no request over its limit, and no other resource
  (a GPU, hugepages) may be asked for;
- the /tmp emptyDir is at most `max_tmp_size`;
- a toleration must name one of `toleration_keys` (a toleration without a key tolerates every taint and is
  never allowed), a node selector may use only `node_selector_keys`; both empty by default: a resource
  may set neither.

`pod_problem` returns a `Blocked` naming the field, what it asks for and the chart value that allows more;
the handlers check it before they create anything, and `worker_pod_spec` refuses again (no Job over the
caps is ever built). Pure, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from kubernetes.utils.quantity import parse_quantity

from cxbackup.api.common import PodSettings
from cxbackup.api.status import Reason
from cxbackup.controller.references import Blocked

__all__ = ["DEFAULT_MAX_RESOURCES", "DEFAULT_MAX_TMP_SIZE", "PodLimits", "bounded_resources", "pod_problem"]

DEFAULT_MAX_RESOURCES: Mapping[str, str] = {"cpu": "4", "memory": "8Gi", "ephemeral-storage": "16Gi"}
"""The chart's defaults (worker.limits.max), used when the operator runs without the chart."""
DEFAULT_MAX_TMP_SIZE = "8Gi"
"""The chart's default worker.limits.maxTmpSize."""


@dataclass(frozen=True)
class PodLimits:
    """The installer's caps on worker pods (chart values worker.limits and worker.allowed*)."""

    max_resources: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_MAX_RESOURCES))
    max_tmp_size: str = DEFAULT_MAX_TMP_SIZE
    toleration_keys: tuple[str, ...] = ()
    node_selector_keys: tuple[str, ...] = ()


def quantity(value: object) -> Decimal | None:
    """A Kubernetes quantity ("500m", "1Gi", "2") as a number; None when it is not one."""
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        return None
    try:
        number = parse_quantity(value)
    except (ValueError, InvalidOperation, TypeError):
        return None
    return Decimal(number)


def bounded_resources(
    resources: Mapping[str, Any] | None, defaults: Mapping[str, Any], limits: PodLimits
) -> dict[str, Any]:
    """The container resources of a worker pod: `resources` (the spec's) or else `defaults` (the chart's
    worker.resources), with a limit for every capped resource (the chart's default limit, else the cap) and,
    where that limit was filled in and the spec requests nothing of the resource, the chart's default request."""
    chosen = resources or defaults
    out: dict[str, Any] = {k: dict(v) if isinstance(v, Mapping) else v for k, v in chosen.items()}
    own = dict(out.get("limits") or {})
    requests = dict(out.get("requests") or {})
    default_limits = defaults.get("limits") or {}
    default_requests = defaults.get("requests") or {}
    for name, cap in limits.max_resources.items():
        if name not in own:
            own[name] = default_limits.get(name, cap)
            # Kubernetes takes a missing request to be the limit: a limit filled in here for a resource the spec
            # does not name would reserve it whole (a cpu request of the cap, a pod no node can take)
            wanted = default_requests.get(name)
            if name not in requests and wanted is not None and _over(wanted, str(own[name])) is False:
                requests[name] = wanted
    if own:
        out["limits"] = own
    if requests:
        out["requests"] = requests
    return out


def _over(value: object, cap: str) -> bool | None:
    """Whether quantity `value` is over quantity `cap`; None when `value` is not a quantity."""
    amount, most = quantity(value), quantity(cap)
    if amount is None:
        return None
    return most is not None and amount > most


def _resources_problem(
    where: str, given: Mapping[str, Any] | None, effective: Mapping[str, Any], limits: PodLimits
) -> str:
    """The first problem of the resources (the spec's `given`, or None for the chart's), or ""."""

    def field_of(section: str, name: str) -> str:
        owner = where if given is not None else "the chart's worker"
        return f"{owner}.resources.{section}.{name}"

    unknown = [k for k in effective if k not in ("limits", "requests")]
    if unknown:
        return f"{where}.resources.{unknown[0]}: only requests and limits may be set"
    allowed = sorted(limits.max_resources)
    for section in ("limits", "requests"):
        values = effective.get(section) or {}
        if not isinstance(values, Mapping):
            return f"{where}.resources.{section}: must be a map of resource names to quantities"
        for name, value in values.items():
            if name not in limits.max_resources:
                return (
                    f"{field_of(section, name)}: worker pods may ask only for {', '.join(allowed)} "
                    "(the resources of the chart value worker.limits.max)"
                )
            over = _over(value, limits.max_resources[name])
            if over is None:
                return f"{field_of(section, name)}: {value!r} is not a Kubernetes quantity"
            if over:
                return (
                    f"{field_of(section, name)}: {value} is more than the installer allows "
                    f"({limits.max_resources[name]}, chart value worker.limits.max.{name})"
                )
    own_limits = effective.get("limits") or {}
    for name, value in (effective.get("requests") or {}).items():
        limit = own_limits.get(name)
        if limit is not None and _over(value, str(limit)):
            return f"{field_of('requests', name)}: {value} is more than its limit ({limit})"
    return ""


def pod_problem(
    pod: PodSettings | None, default_resources: Mapping[str, Any], default_tmp: str, limits: PodLimits
) -> Blocked | None:
    """What in `spec.pod` (or, given no spec.pod, in the chart's own defaults) is over the installer's
    caps, as Blocked(PodSettingsNotAllowed) naming the field, the value and the chart value; None when
    nothing is."""
    pod = pod or PodSettings()
    where = "spec.pod"
    effective = bounded_resources(pod.resources, default_resources, limits)
    problem = _resources_problem(where, pod.resources or None, effective, limits)
    if not problem:
        tmp = pod.tmp_size_limit or default_tmp
        over = _over(tmp, limits.max_tmp_size)
        what = f"{where}.tmpSizeLimit" if pod.tmp_size_limit else "the chart's worker.tmpSizeLimit"
        if over is None:
            problem = f"{what}: {tmp!r} is not a Kubernetes quantity"
        elif over:
            problem = (
                f"{what}: {tmp} is more than the installer allows "
                f"({limits.max_tmp_size}, chart value worker.limits.maxTmpSize)"
            )
    if not problem:
        problem = _scheduling_problem(where, pod, limits)
    return Blocked(Reason.POD_SETTINGS_NOT_ALLOWED, problem) if problem else None


def _scheduling_problem(where: str, pod: PodSettings, limits: PodLimits) -> str:
    allowed_taints = ", ".join(limits.toleration_keys) or "none"
    for i, toleration in enumerate(pod.tolerations or []):
        key = toleration.get("key") if isinstance(toleration, Mapping) else None
        if not isinstance(key, str) or key not in limits.toleration_keys:
            what = f"key {key!r}" if isinstance(key, str) and key else "no key (it tolerates every taint)"
            return (
                f"{where}.tolerations[{i}]: a toleration with {what} is not allowed; the installer allows tolerations "
                f"of the taint keys {allowed_taints} (chart value worker.allowedTolerationKeys)"
            )
    allowed_labels = ", ".join(limits.node_selector_keys) or "none"
    for key in pod.node_selector or {}:
        if key not in limits.node_selector_keys:
            return (
                f"{where}.nodeSelector.{key}: selecting nodes by {key!r} is not allowed; the installer allows the "
                f"label keys {allowed_labels} (chart value worker.allowedNodeSelectorKeys)"
            )
    return ""
