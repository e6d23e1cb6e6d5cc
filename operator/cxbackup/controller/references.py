"""What a resource refers to (Secrets and their keys, PVCs), checked the same way for every kind.

The handler gathers the facts through the `Cluster` (`gather_secrets`, `Cluster.pvc_exists`), then the
pure functions here decide and return a `Blocked` naming the field, the object and the fix (or None).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cxbackup.api.status import Phase, Reason
from cxbackup.controller.cluster import Cluster

__all__ = ["Blocked", "SecretNeed", "gather_secrets", "pvc_problem", "secret_problem"]


class Blocked(Exception):
    """A run cannot start: a referenced object is missing or the spec is unusable (`invalid`)."""

    def __init__(self, reason: str, message: str, *, invalid: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.invalid = invalid

    @property
    def phase(self) -> str:
        return Phase.INVALID if self.invalid else Phase.BLOCKED


@dataclass(frozen=True)
class SecretNeed:
    """A Secret a resource names in `field`, and the keys it must hold."""

    field: str
    name: str
    keys: tuple[str, ...]


def gather_secrets(cluster: Cluster, namespace: str, needs: Sequence[SecretNeed]) -> dict[str, set[str] | None]:
    """The keys of every Secret named (None for a missing one)."""
    return {need.name: cluster.secret_keys(namespace, need.name) for need in needs}


def secret_problem(namespace: str, needs: Sequence[SecretNeed], found: Mapping[str, set[str] | None]) -> Blocked | None:
    """The first missing Secret or key, in the order the needs are listed."""
    for need in needs:
        have = found.get(need.name)
        if have is None:
            return Blocked(
                Reason.SECRET_NOT_FOUND,
                f"{need.field}: Secret {namespace}/{need.name} not found; create it with keys {', '.join(need.keys)}",
            )
        missing = [k for k in need.keys if k not in have]
        if missing:
            return Blocked(
                Reason.SECRET_KEY_MISSING,
                f"{need.field}: Secret {namespace}/{need.name} has no key {', '.join(missing)}",
            )
    return None


def pvc_problem(field: str, namespace: str, claim: str, exists: bool) -> Blocked | None:
    if exists:
        return None
    return Blocked(Reason.PVC_NOT_FOUND, f"{field}: PersistentVolumeClaim {namespace}/{claim} not found")
