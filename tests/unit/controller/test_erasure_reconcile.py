"""RecordingErasure reconcile with a fake Cluster: references, waiting for a backup run, the Job and its
mounts, a dry run then the erasure into status, failures and retries."""

from __future__ import annotations

import copy
import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from cxbackup import metrics
from cxbackup.api.erasure import ErasureRecording, ErasureResult
from cxbackup.controller.erasure.handler import reconcile_erasure
from tests.unit.controller.fakes import FakeCluster, ReconcileHarness

REPO = Path(__file__).resolve().parents[3]
T0 = dt.datetime(2026, 8, 25, 0, 15, tzinfo=dt.UTC)
MINUTE = dt.timedelta(minutes=1)
BACKUP = yaml.safe_load((REPO / "examples" / "recordingbackup.yaml").read_text())
BACKUP["metadata"]["namespace"] = "ns"


def _cluster() -> FakeCluster:
    cluster = FakeCluster()
    cluster.put_credentials("dsar-2026-117", {"subject": b"phone:+1 647 838 9001\n"})
    cluster.objects["recordingbackups"] = [copy.deepcopy(BACKUP)]
    cluster.put_pvc("recordings-backup")
    return cluster


@dataclass
class Harness(ReconcileHarness):
    """The repository's example RecordingErasure, with the RecordingBackup, PVC and Secret it names."""

    spec: dict[str, Any] = field(
        default_factory=lambda: yaml.safe_load((REPO / "examples" / "recordingerasure.yaml").read_text())["spec"]
    )
    cluster: FakeCluster = field(default_factory=_cluster)

    uid: str = "u"

    name: ClassVar[str] = "dsar-2026-117"
    created: ClassVar[str] = "2026-08-25T00:10:00Z"
    reconciler = staticmethod(reconcile_erasure)

    def body(self) -> dict[str, Any]:
        body = super().body()
        body["metadata"]["uid"] = self.uid
        return body

    def execute(self) -> None:
        """`kubectl patch ... execute: true` (the API server bumps the generation)."""
        self.spec["execute"] = True
        self.generation += 1


def _finish(h: Harness, result: ErasureResult | None, *, exit_code: int = 0, log: str = "") -> str:
    [name] = [n for n in h.cluster.job_names() if not h.cluster.accounted(n)]
    message = result.model_dump_json(by_alias=True, exclude_none=True) if result is not None else log
    state = {"terminated": {"exitCode": exit_code, "message": message}}
    h.cluster.add_pod(name, {"metadata": {"name": f"{name}-p", "creationTimestamp": "2026-08-25T00:16:00Z"},
                             "status": {"containerStatuses": [{"name": "erase", "state": state}]}})  # fmt: skip
    h.cluster.finish_job(name, succeeded=exit_code == 0, at=T0 + 2 * MINUTE)
    return name


def test_a_new_erasure_runs_a_dry_run_on_the_backups_volume_with_the_subject_as_a_file() -> None:
    h = Harness()
    [started] = h.tick(T0)
    assert started.reason == "ErasureStarted" and "dry run" in started.message
    [name] = h.cluster.job_names()
    job = h.cluster.job(name)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    args = container["args"]
    assert args[:3] == ["erase", "-config", "/etc/cxbackup/backup/config.properties"]
    assert args[args.index("--subject-file") + 1] == "/etc/cxbackup/subject/subject"
    assert args[args.index("--request") + 1] == "DSAR-2026-117" and "--execute" not in args
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["target"]["persistentVolumeClaim"] == {"claimName": "recordings-backup"}
    assert volumes["subject"]["secret"]["items"] == [{"key": "subject", "path": "subject"}]
    assert pod["automountServiceAccountToken"] is False and job["spec"]["backoffLimit"] == 3
    assert job["metadata"]["ownerReferences"][0]["kind"] == "RecordingErasure"
    config = h.cluster.configmaps[("ns", f"{name}-config")]["data"]["config.properties"]
    assert "targetDir=/backup/contact-center" in config and "PASSWORD" not in config
    assert "838" not in json.dumps(job) + config  # the subject stays in its Secret
    assert h.status["phase"] == "Running" and h.status["jobName"] == name


