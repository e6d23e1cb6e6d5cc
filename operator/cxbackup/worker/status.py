"""The worker side of status: a ProgressSink that writes `status.shards["<index>"]` of its resource.

Used by `cxbackup download` when CXBACKUP_STATUS_RESOURCE (`recordingbackups/<namespace>/<name>`) is
set, as it is in the operator's Job pods. Writes are merge patches of the status subresource (only the
pod's own shard entry), throttled to one per CXBACKUP_STATUS_INTERVAL seconds, plus one at the start
and one at the end. A failed write is logged and never fails the backup: the Job's own outcome is what
the operator trusts; this is progress you can watch.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from cxbackup.api import workerenv
from cxbackup.api.common import GROUP, VERSION
from cxbackup.api.workerenv import StatusResource
from cxbackup.backup.progress import RecordingResult, RecordingStatus, RunSummary
from cxbackup.core.times import iso

__all__ = ["ShardStatusReporter", "reporter_from_env"]

log = logging.getLogger(__name__)

Patcher = Callable[[dict[str, Any]], None]


def _kube_patcher(resource: StatusResource) -> Patcher:
    from kubernetes import client

    from cxbackup.kubeclient import api_client

    api = client.CustomObjectsApi(api_client())

    def patch(body: dict[str, Any]) -> None:
        api.patch_namespaced_custom_object_status(
            GROUP, VERSION, resource.namespace, resource.plural, resource.name, body
        )

    return patch


class ShardStatusReporter:
    """Progress of one shard, reported to the resource's status."""

    def __init__(
        self,
        shard: str,
        run_id: str,
        patcher: Patcher,
        *,
        interval: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._shard = shard
        self._run_id = run_id
        self._patcher = patcher
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last_write = float("-inf")
        self._counts = {"total": 0, "downloaded": 0, "skipped": 0, "failed": 0, "bytes": 0}
        self._phase = "Running"
        self._final: dict[str, Any] = {}  # what only the end of the run knows (null clears an old run's value)
        self.write_failures = 0

    def _entry(self) -> dict[str, Any]:
        now = iso(dt.datetime.now(dt.UTC))
        total = max(
            self._counts["total"], self._counts["downloaded"] + self._counts["skipped"] + self._counts["failed"]
        )
        entry = {"runId": self._run_id, "phase": self._phase, **self._counts, "total": total, "updatedAt": now}
        return entry | self._final

    def _write(self, force: bool) -> None:
        now = self._clock()
        if not force and now - self._last_write < self._interval:
            return
        self._last_write = now
        try:
            self._patcher({"status": {"shards": {self._shard: self._entry()}}})
        except Exception as exc:
            self.write_failures += 1
            log.warning("could not report progress of shard %s: %s", self._shard, type(exc).__name__)

    def on_start(self, total_estimate: int | None) -> None:
        with self._lock:
            self._counts["total"] = total_estimate or 0
            self._write(force=True)

    def on_recording(self, result: RecordingResult) -> None:
        with self._lock:
            key = {
                RecordingStatus.DOWNLOADED: "downloaded",
                RecordingStatus.SKIPPED: "skipped",
                RecordingStatus.FAILED: "failed",
            }[result.status]
            self._counts[key] += 1
            self._counts["bytes"] += result.bytes
            self._write(force=False)

    def on_finish(self, summary: RunSummary) -> None:
        with self._lock:
            self._counts.update(
                downloaded=summary.downloaded,
                skipped=summary.skipped,
                failed=summary.failed,
                bytes=summary.bytes,
                total=summary.total,
            )
            self._phase = "Succeeded" if summary.ok else "Failed"
            self._final = {
                "erased": summary.erased,
                "retention": None if summary.retention is None else _sweep_counts(summary.retention.to_json()),
                "retentionError": summary.retention_error,
                "indexRecordings": summary.index_recordings,
                "indexBytes": summary.index_bytes,
            }
            self._write(force=True)


_SWEEP_COUNTS = ("dryRun", "expired", "held", "deleted", "deletedBytes", "failed")


def _sweep_counts(sweep: dict[str, Any]) -> dict[str, Any]:
    """The fields of status.shards[].retention (SweepCounts) of a sweep's summary."""
    return {k: sweep[k] for k in _SWEEP_COUNTS}


def reporter_from_env(env: Mapping[str, str], shard: int) -> ShardStatusReporter | None:
    """A reporter when the pod was started by the operator (CXBACKUP_STATUS_RESOURCE set), else None."""
    value = env.get(workerenv.STATUS_RESOURCE)
    if not value:
        return None
    resource = StatusResource.parse(value)
    if resource is None:
        log.warning("%s=%r is not <plural>/<namespace>/<name>; not reporting", workerenv.STATUS_RESOURCE, value)
        return None
    return ShardStatusReporter(
        str(shard),
        env.get(workerenv.RUN_ID, ""),
        _kube_patcher(resource),
        interval=float(env.get(workerenv.STATUS_INTERVAL, "5")),
    )


def report_audit(env: Mapping[str, str], audit: dict[str, Any]) -> bool:
    """Write `status.audit` of the resource named by CXBACKUP_STATUS_RESOURCE (audit pods). False when
    not in an operator pod or when the write failed (logged; the audit's own exit code still tells)."""
    resource = StatusResource.from_env(env)
    if resource is None:
        return False
    try:
        _kube_patcher(resource)({"status": {"audit": audit}})
    except Exception as exc:
        log.warning("could not report the audit to %s: %s", resource, type(exc).__name__)
        return False
    return True
