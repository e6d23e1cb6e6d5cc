"""A RecordingBackup that another resource works on (a RecordingErasure, a subjectAccess ExportJob): read it
from the resource's own namespace only, and check what its pod will use of it (the target's PVC, S3
credentials and endpoint), the same way a backup run checks them. Every problem is a `Blocked` naming the
referring field."""

from __future__ import annotations

from dataclasses import dataclass

from cxbackup.api.common import BACKUPS
from cxbackup.api.recordingbackup import RecordingBackup
from cxbackup.api.status import Reason
from cxbackup.controller.cluster import Cluster
from cxbackup.controller.references import (
    EndpointPolicy,
    SecretNeed,
    endpoint_problem,
    gather_secrets,
    pvc_problem,
    read_referenced,
    secret_problem,
)

__all__ = ["ReferencedBackup", "referenced_backup"]


@dataclass(frozen=True)
class ReferencedBackup:
    backup: RecordingBackup
    plain_http: list[str]
    """Fields whose endpoint uses plain HTTP (allowed by the installer)."""
    access_modes: tuple[str, ...] | None = None
    """The target PVC's spec.accessModes (None for an S3 target): where a pod mounting it goes (placement.py)."""


def referenced_backup(
    cluster: Cluster,
    namespace: str,
    name: str,
    field: str,
    policy: EndpointPolicy,
    extra_secrets: tuple[SecretNeed, ...] = (),
) -> ReferencedBackup:
    """RecordingBackup `namespace/name`, named by `field`, with its target usable; `extra_secrets` are the
    referring resource's own Secrets, checked with the target's."""
    backup = read_referenced(cluster, namespace, BACKUPS, RecordingBackup, name, field, Reason.BACKUP_NOT_FOUND)
    target = backup.spec.target
    endpoint = target.s3.endpoint_url if target.s3 else None
    where = f"{field} (its target"
    if (problem := endpoint_problem(f"{where}.s3.endpointUrl)", endpoint, policy, vendor=False)) is not None:
        raise problem
    needs = list(extra_secrets)
    if target.s3 is not None:
        c = target.s3.credentials
        needs.append(SecretNeed(f"{where}.s3.credentials)", c.name, (c.access_key_id_key, c.secret_access_key_key)))
    problem = secret_problem(namespace, needs, gather_secrets(cluster, namespace, needs))
    modes: tuple[str, ...] | None = None
    if problem is None and target.pvc is not None:
        modes = cluster.pvc_access_modes(namespace, target.pvc.claim_name)
        problem = pvc_problem(f"{where}.pvc.claimName)", namespace, target.pvc.claim_name, modes is not None)
    if problem is not None:
        raise problem
    plain = [f"{where}.s3.endpointUrl)"] if endpoint and endpoint.startswith("http://") else []
    return ReferencedBackup(backup, plain, modes)
