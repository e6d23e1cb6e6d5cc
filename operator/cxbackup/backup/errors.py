"""Every exception the RCBS engine raises, and the exit code each one maps to.

```
RcbsError                         base; .exit_code, .retryable
├── ConfigError                   config.properties, environment or flags are wrong        exit 2
│   ├── PropertiesSyntaxError     a malformed line (carries .line)                         exit 2
│   └── StateFileError            last_recording_endtime*.txt cannot be read               exit 2
├── LockHeldError                 another instance holds this target + shard (names it)   exit 3
├── CredentialsError              credentials were rejected                                exit 4
│   ├── VendorAuthError           GWS_USERNAME/GWS_PASSWORD rejected (HTTP 401/403)        exit 4
│   └── SourceAuthError           the S3 keys were rejected / access denied                exit 4
├── VendorApiError                the recording API failed (after retries, or bad data)    exit 5
├── SourceError                   reading a media object failed                            exit 5
│   ├── MediaMissingError         the object is not in the bucket (permanent)
│   └── MediaIntegrityError       body shorter/longer than Content-Length, checksum differs (retryable)
└── TargetError                   writing to the backup target failed                      exit 5
    └── UnsafePathError           a computed path would leave the target (a bug or hostile id)
```

Per-recording failures (most SourceError / TargetError) do not abort a run: they are counted, listed
with their reason, and make the run exit 1 without advancing the checkpoint. Errors that stop a run
before or while listing (config, lock, credentials, the recording API giving up) are raised.

`retryable` says whether trying the same operation again later may succeed (Temporary vs Permanent in the
operator's terms). Messages never contain secrets: build them from `redact()`-ed URLs.
"""

from __future__ import annotations

__all__ = [
    "EXIT_CONFIG",
    "EXIT_CREDENTIALS",
    "EXIT_FAILURES",
    "EXIT_LOCKED",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "ConfigError",
    "CredentialsError",
    "LockHeldError",
    "MediaIntegrityError",
    "MediaMissingError",
    "PropertiesSyntaxError",
    "RcbsError",
    "SourceAuthError",
    "SourceError",
    "StateFileError",
    "TargetError",
    "UnsafePathError",
    "VendorApiError",
    "VendorAuthError",
]

EXIT_OK = 0
EXIT_FAILURES = 1
EXIT_CONFIG = 2
EXIT_LOCKED = 3
EXIT_CREDENTIALS = 4
EXIT_UNAVAILABLE = 5


class RcbsError(Exception):
    """Base of every error the backup engine raises on purpose."""

    exit_code: int = EXIT_UNAVAILABLE
    retryable: bool = False


class ConfigError(RcbsError):
    """The configuration (config.properties, environment variables, flags) is wrong; fix it and rerun."""

    exit_code = EXIT_CONFIG


class PropertiesSyntaxError(ConfigError):
    """A line of a properties file cannot be parsed; `line` is 1-based."""

    def __init__(self, source_name: str, line: int, message: str) -> None:
        super().__init__(f"{source_name}:{line}: {message}")
        self.source_name = source_name
        self.line = line


class StateFileError(ConfigError):
    """The stored last recording end time cannot be parsed."""


class LockHeldError(RcbsError):
    """Another instance with the same target and shard is running."""

    exit_code = EXIT_LOCKED
    retryable = True


class CredentialsError(RcbsError):
    """Credentials were rejected; retrying with the same ones will not help."""

    exit_code = EXIT_CREDENTIALS


class VendorAuthError(CredentialsError):
    """The recording API answered 401/403 to GWS_USERNAME/GWS_PASSWORD."""


class SourceAuthError(CredentialsError):
    """S3 rejected AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or denied access."""


class VendorApiError(RcbsError):
    """The recording API failed after retries, or answered something that is not its documented format."""

    retryable = True


class SourceError(RcbsError):
    """Reading a media object from the vendor's S3 storage failed."""

    retryable = True


class MediaMissingError(SourceError):
    """The media object named by the metadata is not in the bucket."""

    retryable = False


class MediaIntegrityError(SourceError):
    """The body did not match its Content-Length or checksum (a truncated or corrupted transfer)."""


class TargetError(RcbsError):
    """Writing to the backup target failed."""

    retryable = True


class UnsafePathError(TargetError):
    """A path computed from vendor data would leave the target directory; never written."""

    retryable = False
