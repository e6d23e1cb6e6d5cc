"""Decisions about ExportJob runs and retention sweeps, as pure functions of (resource, its Jobs, now).

- `export_job_view` reads what the controller needs from a Job (task, start, state, accounted).
- `due_run` says whether an export run is due and for which slot (creation, trigger, spec change,
  schedule; after downtime the missed slots are caught up with one run).
- `running_record` is the status.history entry written when a run starts; `account_export` turns a
  finished run Job and its pod's termination message (the engine's `ExportResult` JSON) into the
  status changes: the history entry replaced, artifacts appended, lastSuccessfulTime, the Event.
- `artifacts_due` / `sweep_due` / `account_sweep` decide and record the retention sweep: artifacts
  whose expiresAt has come are deleted from the store by a sweep Job and then marked expired.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from cxbackup.api.exportjob import ArtifactRecord, ExportJob
from cxbackup.api.status import Reason
from cxbackup.controller.export.manifests import ANNOTATION_SWEEP_CUTOFF, LABEL_EXPORT_TASK
from cxbackup.controller.jobstate import JobState, read_job_state
from cxbackup.controller.manifests import LABEL_RUN
from cxbackup.controller.schedule import RUN_NOW_ANNOTATION, run_due
from cxbackup.core.times import iso, parse_time
from cxbackup.export.result import ExportResult

__all__ = [
    "HISTORY_LIMIT",
    "KEPT_EXPIRED_ARTIFACTS",
    "SWEEP_RETRY",
    "TRIGGER_ANNOTATION",
    "ExportJobView",
    "ExportOutcome",
    "SweepOutcome",
    "account_export",
    "account_sweep",
    "artifacts_due",
    "due_run",
    "export_job_view",
    "running_record",
    "sweep_due",
    "with_running",
]

TRIGGER_ANNOTATION = RUN_NOW_ANNOTATION
HISTORY_LIMIT = 20
"""Runs kept in status.history (newest first)."""
KEPT_EXPIRED_ARTIFACTS = 20
"""Expired (deleted) artifacts still listed in status.artifacts; older ones are dropped from the list."""
SWEEP_RETRY = dt.timedelta(minutes=10)
"""After a failed sweep, the next one starts no sooner than this."""


@dataclass(frozen=True)
class ExportJobView(JobState):
    """A run or sweep Job as the controller sees it: its state plus the task, run id and sweep cutoff."""

    task: str = "run"
    run_id: str = ""
    cutoff: dt.datetime | None = None


def export_job_view(job: dict[str, Any]) -> ExportJobView:
    meta = job.get("metadata", {})
    ann = meta.get("annotations") or {}
    labels = meta.get("labels") or {}
    state = read_job_state(job)
    return ExportJobView(
        **state.fields(),
        task=labels.get(LABEL_EXPORT_TASK, "run"),
        run_id=labels.get(LABEL_RUN, ""),
        cutoff=parse_time(ann.get(ANNOTATION_SWEEP_CUTOFF)),
    )


def due_run(export: ExportJob, runs: list[ExportJobView], now: dt.datetime) -> tuple[dt.datetime, str] | None:
    """(slot, reason) when an export run is due, else None. `runs` are the run Jobs (not sweeps)."""
    status = export.status
    return run_due(
        metadata=export.metadata,
        suspend=export.spec.suspend,
        schedule=export.spec.schedule,
        time_zone=None,
        last_trigger=status.last_trigger if status else None,
        last_run_generation=status.last_run_generation if status else None,
        next_schedule_time=status.next_schedule_time if status else None,
        job_starts=[r.run_start for r in runs],
        now=now,
    )


def running_record(job_name: str, start: dt.datetime) -> dict[str, Any]:
    """The status.history entry of a run that just started."""
    return {"jobName": job_name, "startTime": iso(start), "state": "Running", "records": 0, "artifacts": 0, "error": ""}


def _dump_history(export: ExportJob) -> list[dict[str, Any]]:
    status = export.status
    return (
        [h.model_dump(by_alias=True, mode="json", exclude_none=True) for h in (status.history or [])] if status else []
    )


def _dump_artifacts(artifacts: list[ArtifactRecord]) -> list[dict[str, Any]]:
    return [a.model_dump(by_alias=True, mode="json", exclude_none=True) for a in artifacts]


def with_running(export: ExportJob, job_name: str, start: dt.datetime) -> list[dict[str, Any]]:
    """status.history with a Running entry for `job_name` in front."""
    old = [h for h in _dump_history(export) if h.get("jobName") != job_name]
    return [running_record(job_name, start), *old][:HISTORY_LIMIT]


@dataclass(frozen=True)
class ExportOutcome:
    """What accounting a finished export run changes in status, and what to tell people."""

    status_patch: dict[str, Any]
    succeeded: bool
    seconds: float
    event_reason: str
    event_message: str
    artifacts: list[ArtifactRecord] = field(default_factory=list)


def _result_of(messages: list[str]) -> ExportResult | None:
    for message in messages:
        try:
            return ExportResult.from_json(message)
        except (ValueError, KeyError, TypeError):
            continue
    return None


def account_export(export: ExportJob, job: ExportJobView, messages: list[str], now: dt.datetime) -> ExportOutcome:
    """The status changes of a finished run Job, from its pod's termination message(s)."""
    result = _result_of(messages)
    done = job.completion_time or now
    if result is None:
        error = job.failure_message or "the export pod ended without a result"
        record: dict[str, Any] = {
            "jobName": job.name,
            "startTime": iso(job.run_start),
            "completionTime": iso(done),
            "state": "Failed",
            "records": 0,
            "artifacts": 0,
            "error": f"no export result in the pod's termination message ({error})",
        }
        new_artifacts: list[ArtifactRecord] = []
        succeeded = False
    else:
        if result.completion_time is None:
            result.completion_time = done
        if not job.succeeded and result.succeeded:  # the pod said so, but the Job failed afterwards
            result.fail(job.failure_message or "the Job failed", retryable=True, reason="JobFailed")
        record = result.to_run_record(job.name).model_dump(by_alias=True, mode="json", exclude_none=True)
        record["message"] = "; ".join(result.notes)
        new_artifacts = result.artifact_records() if result.succeeded else []
        succeeded = result.succeeded
    history = [record, *[h for h in _dump_history(export) if h.get("jobName") != job.name]][:HISTORY_LIMIT]
    patch: dict[str, Any] = {"history": history}
    if new_artifacts:
        known = export.status.artifacts or [] if export.status else []
        names = {a.name for a in new_artifacts}
        patch["artifacts"] = _dump_artifacts([*[a for a in known if a.name not in names], *new_artifacts])
    seconds = (done - job.run_start).total_seconds()
    if succeeded:
        assert result is not None
        patch["lastSuccessfulTime"] = iso(done)
        size = sum(a.size for a in new_artifacts)
        message = (
            f"run {job.name} exported {result.records} record(s) into {len(new_artifacts)} artifact(s), {size} bytes"
        )
        if result.explanation:
            message += f": {result.explanation}"
        elif result.notes:
            message += f" ({'; '.join(result.notes)})"
        return ExportOutcome(patch, True, seconds, Reason.EXPORT_SUCCEEDED, message, new_artifacts)
    return ExportOutcome(patch, False, seconds, Reason.EXPORT_FAILED, f"run {job.name} failed: {record['error']}")