def test_a_dry_run_then_execute_then_nothing_more() -> None:
    h = Harness()
    h.tick(T0)
    dry = ErasureResult(dry_run=True, to_erase=4, held=1, recordings=[
        ErasureRecording(id="r1", outcome="held", detail="legal hold: id r1 (case 7)"),
        ErasureRecording(id="r2", outcome="to-erase"),
    ])  # fmt: skip
    first = _finish(h, dry)
    [planned] = h.tick(T0 + 3 * MINUTE)
    assert planned.reason == "ErasurePlanned" and "4 recording(s) would be erased, 1 kept" in planned.message
    assert "spec.execute: true" in planned.message
    assert h.status["phase"] == "Planned" and h.status["result"]["toErase"] == 4
    assert h.status["result"]["recordings"][0] == {
        "id": "r1",
        "outcome": "held",
        "detail": "legal hold: id r1 (case 7)",
    }
    assert h.tick(T0 + 4 * MINUTE) == [] and h.cluster.accounted(first)  # no second dry run

    h.spec["execute"] = True
    h.generation = 2
    [started] = h.tick(T0 + 5 * MINUTE)
    assert started.reason == "ErasureStarted" and "erasure on" in started.message
    [second] = [n for n in h.cluster.job_names() if n != first]
    executing = h.cluster.job(second)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert executing[-2:] == ["--execute", "--exit-zero-when-held"]  # held recordings are reported, not retried
    before = metrics.BACKUP_ERASURES.labels("ns", "recordings", "erased")._value.get()
    _finish(h, ErasureResult(dry_run=False, erased=4, held=1, ledger=".cxbackup-ledger/erasure-x.jsonl"))
    [done] = h.tick(T0 + 6 * MINUTE)
    assert done.reason == "ErasureSucceeded" and "erased 4 recording(s)" in done.message
    assert "erasure-x.jsonl" in done.message and h.status["phase"] == "Succeeded"
    assert metrics.BACKUP_ERASURES.labels("ns", "recordings", "erased")._value.get() == before + 4
    assert h.tick(T0 + 7 * MINUTE) == [] and len(h.cluster.job_names()) == 2


def _planned(h: Harness, at: dt.datetime = T0) -> str:
    """A dry run started, finished and accounted: the erasure is Planned; returns the Job's name."""
    h.tick(at)
    name = _finish(h, ErasureResult(dry_run=True, to_erase=3))
    h.tick(at + 3 * MINUTE)
    assert h.status["phase"] == "Planned", h.status
    return name


def _execute_jobs(h: Harness) -> list[str]:
    return [n for n in h.cluster.job_names() if "--execute" in h.cluster.job(n)["spec"]["template"]["spec"]
            ["containers"][0]["args"]]  # fmt: skip


def test_some_not_erased_fails_and_run_now_retries() -> None:
    h = Harness()
    _planned(h)
    h.execute()
    h.tick(T0 + 4 * MINUTE)
    _finish(h, ErasureResult(dry_run=False, erased=2, failed=1), exit_code=1)
    [failed] = h.tick(T0 + 5 * MINUTE)
    assert (
        failed.warning and failed.reason == "ErasureFailed" and "1 recording(s) could not be erased" in failed.message
    )
    assert h.status["phase"] == "Failed" and "cxbackup.io/run-now" in h.status["error"]
    h.annotations["cxbackup.io/run-now"] = "1"
    [again] = h.tick(T0 + 6 * MINUTE)
    assert again.reason == "ErasureStarted" and h.status["lastTrigger"] == "1"
    assert len(_execute_jobs(h)) == 2  # a retry of the same reviewed request


def test_a_run_without_a_report_fails_with_what_the_pod_said() -> None:
    h = Harness()
    h.tick(T0)
    _finish(h, None, exit_code=5, log="cxbackup erase: /backup/contact-center: permission denied")
    [failed] = h.tick(T0 + 3 * MINUTE)
    assert failed.reason == "ErasureFailed" and "permission denied" in h.status["error"]


