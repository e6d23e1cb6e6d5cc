"""ExportJob (short name ej): an encrypted export of contact history or of one user's chat (GDPR)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from cxbackup.api.common import (
    ENDPOINT_URL,
    ENDPOINT_URL_MAX_LENGTH,
    ISO_DURATION_PATTERN,
    SUB_PATH_PATTERN,
    SUB_PATH_RULES,
    CamelModel,
    Condition,
    PodSettings,
    S3CredentialsRef,
)
from cxbackup.api.status import EXPORT_CONDITIONS, EXPORT_PHASES, one_of

__all__ = [
    "MAX_GDPR_USERS",
    "ArtifactRecord",
    "BackupRef",
    "DecryptMediaRef",
    "ExportCertificateRef",
    "ExportJob",
    "ExportJobSpec",
    "ExportJobStatus",
    "ExportRange",
    "ExportRunRecord",
    "ExportSource",
    "ExportStore",
    "SubjectRef",
]

# The GDPR chat export policy targets one user or a small set; whole-organisation chat
# exports are not supported, so the list is capped.
MAX_GDPR_USERS = 10


class ExportSource(CamelModel):
    """The vendor API the data comes from."""

    api_uri_prefix: str = Field(
        max_length=ENDPOINT_URL_MAX_LENGTH,
        description="URL prefix of the vendor's data APIs, https://host[:port][/path]; its host must be one of the "
        "installer's vendor hosts (chart value security.vendorHosts).",
        json_schema_extra=ENDPOINT_URL,
    )
    credentials_secret: str = Field(
        min_length=1, description="Secret with GWS_USERNAME and GWS_PASSWORD for the vendor API."
    )


class ExportRange(CamelModel):
    """The time range exported: from/to, or a duration back from the run time."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.last) != (has(self.from) || has(self.to))",
                    "message": "set either range.last or range.from (and optionally range.to)",
                },
                {
                    "rule": "!has(self.to) || has(self.from)",
                    "message": "range.to needs range.from",
                    "fieldPath": ".to",
                },
                {
                    "rule": "!has(self.from) || !has(self.to) || timestamp(self.from) < timestamp(self.to)",
                    "message": "range.from must be before range.to",
                    "fieldPath": ".from",
                },
            ]
        }
    }

    from_: datetime | None = Field(default=None, alias="from", description="Start (inclusive), RFC 3339.")
    to: datetime | None = Field(default=None, description="End (exclusive), RFC 3339; default: the run time.")
    last: str | None = Field(
        default=None,
        pattern=ISO_DURATION_PATTERN,
        description="ISO 8601 duration back from the run time, e.g. P1D (with a schedule: the last day).",
    )


class ExportCertificateRef(CamelModel):
    """The certificate artifacts are encrypted to: a RecordingCertificate or a Secret."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.recordingCertificate) != has(self.secret)",
                    "message": "set exactly one of certificate.recordingCertificate or certificate.secret",
                }
            ]
        }
    }

    recording_certificate: str | None = Field(
        default=None, description="Name of a RecordingCertificate in the same namespace."
    )
    secret: str | None = Field(default=None, description="Name of a Secret holding the certificate as tls.crt.")


class ExportStore(CamelModel):
    """Where artifacts are kept: exactly one of pvc or s3."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.pvc) != has(self.s3)",
                    "message": "set exactly one of store.pvc or store.s3",
                }
            ]
        }
    }

    pvc: str | None = Field(default=None, description="Name of a PVC in the same namespace.")
    sub_path: str | None = Field(
        default=None,
        max_length=1024,
        pattern=SUB_PATH_PATTERN,
        description="Folder inside the PVC: relative, '/' between folders, no empty, '.' or '..' segment, no "
        "backslash.",
        json_schema_extra=SUB_PATH_RULES,
    )
    s3: str | None = Field(default=None, pattern=r"^s3://", description="s3://bucket/prefix")
    s3_endpoint_url: str | None = Field(
        default=None,
        max_length=ENDPOINT_URL_MAX_LENGTH,
        description="S3 endpoint, https://host[:port].",
        json_schema_extra=ENDPOINT_URL,
    )
    s3_credentials: S3CredentialsRef | None = Field(default=None, description="Credentials for the bucket.")


