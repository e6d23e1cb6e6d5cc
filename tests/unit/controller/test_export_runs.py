"""Pure ExportJob decisions: when a run is due, accounting a run from its result, the retention sweep."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from cxbackup.api.exportjob import ExportJob
from cxbackup.controller.export import decisions as R
from cxbackup.controller.export.manifests import CertificateSource, build_export_job, build_export_sweep_job
from cxbackup.controller.manifests import JobSettings
from cxbackup.export.request import ExportRequest, TimeRange
from cxbackup.export.result import ExportResult
from cxbackup.export.store import ArtifactInfo

REPO = Path(__file__).resolve().parents[3]
CREATED = dt.datetime(2026, 8, 24, 10, 0, 3, tzinfo=dt.UTC)
NOW = dt.datetime(2026, 8, 25, 0, 15, tzinfo=dt.UTC)


def _export(status: dict[str, Any] | None = None, annotations: dict[str, str] | None = None, **spec: Any) -> ExportJob:
    doc = yaml.safe_load((REPO / "examples" / "exportjob.yaml").read_text())
    doc["metadata"].update(namespace="cc", uid="u", generation=1, creationTimestamp="2026-08-24T10:00:03Z")
    if annotations:
        doc["metadata"]["annotations"] = annotations
    doc["spec"].update(spec)
    if status is not None:
        doc["status"] = status
    return ExportJob.model_validate(doc)


def _view(name: str = "ej-1", *, finished: bool = True, succeeded: bool = True, **kw: Any) -> R.ExportJobView:
    base: dict[str, Any] = {
        "name": name, "task": "run", "run_id": "r", "run_start": NOW - dt.timedelta(minutes=1),
        "finished": finished, "succeeded": succeeded, "completion_time": NOW if finished else None,
        "failure_message": "" if succeeded else "BackoffLimitExceeded: Job has reached the specified backoff limit",
        "accounted": False,
    }  # fmt: skip
    base.update(kw)
    return R.ExportJobView(**base)


def _artifact(name: str, expires: dt.datetime, *, expired: bool = False) -> dict[str, Any]:
    return {
        "name": name, "size": 10, "sha256": "0" * 64, "location": f"/exports/{name}",
        "createdAt": "2026-07-01T00:00:00Z", "expiresAt": expires.isoformat(), "expired": expired,
    }  # fmt: skip


# ------------------------------------------------------------------------------------------------ due


def test_a_new_export_runs_once_at_creation_then_on_spec_change_or_trigger() -> None:
    assert R.due_run(_export(), [], NOW) == (CREATED.replace(microsecond=0), "Created")
    ran = {"lastRunGeneration": 1}
    assert R.due_run(_export(ran), [_view()], NOW) is None
    changed = _export(ran)
    changed.metadata["generation"] = 2
    assert R.due_run(changed, [_view()], NOW) == (NOW, "SpecChanged")
    assert R.due_run(_export(ran, {R.TRIGGER_ANNOTATION: "t1"}), [_view()], NOW) == (NOW, "Triggered")
    assert R.due_run(_export({**ran, "lastTrigger": "t1"}, {R.TRIGGER_ANNOTATION: "t1"}), [_view()], NOW) is None
    assert R.due_run(_export(suspend=True), [], NOW) is None


def test_a_scheduled_export_catches_up_once_after_downtime() -> None:
    status = {"lastRunGeneration": 1, "nextScheduleTime": "2026-08-22T00:15:00Z"}
    export = _export(status, schedule="15 0 * * *")
    # three slots were missed: one run, for the oldest due slot (the controller then moves nextScheduleTime on)
    assert R.due_run(export, [_view()], NOW) == (dt.datetime(2026, 8, 22, 0, 15, tzinfo=dt.UTC), "Scheduled")
    early = _export({**status, "nextScheduleTime": "2026-08-26T00:15:00Z"}, schedule="15 0 * * *")
    assert R.due_run(early, [_view()], NOW) is None


# ------------------------------------------------------------------------------------------- account


def _result(**kw: Any) -> ExportResult:
    start = NOW - dt.timedelta(minutes=1)
    result = ExportResult("gdpr-user-4711", "gdprChat", "20260825T001400Z", start, users=("user-4711",),
                          store="/exports", range=TimeRange(start - dt.timedelta(days=30), start))  # fmt: skip
    result.state = "Succeeded"
    result.completion_time = NOW
    for key, value in kw.items():
        setattr(result, key, value)
    return result


def _info(name: str) -> ArtifactInfo:
    return ArtifactInfo.new(name, NOW, 30, run_id="20260825T001400Z", part=1, last=True, records=7)


def test_a_successful_run_replaces_its_running_entry_and_lists_its_artifacts() -> None:
    infos = [ArtifactInfo(**{**_info(f"a{i}.zip.p7m").__dict__, "size": 100 + i, "sha256": f"{i}" * 64,
                             "location": f"/exports/a{i}.zip.p7m"}) for i in (1, 2)]  # fmt: skip
    message = _result(records=14, artifacts=infos).to_json()
    old = {"history": [R.running_record("ej-1", NOW - dt.timedelta(minutes=1)),
                       {"jobName": "ej-0", "startTime": "2026-08-01T00:00:00Z", "state": "Succeeded"}],
           "artifacts": [_artifact("old.zip.p7m", NOW + dt.timedelta(days=3))]}  # fmt: skip
    outcome = R.account_export(_export(old), _view("ej-1"), [message], NOW)
    assert outcome.succeeded and outcome.event_reason == "ExportSucceeded"
    history = outcome.status_patch["history"]
    assert [h["jobName"] for h in history] == ["ej-1", "ej-0"]
    assert history[0]["state"] == "Succeeded" and history[0]["records"] == 14 and history[0]["artifacts"] == 2
    names = [a["name"] for a in outcome.status_patch["artifacts"]]
    assert names == ["old.zip.p7m", "a1.zip.p7m", "a2.zip.p7m"]
    new = outcome.status_patch["artifacts"][1]
    assert new["size"] == 101 and new["sha256"] == "1" * 64 and new["expiresAt"] == "2026-09-24T00:15:00Z"
    assert outcome.status_patch["lastSuccessfulTime"] == "2026-08-25T00:15:00Z"
    assert "14 record(s) into 2 artifact(s), 203 bytes" in outcome.event_message


def test_an_empty_export_succeeds_with_the_explanation() -> None:
    note = "user user-4711: the requested range is outside the chat retention period of 90 days"
    outcome = R.account_export(_export(), _view(), [_result(notes=[note]).to_json()], NOW)
    assert outcome.succeeded and "artifacts" not in outcome.status_patch
    entry = outcome.status_patch["history"][0]
    assert entry["state"] == "Succeeded" and entry["artifacts"] == 0 and entry["message"] == note
    assert outcome.event_message.endswith(f"0 artifact(s), 0 bytes: {note}")


def test_a_failed_run_reports_the_engine_error_and_keeps_no_artifact() -> None:
    result = _result()
    result.fail("vendor credentials rejected (HTTP 401)", retryable=False, reason="SourceAuthError")
    outcome = R.account_export(_export(), _view(succeeded=False), [result.to_json()], NOW)
    assert not outcome.succeeded and outcome.event_reason == "ExportFailed"
    assert outcome.status_patch["history"][0]["error"] == "vendor credentials rejected (HTTP 401)"
    assert "artifacts" not in outcome.status_patch and "lastSuccessfulTime" not in outcome.status_patch


@pytest.mark.parametrize("messages", [[], ["Traceback (most recent call last): ..."]])
def test_a_run_without_a_readable_result_is_failed(messages: list[str]) -> None:
    outcome = R.account_export(_export(), _view(succeeded=False), messages, NOW)
    assert not outcome.succeeded
    entry = outcome.status_patch["history"][0]
    assert entry["state"] == "Failed" and "BackoffLimitExceeded" in entry["error"]


def test_with_running_puts_one_running_entry_first() -> None:
    export = _export({"history": [{"jobName": "ej-0", "startTime": "2026-08-01T00:00:00Z", "state": "Failed"}]})
    history = R.with_running(export, "ej-1", NOW)
    assert [(h["jobName"], h["state"]) for h in history] == [("ej-1", "Running"), ("ej-0", "Failed")]
    assert len(R.with_running(_export({"history": history}), "ej-1", NOW)) == 2


# --------------------------------------------------------------------------------------------- sweep


def test_a_sweep_is_due_only_for_unmarked_expired_artifacts_and_not_twice() -> None:
    status = {"artifacts": [_artifact("gone.zip.p7m", NOW - dt.timedelta(days=1), expired=True),
                            _artifact("kept.zip.p7m", NOW + dt.timedelta(days=1))]}  # fmt: skip
    assert R.artifacts_due(_export(status), NOW) == []
    assert not R.sweep_due(_export(status), [], NOW)
    status["artifacts"].append(_artifact("due.zip.p7m", NOW))
    export = _export(status)
    assert [a.name for a in R.artifacts_due(export, NOW)] == ["due.zip.p7m"]
    assert R.sweep_due(export, [], NOW)
    assert not R.sweep_due(export, [_view(task="sweep", finished=False)], NOW)
    recent_failure = _view(task="sweep", succeeded=False, completion_time=NOW - dt.timedelta(minutes=1))
    assert not R.sweep_due(export, [recent_failure], NOW)
    assert R.sweep_due(export, [recent_failure], NOW + R.SWEEP_RETRY)


def test_a_finished_sweep_marks_what_had_expired_by_its_cutoff() -> None:
    status = {"artifacts": [_artifact("a.zip.p7m", NOW - dt.timedelta(hours=1)),
                            _artifact("b.zip.p7m", NOW + dt.timedelta(hours=1)),
                            _artifact("c.zip.p7m", NOW - dt.timedelta(days=9), expired=True)]}  # fmt: skip
    outcome = R.account_sweep(_export(status), _view(task="sweep", cutoff=NOW), NOW + dt.timedelta(hours=2))
    assert outcome.succeeded and outcome.expired == ["a.zip.p7m"] and outcome.event_reason == "ArtifactsExpired"
    assert {a["name"]: a["expired"] for a in outcome.status_patch["artifacts"]} == {
        "a.zip.p7m": True, "b.zip.p7m": False, "c.zip.p7m": True,
    }  # fmt: skip
    assert outcome.event_message == "retention sweep ej-1 deleted 1 expired artifact(s): a.zip.p7m"
    again = R.account_sweep(_export(outcome.status_patch), _view(task="sweep", cutoff=NOW), NOW)
    assert again.expired == [] and again.status_patch == {}
    failed = R.account_sweep(_export(status), _view(task="sweep", succeeded=False), NOW)
    assert not failed.succeeded and failed.event_reason == "SweepFailed" and failed.status_patch == {}


def test_job_view_reads_task_cutoff_and_state() -> None:
    export = _export()
    job = build_export_sweep_job(export, "20260825-001500", JobSettings(), cutoff=NOW)
    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}], "completionTime": "2026-08-25T00:16:00Z"}
    view = R.export_job_view(job)
    assert (view.task, view.cutoff, view.finished, view.succeeded) == ("sweep", NOW, True, True)
    run = build_export_job(
        export,
        "r",
        ExportRequest.from_spec(export.spec, "x").to_args(),
        CertificateSource("s"),
        JobSettings(),
        run_start=NOW,
    )
    assert R.export_job_view(run).task == "run" and R.export_job_view(run).active