def test_it_waits_while_a_run_of_the_backup_is_active() -> None:
    h = Harness()
    h.cluster.jobs[("ns", "recordings-20260825-001000")] = {
        "metadata": {"name": "recordings-20260825-001000", "labels": {"cxbackup.io/recordingbackup": "recordings"}},
        "status": {},
    }
    [waiting] = h.tick(T0)
    assert waiting.reason == "WaitingForBackup" and h.cluster.job_names() == ["recordings-20260825-001000"]
    assert h.status["phase"] == "Pending" and h.tick(T0 + MINUTE) == []  # said once
    h.cluster.finish_job("recordings-20260825-001000", succeeded=True, at=T0 + MINUTE)
    [started] = h.tick(T0 + 2 * MINUTE)
    assert started.reason == "ErasureStarted"


def test_an_s3_target_gets_its_credentials_as_secret_refs() -> None:
    h = Harness()
    h.cluster.objects["recordingbackups"][0]["spec"]["target"] = {
        "s3": {"bucket": "archive", "prefix": "cc/", "endpointUrl": "https://s3.example.com",
               "credentials": {"name": "archive-s3"}}
    }  # fmt: skip
    h.cluster.put_credentials("archive-s3", {"AWS_ACCESS_KEY_ID": b"a", "AWS_SECRET_ACCESS_KEY": b"s"})
    h.tick(T0)
    [name] = h.cluster.job_names()
    container = h.cluster.job(name)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["TARGET_AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"] == {
        "name": "archive-s3", "key": "AWS_SECRET_ACCESS_KEY"
    }  # fmt: skip
    assert "target" not in {v["name"] for v in h.cluster.job(name)["spec"]["template"]["spec"]["volumes"]}
    config = h.cluster.configmaps[("ns", f"{name}-config")]["data"]["config.properties"]
    assert "targetS3Bucket=archive" in config and "targetS3EndpointUrl=https://s3.example.com" in config


@pytest.mark.parametrize(
    ("change", "reason", "names"),
    [
        (lambda c: c.objects.pop("recordingbackups"), "BackupNotFound",
         "spec.recordingBackup: RecordingBackup ns/recordings not found"),
        (lambda c: c.secrets.pop(("ns", "dsar-2026-117")), "SecretNotFound", "spec.subject.secret"),
        (lambda c: c.put("dsar-2026-117", {"subject": b"x"}), "SecretNotLabelled", "spec.subject.secret"),
        (lambda c: c.pvcs.discard(("ns", "recordings-backup")), "PVCNotFound",
         "spec.recordingBackup (its target.pvc.claimName)"),
        (lambda c: c.objects["recordingbackups"][0]["spec"].update(
            target={"s3": {"bucket": "archive", "credentials": {"name": "missing"}}}), "SecretNotFound",
         "spec.recordingBackup (its target.s3.credentials)"),
        (lambda c: c.objects["recordingbackups"][0]["spec"].update(
            target={"s3": {"bucket": "archive", "endpointUrl": "http://s3.local", "credentials": {"name": "x"}}}),
         "InsecureEndpoint", "spec.recordingBackup (its target.s3.endpointUrl)"),
    ],
)  # fmt: skip
def test_a_missing_reference_blocks_naming_the_field(change: Any, reason: str, names: str) -> None:
    h = Harness()
    change(h.cluster)
    events = h.tick(T0)
    assert h.cluster.jobs == {} and h.status["phase"] in ("Blocked", "Invalid")
    assert h.cond("Ready")["reason"] == reason and names in h.cond("Ready")["message"], h.cond("Ready")
    assert [(e.warning, e.reason) for e in events] == [(True, reason)]


def _refused(h: Harness, events: list[Any], why: str) -> None:
    assert _execute_jobs(h) == [], "an erasure ran"
    assert h.status["phase"] == "Invalid" and h.cond("Ready")["reason"] == "DryRunRequired"
    assert why in h.cond("Ready")["message"] and "Nothing was erased" in h.cond("Ready")["message"]
    assert [(e.warning, e.reason) for e in events] == [(True, "DryRunRequired")]


