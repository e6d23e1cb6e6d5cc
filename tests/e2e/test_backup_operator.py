"""The operator end to end on a real node: RecordingBackups become sharded Jobs whose pods (real containers
from the project's image) back up the emulator's recordings into a PVC on a local PersistentVolume; status,
checkpoint, schedule, suspend and cleanup."""

from __future__ import annotations

import datetime as dt
import itertools
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from cxbackup_dev.emulator import Emulator, FaultConfig, parse_time
from cxbackup_dev.emulator.faults import EndpointFaults
from cxbackup_dev.localcluster.stack import LocalStack
from tests.resources import apply, emulator_s3, history, recording_backup

pytestmark = pytest.mark.e2e


def _ns(stack: LocalStack, emu: Emulator) -> str:
    ns = stack.new_namespace("e2e")
    stack.prepare_namespace(ns, emu.env())
    return ns


def _backup(emu: Emulator, **spec: Any) -> dict[str, Any]:
    """The e2e tests' backup: folder cc, 4 downloads at a time, 2 retries per shard."""
    defaults = {"target": {"pvc": {"claimName": "recordings", "subPath": "cc"}}, "concurrency": 4}
    return recording_backup(emu, "rb", **(defaults | {"backoffLimitPerIndex": 2} | spec))


def _wait_runs(stack: LocalStack, ns: str, count: int, timeout: float = 180) -> dict[str, Any]:
    return stack.wait_for("rb", ns, "rb", lambda b: len(history(b)) >= count, timeout=timeout)


def _tree(stack: LocalStack, ns: str) -> dict[str, list[Path]]:
    """callUUID -> files, from the backed-up tree (hidden temp files are reported separately)."""
    root = stack.pvc_dir(ns) / "cc"
    by_call: dict[str, list[Path]] = {}
    for path in root.rglob("*"):
        if path.is_file() and path.name.endswith(".json") and not path.parent.name.startswith("."):
            by_call.setdefault(path.parent.name, []).append(path)
    return by_call


def _hidden(stack: LocalStack, ns: str) -> list[Path]:
    root = stack.pvc_dir(ns) / "cc"
    return [p for p in root.rglob(".*") if p.is_file() and ".rcbs-lock" not in p.name]


def _expected(emu: Emulator, body: dict[str, Any]) -> set[str]:
    run = history(body)[0]
    lo = int(dt.datetime.fromisoformat(run["windowStart"].replace("Z", "+00:00")).timestamp() * 1000)
    hi = int(dt.datetime.fromisoformat(run["windowEnd"].replace("Z", "+00:00")).timestamp() * 1000)
    return {r["id"] for r in emu.records(lo, hi)}


