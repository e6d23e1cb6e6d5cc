"""API types of cxbackup.io/v1alpha1: RecordingBackup, ExportJob, RecordingCertificate and RecordingErasure.

The pydantic models here are the single source of truth; crds/ is generated from them (`cxbackup-dev crds`).
"""

from __future__ import annotations

from cxbackup.api.certificate import (
    RecordingCertificate,
    RecordingCertificateSpec,
    RecordingCertificateStatus,
)
from cxbackup.api.common import API_VERSION, GROUP, VERSION, Condition
from cxbackup.api.erasure import RecordingErasure, RecordingErasureSpec, RecordingErasureStatus
from cxbackup.api.exportjob import ExportJob, ExportJobSpec, ExportJobStatus
from cxbackup.api.recordingbackup import RecordingBackup, RecordingBackupSpec, RecordingBackupStatus

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "Condition",
    "ExportJob",
    "ExportJobSpec",
    "ExportJobStatus",
    "RecordingBackup",
    "RecordingBackupSpec",
    "RecordingBackupStatus",
    "RecordingCertificate",
    "RecordingCertificateSpec",
    "RecordingCertificateStatus",
    "RecordingErasure",
    "RecordingErasureSpec",
    "RecordingErasureStatus",
]
