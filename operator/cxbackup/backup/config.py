"""RCBS configuration: config.properties <-> `RcbsConfig`, and the credentials from the environment.

Every RCBS property of its documented "Configuration properties" works (default in brackets):

    gwsUriPrefix            URL prefix of the recording web services (required)
    gwsRecordingsUri        path of the recording API [/recordings]
    gwsSettingsUri          path of the settings API [/me/settings/rcbs]
    targetDir               target folder; '/' separators; //server/path (UNC) is taken as a path
    minAge / maxAge         whole days or ISO 8601 durations [0 / 2] (see window.py)
    minDate / maxDate       YYYY-MM-DD (GMT) or 13-digit epoch ms (see window.py)
    mediaTypePattern        regexes for mediaFiles[].type [audio/mp3 video/mp4] (see selection.py)
    recordingFolderFormat   folder layout [yyyy/MM/dd/HH] (see layout.py)
    encryptionFormat        AES-128 or AES-256 [AES-128]; RCBS uses it only when the tool itself
                            encrypts. This tool never re-encrypts: media stay exactly as stored by the
                            vendor (CMS enveloped-data). The value is validated, logged at start and
                            written to the run summary (`encryptionFormat`), and has no other effect.
    metadataOnly            write metadata only; no S3 credentials needed [false]
    usePayloadSigning       botocore `payload_signing_enabled` for S3 requests [false]
    awsProxyHost/awsProxyPort   HTTP proxy for S3 (host name or IP, and port)
    gwsProxyHost/gwsProxyPort   HTTP proxy for the recording API (http://host, and port)
    totalRcbsInstances / rcbsInstanceId   sharding [1 / 0] (see sharding.py)
    skipLastRecordingCheck  ignore the stored last recording end time [false] (shown in RCBS's
                            verify-mode log; RCBS has it although the property table omits it)

Our own properties:

    awsEndpointUrl          S3 endpoint of the vendor storage for a non-AWS S3 (same as the
                            AWS_ENDPOINT_URL environment variable, which wins when both are set)
    awsRegion               region for the vendor S3 clients; default: each storage entry's awsRegion
    concurrency             parallel downloads per instance (objects in flight) [64]
    mediaTransfer           how media objects are fetched [auto]: native = the cxbackup-fetch program
                            (shipped in the image) downloads, checks, writes and renames a recording's
                            files in parallel, the least CPU (folder targets only); crt = the AWS Common
                            Runtime's native S3 client writes each object straight into its temporary
                            file (no proxy support); boto3 = streamed through Python; auto = native when
                            the target is a folder and the program is installed, else crt unless
                            awsProxyHost is set, else boto3 (an S3 target always streams with boto3)
    retries                 retries per request after the first attempt, with exponential backoff and
                            jitter, for the recording API and for each media download [6]
    pageSize                recordings per metadata page, 1..1000 [100]
    maxRecordingsPerRun     the most recordings one run may list (all shards list the whole window) [0:
                            MAX_RECORDINGS_PER_DAY, 1,000,000, per started day of the window]; a window the
                            vendor says holds more, or a listing that goes past it, fails the run naming
                            this property, without advancing the checkpoint (see window.py)
    partitions              comma-separated partitions to keep (see selection.py)
    accessGroups            comma-separated access groups to keep (see selection.py)
    agentHierarchy          comma-separated agent hierarchy paths to keep (see selection.py)
    targetS3Bucket          back up into this S3 bucket instead of targetDir (exactly one of the two)
    targetS3Prefix          key prefix in targetS3Bucket, e.g. recordings/ [empty]
    targetS3EndpointUrl     endpoint of the target S3 (default AWS)
    targetS3Region          region of the target bucket
                            (credentials: TARGET_AWS_ACCESS_KEY_ID / TARGET_AWS_SECRET_ACCESS_KEY /
                            TARGET_AWS_SESSION_TOKEN; without them boto3's default chain, e.g. IRSA)
    retentionPeriod         each recording's retention end, an ISO 8601 duration from its start time
                            (P7Y, P18M, P90D), which targetS3ObjectLock enforces [not set]
    targetS3ObjectLock      GOVERNANCE or COMPLIANCE: every recording object of targetS3Bucket is
                            written under S3 Object Lock in that mode, retained until its start time
                            plus retentionPeriod (needs both, and a bucket created with Object Lock)
    retentionSweep          off, dry-run or delete [off]: at the end of each run, the recordings of this
                            shard that started more than retentionPeriod ago are counted (dry-run) or
                            deleted from the target and the search index (delete), except those under
                            a legal hold; every deletion is recorded in the target's ledger
    legalHolds              comma-separated holds, each id:<recording id>, phone:<number> or
                            partition:<name>; written into the target's holds (.cxbackup-ledger/
                            holds.json) under legalHoldsSource at the start of each run, so every
                            sweep and erasure on the target respects them
    legalHoldsSource        the name this configuration's holds are kept under [config]
    windowStart/windowEnd   explicit window in epoch ms, [windowStart, windowEnd); both or neither;
                            override minAge/maxAge/minDate/maxDate and the stored end time (the operator
                            computes one window for all shards and passes it this way)
    summaryFile             write the run summary JSON here (same as --summary-file)

Unknown keys give a warning naming the key (with "did you mean" when one is close); RCBS keys this
tool recognises but does not implement give a warning saying so. An empty value means "not set".

Environment: GWS_USERNAME, GWS_PASSWORD (recording API), AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
optional AWS_SESSION_TOKEN and AWS_ENDPOINT_URL (vendor S3), TARGET_AWS_* (target S3).
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cxbackup.backup.errors import ConfigError
from cxbackup.backup.holds import Hold, parse_holds_property
from cxbackup.backup.layout import DEFAULT_FOLDER_FORMAT, FolderFormat
from cxbackup.backup.properties import escape_key, escape_value, parse_java_properties, unescape
from cxbackup.backup.selection import DEFAULT_MEDIA_TYPE_PATTERN, AccessFilter, MediaTypeSelector
from cxbackup.backup.sharding import ShardAssignment
from cxbackup.backup.window import check_ages, parse_age, parse_date_bound
from cxbackup.core.endpoints import PATH_PATTERN, VENDOR_HOSTS_ENV, EndpointError, parse_endpoint
from cxbackup.core.redact import basic_token
from cxbackup.core.times import Period, parse_period

__all__ = [
    "KNOWN_UNSUPPORTED",
    "PROPERTY_NAMES",
    "Credentials",
    "RcbsConfig",
    "load_properties",
    "parse_properties",
]

log = logging.getLogger(__name__)

# RCBS settings seen in its documented verify-mode log that this tool recognises but does not implement.
KNOWN_UNSUPPORTED: dict[str, str] = {
    "MetadataPropertiesExclude": "metadata files are written exactly as the API returned them",
    "MetadataPropertiesInclude": "metadata files are written exactly as the API returned them",
    "S3ConnectionTimeout": "use retries",
    "S3SocketTimeout": "use retries",
    "S3MaxErrorRetry": "use retries",
    "S3MaxConnection": "use concurrency",
}

_PATH = re.compile(PATH_PATTERN)
_MEDIA_TYPE_BACKSLASH = re.compile(r"(?<![\\\w])([a-z]+)\\(?=[a-z0-9])", re.IGNORECASE)


def _split_list(value: object) -> object:
    if isinstance(value, str):
        return tuple(p.strip() for p in value.split(",") if p.strip())
    if isinstance(value, list | tuple):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return value


class RcbsConfig(BaseModel):
    """A validated RCBS configuration. Construct it with Python field names or property names:

    `RcbsConfig(gws_uri_prefix="https://x/api/v2", target_dir="/backup", max_age="P30D")` or
    `RcbsConfig.model_validate({"gwsUriPrefix": ..., "targetDir": ...})`. Validation errors are
    ConfigError naming the property (`parse_properties` / `from_values` convert them).
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid", str_strip_whitespace=True)

    gws_uri_prefix: str = Field(alias="gwsUriPrefix")
    gws_recordings_uri: str = Field(default="/recordings", alias="gwsRecordingsUri")
    gws_settings_uri: str = Field(default="/me/settings/rcbs", alias="gwsSettingsUri")
    target_dir: str | None = Field(default=None, alias="targetDir")
    min_age: str = Field(default="0", alias="minAge")
    max_age: str = Field(default="2", alias="maxAge")
    min_date: str | None = Field(default=None, alias="minDate")
    max_date: str | None = Field(default=None, alias="maxDate")
    media_type_pattern: str = Field(default=DEFAULT_MEDIA_TYPE_PATTERN, alias="mediaTypePattern")
    recording_folder_format: str = Field(default=DEFAULT_FOLDER_FORMAT, alias="recordingFolderFormat")
    encryption_format: Literal["AES-128", "AES-256"] = Field(default="AES-128", alias="encryptionFormat")
    metadata_only: bool = Field(default=False, alias="metadataOnly")
    use_payload_signing: bool = Field(default=False, alias="usePayloadSigning")
    aws_proxy_host: str | None = Field(default=None, alias="awsProxyHost")
    aws_proxy_port: int | None = Field(default=None, ge=1, le=65535, alias="awsProxyPort")
    gws_proxy_host: str | None = Field(default=None, alias="gwsProxyHost")
    gws_proxy_port: int | None = Field(default=None, ge=1, le=65535, alias="gwsProxyPort")
    total_rcbs_instances: int = Field(default=1, ge=1, le=4096, alias="totalRcbsInstances")
    rcbs_instance_id: int = Field(default=0, ge=0, alias="rcbsInstanceId")
    skip_last_recording_check: bool = Field(default=False, alias="skipLastRecordingCheck")
    # ours
    aws_endpoint_url: str | None = Field(default=None, alias="awsEndpointUrl")
    aws_region: str | None = Field(default=None, alias="awsRegion")
    concurrency: int = Field(default=64, ge=1, le=256, alias="concurrency")
    media_transfer: Literal["auto", "native", "crt", "boto3"] = Field(default="auto", alias="mediaTransfer")
    retries: int = Field(default=6, ge=0, le=20, alias="retries")
    page_size: int = Field(default=100, ge=1, le=1000, alias="pageSize")
    max_recordings_per_run: int = Field(default=0, ge=0, le=10**12, alias="maxRecordingsPerRun")
    partitions: tuple[str, ...] = Field(default=(), alias="partitions")
    access_groups: tuple[str, ...] = Field(default=(), alias="accessGroups")
    agent_hierarchy: tuple[str, ...] = Field(default=(), alias="agentHierarchy")
    target_s3_bucket: str | None = Field(default=None, alias="targetS3Bucket")
    target_s3_prefix: str = Field(default="", alias="targetS3Prefix")
    target_s3_endpoint_url: str | None = Field(default=None, alias="targetS3EndpointUrl")
    target_s3_region: str | None = Field(default=None, alias="targetS3Region")
    retention_period: str | None = Field(default=None, alias="retentionPeriod")
    target_s3_object_lock: Literal["GOVERNANCE", "COMPLIANCE"] | None = Field(default=None, alias="targetS3ObjectLock")
    retention_sweep: Literal["off", "dry-run", "delete"] = Field(default="off", alias="retentionSweep")
    legal_holds_text: str | None = Field(default=None, alias="legalHolds")
    legal_holds_source: str = Field(default="config", min_length=1, max_length=253, alias="legalHoldsSource")
    window_start: int | None = Field(default=None, ge=0, alias="windowStart")
    window_end: int | None = Field(default=None, ge=0, alias="windowEnd")
    summary_file: str | None = Field(default=None, alias="summaryFile")

    # -- field validators -------------------------------------------------------------------------

    @field_validator("min_age", "max_age", mode="before")
    @classmethod
    def _age_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("min_date", "max_date", mode="before")
    @classmethod
    def _date_text(cls, value: object) -> object:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("retention_sweep", mode="before")
    @classmethod
    def _sweep_mode(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("target_s3_object_lock", mode="before")
    @classmethod
    def _lock_mode(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("partitions", "access_groups", "agent_hierarchy", mode="before")
    @classmethod
    def _list(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("encryption_format", mode="before")
    @classmethod
    def _cipher(cls, value: object) -> object:
        if isinstance(value, str):
            m = re.fullmatch(r"\s*AES-?(128|256)\s*", value, re.IGNORECASE)
            if m:
                return f"AES-{m[1]}"
        return value

    @field_validator("min_age", "max_age")
    @classmethod
    def _age(cls, value: str, info: Any) -> str:
        parse_age(value, _alias(info.field_name))
        return value

    @field_validator("min_date", "max_date")
    @classmethod
    def _date(cls, value: str | None, info: Any) -> str | None:
        if value is not None:
            parse_date_bound(value, _alias(info.field_name))
        return value

    @field_validator("gws_uri_prefix", "aws_endpoint_url", "target_s3_endpoint_url")
    @classmethod
    def _url(cls, value: str | None, info: Any) -> str | None:
        if value is not None:
            try:  # the syntax the operator checks, and the parse the HTTP client connects with
                parse_endpoint(value)
            except EndpointError as exc:
                shown = "" if "@" in value else f"{value!r} "  # user info is never repeated
                raise ValueError(f"{shown}is not an http(s):// URL cxbackup connects to: it {exc}") from None
        return value

    @field_validator("gws_recordings_uri", "gws_settings_uri")
    @classmethod
    def _uri_path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must start with '/'")
        if not _PATH.fullmatch(value):
            raise ValueError("must be a path of letters, digits and ._~!$&()*+,;=:/- (no '@', '?', '#', '%' or '\\')")
        return value

    @field_validator("target_dir")
    @classmethod
    def _target_dir(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if any(ord(c) < 0x20 for c in value):
            raise ValueError(
                "contains a control character: in config.properties a backslash starts an escape "
                "(\\t is a TAB); use '/' as the separator"
            )
        if "\\" in value:
            raise ValueError("use '/' as the directory separator, not '\\' (also on Windows)")
        if ".." in value.split("/"):
            raise ValueError("must not contain a '..' segment: name the folder itself")
        return value

    @field_validator("media_type_pattern")
    @classmethod
    def _media(cls, value: str) -> str:
        MediaTypeSelector.parse(value)
        return value

    @field_validator("recording_folder_format")
    @classmethod
    def _folders(cls, value: str) -> str:
        FolderFormat.parse(value)
        return value

    @field_validator("partitions", "access_groups", "agent_hierarchy")
    @classmethod
    def _no_commas(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if any("," in v for v in value):
            raise ValueError("entries cannot contain ','")
        return value

    # -- cross-field checks -----------------------------------------------------------------------

    @model_validator(mode="after")
    def _cross_checks(self) -> RcbsConfig:
        if self.rcbs_instance_id >= self.total_rcbs_instances:
            raise ConfigError(
                f"rcbsInstanceId={self.rcbs_instance_id} must be in 0..{self.total_rcbs_instances - 1} "
                f"(totalRcbsInstances={self.total_rcbs_instances})"
            )
        if self.target_dir and self.target_s3_bucket:
            raise ConfigError("set either targetDir or targetS3Bucket, not both")
        if self.retention_period is not None:
            try:
                parse_period(self.retention_period)
            except ValueError as exc:
                raise ConfigError(f"retentionPeriod: {exc}") from None
        if self.retention_sweep != "off" and not self.retention_period:
            raise ConfigError(
                f"retentionSweep={self.retention_sweep} needs retentionPeriod: recordings expire that long after "
                "their start time"
            )
        parse_holds_property(self.legal_holds_text)
        if self.target_s3_object_lock and not (self.target_s3_bucket and self.retention_period):
            raise ConfigError(
                "targetS3ObjectLock needs targetS3Bucket and retentionPeriod: objects are retained until each "
                "recording's start time plus retentionPeriod"
            )
        for host, port, name in (
            (self.aws_proxy_host, self.aws_proxy_port, "awsProxy"),
            (self.gws_proxy_host, self.gws_proxy_port, "gwsProxy"),
        ):
            if host and port is None:
                raise ConfigError(f"{name}Host is set but {name}Port is not; set both")
            if port is not None and not host:
                raise ConfigError(f"{name}Port is set but {name}Host is not; set both")
        if self.media_transfer == "crt" and self.aws_proxy_host:
            raise ConfigError(
                "mediaTransfer=crt cannot go through awsProxyHost (the CRT S3 client has no proxy support); "
                "use mediaTransfer=auto or boto3"
            )
        if (self.window_start is None) != (self.window_end is None):
            raise ConfigError("set both windowStart and windowEnd, or neither")
        if self.window_start is not None and self.window_end is not None and self.window_start > self.window_end:
            raise ConfigError(f"windowStart ({self.window_start}) must not be after windowEnd ({self.window_end})")
        if not self.min_date and not self.max_date and self.window_start is None:
            check_ages(parse_age(self.min_age, "minAge"), parse_age(self.max_age, "maxAge"), datetime.now(UTC))
        return self

    # -- derived values ---------------------------------------------------------------------------

    @property
    def retention(self) -> Period | None:
        """How long backed-up recordings are kept (from each one's start), when set."""
        return parse_period(self.retention_period) if self.retention_period else None

    @property
    def legal_holds(self) -> tuple[Hold, ...]:
        return parse_holds_property(self.legal_holds_text)

    @property
    def shard(self) -> ShardAssignment:
        return ShardAssignment(self.rcbs_instance_id, self.total_rcbs_instances)

    @property
    def media_selector(self) -> MediaTypeSelector:
        return MediaTypeSelector.parse(self.media_type_pattern)

    @property
    def folder_format(self) -> FolderFormat:
        return FolderFormat.parse(self.recording_folder_format)

    @property
    def access_filter(self) -> AccessFilter:
        return AccessFilter(self.partitions, self.access_groups, self.agent_hierarchy)

    @property
    def recordings_url(self) -> str:
        return self.gws_uri_prefix.rstrip("/") + self.gws_recordings_uri

    @property
    def settings_url(self) -> str:
        return self.gws_uri_prefix.rstrip("/") + self.gws_settings_uri

    @property
    def gws_proxy_url(self) -> str | None:
        if not self.gws_proxy_host:
            return None
        host = self.gws_proxy_host if "://" in self.gws_proxy_host else f"http://{self.gws_proxy_host}"
        return f"{host.rstrip('/')}:{self.gws_proxy_port}"

    @property
    def aws_proxy_url(self) -> str | None:
        if not self.aws_proxy_host:
            return None
        host = self.aws_proxy_host if "://" in self.aws_proxy_host else f"http://{self.aws_proxy_host}"
        return f"{host.rstrip('/')}:{self.aws_proxy_port}"

    # -- construction and rendering ---------------------------------------------------------------

    @classmethod
    def from_values(cls, values: Mapping[str, object], source_name: str = "config") -> RcbsConfig:
        """Validate property-name (or field-name) values; raises ConfigError naming the property."""
        try:
            return cls.model_validate(dict(values))
        except ValidationError as exc:
            raise _config_error(exc, source_name) from None

    def to_properties(self, header: str | None = None) -> str:
        """config.properties text that `parse_properties` reads back into an equal RcbsConfig."""
        lines = [f"# {line}" for line in (header or "RCBS configuration written by cxbackup").splitlines()]
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, tuple):
                if not value:
                    continue
                text = ",".join(value)
            elif isinstance(value, bool):
                text = "true" if value else "false"
            else:
                text = str(value)
            if text == "":
                continue
            lines.append(f"{escape_key(info.alias or name)}={escape_value(text)}")
        return "\n".join(lines) + "\n"


PROPERTY_NAMES: tuple[str, ...] = tuple(info.alias or name for name, info in RcbsConfig.model_fields.items())
_FIELD_BY_ALIAS = {info.alias or name: name for name, info in RcbsConfig.model_fields.items()}
_ALIAS_BY_FIELD = {name: info.alias or name for name, info in RcbsConfig.model_fields.items()}


def _alias(field_name: str | None) -> str:
    return _ALIAS_BY_FIELD.get(field_name or "", field_name or "?")


def _config_error(exc: ValidationError, source_name: str) -> ConfigError:
    problems = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "config"
        loc = _ALIAS_BY_FIELD.get(loc, loc)
        msg = str(err["msg"]).removeprefix("Value error, ")
        ctx_error = err.get("ctx", {}).get("error")
        if isinstance(ctx_error, ConfigError):
            msg = str(ctx_error)
            problems.append(f"{source_name}: {msg}")
            continue
        if err["type"] == "missing":
            msg = "is required"
        elif err["type"] == "extra_forbidden":
            msg = "is not a known property"
        problems.append(f"{source_name}: {loc}: {msg}")
    return ConfigError("; ".join(problems))


def _suggest(key: str) -> str:
    lower = {k.lower(): k for k in (*PROPERTY_NAMES, *KNOWN_UNSUPPORTED)}
    if key.lower() in lower:
        return f" (did you mean '{lower[key.lower()]}'? property names are case-sensitive)"
    close = difflib.get_close_matches(key, PROPERTY_NAMES, n=1, cutoff=0.75)
    if not close:
        by_lower = difflib.get_close_matches(key.lower(), list(lower), n=1, cutoff=0.75)
        close = [lower[by_lower[0]]] if by_lower else []
    return f" (did you mean '{close[0]}'?)" if close else ""


def _with_line(message: str, lines: Mapping[str, int]) -> ConfigError:
    """Append the line of the first property the message names."""
    found = [(m.start(), key) for key in lines if (m := re.search(rf"\b{re.escape(key)}\b", message))]
    if found:
        key = min(found)[1]
        return ConfigError(f"{message} (line {lines[key]})")
    return ConfigError(message)


def load_properties(text: str, source_name: str) -> tuple[RcbsConfig, list[str]]:
    """Parse config.properties text; returns the config and the warnings (unknown keys, odd escapes).

    Raises PropertiesSyntaxError for malformed lines and ConfigError for invalid values, both naming
    the property (and the line for syntax errors).
    """
    entries, warnings = parse_java_properties(text, source_name)
    values: dict[str, object] = {}
    lines: dict[str, int] = {}
    for entry in entries:
        if entry.key in _FIELD_BY_ALIAS:
            value = entry.value
            if entry.key == "mediaTypePattern" and _MEDIA_TYPE_BACKSLASH.search(entry.raw_value):
                value = unescape(_MEDIA_TYPE_BACKSLASH.sub(r"\1/", entry.raw_value))
                warnings = [w for w in warnings if not w.startswith(f"{source_name}:{entry.line}: ")]
                warnings.append(
                    f"{source_name}:{entry.line}: mediaTypePattern '{entry.raw_value}' read as '{value}' "
                    "(RCBS's documentation writes MIME types with '\\'; use '/')"
                )
            if value == "":
                values.pop(entry.key, None)
            else:
                values[entry.key] = value
            lines[entry.key] = entry.line
        elif entry.key in KNOWN_UNSUPPORTED:
            warnings.append(
                f"{source_name}:{entry.line}: {entry.key} is an RCBS setting this tool does not implement "
                f"({KNOWN_UNSUPPORTED[entry.key]}); ignored"
            )
        else:
            warnings.append(f"{source_name}:{entry.line}: unknown property {entry.key!r} ignored{_suggest(entry.key)}")
    try:
        config = RcbsConfig.model_validate(values)
    except ValidationError as exc:
        raise _with_line(str(_config_error(exc, source_name)), lines) from None
    except ConfigError as exc:
        raise _with_line(f"{source_name}: {exc}", lines) from None
    return config, warnings


def parse_properties(text: str, source_name: str) -> RcbsConfig:
    """Parse config.properties text into an RcbsConfig; warnings are logged (logger cxbackup.backup)."""
    config, warnings = load_properties(text, source_name)
    for warning in warnings:
        log.warning("%s", warning)
    return config


@dataclass(frozen=True)
class Credentials:
    """Secrets from the environment. repr() never shows the secret parts."""

    gws_username: str | None = None
    gws_password: str | None = field(default=None, repr=False)
    aws_access_key_id: str | None = None
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)
    aws_endpoint_url: str | None = None
    target_access_key_id: str | None = None
    target_secret_access_key: str | None = field(default=None, repr=False)
    target_session_token: str | None = field(default=None, repr=False)
    vendor_hosts: str | None = None
    """Not a secret: CXBACKUP_VENDOR_HOSTS as the operator set it (the installer's vendor hosts), None when unset
    (a run by hand: no allowlist applies). Checked by connections.py before a vendor credential is sent."""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Credentials:
        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        return cls(
            gws_username=get("GWS_USERNAME"),
            gws_password=env.get("GWS_PASSWORD") or None,
            aws_access_key_id=get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY") or None,
            aws_session_token=env.get("AWS_SESSION_TOKEN") or None,
            aws_endpoint_url=get("AWS_ENDPOINT_URL"),
            target_access_key_id=get("TARGET_AWS_ACCESS_KEY_ID"),
            target_secret_access_key=env.get("TARGET_AWS_SECRET_ACCESS_KEY") or None,
            target_session_token=env.get("TARGET_AWS_SESSION_TOKEN") or None,
            vendor_hosts=env.get(VENDOR_HOSTS_ENV),
        )

    def secrets(self) -> list[str]:
        """Every secret value, and the HTTP Basic token of the GWS credentials, for a Redactor."""
        values = [
            self.gws_password,
            self.aws_secret_access_key,
            self.aws_session_token,
            self.target_secret_access_key,
            self.target_session_token,
        ]
        if self.gws_username and self.gws_password:
            values.append(basic_token(self.gws_username, self.gws_password))
        return [v for v in values if v]

    def require_gws(self) -> tuple[str, str]:
        if not self.gws_username or not self.gws_password:
            missing = [
                n for n, v in (("GWS_USERNAME", self.gws_username), ("GWS_PASSWORD", self.gws_password)) if not v
            ]
            raise ConfigError(f"environment variable {' and '.join(missing)} not set")
        return self.gws_username, self.gws_password

    def require_aws(self) -> None:
        missing = [
            n
            for n, v in (
                ("AWS_ACCESS_KEY_ID", self.aws_access_key_id),
                ("AWS_SECRET_ACCESS_KEY", self.aws_secret_access_key),
            )
            if not v
        ]
        if missing:
            raise ConfigError(
                f"environment variable {' and '.join(missing)} not set (needed for S3 unless metadataOnly=true)"
            )
