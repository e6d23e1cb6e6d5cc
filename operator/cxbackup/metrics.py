"""Every Prometheus metric cxbackup exports, defined once, with intent-named helpers.

Counters and histograms are updated when something happens (a run ends, a certificate rotates).
Gauges about an object's state (backup lag, last success, certificate expiry, shard progress) are
computed at scrape time from the operator's view of the objects (`STATE`), so a deleted object leaves
no stale series. Labels are fixed and bounded: namespace and name of the object, plus small enums.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "STATE",
    "BackupState",
    "CertificateState",
    "ExportState",
    "ObjectStates",
    "record_artifacts_expired",
    "record_backup_run",
    "record_certificate_rotation",
    "record_export_run",
    "register_state_collector",
]

_OBJ = ("namespace", "name")

BACKUP_RUNS = Counter("cxbackup_backup_runs_total", "Backup runs finished, by result.", [*_OBJ, "result"])
BACKUP_RUNS_SKIPPED = Counter(
    "cxbackup_backup_runs_skipped_total", "Backup runs not started because the previous one was active.", _OBJ
)
BACKUP_RECORDINGS = Counter(
    "cxbackup_backup_recordings_total",
    "Recordings handled by finished runs, by outcome (downloaded, skipped, failed).",
    [*_OBJ, "outcome"],
)
BACKUP_BYTES = Counter("cxbackup_backup_bytes_total", "Bytes written by finished backup runs.", _OBJ)
BACKUP_DURATION = Histogram(
    "cxbackup_backup_run_duration_seconds",
    "Duration of backup runs.",
    _OBJ,
    buckets=(10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400),
)
CERT_ROTATIONS = Counter("cxbackup_certificate_rotations_total", "Certificate rotations, by result.", [*_OBJ, "result"])
EXPORT_RUNS = Counter("cxbackup_export_runs_total", "Export runs finished, by result.", [*_OBJ, "result"])
EXPORT_DURATION = Histogram(
    "cxbackup_export_duration_seconds",
    "Duration of export runs.",
    _OBJ,
    buckets=(5, 15, 60, 300, 900, 3600, 14400),
)
EXPORT_EXPIRED = Counter("cxbackup_export_artifacts_expired_total", "Artifacts deleted by the retention sweep.", _OBJ)


def record_backup_run(
    namespace: str,
    name: str,
    *,
    result: str,
    seconds: float,
    downloaded: int,
    skipped: int,
    failed: int,
    nbytes: int,
) -> None:
    BACKUP_RUNS.labels(namespace, name, result).inc()
    BACKUP_DURATION.labels(namespace, name).observe(max(seconds, 0.0))
    for outcome, count in (("downloaded", downloaded), ("skipped", skipped), ("failed", failed)):
        BACKUP_RECORDINGS.labels(namespace, name, outcome).inc(count)
    BACKUP_BYTES.labels(namespace, name).inc(nbytes)


def record_backup_skipped(namespace: str, name: str) -> None:
    BACKUP_RUNS_SKIPPED.labels(namespace, name).inc()


def record_certificate_rotation(namespace: str, name: str, *, ok: bool) -> None:
    CERT_ROTATIONS.labels(namespace, name, "succeeded" if ok else "failed").inc()


def record_export_run(namespace: str, name: str, *, result: str, seconds: float) -> None:
    EXPORT_RUNS.labels(namespace, name, result).inc()
    EXPORT_DURATION.labels(namespace, name).observe(max(seconds, 0.0))


def record_artifacts_expired(namespace: str, name: str, count: int) -> None:
    EXPORT_EXPIRED.labels(namespace, name).inc(count)


@dataclass
class BackupState:
    """What the operator last saw of a RecordingBackup (times as epoch seconds)."""

    last_recording_end: float | None = None
    last_success: float | None = None
    expected_interval: float | None = None
    running: bool = False
    shard_progress: dict[str, float] = field(default_factory=dict)
    audit_missing: int | None = None
    oldest_unbacked_start: float | None = None
    retention_seconds: float | None = None


@dataclass
class CertificateState:
    not_after: float | None = None
    ready: bool = False


@dataclass
class ExportState:
    artifacts: int = 0
    artifact_bytes: int = 0


@dataclass
class ObjectStates:
    """The operator's view of its objects, read at scrape time. Thread-safe."""

    backups: dict[tuple[str, str], BackupState] = field(default_factory=dict)
    certificates: dict[tuple[str, str], CertificateState] = field(default_factory=dict)
    exports: dict[tuple[str, str], ExportState] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def forget(self, kind: str, namespace: str, name: str) -> None:
        with self.lock:
            getattr(self, kind).pop((namespace, name), None)


