"""Where a run's worker pods go, decided by what their target volume allows. Pure, no I/O.

A PersistentVolumeClaim's access modes (its `spec.accessModes`, known before it is bound, also with a
WaitForFirstConsumer storage class) say how many nodes may mount its volume at once:

| target                                  | placement                                                          |
|-----------------------------------------|--------------------------------------------------------------------|
| S3 bucket                               | shards spread over nodes (no volume to share)                      |
| PVC with ReadWriteMany                  | shards spread over nodes (every node can mount it)                 |
| PVC with ReadOnlyMany, mounted read-only| spread (the volume may be attached read-only to many nodes)        |
| PVC ReadWriteOnce (no ReadWriteMany)    | every pod mounting the claim on one node: required podAffinity     |
| PVC ReadWriteOncePod, replicas 1        | nothing added (one pod at a time; the scheduler makes others wait) |
| PVC ReadWriteOncePod, replicas > 1      | Blocked: no Job (the other shards could never start)               |

"Spread" is a topologySpreadConstraint over `kubernetes.io/hostname` (maxSkew 1, ScheduleAnyway: a soft
rule, never a reason to stay Pending) selecting the run's own labels (`manifests.run_labels`: the owner and
the run id), so only this run's pods are counted; a single pod has nothing to spread from and gets none.
`matchLabelKeys` is not used: the selector already names one run, and it would depend on a feature gate
that older clusters may have off (the field is then dropped, silently).

"Together" (ReadWriteOnce) is a required podAffinity, topologyKey `kubernetes.io/hostname`, on the label
`cxbackup.io/claim=<claim>` that every cxbackup worker pod mounting that claim carries: a run's shards, its
audit, a subjectAccess ExportJob's pod and a RecordingErasure's pod all go to the node where the volume is
attached, instead of waiting forever on a Multi-Attach error elsewhere. The first such pod may go to any
node: kube-scheduler's InterPodAffinity plugin lets a pod whose required affinity matches no existing pod
through when it matches its own terms ("the first pod in a series that have affinity to themselves",
`satisfiesSelfAffinityCheck` in pkg/scheduler/framework/plugins/interpodaffinity/filtering.go), and its
informer sees only pods that have not finished, so a finished run does not pin the next one to its node.

The user's `spec.pod` nodeSelector and tolerations apply unchanged (`manifests.worker_pod_spec`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cxbackup.api.status import Reason
from cxbackup.controller.references import Blocked

__all__ = [
    "CLAIM_LABEL",
    "HOSTNAME_KEY",
    "READ_ONLY_MANY",
    "READ_WRITE_MANY",
    "READ_WRITE_ONCE",
    "READ_WRITE_ONCE_POD",
    "S3_TARGET",
    "Placement",
    "TargetVolume",
    "claim_label_value",
    "place",
]

CLAIM_LABEL = "cxbackup.io/claim"
"""On every worker pod that mounts a ReadWriteOnce claim: the claim's name (or `claim_label_value`'s short form)."""
HOSTNAME_KEY = "kubernetes.io/hostname"

READ_WRITE_ONCE = "ReadWriteOnce"
READ_ONLY_MANY = "ReadOnlyMany"
READ_WRITE_MANY = "ReadWriteMany"
READ_WRITE_ONCE_POD = "ReadWriteOncePod"

_LABEL_VALUE_MAX = 63


def claim_label_value(claim: str) -> str:
    """`claim` as a label value: the name itself when it fits (63 characters; a claim's name is a DNS subdomain,
    so its characters are allowed), else its first 46 characters and 16 hex digits of its SHA-256."""
    if len(claim) <= _LABEL_VALUE_MAX:
        return claim
    digest = hashlib.sha256(claim.encode()).hexdigest()[:16]
    return f"{claim[:46].rstrip('-.')}-{digest}"


@dataclass(frozen=True)
class TargetVolume:
    """What the pods of a run mount of a backup's target: an S3 bucket (nothing), or a PVC with its access modes
    (None: not known, e.g. the claim is not there; treated as ReadWriteOnce, the safe assumption)."""

    kind: Literal["pvc", "s3"]
    claim: str = ""
    namespace: str = ""
    access_modes: tuple[str, ...] | None = None
    read_only: bool = False


S3_TARGET = TargetVolume("s3")


@dataclass(frozen=True)
class Placement:
    """What a run's pods get for `TargetVolume`: labels for the pod template and fields for the pod spec."""

    rule: Literal["spread", "together", "one-pod", "none"]
    reason: str
    """A short sentence for logs and docs: why the pods are placed so."""
    labels: Mapping[str, str] = field(default_factory=dict)
    affinity: Mapping[str, Any] | None = None
    topology_spread: tuple[Mapping[str, Any], ...] = ()

    def pod_spec_fields(self) -> dict[str, Any]:
        """The fields to add to the pod spec (none, affinity, topologySpreadConstraints)."""
        fields: dict[str, Any] = {}
        if self.affinity is not None:
            fields["affinity"] = _copy(self.affinity)
        if self.topology_spread:
            fields["topologySpreadConstraints"] = [_copy(c) for c in self.topology_spread]
        return fields


