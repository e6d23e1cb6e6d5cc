"""Every Prometheus metric cxbackup exports, defined once, with intent-named helpers.

Counters and histograms are updated when something happens (a run ends, a certificate rotates).
Gauges about an object's state (backup lag, last success, certificate expiry, shard progress) are
computed at scrape time from the operator's view of the objects (`STATE`), so a deleted object leaves
no stale series. Labels are fixed and bounded: namespace and name of the object, plus small enums.

Each metric's name is a module constant (`BACKUP_RUNS_TOTAL`, `BACKUP_LAG_SECONDS`, ...), spelled once and
used both by the definitions below and by code that writes queries (the dashboards generator,
hack/dashboards.py). A constant holds the name as it is queried: a counter's with its `_total` suffix
(prometheus_client takes the name with or without it), a histogram's base name (its series add
`_bucket`, `_sum` and `_count`).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = [
    "BACKUP_AUDIT_MISSING_RECORDINGS",
    "BACKUP_BYTES_TOTAL",
    "BACKUP_CREATED_TIMESTAMP_SECONDS",
    "BACKUP_ERASURE_RECORDINGS_TOTAL",
    "BACKUP_EXPECTED_INTERVAL_SECONDS",
    "BACKUP_INDEX_BYTES",
    "BACKUP_INDEX_RECORDINGS",
    "BACKUP_LAG_SECONDS",
    "BACKUP_LAST_SUCCESS_TIMESTAMP_SECONDS",
    "BACKUP_RECORDINGS_TOTAL",
    "BACKUP_RETENTION_DELETED_TOTAL",
    "BACKUP_RETENTION_MARGIN_SECONDS",
    "BACKUP_RETENTION_SWEEP_RECORDINGS",
    "BACKUP_RUNNING",
    "BACKUP_RUNS_SKIPPED_TOTAL",
    "BACKUP_RUNS_TOTAL",
    "BACKUP_RUN_DURATION_SECONDS",
    "BACKUP_SHARD_PROGRESS_RATIO",
    "CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS",
    "CERTIFICATE_READY",
    "CERTIFICATE_ROTATIONS_TOTAL",
    "CERTIFICATE_SECONDS_TO_EXPIRY",
    "EXPORT_ARTIFACTS",
    "EXPORT_ARTIFACTS_EXPIRED_TOTAL",
    "EXPORT_ARTIFACT_BYTES",
    "EXPORT_DURATION_SECONDS",
    "EXPORT_RUNS_TOTAL",
    "METRIC_NAMES",
    "STATE",
    "SWEEP_STATES",
    "BackupState",
    "CertificateState",
    "ExportState",
    "ObjectStates",
    "initialize_backup",
    "initialize_certificate",
    "initialize_export",
    "record_artifacts_expired",
    "record_backup_run",
    "record_certificate_rotation",
    "record_erasure",
    "record_export_run",
    "register_state_collector",
]

# ---- names (what PromQL queries) ------------------------------------------------------------------
# Counters and histograms, updated when something happens.
BACKUP_RUNS_TOTAL: Final = "cxbackup_backup_runs_total"
BACKUP_RUNS_SKIPPED_TOTAL: Final = "cxbackup_backup_runs_skipped_total"
BACKUP_RECORDINGS_TOTAL: Final = "cxbackup_backup_recordings_total"
BACKUP_BYTES_TOTAL: Final = "cxbackup_backup_bytes_total"
BACKUP_RUN_DURATION_SECONDS: Final = "cxbackup_backup_run_duration_seconds"
BACKUP_RETENTION_DELETED_TOTAL: Final = "cxbackup_backup_retention_deleted_total"
BACKUP_ERASURE_RECORDINGS_TOTAL: Final = "cxbackup_backup_erasure_recordings_total"
CERTIFICATE_ROTATIONS_TOTAL: Final = "cxbackup_certificate_rotations_total"
EXPORT_RUNS_TOTAL: Final = "cxbackup_export_runs_total"
EXPORT_DURATION_SECONDS: Final = "cxbackup_export_duration_seconds"
EXPORT_ARTIFACTS_EXPIRED_TOTAL: Final = "cxbackup_export_artifacts_expired_total"
# Gauges computed at scrape time from STATE.
BACKUP_LAG_SECONDS: Final = "cxbackup_backup_lag_seconds"
BACKUP_LAST_SUCCESS_TIMESTAMP_SECONDS: Final = "cxbackup_backup_last_success_timestamp_seconds"
BACKUP_CREATED_TIMESTAMP_SECONDS: Final = "cxbackup_backup_created_timestamp_seconds"
BACKUP_EXPECTED_INTERVAL_SECONDS: Final = "cxbackup_backup_expected_interval_seconds"
BACKUP_RUNNING: Final = "cxbackup_backup_running"
BACKUP_SHARD_PROGRESS_RATIO: Final = "cxbackup_backup_shard_progress_ratio"
BACKUP_AUDIT_MISSING_RECORDINGS: Final = "cxbackup_backup_audit_missing_recordings"
BACKUP_RETENTION_MARGIN_SECONDS: Final = "cxbackup_backup_retention_margin_seconds"
BACKUP_RETENTION_SWEEP_RECORDINGS: Final = "cxbackup_backup_retention_sweep_recordings"
BACKUP_INDEX_RECORDINGS: Final = "cxbackup_backup_index_recordings"
BACKUP_INDEX_BYTES: Final = "cxbackup_backup_index_bytes"
CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS: Final = "cxbackup_certificate_expiry_timestamp_seconds"
CERTIFICATE_SECONDS_TO_EXPIRY: Final = "cxbackup_certificate_seconds_to_expiry"
CERTIFICATE_READY: Final = "cxbackup_certificate_ready"
EXPORT_ARTIFACTS: Final = "cxbackup_export_artifacts"
EXPORT_ARTIFACT_BYTES: Final = "cxbackup_export_artifact_bytes"

# Every name above, in the order of the definitions.
METRIC_NAMES: Final = (
    BACKUP_RUNS_TOTAL,
    BACKUP_RUNS_SKIPPED_TOTAL,
    BACKUP_RECORDINGS_TOTAL,
    BACKUP_BYTES_TOTAL,
    BACKUP_RUN_DURATION_SECONDS,
    BACKUP_RETENTION_DELETED_TOTAL,
    BACKUP_ERASURE_RECORDINGS_TOTAL,
    CERTIFICATE_ROTATIONS_TOTAL,
    EXPORT_RUNS_TOTAL,
    EXPORT_DURATION_SECONDS,
    EXPORT_ARTIFACTS_EXPIRED_TOTAL,
    BACKUP_LAG_SECONDS,
    BACKUP_LAST_SUCCESS_TIMESTAMP_SECONDS,
    BACKUP_CREATED_TIMESTAMP_SECONDS,
    BACKUP_EXPECTED_INTERVAL_SECONDS,
    BACKUP_RUNNING,
    BACKUP_SHARD_PROGRESS_RATIO,
    BACKUP_AUDIT_MISSING_RECORDINGS,
    BACKUP_RETENTION_MARGIN_SECONDS,
    BACKUP_RETENTION_SWEEP_RECORDINGS,
    BACKUP_INDEX_RECORDINGS,
    BACKUP_INDEX_BYTES,
    CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS,
    CERTIFICATE_SECONDS_TO_EXPIRY,
    CERTIFICATE_READY,
    EXPORT_ARTIFACTS,
    EXPORT_ARTIFACT_BYTES,
)

# ---- events: counters and histograms -----------------------------------------------------------------
_OBJ = ("namespace", "name")

BACKUP_RUNS = Counter(BACKUP_RUNS_TOTAL, "Backup runs finished, by result.", [*_OBJ, "result"])
BACKUP_RUNS_SKIPPED = Counter(
    BACKUP_RUNS_SKIPPED_TOTAL, "Backup runs not started because the previous one was active.", _OBJ
)
BACKUP_RECORDINGS = Counter(
    BACKUP_RECORDINGS_TOTAL,
    "Recordings handled by finished runs, by outcome (downloaded, skipped, failed; erased: listed by the vendor "
    "but not downloaded because an erasure removed them).",
    [*_OBJ, "outcome"],
)
BACKUP_BYTES = Counter(BACKUP_BYTES_TOTAL, "Bytes written by finished backup runs.", _OBJ)
BACKUP_RETENTION_DELETED = Counter(
    BACKUP_RETENTION_DELETED_TOTAL, "Recordings the retention sweep deleted from the target.", _OBJ
)
BACKUP_ERASURES = Counter(
    BACKUP_ERASURE_RECORDINGS_TOTAL,
    "Recordings of executed RecordingErasure requests on the backup's target, by outcome (erased; held: kept "
    "under a legal hold; failed: not erased, to retry).",
    [*_OBJ, "outcome"],
)
BACKUP_DURATION = Histogram(
    BACKUP_RUN_DURATION_SECONDS,
    "Duration of backup runs.",
    _OBJ,
    buckets=(10, 30, 60, 300, 900, 1800, 3600, 7200, 14400, 43200, 86400),
)
CERT_ROTATIONS = Counter(CERTIFICATE_ROTATIONS_TOTAL, "Certificate rotations, by result.", [*_OBJ, "result"])
EXPORT_RUNS = Counter(EXPORT_RUNS_TOTAL, "Export runs finished, by result.", [*_OBJ, "result"])
EXPORT_DURATION = Histogram(
    EXPORT_DURATION_SECONDS,
    "Duration of export runs.",
    _OBJ,
    buckets=(5, 15, 60, 300, 900, 3600, 14400),
)
EXPORT_EXPIRED = Counter(EXPORT_ARTIFACTS_EXPIRED_TOTAL, "Artifacts deleted by the retention sweep.", _OBJ)


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
    erased: int = 0,
    retention_deleted: int = 0,
) -> None:
    BACKUP_RUNS.labels(namespace, name, result).inc()
    BACKUP_DURATION.labels(namespace, name).observe(max(seconds, 0.0))
    for outcome, count in zip(_OUTCOMES, (downloaded, skipped, failed, erased), strict=True):
        BACKUP_RECORDINGS.labels(namespace, name, outcome).inc(count)
    BACKUP_BYTES.labels(namespace, name).inc(nbytes)
    BACKUP_RETENTION_DELETED.labels(namespace, name).inc(retention_deleted)


def record_erasure(namespace: str, backup: str, *, erased: int, held: int, failed: int) -> None:
    """An executed erasure on RecordingBackup `backup`'s target."""
    for outcome, count in zip(ERASURE_OUTCOMES, (erased, held, failed), strict=True):
        BACKUP_ERASURES.labels(namespace, backup, outcome).inc(count)


