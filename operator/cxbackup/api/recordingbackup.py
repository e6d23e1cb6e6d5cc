"""RecordingBackup (short name rb): back up call recordings from the vendor cloud to a PVC or S3 bucket."""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import Field

from cxbackup.api.common import (
    ENDPOINT_URL,
    ENDPOINT_URL_MAX_LENGTH,
    ISO_DURATION_PATTERN,
    SUB_PATH_PATTERN,
    SUB_PATH_RULES,
    URI_PATH,
    CamelModel,
    Condition,
    PodSettings,
    ProxySettings,
    S3CredentialsRef,
)
from cxbackup.api.status import BACKUP_CONDITIONS, BACKUP_PHASES, one_of

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_REPLICAS",
    "NAME_TOO_LONG",
    "AuditSpec",
    "AuditStatus",
    "BackupCounts",
    "BackupFilters",
    "BackupMedia",
    "BackupSource",
    "BackupTarget",
    "BackupWindow",
    "CurrentRun",
    "GwsCredentialsRef",
    "IndexStatus",
    "LegalHold",
    "PvcTarget",
    "RecordingBackup",
    "RecordingBackupSpec",
    "RecordingBackupStatus",
    "RetentionSpec",
    "RetentionStatus",
    "RunRecord",
    "S3Target",
    "ShardProgress",
    "SweepCounts",
]

MAX_REPLICAS = 64
MAX_NAME_LENGTH = 35
"""The longest RecordingBackup name: its worker pods are named `<name>-<run id YYYYMMDD-HHMMSS>-<shard>-<5>` and
`<name>-audit-<run id>-<5>`, at most 63 characters, and carry the name whole only up to this length; a worker
pod may write only the status of the RecordingBackup its pod is named after (the chart's admission policy)."""
NAME_TOO_LONG = (
    f"metadata.name has at most {MAX_NAME_LENGTH} characters: the names of a RecordingBackup's worker pods carry "
    "it whole, and a worker may report only to the backup its pod is named after"
)

# int (whole days) or an ISO 8601 duration: RCBS's two forms for minAge/maxAge.
_AGE_RULE: dict[str, Any] = {
    "rule": "type(self) == int ? int(self) >= 0 : (string(self).matches('" + ISO_DURATION_PATTERN + "') "
    "&& string(self) != 'P' && !string(self).endsWith('T'))",
    "message": "must be a whole number of days >= 0 (e.g. 2) or an ISO 8601 duration (e.g. PT30M, P30D, P6MT12H)",
}
# YYYY-MM-DD (GMT) or 13-digit epoch milliseconds.
_DATE_PATTERN = r"^([0-9]{4}-[0-9]{2}-[0-9]{2}|[0-9]{13})$"


class GwsCredentialsRef(CamelModel):
    """A Secret holding the vendor (GWS) user name and password under the fixed keys GWS_USERNAME and
    GWS_PASSWORD, labelled cxbackup.io/credentials=true."""

    name: str = Field(
        min_length=1,
        max_length=253,
        description="Name of the Secret (same namespace), labelled cxbackup.io/credentials=true, with the keys "
        "GWS_USERNAME and GWS_PASSWORD.",
    )

    @property
    def username_key(self) -> str:
        return "GWS_USERNAME"

    @property
    def password_key(self) -> str:
        return "GWS_PASSWORD"


