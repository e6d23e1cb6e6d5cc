"""What a resource refers to (Secrets, PVCs, endpoints), checked the same way for every kind.

A resource may use only what its author could already use for this purpose: a credentials Secret must be
opted in (labelled cxbackup.io/credentials=true) and must not hold keys (a TLS Secret, a keyring, a
certificate's pair, a service-account token); vendor and S3 endpoints must be https:// unless the installer
allowed plain HTTP, and a vendor host must be on the installer's allowlist when there is one.

The handler gathers the facts through the `Cluster` (`gather_secrets`, `Cluster.pvc_exists`), then the
pure functions here decide and return a `Blocked` naming the field, the object and the fix (or None).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from cxbackup.api.common import CREDENTIALS_LABEL
from cxbackup.api.status import ConditionType, Phase, Reason
from cxbackup.controller.cluster import Cluster
from cxbackup.controller.conditions import condition, set_condition
from cxbackup.controller.events import Emit, EventSpec

__all__ = [
    "KEY_SECRET_TYPES",
    "Blocked",
    "EndpointPolicy",
    "SecretFacts",
    "SecretNeed",
    "endpoint_problem",
    "gather_secrets",
    "pvc_problem",
    "read_referenced",
    "secret_problem",
]

M = TypeVar("M", bound=BaseModel)

KEY_SECRET_TYPES = frozenset(
    {
        "kubernetes.io/tls",
        "kubernetes.io/service-account-token",
        "kubernetes.io/ssh-auth",
        "kubernetes.io/dockerconfigjson",
        "kubernetes.io/dockercfg",
        "bootstrap.kubernetes.io/token",
    }
)
"""Secret types that hold keys or tokens, never vendor credentials."""
# Labels of the Secrets the certificate controller keeps keys in (a certificate's pair, its keyring).
_KEY_LABELS = ("cxbackup.io/keyring", "cxbackup.io/certificate")


class Blocked(Exception):
    """A run cannot start: a referenced object is missing or not allowed, or the spec is unusable (`invalid`)."""

    def __init__(self, reason: str, message: str, *, invalid: bool = False) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.invalid = invalid

    @property
    def phase(self) -> str:
        return Phase.INVALID if self.invalid else Phase.BLOCKED

    def ready_false(
        self, conditions: list[dict[str, Any]] | None, emit: Emit, *, now: dt.datetime, generation: int | None
    ) -> list[dict[str, Any]]:
        """`conditions` with Ready=False for this reason, after a Warning Event, posted only when the message
        is new (a resource that stays blocked does not repeat it every reconcile)."""
        old = condition(conditions, ConditionType.READY)
        if old is None or old.get("message") != self.message:
            emit(EventSpec(True, self.reason, self.message))
        return set_condition(
            conditions, ConditionType.READY, "False", self.reason, self.message, now=now, generation=generation
        )


@dataclass(frozen=True)
class SecretNeed:
    """A Secret a resource names in `field`, and the keys it must hold."""

    field: str
    name: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class SecretFacts:
    """What the checks need to know of a Secret (never its values)."""

    keys: frozenset[str]
    labels: Mapping[str, str]
    type: str


def gather_secrets(cluster: Cluster, namespace: str, needs: Sequence[SecretNeed]) -> dict[str, SecretFacts | None]:
    """The facts of every Secret named (None for a missing one)."""
    found: dict[str, SecretFacts | None] = {}
    for need in needs:
        view = cluster.read_secret(namespace, need.name)
        found[need.name] = None if view is None else SecretFacts(frozenset(view.data), dict(view.labels), view.type)
    return found


def secret_problem(
    namespace: str, needs: Sequence[SecretNeed], found: Mapping[str, SecretFacts | None]
) -> Blocked | None:
    """The first credentials Secret that is missing, holds keys, is not opted in or lacks a key."""
    for need in needs:
        facts = found.get(need.name)
        where = f"{need.field}: Secret {namespace}/{need.name}"
        if facts is None:
            return Blocked(
                Reason.SECRET_NOT_FOUND,
                f"{where} not found; create it with keys {', '.join(need.keys)} and the label {CREDENTIALS_LABEL}=true",
            )
        key_labels = [label for label in _KEY_LABELS if label in facts.labels]
        if facts.type in KEY_SECRET_TYPES or key_labels:
            what = f"type {facts.type}" if facts.type in KEY_SECRET_TYPES else f"label {key_labels[0]}"
            return Blocked(
                Reason.SECRET_NOT_ALLOWED,
                f"{where} holds keys ({what}) and can never be used as credentials; put the credentials in a "
                f"Secret of their own",
            )
        if facts.labels.get(CREDENTIALS_LABEL) != "true":
            return Blocked(
                Reason.SECRET_NOT_LABELLED,
                f"{where} is not labelled {CREDENTIALS_LABEL}=true; cxbackup uses only Secrets opted in as "
                f"credentials: kubectl label secret -n {namespace} {need.name} {CREDENTIALS_LABEL}=true",
            )
        missing = [k for k in need.keys if k not in facts.keys]
        if missing:
            return Blocked(Reason.SECRET_KEY_MISSING, f"{where} has no key {', '.join(missing)}")
    return None


def pvc_problem(field: str, namespace: str, claim: str, exists: bool) -> Blocked | None:
    if exists:
        return None
    return Blocked(Reason.PVC_NOT_FOUND, f"{field}: PersistentVolumeClaim {namespace}/{claim} not found")


@dataclass(frozen=True)
class EndpointPolicy:
    """What the installer allows (chart values security.allowPlainHttp and security.vendorHosts)."""

    allow_plain_http: bool = False
    vendor_hosts: tuple[str, ...] = ()
    """Host names (exact, or `*.example.com` for subdomains) vendor endpoints may use; empty: any."""

    def host_allowed(self, host: str) -> bool:
        if not self.vendor_hosts:
            return True
        host = host.lower().rstrip(".")
        for allowed in self.vendor_hosts:
            allowed = allowed.lower().rstrip(".")
            if host == allowed or (allowed.startswith("*.") and host.endswith(allowed[1:])):
                return True
        return False


def endpoint_problem(field: str, url: str | None, policy: EndpointPolicy, *, vendor: bool) -> Blocked | None:
    """Whether `url` (a vendor endpoint when `vendor`, else the user's own S3) may be used."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme == "http" and not policy.allow_plain_http:
        return Blocked(
            Reason.INSECURE_ENDPOINT,
            f"{field}: {parts.scheme}://{parts.hostname} is plain HTTP, which would send credentials in clear; "
            f"use https:// (the installer can allow plain HTTP with the chart value security.allowPlainHttp)",
        )
    if vendor and not policy.host_allowed(parts.hostname or ""):
        return Blocked(
            Reason.ENDPOINT_NOT_ALLOWED,
            f"{field}: host {parts.hostname} is not one of the vendor hosts the installer allows "
            f"({', '.join(policy.vendor_hosts)}; chart value security.vendorHosts)",
        )
    return None


def read_referenced(
    cluster: Cluster, namespace: str, plural: str, model: type[M], name: str, field: str, missing: str
) -> M:
    """The cxbackup resource `namespace/name` that `field` names, as `model`; Blocked(`missing`) when it does
    not exist, Blocked(InvalidSpec) when it does not validate. Only the referring resource's own namespace is
    ever passed in."""
    kind = model.__name__
    body = cluster.read_custom(namespace, plural, name)
    if body is None:
        raise Blocked(missing, f"{field}: {kind} {namespace}/{name} not found")
    try:
        return model.model_validate(body)
    except ValidationError:
        raise Blocked(Reason.INVALID_SPEC, f"{field}: {kind} {namespace}/{name} is not valid") from None