def _copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_copy(v) for v in value]
    return value


def _spread(replicas: int, pod_labels: Mapping[str, str], reason: str) -> Placement:
    if replicas <= 1:
        return Placement("none", f"{reason}; one pod, nothing to spread")
    constraint = {
        "maxSkew": 1,
        "topologyKey": HOSTNAME_KEY,
        "whenUnsatisfiable": "ScheduleAnyway",
        "labelSelector": {"matchLabels": dict(pod_labels)},
    }
    return Placement("spread", f"{reason}; shards spread over nodes", topology_spread=(constraint,))


def place(
    volume: TargetVolume, replicas: int, pod_labels: Mapping[str, str], *, field: str = "spec.replicas"
) -> Placement | Blocked:
    """Where the `replicas` pods (labelled `pod_labels`, the run's own labels) of a run that mounts `volume` go,
    or Blocked naming `field` (the replicas) when the volume cannot serve that many pods at all."""
    if volume.kind == "s3":
        return _spread(replicas, pod_labels, "S3 target: no volume to share")
    modes = frozenset(volume.access_modes or ())
    where = f"PersistentVolumeClaim {volume.namespace}/{volume.claim}"
    if READ_WRITE_ONCE_POD in modes:  # the scheduler enforces it from the claim's spec, whatever else is listed
        if replicas > 1:
            return Blocked(
                Reason.ACCESS_MODE_CONFLICT,
                f"{field}: {replicas} pods cannot all mount {where}: its access mode ReadWriteOncePod lets one pod "
                f"at a time use it, so the other shards would never start; set {field}: 1, or back up to a "
                "ReadWriteMany volume (e.g. a network file system)",
                invalid=True,
            )
        return Placement("one-pod", "ReadWriteOncePod: one pod at a time; the scheduler makes any other one wait")
    if READ_WRITE_MANY in modes:
        return _spread(replicas, pod_labels, "ReadWriteMany: every node can mount the volume")
    if READ_ONLY_MANY in modes and volume.read_only:
        return _spread(replicas, pod_labels, "ReadOnlyMany, mounted read-only: many nodes can mount the volume")
    value = claim_label_value(volume.claim)
    term = {
        "labelSelector": {"matchLabels": {CLAIM_LABEL: value}},
        "topologyKey": HOSTNAME_KEY,
    }
    known = "ReadWriteOnce" if modes else "access modes not known, taken as ReadWriteOnce"
    return Placement(
        "together",
        f"{known}: the volume attaches to one node; every pod mounting {volume.claim} goes there",
        labels={CLAIM_LABEL: value},
        affinity={"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [term]}},
    )
