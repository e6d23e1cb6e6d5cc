"""Every error the export engine raises, and whether retrying can help.

```
ExportError                     base class; .temporary (a later retry may succeed) and .exit_code
├── ExportConfigError           the request is invalid (users for gdprChat, range, name, certificate)   2
├── SourceError                 the vendor's data API answered something unusable                       1
│   ├── SourceAuthError         GWS_USERNAME/GWS_PASSWORD rejected (401/403)                            4
│   ├── SourceNotFoundError     the API does not know the subject (404, e.g. an unknown chat user)      1
│   └── SourceUnavailableError  retries exhausted on 429/5xx/connection errors (temporary)              5
├── StoreError                  the artifact store failed (I/O, S3 error) (temporary)                   5
│   ├── ArtifactNotFoundError   no artifact of ours by that name                                        1
│   └── ArtifactExistsError     an artifact by that name exists already; nothing is overwritten         1
├── PackagingError              zip or CMS packaging failed (e.g. the certificate cannot be used)       1
└── IntegrityError              a download does not verify: sha256, manifest, unsafe zip member, or
                                the key does not decrypt it                                             1
```

Messages never contain passwords, secret keys or signed URLs: clients clean them with
cxbackup.core.redact before raising.
"""

from __future__ import annotations

__all__ = [
    "ArtifactExistsError",
    "ArtifactNotFoundError",
    "ExportConfigError",
    "ExportError",
    "IntegrityError",
    "PackagingError",
    "SourceAuthError",
    "SourceError",
    "SourceNotFoundError",
    "SourceUnavailableError",
    "StoreError",
    "exit_code_for",
]


class ExportError(Exception):
    """Base class: `temporary` says whether retrying the same run later may succeed."""

    temporary: bool = False
    exit_code: int = 1


class ExportConfigError(ExportError):
    """The request is invalid; fix the ExportJob or the command line."""

    exit_code = 2


class SourceError(ExportError):
    """The vendor's data API answered something we cannot use."""


class SourceAuthError(SourceError):
    """The vendor API rejected the credentials."""

    exit_code = 4


class SourceNotFoundError(SourceError):
    """The vendor API does not know what was asked for (e.g. a chat user id)."""


class SourceUnavailableError(SourceError):
    """The vendor API kept failing (throttling, 5xx, connection errors) until the retries ran out."""

    temporary = True
    exit_code = 5


class StoreError(ExportError):
    """The artifact store (directory or S3 bucket) failed."""

    temporary = True
    exit_code = 5


class ArtifactNotFoundError(StoreError):
    """No artifact of ours by that name in the store."""

    temporary = False
    exit_code = 1


class ArtifactExistsError(StoreError):
    """An artifact by that name exists already; the store never overwrites one."""

    temporary = False
    exit_code = 1


class PackagingError(ExportError):
    """Zip or CMS packaging failed."""


class IntegrityError(ExportError):
    """A downloaded artifact does not verify (checksum, manifest, zip member names, decryption)."""


def exit_code_for(reason: str) -> int:
    """The exit code for an error class name (an ExportResult's `reason`); 1 when unknown."""
    cls = globals().get(reason)
    if isinstance(cls, type) and issubclass(cls, ExportError):
        return cls.exit_code
    return 1
