"""Every error the export engine raises, whether retrying can help, and its exit code.

```
CxbackupError (cxbackup.core.errors)
└── ExportError                     base of the export engine's errors                                  1
    ├── ExportConfigError           the request is invalid (users for gdprChat, range, name, certificate)   2
    ├── SourceError                 the vendor's data API answered something unusable                       1
    │   ├── SourceAuthError         GWS_USERNAME/GWS_PASSWORD rejected (401/403)                            4
    │   ├── SourceNotFoundError     the API does not know the subject (404, e.g. an unknown chat user)      1
    │   └── SourceUnavailableError  retries exhausted on 429/5xx/connection errors (retryable)              5
    ├── StoreError                  the artifact store failed (I/O, S3 error) (retryable)                   5
    │   ├── ArtifactNotFoundError   no artifact of ours by that name                                        1
    │   └── ArtifactExistsError     an artifact by that name exists already; nothing is overwritten         1
    ├── BackupUnavailableError      the backup target or its search index cannot be read (retryable)        5
    ├── BackupContentError          the backup does not hold what its index says: a file missing, of
    │                               another size, or a media file that does not decrypt (subjectAccess)    1
    ├── PackagingError              zip or CMS packaging failed (e.g. the certificate cannot be used)       1
    └── IntegrityError              a download does not verify: sha256, manifest, unsafe zip member, or
                                    the key does not decrypt it                                             1
```

ExportConfigError is also a core ConfigurationError, SourceAuthError a CredentialsRejectedError, and
SourceUnavailableError, StoreError and BackupUnavailableError are UnavailableErrors (cxbackup.core.errors).
An ExportResult's `reason` is the class name of the error that failed the run.

Messages never contain passwords, secret keys or signed URLs: clients clean them with
cxbackup.core.redact before raising.
"""

from __future__ import annotations

from cxbackup.core.errors import (
    EXIT_FAILED,
    ConfigurationError,
    CredentialsRejectedError,
    CxbackupError,
    UnavailableError,
)

__all__ = [
    "ArtifactExistsError",
    "ArtifactNotFoundError",
    "BackupContentError",
    "BackupUnavailableError",
    "ExportConfigError",
    "ExportError",
    "IntegrityError",
    "PackagingError",
    "SourceAuthError",
    "SourceError",
    "SourceNotFoundError",
    "SourceUnavailableError",
    "StoreError",
]


class ExportError(CxbackupError):
    """Base class of the export engine's errors."""


class ExportConfigError(ConfigurationError, ExportError):
    """The request is invalid; fix the ExportJob or the command line."""


class SourceError(ExportError):
    """The vendor's data API answered something we cannot use."""


class SourceAuthError(CredentialsRejectedError, SourceError):
    """The vendor API rejected the credentials."""


class SourceNotFoundError(SourceError):
    """The vendor API does not know what was asked for (e.g. a chat user id)."""


class SourceUnavailableError(UnavailableError, SourceError):
    """The vendor API kept failing (throttling, 5xx, connection errors) until the retries ran out."""


class StoreError(UnavailableError, ExportError):
    """The artifact store (directory or S3 bucket) failed."""


class ArtifactNotFoundError(StoreError):
    """No artifact of ours by that name in the store."""

    retryable = False
    exit_code = EXIT_FAILED


class ArtifactExistsError(StoreError):
    """An artifact by that name exists already; the store never overwrites one."""

    retryable = False
    exit_code = EXIT_FAILED


class BackupUnavailableError(UnavailableError, ExportError):
    """The backup target a subjectAccess export reads (folder, bucket, search index) cannot be read."""


class BackupContentError(ExportError):
    """A recording in the backup is not what its index says (missing file, other size, does not decrypt):
    exporting it anyway would hand the subject an incomplete or wrong copy."""


class PackagingError(ExportError):
    """Zip or CMS packaging failed."""


class IntegrityError(ExportError):
    """A downloaded artifact does not verify (checksum, manifest, zip member names, decryption)."""
