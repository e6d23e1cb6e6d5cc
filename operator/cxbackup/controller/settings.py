"""Operator settings, from the environment (set by the Helm chart) with sensible defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from cxbackup.api import workerenv
from cxbackup.controller.manifests import JobSettings
from cxbackup.controller.references import EndpointPolicy

__all__ = ["OperatorSettings", "load_settings"]


@dataclass(frozen=True)
class OperatorSettings:
    reconcile_interval: float = 10.0
    jobs: JobSettings = field(default_factory=JobSettings)
    endpoints: EndpointPolicy = field(default_factory=EndpointPolicy)


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
        ),
        endpoints=EndpointPolicy(
            allow_plain_http=env.get("CXBACKUP_ALLOW_PLAIN_HTTP", "false").lower() == "true",
            vendor_hosts=tuple(h.strip() for h in env.get("CXBACKUP_VENDOR_HOSTS", "").split(",") if h.strip()),
        ),
    )
