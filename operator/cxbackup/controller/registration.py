"""How each kind is wired into kopf, in one place.

A timer per resource reconciles it every `reconcile_interval` (sharp, first 0.5 s after the resource
appears) with the same collaborators for every kind: the `Cluster`, an `Emit` that posts Events on the
resource, the clock and the operator's settings. The reconciler returns the status fields to write; the
timer writes them into kopf's patch. A failed API call mid-way keeps what was decided before it
(`Interrupted`) and retries later. On deletion, the resource's metrics are forgotten; the delete handler
is optional (no finalizer of ours), so deleting a resource never waits for the operator, and what a
resource leaves behind (backups, exports, key Secrets) is kept.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any, Protocol, TypeVar

import kopf
from pydantic import BaseModel, ValidationError

from cxbackup import metrics
from cxbackup.api.common import GROUP, VERSION
from cxbackup.api.status import Phase, Reason
from cxbackup.controller.cluster import Cluster, ClusterError
from cxbackup.controller.events import Emit, EventSpec
from cxbackup.controller.references import Blocked
from cxbackup.controller.settings import OperatorSettings

__all__ = ["Interrupted", "Reconciler", "register_reconciler", "validated"]

M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], body: Mapping[str, Any], emit: Emit) -> M | None:
    """The resource as its model; None when it does not validate, after an InvalidSpec Event (once: not
    again while status.phase already says Invalid). The CRD schema rejects most such bodies earlier."""
    try:
        return model.model_validate(dict(body))
    except ValidationError as exc:
        if (body.get("status") or {}).get("phase") != Phase.INVALID:
            emit(EventSpec(True, Reason.INVALID_SPEC, str(exc).splitlines()[0]))
        return None


class Reconciler(Protocol):
    """One reconciliation of one resource; returns the status fields to write (only changes)."""

    def __call__(
        self,
        body: Mapping[str, Any],
        *,
        cluster: Cluster,
        emit: Any,
        now: dt.datetime,
        settings: OperatorSettings,
    ) -> dict[str, Any]: ...


class Interrupted(Exception):
    """An API call failed mid-way; `changes` are the status fields decided before it (they are written)."""

    def __init__(self, changes: dict[str, Any], error: ClusterError) -> None:
        super().__init__(str(error))
        self.changes = changes


def register_reconciler(
    plural: str,
    metrics_kind: str,
    reconcile: Reconciler,
    settings: OperatorSettings,
    cluster: Cluster,
    *,
    retry_delay: float = 30.0,
    scrape_state: bool = True,
) -> None:
    """Register `reconcile` for `plural`; `metrics_kind` names its handlers and its scrape-time state
    (metrics.STATE), which a kind without one (`scrape_state=False`) does not have to forget."""

    @kopf.timer(GROUP, VERSION, plural, id=f"{metrics_kind}-reconcile", interval=settings.reconcile_interval,
                initial_delay=0.5, sharp=True)  # fmt: skip
    def reconcile_timer(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        def emit(event: EventSpec) -> None:
            kopf.event(body, type="Warning" if event.warning else "Normal", reason=event.reason, message=event.message)

        try:
            changes = reconcile(body, cluster=cluster, emit=emit, now=dt.datetime.now(dt.UTC), settings=settings)
        except Interrupted as exc:
            for key, value in exc.changes.items():
                patch.status[key] = value
            raise kopf.TemporaryError(str(exc), delay=retry_delay) from exc
        except ClusterError as exc:
            raise kopf.TemporaryError(str(exc), delay=retry_delay) from exc
        except Blocked as blocked:  # a check a kind's own handler did not make first (e.g. spec.pod's caps)
            status = body.get("status") or {}
            now = dt.datetime.now(dt.UTC)
            generation = body.get("metadata", {}).get("generation")
            patch.status["conditions"] = blocked.ready_false(
                status.get("conditions"), emit, now=now, generation=generation
            )
            patch.status["phase"] = blocked.phase
            return
        for key, value in changes.items():
            patch.status[key] = value

    if not scrape_state:
        return

    @kopf.on.delete(GROUP, VERSION, plural, id=f"{metrics_kind}-deleted", optional=True)
    def forget_metrics(namespace: str | None, name: str, **_: Any) -> None:
        metrics.STATE.forget(metrics_kind, namespace or "", name)