class BackupSource(CamelModel):
    """Where recordings come from: the vendor's recording API and its S3 storage."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.mediaTransfer) || self.mediaTransfer != 'crt' || !has(self.awsProxy)",
                    "message": "mediaTransfer crt cannot use awsProxy (the CRT S3 client has no proxy support); "
                    "use auto or boto3",
                    "fieldPath": ".mediaTransfer",
                }
            ]
        }
    }

    gws_uri_prefix: str = Field(
        max_length=ENDPOINT_URL_MAX_LENGTH,
        description="URL prefix of the recording web services (RCBS gwsUriPrefix), e.g. https://example.com/api/v2: "
        "https://host[:port][/path], no user info, query, fragment or percent-encoding. Its host must be one of "
        "the installer's vendor hosts (chart value security.vendorHosts).",
        json_schema_extra=ENDPOINT_URL,
    )
    gws_recordings_uri: str | None = Field(
        default=None,
        max_length=1024,
        description="Path of the recording API (RCBS gwsRecordingsUri); default /recordings.",
        json_schema_extra=URI_PATH,
    )
    gws_settings_uri: str | None = Field(
        default=None,
        max_length=1024,
        description="Path of the settings API (RCBS gwsSettingsUri); default /me/settings/rcbs.",
        json_schema_extra=URI_PATH,
    )
    retention_days: int | None = Field(
        default=None,
        ge=1,
        le=36500,
        description="The vendor's retention period in days: recordings older than this are deleted by the "
        "vendor. Used for the retention margin metric and the audit range.",
    )
    gws_credentials: GwsCredentialsRef = Field(
        description="Secret with the vendor user name and password (GWS_USERNAME, GWS_PASSWORD)."
    )
    s3_credentials: S3CredentialsRef | None = Field(
        default=None,
        description="Secret with the vendor S3 credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); "
        "required unless media.metadataOnly is true.",
    )
    s3_endpoint_url: str | None = Field(
        default=None,
        max_length=ENDPOINT_URL_MAX_LENGTH,
        description="S3 endpoint for a non-AWS S3 (default: AWS), https://host[:port]; its host must be one of the "
        "installer's vendor hosts (chart value security.vendorHosts).",
        json_schema_extra=ENDPOINT_URL,
    )
    s3_region: str | None = Field(default=None, description="AWS region of the vendor buckets.")
    gws_proxy: ProxySettings | None = Field(default=None, description="Proxy for the recording API.")
    aws_proxy: ProxySettings | None = Field(default=None, description="Proxy for S3.")
    use_payload_signing: bool = Field(default=False, description="Sign S3 payloads (slower; RCBS default false).")
    media_transfer: Literal["auto", "native", "crt", "boto3"] = Field(
        default="auto",
        description="How media objects are downloaded: native = the image's cxbackup-fetch program downloads, "
        "checks and writes each recording's files in parallel (the least CPU; PVC targets only); crt = the AWS "
        "Common Runtime's S3 client writes each object straight to its file (no proxy); boto3 = streamed "
        "through Python; auto = native for a PVC target, else boto3 (an S3 target streams into the bucket).",
    )


class BackupWindow(CamelModel):
    """Which recordings a run covers, as in RCBS: ages relative to now, or absolute dates."""

    min_age: int | str = Field(
        default=0,
        description="Recordings older than this are included: whole days or an ISO 8601 duration (PT30M). Default 0.",
        json_schema_extra={"x-kubernetes-int-or-string": True, "x-kubernetes-validations": [_AGE_RULE]},
    )
    max_age: int | str = Field(
        default=2,
        description="Recordings newer than this are included: whole days or an ISO 8601 duration (P30D). "
        "Default 2. After downtime the run starts from status.lastRecordingEndTime instead when that is older.",
        json_schema_extra={"x-kubernetes-int-or-string": True, "x-kubernetes-validations": [_AGE_RULE]},
    )
    min_date: str | None = Field(
        default=None,
        pattern=_DATE_PATTERN,
        description="Absolute newer bound, YYYY-MM-DD (GMT) or 13-digit epoch ms; overrides minAge (RCBS minDate).",
    )
    max_date: str | None = Field(
        default=None,
        pattern=_DATE_PATTERN,
        description="Absolute older bound, YYYY-MM-DD (GMT) or 13-digit epoch ms; overrides maxAge and the "
        "stored last recording end time (RCBS maxDate).",
    )
    max_recordings_per_run: int | None = Field(
        default=None,
        ge=1,
        le=10**12,
        description="The most recordings one run may list (each shard lists the whole window). Default: "
        "1000000 per started day of the window. A window the vendor reports larger, or a listing that goes "
        "past it, fails the run naming this field, without advancing status.lastRecordingEndTime.",
    )


class BackupMedia(CamelModel):
    """Which media files are downloaded and how they are laid out."""

    type_pattern: str = Field(
        default="audio/mp3|video/mp4",
        min_length=1,
        max_length=256,
        description="Regular expression matched against each media file's MIME type (RCBS mediaTypePattern).",
    )
    metadata_only: bool = Field(
        default=False, description="Download metadata only, no media (no S3 credentials needed)."
    )
    folder_format: str = Field(
        default="yyyy/MM/dd/HH",
        pattern=r"^[yMdHm/_-]+$",
        description="Folder layout from the recording's start time in UTC (RCBS recordingFolderFormat).",
    )


class BackupFilters(CamelModel):
    """Optional filters from the vendor's access-control model; a recording is kept when it matches all given."""

    partitions: list[str] | None = Field(
        default=None, max_length=100, description="Keep recordings in any of these partitions (e.g. /sales)."
    )
    access_groups: list[str] | None = Field(
        default=None, max_length=100, description="Keep recordings in any of these access groups."
    )
    agent_hierarchy: str | None = Field(
        default=None,
        pattern=r"^/",
        max_length=1024,
        description="Keep recordings of agents under this hierarchy path (e.g. /Anthony/John).",
    )


