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


class RecordingErasureSpec(CamelModel):
    """Desired state of a RecordingErasure: who, in which backup, under which request, and whether to execute."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "!oldSelf.execute || self == oldSelf",
                    "message": "an executed erasure cannot be changed; create a new RecordingErasure",
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
        "true: erase. Once true, the spec cannot change.",
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
    error: str = Field(default="", description="Why the last run failed.")


class RecordingErasure(CamelModel):
    """A request to erase one person's recordings from a backup, dry run first."""

    model_config = CamelModel.model_config | {"extra": "ignore"}

    api_version: str = Field(default="cxbackup.io/v1alpha1")
    kind: str = Field(default="RecordingErasure")
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: RecordingErasureSpec
    status: RecordingErasureStatus | None = None
