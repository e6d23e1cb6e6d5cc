"""Decisions about RecordingBackup runs, as pure functions of (resource, its Jobs, now).

- `job_view` reads what the controller needs from a Job (window, state, whether it was accounted).
- `due_slot` says whether a run is due and for which slot (creation, trigger, spec change, schedule).
- `account_run` turns a finished Job into the status changes: history, counts and, only for a fully
  successful run, the advanced checkpoint (lastRecordingEndTime).
- `shard_totals` / `progress_text` summarise the per-shard progress the pods write.
- `retention_problem` is the keepFor guard of a deleting sweep.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from cxbackup.api.recordingbackup import BackupCounts, RecordingBackup, RunRecord
from cxbackup.api.status import Phase, Reason
from cxbackup.backup.removal import keep_for_problem
from cxbackup.controller.backup.manifests import ANNOTATION_REPLICAS, ANNOTATION_WINDOW_END, ANNOTATION_WINDOW_START
from cxbackup.controller.jobstate import JobState, read_job_state
from cxbackup.controller.manifests import LABEL_RUN
from cxbackup.controller.schedule import RUN_NOW_ANNOTATION, run_due
from cxbackup.core.times import from_ms, iso

__all__ = [
    "JobView",
    "RunOutcome",
    "account_run",
    "due_slot",
    "job_view",
    "progress_text",
    "retention_problem",
    "shard_totals",
]

TRIGGER_ANNOTATION = RUN_NOW_ANNOTATION


@dataclass(frozen=True)
class JobView(JobState):
    """A run's Job as the controller sees it: its state plus the run's id, window and shard count."""

    run_id: str
    window_start_ms: int
    window_end_ms: int
    replicas: int


def job_view(job: dict[str, Any]) -> JobView:
    ann = job.get("metadata", {}).get("annotations") or {}
    state = read_job_state(job)
    return JobView(
        **state.fields(),
        run_id=(job.get("metadata", {}).get("labels") or {}).get(LABEL_RUN, ""),
        window_start_ms=int(ann.get(ANNOTATION_WINDOW_START, "0")),
        window_end_ms=int(ann.get(ANNOTATION_WINDOW_END, "0")),
        replicas=int(ann.get(ANNOTATION_REPLICAS, "1")),
    )


def due_slot(backup: RecordingBackup, jobs: list[JobView], now: dt.datetime) -> tuple[dt.datetime, str] | None:
    """(slot, reason) when a run is due, else None. The slot names the run (see jobs.run_id_for)."""
    status = backup.status
    return run_due(
        metadata=backup.metadata,
        suspend=backup.spec.suspend,
        schedule=backup.spec.schedule,
        time_zone=backup.spec.time_zone,
        last_trigger=status.last_trigger if status else None,
        last_run_generation=status.last_run_generation if status else None,
        next_schedule_time=status.next_schedule_time if status else None,
        job_starts=[j.run_start for j in jobs],
        now=now,
    )


def retention_problem(backup: RecordingBackup, now: dt.datetime) -> str | None:
    """Why the spec's sweep may not delete (None when it may, or does not delete): with `sweep: Delete`,
    keepFor may not be shorter than source.retentionDays, or, when that is not set, than MIN_KEEP_FOR unless
    retention.confirmKeepFor repeats it (removal.keep_for_problem: a typo such as P7D for P7Y would delete
    recordings for good)."""
    retention = backup.spec.retention
    if retention is None or retention.sweep != "Delete":
        return None
    names = ("spec.retention.keepFor", "source.retentionDays", "spec.retention.confirmKeepFor")
    vendor_days = backup.spec.source.retention_days
    return keep_for_problem(retention.keep_for, vendor_days, retention.confirm_keep_for, now=now, names=names)


def _of_run(shards: dict[str, Any] | None, run_id: str) -> list[dict[str, Any]]:
    return [s for s in (shards or {}).values() if isinstance(s, dict) and s.get("runId") == run_id]


def shard_totals(shards: dict[str, Any] | None, run_id: str) -> dict[str, int]:
    totals = {"total": 0, "downloaded": 0, "skipped": 0, "failed": 0, "bytes": 0, "erased": 0}
    for shard in _of_run(shards, run_id):
        for key in totals:
            totals[key] += int(shard.get(key) or 0)
    return totals


_SWEEP_SUMS = ("expired", "held", "deleted", "deletedBytes", "failed")


def retention_status(
    shards: dict[str, Any] | None, run_id: str, keep_for: str | None, when: dt.datetime
) -> dict[str, Any] | None:
    """status.retention from the sweeps the shards of a run reported (None when none swept)."""
    mine = _of_run(shards, run_id)
    sweeps = [s["retention"] for s in mine if isinstance(s.get("retention"), dict)]
    errors = [str(s["retentionError"]) for s in mine if s.get("retentionError")]
    if not sweeps and not errors:
        return None
    status: dict[str, Any] = {"lastTime": iso(when), "keepFor": keep_for}
    status |= {k: sum(int(s.get(k) or 0) for s in sweeps) for k in _SWEEP_SUMS}
    status["dryRun"] = any(bool(s.get("dryRun")) for s in sweeps)
    if errors:
        status["error"] = errors[0][:1000]
    return status


def index_status(shards: dict[str, Any] | None, run_id: str, replicas: int) -> dict[str, int] | None:
    """status.index: the index files of every shard of a run (None unless all of them reported theirs)."""
    mine = [s for s in _of_run(shards, run_id) if s.get("indexRecordings") is not None]
    if len(mine) < replicas:
        return None
    return {
        "recordings": sum(int(s["indexRecordings"]) for s in mine),
        "bytes": sum(int(s.get("indexBytes") or 0) for s in mine),
    }


def progress_text(shards: dict[str, Any] | None, run_id: str, replicas: int) -> str:
    mine = [s for s in (shards or {}).values() if isinstance(s, dict) and s.get("runId") == run_id]
    if not mine:
        return "0%"
    ratios = []
    for s in mine:
        total = int(s.get("total") or 0)
        done = int(s.get("downloaded") or 0) + int(s.get("skipped") or 0) + int(s.get("failed") or 0)
        finished = s.get("phase") in ("Succeeded", "Failed")
        ratios.append(1.0 if finished else (done / total if total else 0.0))
    ratios += [0.0] * max(replicas - len(mine), 0)
    return f"{int(100 * sum(ratios) / max(len(ratios), 1))}%"


@dataclass(frozen=True)
class RunOutcome:
    """What accounting a finished run changes in status."""

    status_patch: dict[str, Any]
    succeeded: bool
    counts: dict[str, int]
    seconds: float
    event_reason: str
    event_message: str


def account_run(backup: RecordingBackup, job: JobView, now: dt.datetime) -> RunOutcome:
    status = backup.status
    shards = status.model_dump(by_alias=True, mode="json").get("shards") if status else None
    totals = shard_totals(shards, job.run_id)
    counts = {k: totals[k] for k in ("downloaded", "skipped", "failed", "bytes")}
    done = job.completion_time or now
    window = f"{iso(from_ms(job.window_start_ms))} - {iso(from_ms(job.window_end_ms))}"
    record = RunRecord(
        job_name=job.name,
        window_start=from_ms(job.window_start_ms),
        window_end=from_ms(job.window_end_ms),
        start_time=job.run_start,
        completion_time=done,
        result=Phase.SUCCEEDED if job.succeeded else Phase.FAILED,
        counts=BackupCounts(**counts),
        message="" if job.succeeded else job.failure_message,
    ).model_dump(by_alias=True, mode="json")
    old_history = status.model_dump(by_alias=True, mode="json").get("history") or [] if status else []
    history = [record, *[h for h in old_history if h.get("jobName") != job.name]][: backup.spec.history_limit]
    patch: dict[str, Any] = {"history": history, "counts": counts}
    keep_for = backup.spec.retention.keep_for if backup.spec.retention else None
    retention = retention_status(shards, job.run_id, keep_for, done)
    if retention is not None:
        patch["retention"] = retention
    index = index_status(shards, job.run_id, job.replicas)
    if index is not None:
        patch["index"] = index
    if job.succeeded:
        old_end = status.last_recording_end_time if status else None
        new_end = from_ms(job.window_end_ms)
        if old_end is None or new_end > old_end:
            patch["lastRecordingEndTime"] = iso(new_end)
        patch["lastSuccessfulTime"] = iso(done)
        reason = Reason.RUN_SUCCEEDED
        message = (
            f"run {job.name} backed up window {window}: {counts['downloaded']} downloaded, "
            f"{counts['skipped']} skipped, {counts['failed']} failed, {counts['bytes']} bytes"
        )
    else:
        reason = Reason.RUN_FAILED
        message = (
            f"run {job.name} failed ({job.failure_message or 'shard pods failed'}); window {window} stays "
            f"pending and the next run covers it again ({counts['failed']} recordings failed)"
        )
    return RunOutcome(
        status_patch=patch,
        succeeded=job.succeeded,
        counts=counts | {"erased": totals["erased"], "retentionDeleted": int((retention or {}).get("deleted", 0))},
        seconds=(done - job.run_start).total_seconds(),
        event_reason=reason,
        event_message=message,
    )