class PvcTarget(CamelModel):
    """A PersistentVolumeClaim in the same namespace."""

    claim_name: str = Field(min_length=1, max_length=253, description="Name of the PVC.")
    sub_path: str | None = Field(
        default=None,
        max_length=1024,
        pattern=SUB_PATH_PATTERN,
        description="Folder inside the volume: relative, '/' between folders, no empty, '.' or '..' segment, no "
        "backslash. The worker refuses it when it (or a folder on the way) is a symbolic link.",
        json_schema_extra=SUB_PATH_RULES,
    )


class S3Target(CamelModel):
    """The customer's own S3-compatible bucket."""

    bucket: str = Field(min_length=3, max_length=63, description="Bucket name.")
    prefix: str = Field(default="", description="Key prefix inside the bucket, e.g. recordings/.")
    endpoint_url: str | None = Field(
        default=None,
        max_length=ENDPOINT_URL_MAX_LENGTH,
        description="Endpoint (default AWS), https://host[:port].",
        json_schema_extra=ENDPOINT_URL,
    )
    region: str | None = Field(default=None, description="Region of the bucket.")
    credentials: S3CredentialsRef = Field(description="Secret with credentials for the target bucket.")
    object_lock: Literal["GOVERNANCE", "COMPLIANCE"] | None = Field(
        default=None,
        description="Write every recording object under S3 Object Lock in this mode, retained until the "
        "recording's start plus retention.keepFor: nobody (COMPLIANCE: not even the bucket's owner) deletes or "
        "overwrites it earlier. The bucket must have been created with Object Lock.",
    )


class LegalHold(CamelModel):
    """Recordings no retention sweep or erasure may delete: exactly one of recordingId, phoneNumber, partition."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "[has(self.recordingId), has(self.phoneNumber), has(self.partition)]"
                    ".filter(x, x).size() == 1",
                    "message": "set exactly one of recordingId, phoneNumber, partition",
                }
            ]
        }
    }

    recording_id: str | None = Field(
        default=None, min_length=1, max_length=128, pattern=r"^[^,]+$", description="One recording (callUUID)."
    )
    phone_number: str | None = Field(
        default=None,
        min_length=4,
        max_length=32,
        pattern=r"^[+ ().-]*([0-9][+ ().-]*){4,}$",
        description="Every recording with a phone number ending with these digits (at least 4; + - ( ) "
        "and spaces are ignored). The number is stored in this resource and its runs' ConfigMaps.",
    )
    partition: str | None = Field(
        default=None, min_length=1, max_length=256, pattern=r"^[^,]+$", description="Every recording of a partition."
    )
    reason: str | None = Field(default=None, max_length=256, description="Why (a case reference), for people.")

    def property_value(self) -> str:
        if self.recording_id is not None:
            return f"id:{self.recording_id}"
        if self.phone_number is not None:
            return f"phone:{self.phone_number}"
        return f"partition:{self.partition}"


class RetentionSpec(CamelModel):
    """How long backed-up recordings are kept, and what happens after."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.confirmKeepFor) || self.confirmKeepFor == self.keepFor",
                    "message": "confirmKeepFor must repeat keepFor exactly (it confirms a keepFor shorter than P1Y "
                    "for sweep Delete when source.retentionDays is not set)",
                    "fieldPath": ".confirmKeepFor",
                },
            ]
        }
    }

    keep_for: str = Field(
        min_length=2,
        max_length=32,
        pattern=ISO_DURATION_PATTERN,
        description="ISO 8601 duration from each recording's start time, e.g. P7Y, P18M, P90D: each recording's "
        "retention end, until which target.s3.objectLock keeps it unchangeable and after which sweep may delete it.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self != 'P' && self != 'PT' && !self.endsWith('T')", "message": "an empty duration"}
            ]
        },
    )
    sweep: Literal["Off", "DryRun", "Delete"] = Field(
        default="Off",
        description="At the end of each run, each shard's recordings past keepFor are: Off, left alone; DryRun, "
        "counted in status.retention and the metrics; Delete, deleted from the target and the search index (each "
        "deletion recorded in the target's ledger), except those under a legal hold. Start with DryRun. With "
        "Delete, keepFor may not be shorter than source.retentionDays; without source.retentionDays, not shorter "
        "than P1Y unless confirmKeepFor repeats it (else the phase is Invalid).",
    )
    confirm_keep_for: str | None = Field(
        default=None,
        min_length=2,
        max_length=32,
        description="keepFor again, exactly: confirms a keepFor shorter than P1Y for sweep Delete when "
        "source.retentionDays is not set (a typo such as P7D for P7Y would delete recordings for good). A change "
        "of keepFor needs a new confirmation.",
    )
    legal_holds: list[LegalHold] = Field(
        default_factory=list,
        max_length=1000,
        description="Recordings kept whatever keepFor says, and refused by erasure. Written into the target's "
        "holds at the start of each run, so every tool working on the target respects them. Removing one from "
        "this list does not lift it: it stays in the target until released with `cxbackup hold release --source "
        "'RecordingBackup <namespace>/<name>'`, which is recorded in the target's ledger.",
    )