_RESULTS = ("succeeded", "failed")
ERASURE_OUTCOMES: Final = ("erased", "held", "failed")
_OUTCOMES = ("downloaded", "skipped", "failed", "erased")
SWEEP_STATES: Final = ("expired", "held", "deleted", "failed")
"""The `state` label of BACKUP_RETENTION_SWEEP_RECORDINGS."""


def initialize_backup(namespace: str, name: str) -> None:
    """Every counter series of a RecordingBackup at 0, before its first run ends: dashboards show 0 instead
    of no data, and increase() sees the first failure as an increase (idempotent; called every reconcile)."""
    for result in _RESULTS:
        BACKUP_RUNS.labels(namespace, name, result)
    for outcome in _OUTCOMES:
        BACKUP_RECORDINGS.labels(namespace, name, outcome)
    BACKUP_RUNS_SKIPPED.labels(namespace, name)
    BACKUP_RETENTION_DELETED.labels(namespace, name)
    for outcome in ERASURE_OUTCOMES:
        BACKUP_ERASURES.labels(namespace, name, outcome)
    BACKUP_BYTES.labels(namespace, name)
    BACKUP_DURATION.labels(namespace, name)


def initialize_certificate(namespace: str, name: str) -> None:
    """The rotation counters of a RecordingCertificate at 0 (see initialize_backup)."""
    for result in _RESULTS:
        CERT_ROTATIONS.labels(namespace, name, result)