def test_the_plan_records_the_dry_runs_request_and_execute_runs_it() -> None:
    h = Harness()
    first = _planned(h)
    plan = h.status["plan"]
    assert plan["digest"].startswith("sha256:") and plan["jobName"] == first and plan["toErase"] == 3
    assert plan["observedGeneration"] == 1 and plan["subjectVersion"]
    ann = h.cluster.job(first)["metadata"]["annotations"]
    assert ann["cxbackup.io/erasure-mode"] == "dry-run" and ann["cxbackup.io/request-digest"] == plan["digest"]
    h.execute()
    h.tick(T0 + 4 * MINUTE)
    [executing] = _execute_jobs(h)
    assert h.cluster.job(executing)["metadata"]["annotations"]["cxbackup.io/request-digest"] == plan["digest"]


def test_execute_from_the_start_is_refused_without_a_dry_run() -> None:
    """The API server refuses it on create; the operator refuses it too (e.g. a CRD installed without the rule)."""
    h = Harness()
    h.spec["execute"] = True
    events = h.tick(T0)
    assert h.cluster.job_names() == [] and "plan" not in h.status
    _refused(h, events, "no dry run of this request has completed")
    assert h.tick(T0 + MINUTE) == []  # said once


def test_execute_after_a_dry_run_of_another_request_is_refused() -> None:
    h = Harness()
    _planned(h)
    h.spec["request"] = "DSAR-2026-999"  # with execute in the same change (what the API server refuses)
    h.execute()
    events = h.tick(T0 + 4 * MINUTE)
    _refused(h, events, "was of another request")
    h2 = Harness()
    _planned(h2)
    h2.spec["range"] = {"from": "2026-01-01T00:00:00Z"}
    h2.execute()
    _refused(h2, h2.tick(T0 + 4 * MINUTE), "was of another request")


def test_a_forged_plan_in_status_does_not_let_an_erasure_run() -> None:
    h = Harness()
    h.status["plan"] = {"digest": "sha256:" + "0" * 64, "observedGeneration": 0, "jobName": "x"}
    h.spec["execute"] = True
    _refused(h, h.tick(T0), "was of another request")


def test_execute_set_while_the_dry_run_still_ran_is_refused_its_result_was_not_read() -> None:
    h = Harness()
    h.tick(T0)
    h.execute()  # before the dry run's result is in status
    assert h.tick(T0 + MINUTE) == [] and h.status["phase"] == "Running"  # the dry run goes on
    _finish(h, ErasureResult(dry_run=True, to_erase=3))
    events = h.tick(T0 + 3 * MINUTE)
    assert "ErasurePlanned" in [e.reason for e in events] and h.status["plan"]["observedGeneration"] == 2
    _refused(h, [e for e in events if e.reason != "ErasurePlanned"], "was set before the dry run's result")


def test_a_subject_secret_changed_after_the_dry_run_is_another_request() -> None:
    h = Harness()
    _planned(h)
    h.cluster.put_credentials("dsar-2026-117", {"subject": b"agent:someone-else\n"})
    h.execute()
    _refused(h, h.tick(T0 + 4 * MINUTE), "the subject's Secret dsar-2026-117 changed after the dry run")


def test_a_deleted_and_recreated_erasure_starts_over() -> None:
    """Status goes with the object, and the old object's Jobs (not yet garbage-collected) are not the new one's."""
    h = Harness()
    old_dry_run = _planned(h)
    plan = h.status["plan"]
    again = Harness(cluster=h.cluster, uid="u2")  # same name, new object: empty status
    again.status["plan"] = dict(plan)  # even the old plan copied in does not match the new object
    again.execute()
    _refused(again, again.tick(T0 + 4 * MINUTE), "was of another request")

    class Recreated(Harness):
        created: ClassVar[str] = "2026-08-25T00:20:00Z"

    fresh = Recreated(cluster=h.cluster, uid="u3")
    h.cluster.jobs[("ns", old_dry_run)]["metadata"]["annotations"].pop("cxbackup.io/accounted", None)
    [started] = fresh.tick(T0 + 6 * MINUTE)
    assert started.reason == "ErasureStarted" and "dry run" in started.message
    assert "plan" not in fresh.status and fresh.status["jobName"] != old_dry_run