class BackupTarget(CamelModel):
    """Where recordings are written: exactly one of pvc or s3."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.pvc) != has(self.s3)",
                    "message": "set exactly one of target.pvc or target.s3",
                }
            ]
        }
    }

    pvc: PvcTarget | None = Field(default=None, description="Back up into a PersistentVolumeClaim.")
    s3: S3Target | None = Field(default=None, description="Back up into an S3-compatible bucket.")


class AuditSpec(CamelModel):
    """A periodic audit comparing the vendor's retained recordings with the target."""

    enabled: bool = Field(default=False, description="Run the audit.")
    schedule: str = Field(default="0 6 * * *", description="Cron schedule of the audit.")


class RecordingBackupSpec(CamelModel):
    """Desired state of a RecordingBackup."""

    # Checked when the object is created (oldSelf has no value then); a name never changes, and an object stored
    # before this rule stays updatable (its status, its finalizers), so that the operator can say why it waits.
    crd_root_validations: ClassVar[tuple[dict[str, Any], ...]] = (
        {
            "rule": f"oldSelf.hasValue() || self.metadata.name.size() <= {MAX_NAME_LENGTH}",
            "optionalOldSelf": True,
            "message": NAME_TOO_LONG,  # no fieldPath: the schema does not describe metadata's fields
        },
    )

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.window) || !has(self.window.minAge) || !has(self.window.maxAge) || "
                    "type(self.window.minAge) != int || type(self.window.maxAge) != int || "
                    "self.window.maxAge == 0 || int(self.window.minAge) < int(self.window.maxAge)",
                    "message": "window.minAge must be less than window.maxAge",
                    "fieldPath": ".window.minAge",
                },
                {
                    "rule": "(has(self.media) && self.media.metadataOnly) || has(self.source.s3Credentials)",
                    "message": "source.s3Credentials is required unless media.metadataOnly is true",
                    "fieldPath": ".source.s3Credentials",
                },
                {
                    "rule": "!has(self.source.mediaTransfer) || self.source.mediaTransfer != 'native' || "
                    "!has(self.target.s3)",
                    "message": "source.mediaTransfer native writes into a PVC; with target.s3 use auto or boto3",
                    "fieldPath": ".source.mediaTransfer",
                },
                {
                    "rule": "!has(self.timeZone) || has(self.schedule)",
                    "message": "timeZone needs a schedule",
                    "fieldPath": ".timeZone",
                },
                {
                    "rule": "!has(self.target.s3) || !has(self.target.s3.objectLock) || has(self.retention)",
                    "message": "target.s3.objectLock needs retention.keepFor (objects are locked until each "
                    "recording's start plus keepFor)",
                    "fieldPath": ".target.s3.objectLock",
                },
            ]
        }
    }

    source: BackupSource = Field(description="The vendor's recording API and S3 storage.")
    window: BackupWindow = Field(default_factory=BackupWindow, description="Which recordings a run covers.")
    media: BackupMedia = Field(default_factory=BackupMedia, description="Media selection and layout.")
    filters: BackupFilters | None = Field(default=None, description="Optional access-control filters.")
    target: BackupTarget = Field(description="Where recordings are written.")
    retention: RetentionSpec | None = Field(default=None, description="How long backed-up recordings are kept.")
    replicas: int = Field(
        default=1,
        ge=1,
        le=MAX_REPLICAS,
        description="Number of shards: pods that split the recordings of a run by a hash of the id "
        "(RCBS totalRcbsInstances).",
    )
    concurrency: int = Field(
        default=64,
        ge=1,
        le=256,
        description="Concurrent downloads per shard: objects in flight at once.",
    )
    schedule: str | None = Field(
        default=None,
        min_length=9,
        description="Cron schedule (5 fields), e.g. '30 4,10,16,22 * * *'. Absent: run once.",
    )
    time_zone: str | None = Field(default=None, description="IANA time zone of the schedule (default UTC).")
    suspend: bool = Field(default=False, description="Start no new runs while true (a running one finishes).")
    concurrency_policy: Literal["Forbid", "Replace"] = Field(
        default="Forbid",
        description="Forbid: a run never starts while the previous one is active (skipped, with an Event). "
        "Replace: the active run is stopped and a new one started.",
    )
    backoff_limit_per_index: int = Field(
        default=3, ge=0, le=20, description="Retries of each shard's pod before the shard counts as failed."
    )
    history_limit: int = Field(default=10, ge=1, le=100, description="Runs kept in status.history.")
    successful_jobs_history_limit: int = Field(
        default=3, ge=0, le=100, description="Finished successful Jobs kept in the cluster."
    )
    failed_jobs_history_limit: int = Field(
        default=3, ge=0, le=100, description="Finished failed Jobs kept in the cluster."
    )
    audit: AuditSpec | None = Field(default=None, description="Optional periodic audit.")
    pod: PodSettings | None = Field(default=None, description="Scheduling and resources of worker pods.")