class SubjectRef(CamelModel):
    """Who a subjectAccess export is for, kept in a Secret (personal data stays out of the resource and the pod
    spec): the key holds one `phone:<number>` or `agent:<name>` per line."""

    secret: str = Field(
        min_length=1,
        max_length=253,
        description="Name of a Secret in the same namespace, labelled cxbackup.io/credentials=true.",
    )
    key: str = Field(default="subject", min_length=1, max_length=253, description="The key holding the subject.")


class BackupRef(CamelModel):
    """The backup a subjectAccess export reads."""

    recording_backup: str = Field(
        min_length=1,
        max_length=253,
        description="Name of a RecordingBackup in the same namespace; its target (its PVC or S3 bucket) is read, "
        "never written.",
    )


class DecryptMediaRef(CamelModel):
    """subjectAccess: hand the media over decrypted (then encrypted, with the rest, to spec.certificate)."""

    recording_certificate: str = Field(
        min_length=1,
        max_length=253,
        description="The RecordingCertificate (same namespace) whose keyring decrypts the recordings; it must "
        "name this ExportJob (its name and metadata.uid) in its spec.decryptionAllowedFor. With decryptMedia "
        "the spec cannot change after creation, certificate must be a Secret, and the subject and certificate "
        "Secrets must be immutable and older than the ExportJob.",
    )


