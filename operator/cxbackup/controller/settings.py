"""Operator settings, from the environment (set by the Helm chart) with sensible defaults."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace

from cxbackup.api import workerenv
from cxbackup.controller.manifests import JobSettings, pod_settings_problem
from cxbackup.controller.podlimits import DEFAULT_MAX_RESOURCES, DEFAULT_MAX_TMP_SIZE, PodLimits, quantity
from cxbackup.controller.references import VENDOR_HOSTS_VALUE, EndpointPolicy
from cxbackup.core.endpoints import VENDOR_HOSTS_ENV
from cxbackup.core.errors import ConfigurationError
from cxbackup.core.tls import check_ca_certificates

__all__ = ["VENDOR_HOSTS_ENV", "OperatorSettings", "load_settings"]


@dataclass(frozen=True)
class OperatorSettings:
    reconcile_interval: float = 10.0
    jobs: JobSettings = field(default_factory=JobSettings)
    endpoints: EndpointPolicy = field(default_factory=EndpointPolicy)

    def __post_init__(self) -> None:
        # one list: the hosts the operator checks are the hosts its worker pods check again (CXBACKUP_VENDOR_HOSTS)
        if self.jobs.vendor_hosts != self.endpoints.vendor_hosts:
            object.__setattr__(self, "jobs", replace(self.jobs, vendor_hosts=self.endpoints.vendor_hosts))


def _ca_certificates(env: dict[str, str]) -> str:
    """The extra CAs for worker pods, checked once at start (an error names the chart value)."""
    pem = env.get(workerenv.CA_CERTIFICATES, "").strip()
    if pem:
        check_ca_certificates(pem, where=f"security.caCertificates ({workerenv.CA_CERTIFICATES})")
    return pem


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in text.split(",") if n.strip())


def _pod_limits(env: dict[str, str]) -> PodLimits:
    """The caps on worker pods (chart values worker.limits and worker.allowed*), checked once at start."""
    text = env.get("CXBACKUP_WORKER_MAX_RESOURCES", "").strip()
    max_resources = json.loads(text) if text else dict(DEFAULT_MAX_RESOURCES)
    if not isinstance(max_resources, dict) or not max_resources:
        raise ConfigurationError("worker.limits.max (CXBACKUP_WORKER_MAX_RESOURCES) must name at least one resource")
    for name, value in max_resources.items():
        if quantity(str(value)) is None:
            raise ConfigurationError(
                f"worker.limits.max.{name} (CXBACKUP_WORKER_MAX_RESOURCES): {value!r} is not a quantity"
            )
    max_tmp = env.get("CXBACKUP_WORKER_MAX_TMP_SIZE", "").strip() or DEFAULT_MAX_TMP_SIZE
    if quantity(max_tmp) is None:
        raise ConfigurationError(
            f"worker.limits.maxTmpSize (CXBACKUP_WORKER_MAX_TMP_SIZE): {max_tmp!r} is not a quantity"
        )
    return PodLimits(
        max_resources={str(k): str(v) for k, v in max_resources.items()},
        max_tmp_size=max_tmp,
        toleration_keys=_names(env.get("CXBACKUP_WORKER_TOLERATION_KEYS", "")),
        node_selector_keys=_names(env.get("CXBACKUP_WORKER_NODE_SELECTOR_KEYS", "")),
    )


def load_settings(env: dict[str, str] | None = None) -> OperatorSettings:
    """The settings from the environment; raises ConfigurationError naming the chart value when one is
    unusable (the chart's own worker defaults over its caps among them)."""
    env = dict(os.environ if env is None else env)
    defaults = JobSettings()
    settings = OperatorSettings(
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
            limits=_pod_limits(env),
        ),
        endpoints=_endpoints(env),
    )
    problem = pod_settings_problem(None, settings.jobs)
    if problem is not None:
        raise ConfigurationError(f"the chart's worker defaults are over its own caps: {problem.message}")
    return settings


def _endpoints(env: dict[str, str]) -> EndpointPolicy:
    """The endpoint policy, checked once at start: a vendor host entry that is not a host name, an IP
    address or *.domain stops the operator, naming the chart value (empty: no vendor host is allowed)."""
    hosts = tuple(h.strip() for h in env.get(VENDOR_HOSTS_ENV, "").split(",") if h.strip())
    try:
        return EndpointPolicy(
            allow_plain_http=env.get("CXBACKUP_ALLOW_PLAIN_HTTP", "false").lower() == "true",
            vendor_hosts=hosts,
        )
    except ValueError as exc:
        raise ConfigurationError(f"{VENDOR_HOSTS_VALUE} ({VENDOR_HOSTS_ENV}): {exc}") from None