class ShardProgress(CamelModel):
    """Progress of one shard, written by its pod."""

    run_id: str | None = Field(default=None, description="The run this progress belongs to.")
    phase: str = Field(default="Pending", description="Pending, Running, Succeeded or Failed.")
    total: int = Field(default=0, description="Recordings of this shard in the window.")
    downloaded: int = Field(default=0, description="Recordings downloaded.")
    skipped: int = Field(default=0, description="Recordings already in the target.")
    failed: int = Field(default=0, description="Recordings that failed.")
    bytes: int = Field(default=0, description="Bytes written.")
    erased: int = Field(default=0, description="Recordings not downloaded because an erasure removed them.")
    retention: SweepCounts | None = Field(default=None, description="This shard's retention sweep.")
    retention_error: str | None = Field(default=None, description="Why this shard's sweep did not run.")
    index_recordings: int | None = Field(default=None, description="Recordings in this shard's index file.")
    index_bytes: int | None = Field(default=None, description="Size of this shard's index file.")
    updated_at: datetime | None = Field(default=None, description="When the pod last reported.")


class SweepCounts(CamelModel):
    """The retention sweep of one shard, or of a whole run."""

    dry_run: bool = Field(default=False, description="True when the sweep only counted (sweep: DryRun).")
    expired: int = Field(default=0, description="Recordings past keepFor and not held (deleted, or to delete).")
    held: int = Field(default=0, description="Recordings past keepFor kept by a legal hold.")
    deleted: int = Field(default=0, description="Recordings deleted.")
    deleted_bytes: int = Field(default=0, description="Bytes deleted.")
    failed: int = Field(default=0, description="Recordings that could not be deleted (kept; tried again next run).")


class RetentionStatus(SweepCounts):
    """The last run's retention sweep."""

    last_time: datetime | None = Field(default=None, description="When the run that swept finished.")
    keep_for: str | None = Field(default=None, description="spec.retention.keepFor of that sweep.")
    error: str | None = Field(default=None, description="Why a shard's sweep did not run, when one did not.")