class ExportJobSpec(CamelModel):
    """Desired state of an ExportJob."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "self.type != 'gdprChat' || (has(self.users) && size(self.users) > 0)",
                    "message": "a gdprChat export needs users (1 to 10 subject user ids); "
                    "whole-organisation chat exports are not supported",
                    "fieldPath": ".users",
                },
                {
                    "rule": "self.type == 'gdprChat' || !has(self.users)",
                    "message": "users applies only to type gdprChat",
                    "fieldPath": ".users",
                },
                {
                    "rule": "self.type == 'subjectAccess' || (has(self.source) && has(self.range))",
                    "message": "contactHistory and gdprChat exports need source and range",
                    "fieldPath": ".source",
                },
                {
                    "rule": "self.type != 'subjectAccess' || (has(self.subject) && has(self.backup))",
                    "message": "a subjectAccess export needs subject (a Secret naming the person) and backup "
                    "(the RecordingBackup whose target it reads)",
                    "fieldPath": ".subject",
                },
                {
                    "rule": "self.type == 'subjectAccess' || (!has(self.subject) && !has(self.backup))",
                    "message": "subject and backup apply only to type subjectAccess",
                    "fieldPath": ".subject",
                },
                {
                    "rule": "self.type == 'subjectAccess' || !has(self.decryptMedia)",
                    "message": "decryptMedia applies only to type subjectAccess",
                    "fieldPath": ".decryptMedia",
                },
                {
                    "rule": "!has(self.decryptMedia) || has(self.certificate.secret)",
                    "message": "with decryptMedia the artifact is encrypted to certificate.secret (the requester's "
                    "certificate in an immutable Secret), not to a RecordingCertificate, whose pair can change after "
                    "the key owner's consent",
                    "fieldPath": ".certificate",
                },
                {
                    "rule": "(!has(oldSelf.decryptMedia) && !has(self.decryptMedia)) || self == oldSelf",
                    "message": "the spec of an ExportJob with decryptMedia cannot change, and decryptMedia cannot be "
                    "added or removed: the key owner consented to this ExportJob as it was created. Create a new "
                    "ExportJob and ask the key owner to consent to it",
                },
                {
                    "rule": "self.type != 'subjectAccess' || !has(self.source)",
                    "message": "a subjectAccess export reads the backup, not the vendor: remove source",
                    "fieldPath": ".source",
                },
                {
                    "rule": "self.type != 'subjectAccess' || !has(self.range) || !has(self.range.last)",
                    "message": "a subjectAccess export takes range.from/range.to (start times of the recordings), "
                    "not range.last",
                    "fieldPath": ".range.last",
                },
            ]
        }
    }

    type: Literal["contactHistory", "gdprChat", "subjectAccess"] = Field(
        description="contactHistory (CDDS contact history), gdprChat (one user's chat messages, GDPR) or "
        "subjectAccess (one person's backed-up recordings and their metadata, from the backup)."
    )
    source: ExportSource | None = Field(
        default=None, description="The vendor API the data comes from (contactHistory, gdprChat)."
    )
    range: ExportRange | None = Field(
        default=None,
        description="The time range exported (contactHistory, gdprChat: required; subjectAccess: optional "
        "from/to on the recordings' start times, default all).",
    )
    subject: SubjectRef | None = Field(default=None, description="subjectAccess: who, from a Secret.")
    backup: BackupRef | None = Field(default=None, description="subjectAccess: the backup to read.")
    decrypt_media: DecryptMediaRef | None = Field(
        default=None,
        description="subjectAccess: decrypt the media with a RecordingCertificate's keyring (default: the media "
        "as the vendor encrypted them).",
    )
    users: list[str] | None = Field(
        default=None,
        max_length=MAX_GDPR_USERS,
        description="For gdprChat: the subject user ids (at most 10; the vendor's policy supports per-user "
        "requests, not whole-organisation chat exports).",
    )
    certificate: ExportCertificateRef = Field(description="The certificate artifacts are encrypted to.")
    encryption: Literal["AES-128", "AES-256"] = Field(default="AES-256", description="Content cipher.")
    store: ExportStore = Field(description="Where artifacts are kept.")
    retention_days: int = Field(default=30, ge=1, le=3650, description="Days artifacts are kept (default 30).")
    schedule: str | None = Field(default=None, min_length=9, description="Cron schedule; absent: run once.")
    suspend: bool = Field(default=False, description="Start no new runs while true.")
    pod: PodSettings | None = Field(default=None, description="Scheduling and resources of export pods.")


class ArtifactRecord(CamelModel):
    """One stored artifact (the CDDS Artifacts page)."""

    name: str = Field(description="Artifact file name (.p7m).")
    size: int = Field(description="Size in bytes.")
    sha256: str = Field(description="SHA-256 of the stored (encrypted) bytes, hex.")
    location: str = Field(description="Where it is stored (path or s3:// URL).")
    created_at: datetime = Field(description="When it was written.")
    expires_at: datetime = Field(description="When the retention sweep deletes it.")
    expired: bool = Field(default=False, description="True once deleted by the retention sweep.")


class ExportRunRecord(CamelModel):
    """One export run (the CDDS History page)."""

    job_name: str = Field(description="Name of the Job.")
    start_time: datetime = Field(description="When the run started.")
    completion_time: datetime | None = Field(default=None, description="When it finished.")
    state: Literal["Running", "Succeeded", "Failed"] = Field(description="Running, Succeeded or Failed.")
    records: int = Field(default=0, description="Records exported.")
    artifacts: int = Field(default=0, description="Artifacts written.")
    error: str = Field(default="", description="Why it failed.")
    message: str = Field(
        default="", description="Notes of the run, e.g. why an export is empty (a user outside chat retention)."
    )


class ExportJobStatus(CamelModel):
    """Observed state of an ExportJob."""

    model_config = CamelModel.model_config | {"extra": "allow"}

    phase: str | None = Field(default=None, description=f"{one_of(EXPORT_PHASES)}.")
    observed_generation: int | None = Field(default=None, description="The generation last reconciled.")
    conditions: list[Condition] | None = Field(default=None, description=f"{one_of(EXPORT_CONDITIONS)}.")
    history: list[ExportRunRecord] | None = Field(default=None, description="Runs, newest first.")
    artifacts: list[ArtifactRecord] | None = Field(default=None, description="Stored artifacts.")
    last_successful_time: datetime | None = Field(default=None, description="When a run last succeeded.")
    next_schedule_time: datetime | None = Field(default=None, description="When the next run is due.")
    last_run_generation: int | None = Field(
        default=None,
        description="The metadata.generation the last run was started for (a one-shot export runs again "
        "when the spec changes).",
    )
    last_trigger: str | None = Field(
        default=None, description="The value of the cxbackup.io/run-now annotation the last triggered run answered."
    )


class ExportJob(CamelModel):
    """An export of contact history or of chat messages, as encrypted CMS artifacts."""

    model_config = CamelModel.model_config | {"extra": "ignore"}

    api_version: str = Field(default="cxbackup.io/v1alpha1")
    kind: str = Field(default="ExportJob")
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: ExportJobSpec
    status: ExportJobStatus | None = None
