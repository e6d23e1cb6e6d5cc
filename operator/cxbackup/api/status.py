"""The words the operator writes into status: phases, condition types and reasons, defined once.

The controllers write these members (a StrEnum member is its string), and the CRD descriptions of the
status fields are generated from the same tuples, so the documented and the written values cannot differ.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

__all__ = [
    "BACKUP_CONDITIONS",
    "BACKUP_PHASES",
    "CERTIFICATE_CONDITIONS",
    "ERASURE_CONDITIONS",
    "ERASURE_PHASES",
    "EXPORT_CONDITIONS",
    "EXPORT_PHASES",
    "CertificateReason",
    "ConditionType",
    "Phase",
    "Reason",
    "one_of",
]


class Phase(StrEnum):
    """status.phase of a RecordingBackup, an ExportJob or a RecordingErasure."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"
    BLOCKED = "Blocked"
    """A referenced Secret, PVC or certificate is missing; the run starts once it exists."""
    INVALID = "Invalid"
    """The spec cannot be used; fix it."""
    PLANNED = "Planned"
    """A RecordingErasure's dry run is done: its status lists what would be erased."""


BACKUP_PHASES = tuple(p for p in Phase if p != Phase.PLANNED)
EXPORT_PHASES = BACKUP_PHASES
ERASURE_PHASES = (
    Phase.PENDING, Phase.RUNNING, Phase.PLANNED, Phase.SUCCEEDED, Phase.FAILED, Phase.BLOCKED, Phase.INVALID,
)  # fmt: skip


class ConditionType(StrEnum):
    READY = "Ready"
    RUNNING = "Running"
    DEGRADED = "Degraded"
    AUDITED = "Audited"
    INVALID = "Invalid"
    EXPIRED = "Expired"
    EXPIRING = "Expiring"


BACKUP_CONDITIONS = (ConditionType.READY, ConditionType.RUNNING, ConditionType.DEGRADED, ConditionType.AUDITED)
EXPORT_CONDITIONS = (ConditionType.READY, ConditionType.RUNNING, ConditionType.DEGRADED)
ERASURE_CONDITIONS = (ConditionType.READY, ConditionType.RUNNING)
CERTIFICATE_CONDITIONS = (
    ConditionType.READY,
    ConditionType.EXPIRING,
    ConditionType.EXPIRED,
    ConditionType.INVALID,
)


class Reason(StrEnum):
    """Condition and Event reasons of RecordingBackup, ExportJob and RecordingErasure (constant CamelCase words)."""

    # references and spec (both kinds)
    SECRET_NOT_FOUND = "SecretNotFound"  # noqa: S105 - a reason code, not a password
    SECRET_KEY_MISSING = "SecretKeyMissing"  # noqa: S105 - a reason code, not a password
    SECRET_NOT_LABELLED = "SecretNotLabelled"  # noqa: S105 - a reason code, not a password
    SECRET_NOT_ALLOWED = "SecretNotAllowed"  # noqa: S105 - a reason code, not a password
    INSECURE_ENDPOINT = "InsecureEndpoint"
    ENDPOINT_NOT_ALLOWED = "EndpointNotAllowed"
    PLAIN_HTTP_ALLOWED = "PlainHttpAllowed"
    CERTIFICATE_NOT_READY = "CertificateNotReady"
    PVC_NOT_FOUND = "PVCNotFound"
    ACCESS_MODE_CONFLICT = "AccessModeConflict"
    """spec.replicas > 1 with a ReadWriteOncePod PVC target: one pod at a time may mount it."""
    CERTIFICATE_NOT_FOUND = "CertificateNotFound"
    BACKUP_NOT_FOUND = "BackupNotFound"
    DECRYPTION_NOT_ALLOWED = "DecryptionNotAllowed"
    POD_SETTINGS_NOT_ALLOWED = "PodSettingsNotAllowed"
    """spec.pod asks for more than the installer allows (resources, /tmp, tolerations, node selector)."""
    """The RecordingCertificate exists but is not Ready (too small, expired, not checked yet...)."""
    INVALID_SPEC = "InvalidSpec"
    INVALID_SCHEDULE = "InvalidSchedule"
    # runs
    RUN_STARTED = "RunStarted"
    RUN_ACTIVE = "RunActive"
    RUN_SKIPPED = "RunSkipped"
    RUN_REPLACED = "RunReplaced"
    RUN_SUCCEEDED = "RunSucceeded"
    RUN_FAILED = "RunFailed"
    LAST_RUN_SUCCEEDED = "LastRunSucceeded"
    IDLE = "Idle"
    WORKER_PODS_NOT_STARTING = "WorkerPodsNotStarting"
    WORKER_PODS_STARTED = "WorkerPodsStarted"
    # the backup audit
    AUDIT_STARTED = "AuditStarted"
    AUDIT_PASSED = "AuditPassed"
    AUDIT_MISSING = "AuditMissing"
    RECORDINGS_MISSING = "RecordingsMissing"
    COMPLETE = "Complete"
    # exports and their retention sweeps
    EXPORT_STARTED = "ExportStarted"
    EXPORT_SUCCEEDED = "ExportSucceeded"
    EXPORT_FAILED = "ExportFailed"
    SWEEP_STARTED = "SweepStarted"
    SWEEP_FAILED = "SweepFailed"
    ARTIFACTS_EXPIRED = "ArtifactsExpired"
    # erasure requests
    WAITING_FOR_BACKUP = "WaitingForBackup"
    ERASURE_STARTED = "ErasureStarted"
    ERASURE_PLANNED = "ErasurePlanned"
    ERASURE_SUCCEEDED = "ErasureSucceeded"
    ERASURE_FAILED = "ErasureFailed"
    DRY_RUN_REQUIRED = "DryRunRequired"
    """execute: true without a completed dry run of the same request in status before it was set."""


class CertificateReason(StrEnum):
    """Condition and Event reasons of RecordingCertificate; certificate problems use certs.validation.Reason."""

    SECRET_NOT_FOUND = "SecretNotFound"  # noqa: S105 - a reason code, not a password
    SECRET_KEY_MISSING = "SecretKeyMissing"  # noqa: S105 - a reason code, not a password
    SECRET_NOT_MANAGED = "SecretNotManaged"  # noqa: S105 - a reason code, not a password
    INVALID_SPEC = "InvalidSpec"
    VALID = "CertificateValid"
    GENERATED = "CertificateGenerated"
    ROTATED = "CertificateRotated"
    ROTATION_FAILED = "RotationFailed"
    ROTATION_SCHEDULED = "RotationScheduled"
    ROTATION_DISABLED = "RotationDisabled"
    RENEWAL_REQUIRED = "RenewalRequired"
    REPLACED = "CertificateReplaced"
    NOT_EXPIRING = "NotExpiring"
    NOT_EXPIRED = "NotExpired"
    KEYRING_UPDATED = "KeyringUpdated"
    SCREEN_REMOVED = "ScreenEncryptionRemoved"
    SCREEN_ADDED = "ScreenEncryptionAdded"


def one_of(values: Iterable[str]) -> str:
    """'A, B or C', for a generated description."""
    items = [str(v) for v in values]
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} or {items[-1]}"
