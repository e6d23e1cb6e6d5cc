"""cxbackup.export: the CDDS engine - encrypted contact-history and per-user GDPR chat exports.

Records come from the vendor's data APIs (`source`), are written as NDJSON (+ CSV for contact history)
into zip parts of bounded size with a manifest, each part wrapped as S/MIME (CMS) enveloped-data
encrypted to the customer's certificate (`packaging`), kept in a directory or an S3 bucket with
size, SHA-256 and expiry metadata (`store`), and deleted when their retention ends (`retention`).
`runner.run_export` ties one run together and returns an `ExportResult` (`result`); `download` gets
an artifact back. No Kubernetes here: the controller maps an ExportJob to `cxbackup export run`.
`subject.run_subject_export` (subjectAccess) reads a backup target instead of the vendor API: one
person's recordings, found through the target's search index, packed the same way (not imported here:
it brings the backup engine's reading side with it).

Modules: errors (the exception tree), names (artifact names, stamps), request (ExportRequest,
TimeRange), source, packaging, store, retention, result, runner, download, subject.
"""

from __future__ import annotations

from cxbackup.export.download import DownloadResult, ExtractedFile, download_artifact
from cxbackup.export.errors import (
    ArtifactExistsError,
    ArtifactNotFoundError,
    ExportConfigError,
    ExportError,
    IntegrityError,
    PackagingError,
    SourceAuthError,
    SourceError,
    SourceNotFoundError,
    SourceUnavailableError,
    StoreError,
)
from cxbackup.export.names import artifact_name, parse_artifact_name, sanitize_name
from cxbackup.export.request import DEFAULT_PART_SIZE, ExportRequest, ExportType, TimeRange, parse_time
from cxbackup.export.result import ExportResult
from cxbackup.export.retention import clean_staging, sweep
from cxbackup.export.runner import ExportSink, NullSink, run_export
from cxbackup.export.source import ApiSource, RecordSource, SourcePage
from cxbackup.export.store import ArtifactInfo, ArtifactStore, DirectoryStore, S3ArtifactStore, open_store

__all__ = [
    "DEFAULT_PART_SIZE",
    "ApiSource",
    "ArtifactExistsError",
    "ArtifactInfo",
    "ArtifactNotFoundError",
    "ArtifactStore",
    "DirectoryStore",
    "DownloadResult",
    "ExportConfigError",
    "ExportError",
    "ExportRequest",
    "ExportResult",
    "ExportSink",
    "ExportType",
    "ExtractedFile",
    "IntegrityError",
    "NullSink",
    "PackagingError",
    "RecordSource",
    "S3ArtifactStore",
    "SourceAuthError",
    "SourceError",
    "SourceNotFoundError",
    "SourcePage",
    "SourceUnavailableError",
    "StoreError",
    "TimeRange",
    "artifact_name",
    "clean_staging",
    "download_artifact",
    "open_store",
    "parse_artifact_name",
    "parse_time",
    "run_export",
    "sanitize_name",
    "sweep",
]
