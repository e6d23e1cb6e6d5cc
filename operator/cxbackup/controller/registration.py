"""How each kind is wired into kopf, in one place: a timer per resource that reconciles it every
`reconcile_interval` (sharp, first 0.5 s after the resource appears) and, on deletion, its metrics
forgotten. The delete handler is optional: no finalizer of ours, so deleting a resource never waits
for the operator, and what a resource leaves behind (backups, exports, key Secrets) is kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import kopf

from cxbackup import metrics
from cxbackup.controller.settings import OperatorSettings

__all__ = ["register_reconciler"]

GROUP, VERSION = "cxbackup.io", "v1alpha1"


def register_reconciler(
    plural: str,
    kind: str,
    reconcile: Callable[[kopf.Body, kopf.Patch], None],
    settings: OperatorSettings,
) -> None:
    """Register `reconcile(body, patch)` for `plural`; `kind` names its metrics (metrics.STATE)."""

    @kopf.timer(GROUP, VERSION, plural, id=f"{kind}-reconcile", interval=settings.reconcile_interval,
                initial_delay=0.5, sharp=True)  # fmt: skip
    def reconcile_timer(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        reconcile(body, patch)

    @kopf.on.delete(GROUP, VERSION, plural, id=f"{kind}-deleted", optional=True)
    def forget_metrics(namespace: str | None, name: str, **_: Any) -> None:
        metrics.STATE.forget(kind, namespace or "", name)