STATE = ObjectStates()


class _StateCollector(Collector):
    def __init__(self, states: ObjectStates, clock: Callable[[], float]) -> None:
        self._states = states
        self._clock = clock

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        lag = GaugeMetricFamily(
            "cxbackup_backup_lag_seconds",
            "Now minus the end of the last fully backed-up window (status.lastRecordingEndTime).",
            labels=_OBJ,
        )
        last = GaugeMetricFamily(
            "cxbackup_backup_last_success_timestamp_seconds", "When the last run succeeded.", labels=_OBJ
        )
        interval = GaugeMetricFamily(
            "cxbackup_backup_expected_interval_seconds",
            "Seconds between two scheduled runs (for the no-recent-success alert).",
            labels=_OBJ,
        )
        running = GaugeMetricFamily("cxbackup_backup_running", "1 while a run is active.", labels=_OBJ)
        progress = GaugeMetricFamily(
            "cxbackup_backup_shard_progress_ratio",
            "Progress of each shard of the active run.",
            labels=[*_OBJ, "shard"],
        )
        missing = GaugeMetricFamily(
            "cxbackup_backup_audit_missing_recordings",
            "Recordings the vendor holds that the last audit did not find in the target.",
            labels=_OBJ,
        )
        margin = GaugeMetricFamily(
            "cxbackup_backup_retention_margin_seconds",
            "Seconds until the vendor deletes the oldest recording that is not yet backed up.",
            labels=_OBJ,
        )
        expiry = GaugeMetricFamily(
            "cxbackup_certificate_expiry_timestamp_seconds", "notAfter of the certificate.", labels=_OBJ
        )
        to_expiry = GaugeMetricFamily(
            "cxbackup_certificate_seconds_to_expiry", "Seconds until the certificate expires.", labels=_OBJ
        )
        ready = GaugeMetricFamily("cxbackup_certificate_ready", "1 when the certificate is valid.", labels=_OBJ)
        artifacts = GaugeMetricFamily("cxbackup_export_artifacts", "Artifacts currently stored.", labels=_OBJ)
        artifact_bytes = GaugeMetricFamily(
            "cxbackup_export_artifact_bytes", "Bytes of artifacts currently stored.", labels=_OBJ
        )
        with self._states.lock:
            backups = list(self._states.backups.items())
            certs = list(self._states.certificates.items())
            exports = list(self._states.exports.items())
        for (ns, name), b in backups:
            labels = [ns, name]
            running.add_metric(labels, 1.0 if b.running else 0.0)
            if b.last_recording_end is not None:
                lag.add_metric(labels, max(now - b.last_recording_end, 0.0))
            if b.last_success is not None:
                last.add_metric(labels, b.last_success)
            if b.expected_interval is not None:
                interval.add_metric(labels, b.expected_interval)
            for shard, ratio in sorted(b.shard_progress.items()):
                progress.add_metric([ns, name, shard], ratio)
            if b.audit_missing is not None:
                missing.add_metric(labels, float(b.audit_missing))
            if b.retention_seconds is not None:
                oldest = b.oldest_unbacked_start if b.oldest_unbacked_start is not None else b.last_recording_end
                if oldest is not None:
                    margin.add_metric(labels, oldest + b.retention_seconds - now)
        for (ns, name), c in certs:
            ready.add_metric([ns, name], 1.0 if c.ready else 0.0)
            if c.not_after is not None:
                expiry.add_metric([ns, name], c.not_after)
                to_expiry.add_metric([ns, name], c.not_after - now)
        for (ns, name), e in exports:
            artifacts.add_metric([ns, name], float(e.artifacts))
            artifact_bytes.add_metric([ns, name], float(e.artifact_bytes))
        yield from (lag, last, interval, running, progress, missing, margin, expiry, to_expiry, ready)
        yield from (artifacts, artifact_bytes)


# The registries that have the collector. Weak, so that a registry that is gone cannot be mistaken for a new one
# created at the same address (as a set of id()s would).
_registered: weakref.WeakSet[CollectorRegistry] = weakref.WeakSet()


def register_state_collector(
    registry: CollectorRegistry = REGISTRY,
    states: ObjectStates = STATE,
    clock: Callable[[], float] = time.time,
) -> None:
    """Register the scrape-time collector once per registry."""
    if registry in _registered:
        return
    registry.register(_StateCollector(states, clock))
    _registered.add(registry)
