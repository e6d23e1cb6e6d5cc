"""The one error hierarchy of cxbackup, and the exit codes of its commands.

Every error an engine raises on purpose is a `CxbackupError`: `retryable` says whether trying the same
operation again later may succeed (Temporary vs Permanent in the operator's terms), `exit_code` is what
a command exits with when the error stops it. Both are class attributes; a subclass overrides them.

```
CxbackupError                       base: exit 1, not retryable
├── ConfigurationError              settings, a request or arguments are wrong; fix them    exit 2
├── CredentialsRejectedError        credentials were rejected; the same ones will not help  exit 4
├── UnavailableError                a service or storage failed (retries ran out)           exit 5, retryable
├── cxbackup.backup.errors.RcbsError      the backup engine's errors
└── cxbackup.export.errors.ExportError    the export engine's errors
```

An engine's classes derive from their engine's base and, where the meaning is one of the shared ones,
from that shared class too (listed first, so its exit code and retryable apply):
`class ConfigError(ConfigurationError, RcbsError)`. Catch the engine base to handle one engine's
errors, a shared class to handle one kind of failure whichever engine raised it.

Messages never contain secrets: build them from `cxbackup.core.redact`-ed URLs.
"""

from __future__ import annotations

__all__ = [
    "EXIT_CONFIG",
    "EXIT_CREDENTIALS",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_LOCKED",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "ConfigurationError",
    "CredentialsRejectedError",
    "CxbackupError",
    "UnavailableError",
]

EXIT_OK = 0
EXIT_FAILED = 1
"""Something failed and the run says what: recordings failed, an export failed, a download did not verify."""
EXIT_CONFIG = 2
EXIT_LOCKED = 3
EXIT_CREDENTIALS = 4
EXIT_UNAVAILABLE = 5
EXIT_INTERRUPTED = 130


class CxbackupError(Exception):
    """Base of every error cxbackup raises on purpose."""

    exit_code: int = EXIT_FAILED
    retryable: bool = False


class ConfigurationError(CxbackupError):
    """The configuration, the request or the command line is wrong; fix it and rerun."""

    exit_code = EXIT_CONFIG


class CredentialsRejectedError(CxbackupError):
    """A service rejected the credentials; retrying with the same ones will not help."""

    exit_code = EXIT_CREDENTIALS


class UnavailableError(CxbackupError):
    """A service or storage failed, or kept failing until the retries ran out; a later run may succeed."""

    exit_code = EXIT_UNAVAILABLE
    retryable = True
