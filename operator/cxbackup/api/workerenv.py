"""The environment the operator gives a Job pod and the worker reads: one definition for both sides."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from cxbackup.core.endpoints import VENDOR_HOSTS_ENV
from cxbackup.core.tls import CA_CERTIFICATES

__all__ = [
    "CA_CERTIFICATES",
    "EXPORT_API",
    "RUN_ID",
    "STATUS_INTERVAL",
    "STATUS_RESOURCE",
    "VENDOR_HOSTS",
    "StatusResource",
]

STATUS_RESOURCE = "CXBACKUP_STATUS_RESOURCE"
"""`<plural>/<namespace>/<name>` of the resource whose status the pod reports to; unset outside the operator."""
RUN_ID = "CXBACKUP_RUN_ID"
"""The run the pod belongs to (a backup run's id); its shard entries carry it."""
STATUS_INTERVAL = "CXBACKUP_STATUS_INTERVAL"
"""Seconds between two status writes of one pod (the operator's `status_report_interval_seconds`)."""
EXPORT_API = "CXBACKUP_EXPORT_API"
"""The vendor's API prefix an export pod talks to."""
# CA_CERTIFICATES (cxbackup.core.tls): PEM of extra certificate authorities every worker command trusts.
VENDOR_HOSTS = VENDOR_HOSTS_ENV
"""The installer's vendor hosts, comma-separated, in every worker pod: the worker refuses a vendor endpoint whose
host is not one of them (cxbackup.core.endpoints.check_vendor_host); unset (run by hand), no allowlist applies."""


@dataclass(frozen=True)
class StatusResource:
    """The resource a pod reports to, as the operator names it in STATUS_RESOURCE."""

    plural: str
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.plural}/{self.namespace}/{self.name}"

    @classmethod
    def parse(cls, value: str) -> StatusResource | None:
        """The resource named by `value`, or None when it is not `<plural>/<namespace>/<name>`."""
        parts = value.split("/")
        if len(parts) != 3 or not all(parts):
            return None
        return cls(*parts)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StatusResource | None:
        value = env.get(STATUS_RESOURCE)
        return cls.parse(value) if value else None
