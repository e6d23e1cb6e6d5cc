"""Operator startup: kopf settings (each non-default with its reason), handlers, metrics and probes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from dataclasses import dataclass, field
from typing import Any

import kopf

from cxbackup import metrics
from cxbackup.controller.backup import handler as backup_handler
from cxbackup.controller.certificate import handler as certificate_handler
from cxbackup.controller.cluster import KubeCluster
from cxbackup.controller.erasure import handler as erasure_handler
from cxbackup.controller.export import handler as export_handler
from cxbackup.controller.probes import Readiness, serve_metrics_and_readiness
from cxbackup.controller.settings import OperatorSettings, load_settings

__all__ = ["OperatorOptions", "run_operator"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OperatorOptions:
    namespaces: list[str] = field(default_factory=list)
    metrics_port: int = 8080
    health_port: int = 8081
    bind_address: str = "0.0.0.0"  # noqa: S104 - probes and metrics must be reachable from the kubelet/Prometheus
    peering_name: str = "cxbackup"
    standalone: bool = False
    json_logs: bool = True
    verbose: bool = False


def _configure(settings: kopf.OperatorSettings, options: OperatorOptions) -> None:
    # Keep kopf's bookkeeping in annotations under our own prefix: the status schema is structural
    # (unknown status fields are pruned) and status belongs to cxbackup.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="kopf.cxbackup.io")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="kopf.cxbackup.io")
    settings.persistence.finalizer = "cxbackup.io/finalizer"
    # Two replicas must never both launch runs: kopf peering pauses all but the highest-priority one;
    # a random priority avoids the "same priority" tie. Mandatory, so a missing peering object is an error.
    settings.peering.name = options.peering_name
    settings.peering.standalone = options.standalone
    settings.peering.mandatory = not options.standalone
    settings.peering.clusterwide = not options.namespaces
    settings.peering.priority = random.randint(1, 2**30)
    # Events are how users see run outcomes; post them promptly.
    settings.posting.level = logging.INFO
    # Watches reconnect after an API server restart; keep the retry delay short so runs are noticed soon.
    settings.watching.reconnect_backoff = 1.0
    settings.watching.server_timeout = 300
    # Handlers are synchronous (API calls) and run in kopf's thread pool, which by default has cpu+4
    # threads (6 on two cores): with many resources, their timers queue up and a deletion or a new
    # resource waits behind them. The work is I/O-bound; threads cost memory (bench, 1,000 resources:
    # 178 MiB with 6, 205 MiB with 16, 234-257 MiB with 32), so 16.
    settings.execution.max_workers = 16
    # Per namespace (the chart's default), the operator may not list namespaces: kopf would try, retry with
    # a backoff for about a minute before it starts on the namespaces it was given, and keep retrying. The
    # namespaces are exact names, so there is nothing to scan for. (CRDs are still scanned once at start;
    # the chart installs them before the operator.)
    if options.namespaces:
        settings.scanning.disabled = True


def run_operator(options: OperatorOptions, op_settings: OperatorSettings | None = None) -> int:
    op_settings = op_settings or load_settings()
    kopf.configure(
        verbose=options.verbose,
        log_format=kopf.LogFormat.JSON if options.json_logs else kopf.LogFormat.PLAIN,
    )
    # The default registry holds kopf's built-in login handlers (kubernetes client credentials).
    registry = kopf.get_default_registry()
    cluster = KubeCluster()
    backup_handler.register(op_settings, cluster)
    certificate_handler.register(op_settings, cluster)
    export_handler.register(op_settings, cluster)
    erasure_handler.register(op_settings, cluster)

    peering_namespace = None if not options.namespaces else options.namespaces[0]
    readiness = Readiness(
        (lambda: None)
        if options.standalone
        else (lambda: cluster.read_peering(options.peering_name, peering_namespace))
    )

    @kopf.on.startup(registry=registry)
    def _startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        _configure(settings, options)
        readiness.mark_started()

    metrics.register_state_collector()
    serve_metrics_and_readiness(options.metrics_port, options.bind_address, readiness)
    log.info("metrics on %s:%d/metrics, readiness on /readyz", options.bind_address, options.metrics_port)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(
            kopf.operator(
                registry=registry,
                clusterwide=not options.namespaces,
                namespaces=options.namespaces,
                standalone=options.standalone,
                peering_name=options.peering_name,
                liveness_endpoint=f"http://{options.bind_address}:{options.health_port}/healthz",
            )
        )
    return 0
