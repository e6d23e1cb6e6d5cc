"""What a resource refers to (Secrets, PVCs, endpoints), checked the same way for every kind.

A resource may use only what its author could already use for this purpose: a credentials Secret must be
opted in (labelled cxbackup.io/credentials=true) and must not hold keys (a TLS Secret, a keyring, a
certificate's pair, a service-account token); every endpoint URL must have the one syntax the operator and
the worker's HTTP client read alike (`cxbackup.core.endpoints`), be https:// unless the installer allowed
plain HTTP, and an endpoint that receives a vendor credential must have a host on the installer's allowlist
(with none named, no vendor endpoint is allowed).

The handler gathers the facts through the `Cluster` (`gather_secrets`, `Cluster.pvc_access_modes`), then the
pure functions here decide and return a `Blocked` naming the field, the object and the fix (or None).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from cxbackup.api.common import CREDENTIALS_LABEL
from cxbackup.api.status import ConditionType, Phase, Reason
from cxbackup.controller.cluster import Cluster
from cxbackup.controller.conditions import condition, set_condition
from cxbackup.controller.events import Emit, EventSpec
from cxbackup.core.endpoints import ENDPOINT_FORM, EndpointError, HostAllowlist, parse_endpoint

__all__ = [
    "KEY_SECRET_TYPES",
    "VENDOR_HOSTS_VALUE",
    "Blocked",
    "EndpointPolicy",
    "SecretFacts",
    "SecretNeed",
    "endpoint_problem",
    "endpoint_syntax_problem",
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


VENDOR_HOSTS_VALUE = "security.vendorHosts"
"""The chart value that names the hosts vendor endpoints may use (CXBACKUP_VENDOR_HOSTS for the operator)."""
VENDOR_HOSTS_EXAMPLE = """--set-json 'security.vendorHosts=["api.example.com","*.s3.amazonaws.com"]'"""


@dataclass(frozen=True)
class EndpointPolicy:
    """What the installer allows (chart values security.allowPlainHttp and security.vendorHosts).

    Secure by default: with no vendor hosts named, no vendor endpoint is allowed, so no vendor credential
    leaves for a host the installer did not name."""

    allow_plain_http: bool = False
    vendor_hosts: tuple[str, ...] = ()
    """Host names vendor endpoints may use: exact, an IP address, or `*.example.com` for every name under
    example.com (`cxbackup.core.endpoints.HostAllowlist`); empty: none. Checked when the policy is made
    (ValueError naming the entry)."""
    _allowlist: HostAllowlist = dataclasses.field(init=False, repr=False, compare=False, default=HostAllowlist())

    def __post_init__(self) -> None:
        object.__setattr__(self, "_allowlist", HostAllowlist.parse(self.vendor_hosts))

    def host_allowed(self, host: str) -> bool:
        return self._allowlist.allows(host)


def endpoint_syntax_problem(field: str, url: str | None) -> Blocked | None:
    """Blocked(InvalidSpec) naming `field` when `url` does not have the one endpoint syntax
    (`cxbackup.core.endpoints.parse_endpoint`, the parse the worker connects with)."""
    if not url:
        return None
    try:
        parse_endpoint(url)
    except EndpointError as exc:
        form = "" if ENDPOINT_FORM in str(exc) else f" (an endpoint is {ENDPOINT_FORM})"
        return Blocked(Reason.INVALID_SPEC, f"{field}: the URL {exc}{form}", invalid=True)
    return None


def endpoint_problem(
    field: str, url: str | None, policy: EndpointPolicy, *, vendor: bool, proxy: bool = False
) -> Blocked | None:
    """Whether `url` (a vendor endpoint, which receives a vendor credential, when `vendor`; else the
    tenant's own S3) may be used: its syntax (`cxbackup.core.endpoints.parse_endpoint`, the parse the
    worker connects with), https:// unless the installer allows plain HTTP (not asked of a `proxy`, which
    is reached in plain HTTP and relays https:// encrypted), and for a vendor endpoint a host on the
    installer's allowlist (none allowed while it is empty)."""
    if not url:
        return None
    if (problem := endpoint_syntax_problem(field, url)) is not None:
        return problem
    endpoint = parse_endpoint(url)
    if endpoint.scheme == "http" and not policy.allow_plain_http and not proxy:
        return Blocked(
            Reason.INSECURE_ENDPOINT,
            f"{field}: http://{endpoint.host} is plain HTTP, which would send credentials in clear; "
            f"use https:// (the installer can allow plain HTTP with the chart value security.allowPlainHttp)",
        )
    if vendor and not policy.vendor_hosts:
        return Blocked(
            Reason.ENDPOINT_NOT_ALLOWED,
            f"{field}: host {endpoint.hostname} is not allowed: the installer has named no vendor hosts "
            f"(the chart value {VENDOR_HOSTS_VALUE} is empty), so no vendor credential is sent anywhere; the "
            f"installer names the vendor's hosts, e.g. helm upgrade ... {VENDOR_HOSTS_EXAMPLE}",
        )
    if vendor and not policy.host_allowed(endpoint.hostname):
        return Blocked(
            Reason.ENDPOINT_NOT_ALLOWED,
            f"{field}: host {endpoint.hostname} is not one of the vendor hosts the installer allows "
            f"({', '.join(policy.vendor_hosts)}; chart value {VENDOR_HOSTS_VALUE})",
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
