"""Operator settings, from the environment (set by the Helm chart) with sensible defaults."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from cxbackup.api import workerenv
from cxbackup.controller.manifests import JobSettings
from cxbackup.controller.references import EndpointPolicy
from cxbackup.core.tls import check_ca_certificates

__all__ = ["OperatorSettings", "load_settings"]


@dataclass(frozen=True)
class OperatorSettings:
    reconcile_interval: float = 10.0
    jobs: JobSettings = field(default_factory=JobSettings)
    endpoints: EndpointPolicy = field(default_factory=EndpointPolicy)


def _ca_certificates(env: dict[str, str]) -> str:
    """The extra CAs for worker pods, checked once at start (an error names the chart value)."""
    pem = env.get(workerenv.CA_CERTIFICATES, "").strip()
    if pem:
        check_ca_certificates(pem, where=f"security.caCertificates ({workerenv.CA_CERTIFICATES})")
    return pem


def load_settings(env: dict[str, str] | None = None) -> OperatorSettings:
    env = dict(os.environ if env is None else env)
    defaults = JobSettings()
    return OperatorSettings(
        reconcile_interval=float(env.get("CXBACKUP_RECONCILE_INTERVAL", "10")),
        jobs=JobSettings(
            image=env.get("CXBACKUP_WORKER_IMAGE", defaults.image),
            image_pull_policy=env.get("CXBACKUP_WORKER_IMAGE_PULL_POLICY", defaults.image_pull_policy),
            worker_service_account=env.get("CXBACKUP_WORKER_SERVICE_ACCOUNT", defaults.worker_service_account),
            status_report_interval_seconds=float(
                env.get(workerenv.STATUS_INTERVAL, str(defaults.status_report_interval_seconds))
            ),
            default_resources=json.loads(env["CXBACKUP_WORKER_RESOURCES"])
            if env.get("CXBACKUP_WORKER_RESOURCES")
            else defaults.default_resources,
            active_deadline_seconds=int(
                env.get("CXBACKUP_WORKER_ACTIVE_DEADLINE_SECONDS", str(defaults.active_deadline_seconds))
            ),
            tmp_size_limit=env.get("CXBACKUP_WORKER_TMP_SIZE_LIMIT", defaults.tmp_size_limit),
            ca_certificates=_ca_certificates(env),
        ),
        endpoints=EndpointPolicy(
            allow_plain_http=env.get("CXBACKUP_ALLOW_PLAIN_HTTP", "false").lower() == "true",
            vendor_hosts=tuple(h.strip() for h in env.get("CXBACKUP_VENDOR_HOSTS", "").split(",") if h.strip()),
        ),
    )
