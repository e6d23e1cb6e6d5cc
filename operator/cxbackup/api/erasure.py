"""RecordingErasure (short name rerase): a request to erase one person's recordings from a RecordingBackup's target."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from cxbackup.api.common import CamelModel, Condition, PodSettings
from cxbackup.api.exportjob import SubjectRef
from cxbackup.api.status import ERASURE_CONDITIONS, ERASURE_PHASES, one_of

__all__ = [
    "MAX_LISTED",
    "ErasurePlan",
    "ErasureRange",
    "ErasureRecording",
    "ErasureResult",
    "RecordingErasure",
    "RecordingErasureSpec",
    "RecordingErasureStatus",
]

MAX_LISTED = 25
"""Recordings named in status (the counts cover all; the pod's log and the target's ledger list every one)."""

REQUEST_PATTERN = r"^[^\x00-\x1f\x7f]+$"


class ErasureRange(CamelModel):
    """Only recordings that started in [from, to)."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.from) || !has(self.to) || timestamp(self.from) < timestamp(self.to)",
                    "message": "range.from must be before range.to",
                    "fieldPath": ".from",
                },
            ]
        }
    }

    from_: datetime | None = Field(default=None, alias="from", description="Start time at or after, RFC 3339.")
    to: datetime | None = Field(default=None, description="Start time before, RFC 3339.")


_REQUEST_FIELDS = ("recordingBackup", "subject", "request", "range", "pod")
"""Every field of the spec but `execute`: what a dry run was of."""


def _same(field: str) -> str:
    """CEL: `field` of self and oldSelf are equal (both absent counts as equal)."""
    return f"(has(self.{field}) == has(oldSelf.{field}) && (!has(self.{field}) || self.{field} == oldSelf.{field}))"


class RecordingErasureSpec(CamelModel):
    """Desired state of a RecordingErasure: who, in which backup, under which request, and whether to execute."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!oldSelf.execute || self == oldSelf",
                    "message": "an executed erasure cannot be changed; create a new RecordingErasure",
                },
                {
                    # optionalOldSelf: the rule also runs on create, where there is no old object
                    "rule": "oldSelf.hasValue() || !self.execute",
                    "optionalOldSelf": True,
                    "message": "a RecordingErasure starts with a dry run: create it with execute: false, read "
                    "status.result once its phase is Planned, then set execute: true",
                    "fieldPath": ".execute",
                },
                {
                    "rule": "!self.execute || oldSelf.execute || ("
                    + " && ".join(f"{_same(f)}" for f in _REQUEST_FIELDS)
                    + ")",
                    "message": "set execute: true alone: the dry run was of the request as it was; change the "
                    "request with execute: false, wait for its dry run (phase Planned), then set execute: true",
                    "fieldPath": ".execute",
                },
            ]
        }
    }

    recording_backup: str = Field(
        min_length=1,
        max_length=253,
        description="Name of the RecordingBackup (same namespace) whose target the recordings are erased from.",
    )
    subject: SubjectRef = Field(
        description="Who: a Secret (labelled cxbackup.io/credentials=true) whose key holds `phone:<number>` or "
        "`agent:<name>` lines, so that personal data stays out of the resource, its status and the pod spec."
    )
    request: str = Field(
        min_length=1,
        max_length=200,
        pattern=REQUEST_PATTERN,
        description="The request's reference (a ticket or case number), kept in the target's erasure ledger. "
        "No personal data.",
    )
    range: ErasureRange | None = Field(default=None, description="Only recordings that started in this range.")
    execute: bool = Field(
        default=False,
        description="false (default): a dry run lists in status what would be erased and what legal holds keep. "
        "true: erase what a completed dry run of the same request listed. Refused on create and together with any "
        "other change (the API server), and unless status.plan records a completed dry run of this request, "
        "subject Secret and range whose result was in status before execute was set (the operator). Once true, "
        "the spec cannot change.",
    )
    pod: PodSettings | None = Field(default=None, description="Scheduling and resources of the erasure pod.")


class ErasureRecording(CamelModel):
    """One recording of the run's report."""

    id: str = Field(description="Recording id (callUUID).")
    start_time: str | None = Field(default=None, description="Its start time.")
    outcome: Literal["to-erase", "erased", "held", "failed"] = Field(
        description="to-erase (dry run), erased, held (a legal hold keeps it) or failed."
    )
    detail: str = Field(default="", description="Why it is held or failed.")


class ErasureResult(CamelModel):
    """What the last run found or did (the whole list is in the pod's log and, when executed, the ledger)."""

    dry_run: bool = Field(description="True when nothing was changed.")
    to_erase: int = Field(default=0, description="Dry run: recordings that would be erased.")
    erased: int = Field(default=0, description="Recordings erased.")
    held: int = Field(default=0, description="Recordings a legal hold keeps.")
    failed: int = Field(default=0, description="Recordings that could not be erased (run again to retry).")
    ledger: str = Field(default="", description="The ledger file in the target recording this erasure.")
    explanation: str = Field(default="", description="Why nothing matched, when nothing did.")
    recordings: list[ErasureRecording] | None = Field(
        default=None, description=f"The first {MAX_LISTED} recordings of the report."
    )


class ErasurePlan(CamelModel):
    """The last completed dry run: the request it was of, and when its result was in status. Only the operator
    writes it (no worker or pod may write RecordingErasure status)."""

    digest: str = Field(
        max_length=80,
        description="SHA-256 of the request the dry run was of: this object's uid, its spec but execute, and the "
        "subject Secret's resourceVersion. execute: true runs only when the current request has the same digest.",
    )
    subject_version: str = Field(default="", max_length=64, description="The subject Secret's resourceVersion then.")
    job_name: str = Field(default="", max_length=63, description="The dry run's Job.")
    completion_time: datetime | None = Field(default=None, description="When the dry run finished.")
    observed_generation: int = Field(
        description="metadata.generation when its result was written into status: execute must be set after "
        "(at a later generation)."
    )
    to_erase: int = Field(default=0, description="Recordings it would erase.")
    held: int = Field(default=0, description="Recordings legal holds keep.")


class RecordingErasureStatus(CamelModel):
    """Observed state of a RecordingErasure."""

    model_config = CamelModel.model_config | {"extra": "allow"}

    phase: str | None = Field(default=None, description=f"{one_of(ERASURE_PHASES)}.")
    observed_generation: int | None = Field(default=None, description="The generation last reconciled.")
    conditions: list[Condition] | None = Field(default=None, description=f"{one_of(ERASURE_CONDITIONS)}.")
    job_name: str | None = Field(default=None, description="The Job of the last run.")
    last_run_generation: int | None = Field(
        default=None, description="The metadata.generation the last run was started for."
    )
    last_trigger: str | None = Field(
        default=None, description="The value of the cxbackup.io/run-now annotation the last triggered run answered."
    )
    start_time: datetime | None = Field(default=None, description="When the last run started.")
    completion_time: datetime | None = Field(default=None, description="When the last run finished.")
    result: ErasureResult | None = Field(default=None, description="What the last run found or did.")
    plan: ErasurePlan | None = Field(
        default=None, description="The last completed dry run, which execute: true must match."
    )
    error: str = Field(default="", description="Why the last run failed.")


class RecordingErasure(CamelModel):
    """A request to erase one person's recordings from a backup, dry run first."""

    model_config = CamelModel.model_config | {"extra": "ignore"}

    api_version: str = Field(default="cxbackup.io/v1alpha1")
    kind: str = Field(default="RecordingErasure")
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: RecordingErasureSpec
    status: RecordingErasureStatus | None = None
