"""Every exception the RCBS engine raises, and the exit code each one maps to.

```
CxbackupError (cxbackup.core.errors)
└── RcbsError                         base of the backup engine's errors
    ├── ConfigError                   config.properties, environment or flags are wrong        exit 2
    │   ├── PropertiesSyntaxError     a malformed line (carries .line)                         exit 2
    │   └── StateFileError            last_recording_endtime*.txt cannot be read               exit 2
    ├── LockHeldError                 another instance holds this target + shard (names it)   exit 3, retryable
    ├── CredentialsError              credentials were rejected                                exit 4
    │   ├── VendorAuthError           GWS_USERNAME/GWS_PASSWORD rejected (HTTP 401/403)        exit 4
    │   └── MediaAuthError            the S3 keys were rejected / access denied                exit 4
    ├── VendorApiError                the recording API failed (after retries, or bad data)    exit 5, retryable
    │   ├── VendorResponseError       an answer that cannot be used: too large, unknown encoding  exit 5
    │   └── VendorListingError        the listing makes no sense: a lying total, stuck offsets  exit 5, retryable
    │       └── ListingLimitError     more recordings than a run may list (maxRecordingsPerRun)  exit 5
    ├── MediaSourceError              reading a media object failed                            exit 5, retryable
    │   ├── MediaMissingError         the object is not in the bucket                          exit 5
    │   └── MediaIntegrityError       body shorter/longer than Content-Length, checksum differs exit 5, retryable
    └── TargetError                   writing to the backup target failed                      exit 5, retryable
        └── UnsafePathError           a computed path would leave the target (a bug or hostile id)  exit 5
```

ConfigError is also a core ConfigurationError, CredentialsError a CredentialsRejectedError, and
VendorApiError, MediaSourceError and TargetError are UnavailableErrors (cxbackup.core.errors).

Per-recording failures (most MediaSourceError / TargetError) do not abort a run: they are counted,
listed with their reason, and make the run exit 1 without advancing the checkpoint. Errors that stop a
run before or while listing (config, lock, credentials, the recording API giving up) are raised.
"""

from __future__ import annotations

from cxbackup.core.errors import (
    EXIT_LOCKED,
    ConfigurationError,
    CredentialsRejectedError,
    CxbackupError,
    UnavailableError,
)

__all__ = [
    "ConfigError",
    "CredentialsError",
    "ListingLimitError",
    "LockHeldError",
    "MediaAuthError",
    "MediaIntegrityError",
    "MediaMissingError",
    "MediaSourceError",
    "PropertiesSyntaxError",
    "RcbsError",
    "StateFileError",
    "TargetError",
    "UnsafePathError",
    "VendorApiError",
    "VendorAuthError",
    "VendorListingError",
    "VendorResponseError",
]


class RcbsError(CxbackupError):
    """Base of every error the backup engine raises on purpose (never raised itself)."""


class ConfigError(ConfigurationError, RcbsError):
    """The configuration (config.properties, environment variables, flags) is wrong; fix it and rerun."""


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


class CredentialsError(CredentialsRejectedError, RcbsError):
    """Credentials were rejected; retrying with the same ones will not help."""


class VendorAuthError(CredentialsError):
    """The recording API answered 401/403 to GWS_USERNAME/GWS_PASSWORD."""


class MediaAuthError(CredentialsError):
    """S3 rejected AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or denied access to the media."""


class VendorApiError(UnavailableError, RcbsError):
    """The recording API failed after retries, or answered something that is not its documented format."""


class VendorResponseError(VendorApiError):
    """An answer of the recording API that asking again will not improve: larger than the size limit, or
    in an encoding this client does not read."""

    retryable = False


class VendorListingError(VendorApiError):
    """The recording API's pages stopped making sense (a `total` that lies, offsets that do not advance,
    the same page again, an empty page before the total); the window is not finished, so the run fails
    without advancing its checkpoint and the next run lists it again."""


class ListingLimitError(VendorListingError):
    """The window lists more recordings than a run may (`maxRecordingsPerRun`, by default
    MAX_RECORDINGS_PER_DAY per day of the window): the same window would list as many again, so it is not
    retried; the checkpoint stays, and the message names the limit and the setting that raises it."""

    retryable = False


class MediaSourceError(UnavailableError, RcbsError):
    """Reading a media object from the vendor's S3 storage failed."""


class MediaMissingError(MediaSourceError):
    """The media object named by the metadata is not in the bucket."""

    retryable = False


class MediaIntegrityError(MediaSourceError):
    """The body did not match its Content-Length or checksum (a truncated or corrupted transfer)."""


class TargetError(UnavailableError, RcbsError):
    """Writing to the backup target failed."""


class UnsafePathError(TargetError):
    """A path computed from vendor data would leave the target directory; never written."""

    retryable = False