class IndexStatus(CamelModel):
    """The search index of the target, as the last run's shards left it."""

    recordings: int = Field(default=0, description="Recordings in the index.")
    bytes: int = Field(default=0, description="Size of the index files.")


class BackupCounts(CamelModel):
    """Recording counts of a run."""

    downloaded: int = Field(default=0, description="Recordings downloaded.")
    skipped: int = Field(default=0, description="Recordings already in the target.")
    failed: int = Field(default=0, description="Recordings that failed.")
    bytes: int = Field(default=0, description="Bytes written.")


class CurrentRun(CamelModel):
    """The run in progress."""

    job_name: str = Field(description="Name of the Job running the shards.")
    window_start: datetime = Field(description="Start of the window (inclusive).")
    window_end: datetime = Field(description="End of the window (exclusive).")
    start_time: datetime = Field(description="When the run started.")
    replicas: int = Field(description="Shards of this run.")


class RunRecord(CamelModel):
    """One finished run."""

    job_name: str = Field(description="Name of the Job.")
    window_start: datetime = Field(description="Start of the window (inclusive).")
    window_end: datetime = Field(description="End of the window (exclusive).")
    start_time: datetime = Field(description="When the run started.")
    completion_time: datetime | None = Field(default=None, description="When the run finished.")
    result: Literal["Succeeded", "Failed"] = Field(description="Succeeded or Failed.")
    counts: BackupCounts = Field(default_factory=BackupCounts, description="Recording counts.")
    message: str = Field(default="", description="Why the run failed, when it did.")


class AuditStatus(CamelModel):
    """The last audit's findings."""

    last_time: datetime | None = Field(default=None, description="When the last audit finished.")
    checked: int = Field(default=0, description="Recordings checked.")
    missing: int = Field(default=0, description="Recordings the vendor has and the target lacks.")
    mismatched: int = Field(default=0, description="Recordings whose size differs.")
    oldest_missing_start: datetime | None = Field(
        default=None, description="Start time of the oldest missing recording."
    )


class RecordingBackupStatus(CamelModel):
    """Observed state of a RecordingBackup, written by the operator and (shards) by the worker pods."""

    model_config = CamelModel.model_config | {"extra": "allow"}

    phase: str | None = Field(default=None, description=f"{one_of(BACKUP_PHASES)}.")
    observed_generation: int | None = Field(default=None, description="The generation last reconciled.")
    conditions: list[Condition] | None = Field(default=None, description=f"{one_of(BACKUP_CONDITIONS)}.")
    current_run: CurrentRun | None = Field(default=None, description="The run in progress, if any.")
    shards: dict[str, ShardProgress] | None = Field(
        default=None, description="Per-shard progress of the current run, by shard index."
    )
    progress: str | None = Field(default=None, description="Overall progress of the current run, e.g. 42%.")
    counts: BackupCounts | None = Field(default=None, description="Counts of the current or last run.")
    last_recording_end_time: datetime | None = Field(
        default=None,
        description="End of the last fully successful window (the RCBS last_recording_endtime); "
        "the next run starts here when that is older than maxAge.",
    )
    last_successful_time: datetime | None = Field(default=None, description="When the last run succeeded.")
    next_schedule_time: datetime | None = Field(default=None, description="When the next run is due.")
    history: list[RunRecord] | None = Field(default=None, description="The last runs, newest first.")
    audit: AuditStatus | None = Field(default=None, description="The last audit's findings.")
    retention: RetentionStatus | None = Field(default=None, description="The last run's retention sweep.")
    index: IndexStatus | None = Field(default=None, description="The target's search index after the last run.")
    last_run_generation: int | None = Field(
        default=None,
        description="metadata.generation when the last run started (a one-shot backup runs again "
        "when the spec changes).",
    )
    last_trigger: str | None = Field(
        default=None, description="The last value of the cxbackup.io/run-now annotation that started a run."
    )


class RecordingBackup(CamelModel):
    """A backup of call recordings from the vendor cloud, once or on a schedule, split over shards."""

    model_config = CamelModel.model_config | {"extra": "ignore"}

    api_version: str = Field(default="cxbackup.io/v1alpha1")
    kind: str = Field(default="RecordingBackup")
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: RecordingBackupSpec
    status: RecordingBackupStatus | None = None
