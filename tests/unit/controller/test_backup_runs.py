"""Run decisions: when a run is due, and what a finished run changes (the checkpoint only on success)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from cxbackup.api import RecordingBackup
from cxbackup.api.recordingbackup import RecordingBackupStatus
from cxbackup.controller.backup.decisions import account_run, due_slot, job_view, progress_text
from cxbackup.controller.backup.manifests import ANNOTATION_REPLICAS, ANNOTATION_WINDOW_END, ANNOTATION_WINDOW_START
from cxbackup.controller.conditions import set_condition
from cxbackup.controller.jobstate import ANNOTATION_ACCOUNTED, ANNOTATION_RUN_START
from cxbackup.controller.manifests import LABEL_RUN

NOW = dt.datetime(2026, 11, 23, 5, 0, tzinfo=dt.UTC)
CREATED = "2026-11-23T04:00:00Z"


def _backup(spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None, **meta: Any) -> RecordingBackup:
    body: dict[str, Any] = {
        "metadata": {
            "name": "rb",
            "namespace": "ns",
            "uid": "u",
            "generation": 1,
            "creationTimestamp": CREATED,
            **meta,
        },
        "spec": {
            "source": {
                "gwsUriPrefix": "http://x/api/v2",
                "gwsCredentials": {"name": "g"},
                "s3Credentials": {"name": "s"},
            },
            "target": {"pvc": {"claimName": "p"}},
            **(spec or {}),
        },
    }
    if status is not None:
        body["status"] = status
    return RecordingBackup.model_validate(body)


def _job(
    name: str, *, done: str | None, start: str = "2026-11-23T04:00:00Z", accounted: bool = False
) -> dict[str, Any]:
    conditions = [] if done is None else [{"type": done, "status": "True", "reason": "BackoffLimitExceeded"}]
    ann = {
        ANNOTATION_WINDOW_START: "1000",
        ANNOTATION_WINDOW_END: "2000",
        ANNOTATION_REPLICAS: "2",
        ANNOTATION_RUN_START: start,
    }
    if accounted:
        ann[ANNOTATION_ACCOUNTED] = "true"
    return {
        "metadata": {"name": name, "labels": {LABEL_RUN: name}, "annotations": ann},
        "status": {"conditions": conditions, "completionTime": "2026-11-23T04:10:00Z" if done == "Complete" else None},
    }


def test_a_new_backup_runs_at_once_even_with_a_schedule() -> None:
    assert due_slot(_backup(), [], NOW) == (dt.datetime(2026, 11, 23, 4, 0, tzinfo=dt.UTC), "Created")
    assert due_slot(_backup({"schedule": "0 6 * * *"}), [], NOW) is not None


def test_suspend_stops_new_runs() -> None:
    assert due_slot(_backup({"suspend": True}), [], NOW) is None


def test_one_shot_runs_once_then_again_only_when_the_spec_changes() -> None:
    ran = _backup(status={"lastRunGeneration": 1})
    assert due_slot(ran, [], NOW) is None
    changed = _backup(status={"lastRunGeneration": 1}, generation=2)
    assert due_slot(changed, [], NOW) == (NOW, "SpecChanged")


def test_schedule_is_due_at_its_time_and_missed_slots_run_once() -> None:
    status = {"lastRunGeneration": 1, "nextScheduleTime": "2026-11-23T04:30:00Z"}
    backup = _backup({"schedule": "30 * * * *"}, status)
    assert due_slot(backup, [], NOW) == (dt.datetime(2026, 11, 23, 4, 30, tzinfo=dt.UTC), "Scheduled")
    before = dt.datetime(2026, 11, 23, 4, 29, tzinfo=dt.UTC)
    assert due_slot(backup, [], before) is None
    # after a long downtime: still one slot (the stored next time), not one per missed hour
    late = dt.datetime(2026, 11, 24, 5, 0, tzinfo=dt.UTC)
    assert due_slot(backup, [], late) == (dt.datetime(2026, 11, 23, 4, 30, tzinfo=dt.UTC), "Scheduled")


def test_the_run_now_annotation_triggers_once() -> None:
    status = {"lastRunGeneration": 1}
    backup = _backup(status=status, annotations={"cxbackup.io/run-now": "a"})
    assert due_slot(backup, [], NOW) == (NOW, "Triggered")
    done = _backup(status={**status, "lastTrigger": "a"}, annotations={"cxbackup.io/run-now": "a"})
    assert due_slot(done, [], NOW) is None


def test_a_successful_run_advances_the_checkpoint() -> None:
    shards = {
        "0": {"runId": "j1", "phase": "Succeeded", "total": 3, "downloaded": 2, "skipped": 1, "failed": 0, "bytes": 10},
        "1": {"runId": "j1", "phase": "Succeeded", "total": 2, "downloaded": 2, "skipped": 0, "failed": 0, "bytes": 5},
        "9": {"runId": "old", "downloaded": 100},
    }
    backup = _backup(status={"shards": shards, "lastRecordingEndTime": "1970-01-01T00:00:01Z"})
    outcome = account_run(backup, job_view(_job("j1", done="Complete")), NOW)
    assert outcome.succeeded
    assert outcome.counts == {
        "downloaded": 4, "skipped": 1, "failed": 0, "bytes": 15, "erased": 0, "retentionDeleted": 0,
    }  # fmt: skip
    assert outcome.status_patch["lastRecordingEndTime"] == "1970-01-01T00:00:02Z"
    assert outcome.status_patch["history"][0]["result"] == "Succeeded"
    assert "retention" not in outcome.status_patch  # no shard swept


def test_the_shards_sweeps_and_index_files_add_up_in_status() -> None:
    sweep = {"dryRun": False, "expired": 5, "held": 1, "deleted": 4, "deletedBytes": 400, "failed": 1}
    shards = {
        "0": {"runId": "j1", "phase": "Succeeded", "erased": 2, "retention": sweep, "indexRecordings": 10,
              "indexBytes": 4096},
        "1": {"runId": "j1", "phase": "Succeeded", "retention": sweep | {"deleted": 5, "failed": 0},
              "indexRecordings": 7, "indexBytes": 2048},
        "2": {"runId": "j1", "phase": "Failed", "retentionError": "the retention sweep failed: disk full"},
    }  # fmt: skip
    backup = _backup({"retention": {"keepFor": "P7Y", "sweep": "Delete"}}, {"shards": shards})
    outcome = account_run(backup, job_view(_job("j1", done="Complete")), NOW)
    retention = outcome.status_patch["retention"]
    assert (retention["expired"], retention["held"], retention["deleted"], retention["failed"]) == (10, 2, 9, 1)
    assert retention["keepFor"] == "P7Y" and retention["deletedBytes"] == 800 and not retention["dryRun"]
    assert retention["error"] == "the retention sweep failed: disk full"
    assert outcome.counts["erased"] == 2 and outcome.counts["retentionDeleted"] == 9
    assert outcome.status_patch["index"] == {"recordings": 17, "bytes": 6144}  # the Job's 2 shards
    RecordingBackupStatus.model_validate({"retention": retention, "shards": shards})  # fits the schema
    del shards["1"]["indexRecordings"]  # a shard that did not report its index file: no partial total
    backup = _backup({"retention": {"keepFor": "P7Y", "sweep": "Delete"}}, {"shards": shards})
    assert "index" not in account_run(backup, job_view(_job("j1", done="Complete")), NOW).status_patch


def test_a_failed_run_never_advances_the_checkpoint() -> None:
    backup = _backup(status={"lastRecordingEndTime": "1970-01-01T00:00:01Z"})
    outcome = account_run(backup, job_view(_job("j1", done="Failed")), NOW)
    assert not outcome.succeeded
    assert "lastRecordingEndTime" not in outcome.status_patch
    assert "lastSuccessfulTime" not in outcome.status_patch
    assert "BackoffLimitExceeded" in outcome.event_message
    assert outcome.status_patch["history"][0]["result"] == "Failed"


def test_the_checkpoint_never_moves_backwards() -> None:
    backup = _backup(status={"lastRecordingEndTime": "1970-01-01T00:00:05Z"})
    outcome = account_run(backup, job_view(_job("j1", done="Complete")), NOW)
    assert "lastRecordingEndTime" not in outcome.status_patch


def test_history_is_limited_and_newest_first() -> None:
    old = [
        {"jobName": f"j{i}", "windowStart": CREATED, "windowEnd": CREATED, "startTime": CREATED, "result": "Succeeded"}
        for i in range(5)
    ]
    backup = _backup({"historyLimit": 3}, {"history": old})
    outcome = account_run(backup, job_view(_job("new", done="Complete")), NOW)
    assert [h["jobName"] for h in outcome.status_patch["history"]] == ["new", "j0", "j1"]


def test_progress_counts_missing_shards_as_zero() -> None:
    shards = {"0": {"runId": "r", "phase": "Succeeded"}, "1": {"runId": "r", "total": 4, "downloaded": 2}}
    assert progress_text(shards, "r", 4) == "37%"
    assert progress_text(None, "r", 2) == "0%"


def test_condition_transition_time_changes_only_on_flip() -> None:
    first = set_condition(None, "Ready", "True", "A", "m", now=NOW, generation=1)
    later = NOW + dt.timedelta(hours=1)
    same = set_condition(first, "Ready", "True", "B", "m2", now=later, generation=2)
    assert same[0]["lastTransitionTime"] == first[0]["lastTransitionTime"]
    flipped = set_condition(same, "Ready", "False", "C", "m3", now=later, generation=2)
    assert flipped[0]["lastTransitionTime"] != first[0]["lastTransitionTime"]
    assert flipped[0]["observedGeneration"] == 2