def initialize_export(namespace: str, name: str) -> None:
    """The counters of an ExportJob at 0 (see initialize_backup)."""
    for result in _RESULTS:
        EXPORT_RUNS.labels(namespace, name, result)
    EXPORT_DURATION.labels(namespace, name)
    EXPORT_EXPIRED.labels(namespace, name)


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
    created: float | None = None
    """metadata.creationTimestamp: what "no recent success" counts from before the first success."""
    expected_interval: float | None = None
    running: bool = False
    shard_progress: dict[str, float] = field(default_factory=dict)
    audit_missing: int | None = None
    oldest_unbacked_start: float | None = None
    retention_seconds: float | None = None
    sweep: dict[str, int] | None = None  # the last run's retention sweep, by SWEEP_STATES
    index_recordings: int | None = None
    index_bytes: int | None = None


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
            BACKUP_LAG_SECONDS,
            "Now minus the end of the last fully backed-up window (status.lastRecordingEndTime).",
            labels=_OBJ,
        )
        last = GaugeMetricFamily(BACKUP_LAST_SUCCESS_TIMESTAMP_SECONDS, "When the last run succeeded.", labels=_OBJ)
        created = GaugeMetricFamily(
            BACKUP_CREATED_TIMESTAMP_SECONDS,
            "When the RecordingBackup was created (the no-recent-success alert counts from it before a first success).",
            labels=_OBJ,
        )
        interval = GaugeMetricFamily(
            BACKUP_EXPECTED_INTERVAL_SECONDS,
            "Seconds between two scheduled runs (for the no-recent-success alert).",
            labels=_OBJ,
        )
        running = GaugeMetricFamily(BACKUP_RUNNING, "1 while a run is active.", labels=_OBJ)
        progress = GaugeMetricFamily(
            BACKUP_SHARD_PROGRESS_RATIO,
            "Progress of each shard of the active run.",
            labels=[*_OBJ, "shard"],
        )
        missing = GaugeMetricFamily(
            BACKUP_AUDIT_MISSING_RECORDINGS,
            "Recordings the vendor holds that the last audit did not find in the target.",
            labels=_OBJ,
        )
        margin = GaugeMetricFamily(
            BACKUP_RETENTION_MARGIN_SECONDS,
            "Seconds until the vendor deletes the oldest recording that is not yet backed up.",
            labels=_OBJ,
        )
        sweep = GaugeMetricFamily(
            BACKUP_RETENTION_SWEEP_RECORDINGS,
            "The last retention sweep's recordings past keepFor, by state: expired (not held: deleted, or to delete "
            "in a dry run), held (kept by a legal hold), deleted, failed (could not be deleted).",
            labels=[*_OBJ, "state"],
        )
        index_recordings = GaugeMetricFamily(
            BACKUP_INDEX_RECORDINGS, "Recordings in the target's search index after the last run.", labels=_OBJ
        )
        index_bytes = GaugeMetricFamily(
            BACKUP_INDEX_BYTES, "Size of the target's search index files after the last run.", labels=_OBJ
        )
        expiry = GaugeMetricFamily(CERTIFICATE_EXPIRY_TIMESTAMP_SECONDS, "notAfter of the certificate.", labels=_OBJ)
        to_expiry = GaugeMetricFamily(
            CERTIFICATE_SECONDS_TO_EXPIRY, "Seconds until the certificate expires.", labels=_OBJ
        )
        ready = GaugeMetricFamily(CERTIFICATE_READY, "1 when the certificate is valid.", labels=_OBJ)
        artifacts = GaugeMetricFamily(EXPORT_ARTIFACTS, "Artifacts currently stored.", labels=_OBJ)
        artifact_bytes = GaugeMetricFamily(EXPORT_ARTIFACT_BYTES, "Bytes of artifacts currently stored.", labels=_OBJ)
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
            if b.created is not None:
                created.add_metric(labels, b.created)
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
            if b.sweep is not None:
                for state in SWEEP_STATES:
                    sweep.add_metric([ns, name, state], float(b.sweep.get(state, 0)))
            if b.index_recordings is not None:
                index_recordings.add_metric(labels, float(b.index_recordings))
            if b.index_bytes is not None:
                index_bytes.add_metric(labels, float(b.index_bytes))
        for (ns, name), c in certs:
            ready.add_metric([ns, name], 1.0 if c.ready else 0.0)
            if c.not_after is not None:
                expiry.add_metric([ns, name], c.not_after)
                to_expiry.add_metric([ns, name], c.not_after - now)
        for (ns, name), e in exports:
            artifacts.add_metric([ns, name], float(e.artifacts))
            artifact_bytes.add_metric([ns, name], float(e.artifact_bytes))
        yield from (lag, last, created, interval, running, progress, missing, margin, sweep, index_recordings)
        yield from (index_bytes, expiry, to_expiry, ready)
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