def artifacts_due(export: ExportJob, now: dt.datetime) -> list[ArtifactRecord]:
    """Artifacts listed in status whose expiresAt has come and that are not yet marked expired."""
    status = export.status
    return [a for a in (status.artifacts or [] if status else []) if not a.expired and a.expires_at <= now]


def sweep_due(export: ExportJob, sweeps: list[ExportJobView], now: dt.datetime) -> bool:
    """A sweep Job should start: artifacts are due, none is running, and no sweep failed just now."""
    if not artifacts_due(export, now) or any(s.active for s in sweeps):
        return False
    failed = [s.completion_time or s.run_start for s in sweeps if s.finished and not s.succeeded]
    return not failed or now - max(failed) >= SWEEP_RETRY


@dataclass(frozen=True)
class SweepOutcome:
    """What a finished sweep changes: artifacts marked expired (the count and names), or its failure."""

    status_patch: dict[str, Any]
    succeeded: bool
    expired: list[str]
    event_reason: str
    event_message: str


def account_sweep(export: ExportJob, job: ExportJobView, now: dt.datetime) -> SweepOutcome:
    """Mark the artifacts that had expired by the sweep's cutoff as expired (the sweep deleted them)."""
    if not job.succeeded:
        message = f"retention sweep {job.name} failed ({job.failure_message or 'the pod failed'}); retried later"
        return SweepOutcome({}, False, [], Reason.SWEEP_FAILED, message)
    cutoff = job.cutoff or job.run_start
    status = export.status
    artifacts = list(status.artifacts or []) if status else []
    marked: list[str] = []
    out: list[ArtifactRecord] = []
    for a in artifacts:
        if not a.expired and a.expires_at <= cutoff:
            a = a.model_copy(update={"expired": True})
            marked.append(a.name)
        out.append(a)
    expired = [a for a in out if a.expired]
    drop = {a.name for a in expired[: max(len(expired) - KEPT_EXPIRED_ARTIFACTS, 0)]}
    patch = {"artifacts": _dump_artifacts([a for a in out if a.name not in drop])} if marked else {}
    message = f"retention sweep {job.name} deleted {len(marked)} expired artifact(s)"
    if marked:
        message += ": " + ", ".join(marked[:5]) + (f" and {len(marked) - 5} more" if len(marked) > 5 else "")
    return SweepOutcome(patch, True, marked, Reason.ARTIFACTS_EXPIRED, message)