def test_one_shot_backup_with_three_shards_covers_every_recording_once(
    stack: LocalStack, emulator: Emulator, tmp_path: Path
) -> None:
    ns = _ns(stack, emulator)
    apply(stack, ns, _backup(emulator, replicas=3))
    body = _wait_runs(stack, ns, 1)
    run = history(body)[0]
    assert run["result"] == "Succeeded", run
    expected = _expected(emulator, body)
    assert len(expected) > 10
    tree = _tree(stack, ns)
    assert set(tree) == expected
    assert all(len(files) == 1 for files in tree.values())
    assert run["counts"]["downloaded"] == len(expected)
    status = body["status"]
    assert set(status["shards"]) == {"0", "1", "2"}
    assert sum(s["downloaded"] for s in status["shards"].values()) == len(expected)
    assert status["lastRecordingEndTime"] == run["windowEnd"]
    assert status["phase"] == "Succeeded"
    assert _hidden(stack, ns) == []
    # the media decrypt (real openssl) to exactly what the vendor recorded
    call = sorted(expected)[0]
    folder = tree[call][0].parent
    media = [p for p in folder.iterdir() if not p.name.endswith(".json") and not p.name.startswith(".")]
    assert media
    for path in media:
        out = tmp_path / "plain"
        subprocess.run(
            ["openssl", "cms", "-decrypt", "-inform", "DER", "-binary", "-inkey", str(emulator.tenant_key_path),
             "-in", str(path), "-out", str(out)],
            check=True, capture_output=True,
        )  # fmt: skip
        assert out.read_bytes() == emulator.media_plaintext(path.name)
    # a run event, and the Job is owned by the resource
    reasons = {e["reason"] for e in stack.events(ns)}
    assert {"RunStarted", "RunSucceeded"} <= reasons
    jobs = json.loads(stack.cp.kubectl("get", "jobs", "-n", ns, "-o", "json").stdout)["items"]
    assert jobs[0]["metadata"]["ownerReferences"][0]["kind"] == "RecordingBackup"
    assert jobs[0]["spec"]["completions"] == 3
    # real containers: the worker account through in-cluster configuration (no kubeconfig handed in), the
    # restricted security context, files owned by uid 10001 on the local volume, the summary as the
    # termination message
    pods = json.loads(stack.cp.kubectl("get", "pods", "-n", ns, "-o", "json").stdout)["items"]
    assert len(pods) == 3
    for pod in pods:
        assert pod["spec"]["serviceAccountName"] == "cxbackup-worker"
        container = pod["spec"]["containers"][0]
        assert container["image"] == stack.image
        assert "KUBECONFIG" not in {e["name"] for e in container.get("env", [])}
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        [state] = pod["status"]["containerStatuses"]
        summary = json.loads(state["state"]["terminated"]["message"])
        assert summary["kind"] == "RcbsRunSummary" and summary["result"] == "Succeeded", summary
        # the image's native transfer moved the media, checked by the CRC32 the emulator's S3 keeps
        logs = stack.pod_logs(ns, pod["metadata"]["name"])
        assert "Media transfer: native (/opt/cxbackup/bin/cxbackup-fetch)" in logs, logs[-2000:]
        assert re.search(r"Media files verified: \d+ by CRC32\n", logs), logs[-2000:]
    assert sum(
        json.loads(p["status"]["containerStatuses"][0]["state"]["terminated"]["message"])["downloaded"] for p in pods
    ) == len(expected)
    assert {p.stat().st_uid for p in folder.iterdir()} == {10001}
    # the search index the three shard pods kept: one file each, every backed-up recording found once
    index = stack.pvc_dir(ns) / "cc" / ".cxbackup-index"
    assert sorted(p.name for p in index.glob("*.sqlite3")) == [f"shard-{i}-of-3.sqlite3" for i in range(3)]
    found = subprocess.run(
        [sys.executable, "-m", "cxbackup", "search", "--target", str(stack.pvc_dir(ns) / "cc"), "--json",
         "--limit", "1000", "--from", "2000-01-01"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    doc = json.loads(found.stdout)
    assert sorted(r["id"] for r in doc["recordings"]) == sorted(expected) and doc["total"] == len(expected)


def test_a_failed_run_keeps_the_checkpoint_and_the_next_run_completes(stack: LocalStack, emulator: Emulator) -> None:
    ns = _ns(stack, emulator)
    emulator.set_faults(FaultConfig(endpoints={"s3": EndpointFaults(error_rate=1.0, error_status=500)}))
    apply(stack, ns, _backup(emulator, replicas=2, backoffLimitPerIndex=1))
    body = _wait_runs(stack, ns, 1)
    assert history(body)[0]["result"] == "Failed"
    assert "lastRecordingEndTime" not in body["status"]
    assert body["status"]["phase"] == "Failed"
    degraded = next(c for c in body["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["status"] == "True"
    emulator.set_faults(None)
    stack.cp.kubectl("annotate", "rb", "rb", "-n", ns, "cxbackup.io/run-now=retry-1")
    body = _wait_runs(stack, ns, 2)
    latest = history(body)[0]
    assert latest["result"] == "Succeeded", latest
    assert body["status"]["lastRecordingEndTime"] == latest["windowEnd"]
    assert set(_tree(stack, ns)) == _expected(emulator, body)


def test_a_killed_shard_pod_is_retried_and_nothing_is_lost(stack: LocalStack, emulator: Emulator) -> None:
    ns = _ns(stack, emulator)
    emulator.set_faults(FaultConfig(endpoints={"s3": EndpointFaults(latency_s=0.2)}))
    apply(stack, ns, _backup(emulator, replicas=2, concurrency=1))
    deadline = time.monotonic() + 60
    killed = False
    while time.monotonic() < deadline and not killed:
        pods = json.loads(stack.cp.kubectl("get", "pods", "-n", ns, "-o", "json").stdout)["items"]
        running = [p for p in pods if p.get("status", {}).get("phase") == "Running"]
        if running:
            time.sleep(1.0)
            stack.kill_container(ns, running[0]["metadata"]["name"])
            killed = True
        time.sleep(0.2)
    assert killed
    emulator.set_faults(None)
    body = _wait_runs(stack, ns, 1)
    assert history(body)[0]["result"] == "Succeeded"
    tree = _tree(stack, ns)
    assert set(tree) == _expected(emulator, body)
    assert _hidden(stack, ns) == []


def test_a_schedule_runs_again_and_downloads_only_new_recordings(stack: LocalStack, emulator: Emulator) -> None:
    ns = _ns(stack, emulator)
    apply(stack, ns, _backup(emulator, schedule="* * * * *"))
    first = _wait_runs(stack, ns, 1)
    assert history(first)[0]["result"] == "Succeeded"
    before = set(_tree(stack, ns))
    # A new call two seconds from now. Runs start on minute boundaries; keep clear of one so the run that
    # covers the new call lists it after it exists (a window is by start time, as in RCBS).
    now = dt.datetime.now(dt.UTC)
    if 60 - now.second < 6:
        time.sleep(62 - now.second)
    new = emulator.add_recording(dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2))
    deadline = time.monotonic() + 200
    while new["id"] not in _tree(stack, ns) and time.monotonic() < deadline:
        time.sleep(1)
    assert new["id"] in _tree(stack, ns)
    # the run that wrote it is accounted once its Job completes
    body = stack.wait_for(
        "rb", ns, "rb", lambda b: len(history(b)) >= 2 and not b["status"].get("currentRun"), timeout=120
    )
    later = history(body)[:-1]  # newest first; the last one is the first run
    assert later, "no second run"
    for run in later:
        assert run["result"] == "Succeeded"
        lo = int(dt.datetime.fromisoformat(run["windowStart"].replace("Z", "+00:00")).timestamp() * 1000)
        hi = int(dt.datetime.fromisoformat(run["windowEnd"].replace("Z", "+00:00")).timestamp() * 1000)
        in_window = {r["id"] for r in emulator.records(lo, hi)}
        assert run["counts"]["downloaded"] == len(in_window), run  # only new recordings, none twice
        assert run["counts"]["skipped"] == 0
    newest_first = history(body)
    for newer, older in itertools.pairwise(newest_first):
        assert newer["windowStart"] == older["windowEnd"]  # contiguous windows: nothing missed
    assert new["id"] not in before
    assert body["status"]["nextScheduleTime"]


def test_suspend_stops_new_runs(stack: LocalStack, emulator: Emulator) -> None:
    ns = _ns(stack, emulator)
    apply(stack, ns, _backup(emulator, suspend=True))
    stack.wait_for("rb", ns, "rb", lambda b: b.get("status", {}).get("phase") == "Suspended", timeout=60)
    stack.cp.kubectl("annotate", "rb", "rb", "-n", ns, "cxbackup.io/run-now=now")
    time.sleep(4)
    jobs = json.loads(stack.cp.kubectl("get", "jobs", "-n", ns, "-o", "json").stdout)["items"]
    assert jobs == []
    stack.cp.kubectl("patch", "rb", "rb", "-n", ns, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    body = _wait_runs(stack, ns, 1)
    assert history(body)[0]["result"] == "Succeeded"


def test_changing_replicas_between_runs_downloads_each_recording_once(stack: LocalStack, emulator: Emulator) -> None:
    ns = _ns(stack, emulator)
    day = dt.datetime.fromtimestamp(emulator.start_ms / 1000, dt.UTC)
    lo = str(emulator.start_ms)
    hi = str(int((day + dt.timedelta(hours=5)).timestamp() * 1000))
    # minDate/maxDate pin the window (RCBS's order: minDate is the newer bound), so both runs cover it
    apply(stack, ns, _backup(emulator, replicas=2, window={"minDate": hi, "maxDate": lo}))
    first = _wait_runs(stack, ns, 1)
    assert history(first)[0]["result"] == "Succeeded"
    expected = _expected(emulator, first)
    assert history(first)[0]["counts"]["downloaded"] == len(expected)
    stack.cp.kubectl("patch", "rb", "rb", "-n", ns, "--type=merge", "-p", '{"spec":{"replicas":3}}')
    second = _wait_runs(stack, ns, 2)
    latest = history(second)[0]
    assert latest["result"] == "Succeeded"
    assert latest["counts"]["downloaded"] == 0
    assert latest["counts"]["skipped"] == len(expected)
    assert set(_tree(stack, ns)) == expected


def test_deleting_the_resource_removes_jobs_and_configmaps_but_keeps_the_data(
    stack: LocalStack, emulator: Emulator
) -> None:
    ns = _ns(stack, emulator)
    apply(stack, ns, _backup(emulator))
    _wait_runs(stack, ns, 1)
    kept = set(_tree(stack, ns))
    assert kept
    stack.cp.kubectl("delete", "rb", "rb", "-n", ns, "--wait=true", "--timeout=60s")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = json.loads(stack.cp.kubectl("get", "jobs", "-n", ns, "-o", "json").stdout)["items"]
        cms = json.loads(stack.cp.kubectl("get", "configmaps", "-n", ns, "-l", "cxbackup.io/recordingbackup",
                                          "-o", "json").stdout)["items"]  # fmt: skip
        if not jobs and not cms:
            break
        time.sleep(0.5)
    assert jobs == [] and cms == []
    assert set(_tree(stack, ns)) == kept


def test_a_missing_secret_gives_a_condition_and_an_event_and_no_job(stack: LocalStack, emulator: Emulator) -> None:
    ns = _ns(stack, emulator)
    body = _backup(emulator)
    body["spec"]["source"]["gwsCredentials"] = {"name": "does-not-exist"}
    apply(stack, ns, body)
    got = stack.wait_for("rb", ns, "rb", lambda b: b.get("status", {}).get("phase") == "Blocked", timeout=60)
    ready = next(c for c in got["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "SecretNotFound"
    assert "spec.source.gwsCredentials" in ready["message"] and "does-not-exist" in ready["message"]
    assert stack.wait_event(ns, None, None, "SecretNotFound")["type"] == "Warning"
    assert json.loads(stack.cp.kubectl("get", "jobs", "-n", ns, "-o", "json").stdout)["items"] == []


def _metric(stack: LocalStack, name: str, ns: str, label: str = "") -> float | None:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith(name + "{") and f'namespace="{ns}"' in line and label in line:
                return float(line.rsplit(" ", 1)[1])
    return None


def test_the_periodic_audit_reports_missing_recordings(stack: LocalStack, emulator: Emulator) -> None:
    ns = _ns(stack, emulator)
    apply(stack, ns, _backup(emulator, audit={"enabled": True, "schedule": "* * * * *"}))
    first = stack.wait_for("rb", ns, "rb", lambda b: (b.get("status", {}).get("audit") or {}).get("lastTime"))
    audit = first["status"]["audit"]
    assert audit["missing"] == 0 and audit["checked"] > 10, audit
    assert history(first)[0]["result"] == "Succeeded"
    done = stack.wait_for(
        "rb", ns, "rb", lambda b: any(c["type"] == "Audited" for c in b["status"].get("conditions", [])), timeout=30
    )
    audited = next(c for c in done["status"]["conditions"] if c["type"] == "Audited")
    assert audited["status"] == "True" and audited["reason"] == "Complete"
    # a recording disappears from the target: the next audit (next minute) finds it
    victim = sorted(_tree(stack, ns))[0]
    folder = _tree(stack, ns)[victim][0].parent
    for path in folder.iterdir():
        if not path.name.endswith(".json"):
            path.unlink()
    second = stack.wait_for(
        "rb", ns, "rb", lambda b: b["status"]["audit"]["lastTime"] != audit["lastTime"], timeout=150
    )
    assert second["status"]["audit"]["missing"] == 1
    assert second["status"]["audit"]["oldestMissingStart"]
    assert stack.wait_event(ns, "RecordingBackup", None, "AuditMissing", timeout=20)["type"] == "Warning"
    assert _metric(stack, "cxbackup_backup_audit_missing_recordings", ns) == 1.0
    margin = _metric(stack, "cxbackup_backup_retention_margin_seconds", ns)
    assert margin is not None and margin < 30 * 86400


def test_backup_into_an_s3_bucket_under_object_lock(stack: LocalStack, emulator: Emulator) -> None:
    """An S3 target with Object Lock, through the operator: every recording object of the run is locked
    until its start plus retention.keepFor, and the state file and the search index are not."""
    import isodate

    ns = _ns(stack, emulator)
    client = emulator_s3(stack, emulator)
    client.create_bucket(Bucket="archive", ObjectLockEnabledForBucket=True)
    target = {
        "s3": {
            "bucket": "archive",
            "prefix": "cc/",
            "endpointUrl": emulator.s3_endpoint,
            "credentials": {"name": "vendor-s3"},  # the emulator's S3 holds the target bucket too
            "objectLock": "GOVERNANCE",
        }
    }
    apply(stack, ns, _backup(emulator, target=target, retention={"keepFor": "P90D"}))
    body = _wait_runs(stack, ns, 1, timeout=240)
    assert history(body)[0]["result"] == "Succeeded", history(body)[0]
    expected = _expected(emulator, body)
    assert expected
    records = {r["id"]: r for r in emulator.records()}
    keys = [o["Key"] for page in client.get_paginator("list_objects_v2").paginate(Bucket="archive")
            for o in page.get("Contents", [])]  # fmt: skip
    locked = {k.rsplit("/", 2)[-2] for k in keys if k.endswith(".json")}
    assert locked == expected
    for key in keys:
        head = client.head_object(Bucket="archive", Key=key)
        if key == "cc/last_recording_endtime.txt" or key.startswith("cc/.cxbackup-index/"):
            assert "ObjectLockMode" not in head, key  # rewritten at every run: never locked
            continue
        rec = records[key.rsplit("/", 2)[-2]]
        start = dt.datetime.fromtimestamp(parse_time(rec["startTime"]) / 1000, dt.UTC)
        assert head["ObjectLockMode"] == "GOVERNANCE", key
        assert abs(head["ObjectLockRetainUntilDate"] - (start + isodate.parse_duration("P90D"))) < dt.timedelta(
            seconds=1
        ), key


def test_retention_sweep_dry_run_then_delete_keeps_held_recordings(stack: LocalStack, emulator: Emulator) -> None:
    """spec.retention through the operator: a DryRun run counts what is past keepFor without touching it, then
    Delete (a spec change runs the one-shot backup again) deletes exactly those, keeping the held one; status,
    metrics, the target's ledger and holds, and the search index agree."""
    ns = _ns(stack, emulator)
    first = _backup(emulator, replicas=2)
    # keepFor is hours here (the emulator's recordings are hours old): without a stated vendor retention, which
    # a deleting sweep may not undercut, and confirmed (confirmKeepFor), as a keepFor under a year must be
    del first["spec"]["source"]["retentionDays"]
    records = sorted(emulator.records(None, int(time.time() * 1000)), key=lambda r: parse_time(r["startTime"]))
    n_old = 6
    cut = (parse_time(records[n_old - 1]["startTime"]) + parse_time(records[n_old]["startTime"])) / 2
    keep_for = f"PT{int(time.time() - cut / 1000)}S"  # the cut 7 minutes from any start: minutes of slack
    old = {r["id"] for r in records[:n_old]}
    held = records[1]["id"]
    retention = {"keepFor": keep_for, "confirmKeepFor": keep_for, "sweep": "DryRun",
                 "legalHolds": [{"recordingId": held, "reason": "case 44"}]}  # fmt: skip
    apply(stack, ns, first | {"spec": first["spec"] | {"retention": retention}})
    body = _wait_runs(stack, ns, 1)
    assert history(body)[0]["result"] == "Succeeded", history(body)[0]
    expected = _expected(emulator, body)
    assert old <= expected
    status = body["status"]["retention"]
    assert (status["dryRun"], status["expired"], status["held"], status["deleted"]) == (True, n_old - 1, 1, 0)
    assert set(_tree(stack, ns)) == expected  # a dry run deletes nothing
    assert body["status"]["index"]["recordings"] == len(expected)

    patch = {"spec": {"retention": retention | {"sweep": "Delete"}}}
    stack.cp.kubectl("patch", "rb", "rb", "-n", ns, "--type=merge", "-p", json.dumps(patch))
    body = _wait_runs(stack, ns, 2)
    assert history(body)[0]["result"] == "Succeeded", history(body)[0]
    status = body["status"]["retention"]
    assert (status["dryRun"], status["deleted"], status["held"], status["failed"]) == (False, n_old - 1, 1, 0)
    assert status["keepFor"] == keep_for and status["deletedBytes"] > 0
    assert set(_tree(stack, ns)) == expected - (old - {held})
    assert body["status"]["index"]["recordings"] == len(expected) - (n_old - 1)
    root = stack.pvc_dir(ns) / "cc"
    ledger = [json.loads(line) for p in (root / ".cxbackup-ledger").glob("retention-*.jsonl")
              for line in p.read_text().splitlines()]  # fmt: skip
    assert {e["id"] for e in ledger if "deletedAt" in e} == old - {held}
    holds = json.loads((root / ".cxbackup-ledger" / "holds.json").read_text())
    assert holds["sources"][f"RecordingBackup {ns}/rb"][0]["value"] == held
    assert _metric(stack, "cxbackup_backup_retention_deleted_total", ns) == n_old - 1
    assert _metric(stack, "cxbackup_backup_index_recordings", ns) == len(expected) - (n_old - 1)


def test_a_recording_erasure_dry_run_then_execute_and_the_operator_never_backs_them_up_again(
    stack: LocalStack, emulator: Emulator
) -> None:
    """A RecordingErasure (the subject in a Secret) runs a dry run into status, then, with execute, erases on the
    backup's volume from a pod of its own; another run of the same window by the operator's worker pods leaves
    the erased recordings absent (the vendor still lists them), counted as erased."""
    ns = _ns(stack, emulator)
    day = dt.datetime.fromtimestamp(emulator.start_ms / 1000, dt.UTC)
    lo, hi = str(emulator.start_ms), str(int((day + dt.timedelta(hours=5)).timestamp() * 1000))
    apply(stack, ns, _backup(emulator, replicas=2, window={"minDate": hi, "maxDate": lo}))
    first = _wait_runs(stack, ns, 1)
    assert history(first)[0]["result"] == "Succeeded", history(first)[0]
    expected = _expected(emulator, first)
    agent = next(r for r in emulator.records() if r["id"] in expected)["mediaFiles"][0]["parameters"]["username"]
    stack.cp.kubectl("create", "secret", "generic", "dsar-1", "-n", ns, f"--from-literal=subject=agent:{agent}")
    stack.cp.kubectl("label", "secret", "dsar-1", "-n", ns, "cxbackup.io/credentials=true")
    erasure = {"apiVersion": "cxbackup.io/v1alpha1", "kind": "RecordingErasure", "metadata": {"name": "dsar-1"},
               "spec": {"recordingBackup": "rb", "subject": {"secret": "dsar-1"}, "request": "DSAR-1"}}  # fmt: skip
    apply(stack, ns, erasure)
    planned = stack.wait_for("rerase", ns, "dsar-1", lambda e: (e.get("status") or {}).get("phase") in
                             ("Planned", "Failed", "Blocked", "Invalid"), timeout=180)  # fmt: skip
    assert planned["status"]["phase"] == "Planned", planned["status"]
    result = planned["status"]["result"]
    to_erase = {r["id"] for r in result["recordings"]}
    assert result["dryRun"] and result["toErase"] == len(to_erase) > 0 and to_erase <= expected
    assert set(_tree(stack, ns)) == expected  # a dry run changes nothing
    assert agent not in json.dumps(planned)  # the subject stays in its Secret

    stack.cp.kubectl("patch", "rerase", "dsar-1", "-n", ns, "--type=merge", "-p", '{"spec":{"execute":true}}')
    done = stack.wait_for("rerase", ns, "dsar-1", lambda e: (e.get("status") or {}).get("phase") in
                          ("Succeeded", "Failed"), timeout=180)  # fmt: skip
    assert done["status"]["phase"] == "Succeeded", done["status"]
    erased = {r["id"] for r in done["status"]["result"]["recordings"] if r["outcome"] == "erased"}
    assert erased == to_erase and done["status"]["result"]["erased"] == len(erased)
    assert set(_tree(stack, ns)) == expected - erased
    ledger = stack.pvc_dir(ns) / "cc" / done["status"]["result"]["ledger"]
    assert "DSAR-1" in ledger.read_text() and agent not in ledger.read_text()
    assert _metric(stack, "cxbackup_backup_erasure_recordings_total", ns, 'outcome="erased"') == len(erased)
    refused = stack.cp.kubectl("patch", "rerase", "dsar-1", "-n", ns, "--type=merge", "-p",
                               '{"spec":{"request":"DSAR-2"}}', check=False)  # fmt: skip
    assert refused.returncode != 0 and "an executed erasure cannot be changed" in refused.stderr

    stack.cp.kubectl("annotate", "rb", "rb", "-n", ns, "cxbackup.io/run-now=again", "--overwrite")
    second = _wait_runs(stack, ns, 2)
    assert history(second)[0]["result"] == "Succeeded", history(second)[0]
    assert set(_tree(stack, ns)) == expected - erased  # not downloaded again
    shards = second["status"]["shards"].values()
    assert sum(int(s.get("erased") or 0) for s in shards) == len(erased)
    assert history(second)[0]["counts"]["downloaded"] == 0
    metric = _metric(stack, "cxbackup_backup_recordings_total", ns, 'outcome="erased"')
    assert metric == len(erased)
