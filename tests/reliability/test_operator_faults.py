"""Operator-level faults on the real node (LocalStack: the chart installed, worker pods real containers): the
operator killed mid-run and restarted, the API server restarted during a run, two operator replicas at once.

Pass: the run's Job is adopted, not duplicated (exactly one Job per run, one history entry), every
recording present once and identical, no temporary file visible, lastRecordingEndTime set once, to the
window end, only after the Job succeeded.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from cxbackup_dev.emulator import Emulator, EndpointFaults, FaultConfig
from cxbackup_dev.localcluster.stack import LocalStack, start_operator_process
from tests.reliability.operator_helpers import (
    backup_body,
    jobs_of,
    kube_json,
    new_namespace,
    run_row,
    wait_running_pod,
)
from tests.reliability.table import Row
from tests.resources import apply, history

pytestmark = [pytest.mark.e2e, pytest.mark.reliability_full]


def wait_done(stack: LocalStack, ns: str, name: str = "rb", timeout: float = 240) -> tuple[dict[str, Any], bool]:
    """Wait for the first run to be accounted; also whether the checkpoint showed up before the Job finished."""
    early = False
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        proc = stack.cp.kubectl("get", "rb", name, "-n", ns, "-o", "json", check=False)
        if proc.returncode == 0:
            body = json.loads(proc.stdout)
            status = body.get("status", {})
            if history(body) and not status.get("currentRun"):
                return body, early
            jobs = jobs_of(stack, ns, name)
            unfinished = any(not (j.get("status") or {}).get("succeeded") for j in jobs)
            if status.get("lastRecordingEndTime") and unfinished and not history(body):
                early = True
        time.sleep(0.3)
    raise TimeoutError(f"rb {ns}/{name} did not finish; status {json.dumps(body.get('status'))[:1500]}")


def test_operator_killed_mid_run_adopts_the_running_job(stack: LocalStack, op_emu: Emulator, row: Any) -> None:
    ns = new_namespace(stack, op_emu)
    op_emu.set_faults(FaultConfig({"s3": EndpointFaults(latency_s=0.4)}))
    apply(stack, ns, backup_body(op_emu, concurrency=1))
    wait_running_pod(stack, ns)
    time.sleep(1.0)
    old = stack.wait_operator_ready()
    stack.cp.kubectl("delete", "pod", "-n", stack.operator_namespace, old["metadata"]["name"], "--grace-period=0",
                     "--force", "--wait=false")  # fmt: skip
    stack.wait_operator_ready(not_uid=old["metadata"]["uid"])  # the Deployment replaces it
    op_emu.set_faults(None)
    body, early = wait_done(stack, ns)
    adopted = "adopting" in stack.operator_log() or len(jobs_of(stack, ns)) == 1
    r = row(run_row("operator pod deleted mid-run", stack, op_emu, ns, body, checkpoint_seen_early=early,
                    notes=f"Job adopted: {adopted}"))  # fmt: skip
    assert r.ok, r.notes


def test_api_server_restarted_during_a_run(stack: LocalStack, op_emu: Emulator, row: Any) -> None:
    ns = new_namespace(stack, op_emu)
    op_emu.set_faults(FaultConfig({"s3": EndpointFaults(latency_s=0.4)}))
    apply(stack, ns, backup_body(op_emu, concurrency=1))
    wait_running_pod(stack, ns)
    time.sleep(1.0)
    started = time.monotonic()
    stack.cp.restart_apiserver()
    down = time.monotonic() - started
    op_emu.set_faults(None)
    body, early = wait_done(stack, ns)
    r = row(run_row("API server restarted during a run", stack, op_emu, ns, body, checkpoint_seen_early=early,
                    notes=f"API server down {down:.1f}s"))  # fmt: skip
    assert r.ok, r.notes


def _second_operator(stack: LocalStack, log: Path) -> subprocess.Popen[bytes]:
    """A second replica beside the chart's pod (a local process: on the test node pods share the host's ports)."""
    return start_operator_process(stack.operator_env(), log)


def test_two_operator_replicas_launch_each_run_once(
    stack: LocalStack, op_emu: Emulator, tmp_path: Path, row: Any
) -> None:
    log = tmp_path / "operator-2.log"
    second = _second_operator(stack, log)
    try:
        time.sleep(4.0)  # both are up and peering
        ns = new_namespace(stack, op_emu)
        names = [f"rb{i}" for i in range(3)]
        apply(stack, ns, *(backup_body(op_emu, name=n) for n in names))
        bodies = {n: wait_done(stack, ns, n)[0] for n in names}
        time.sleep(3.0)  # time for a duplicate to appear, if one would
        alive = second.poll() is None
        events = kube_json(stack, "events", "-n", ns)["items"]
        started = sorted(e["involvedObject"]["name"] for e in events if e["reason"] == "RunStarted")
        # kube events may aggregate repeats into count
        counts = {n: sum(e.get("count", 1) for e in events if e["reason"] == "RunStarted"
                         and e["involvedObject"]["name"] == n) for n in names}  # fmt: skip
    finally:
        second.terminate()
        try:
            second.wait(timeout=20)
        except subprocess.TimeoutExpired:
            second.kill()
            second.wait(timeout=5)
    for n in names:
        r = row(run_row(f"two operator replicas ({n})", stack, op_emu, ns, bodies[n], name=n,
                        notes=f"RunStarted events {counts[n]}; 2nd replica alive: {alive}"))  # fmt: skip
        r.ok = r.ok and counts[n] == 1 and alive
        assert r.ok, (r.notes, started, log.read_text()[-2000:])


def test_a_backup_whose_pvc_is_missing_is_blocked_without_a_job(stack: LocalStack, op_emu: Emulator, row: Any) -> None:
    """A CR that passes the schema but names a PVC that does not exist: Blocked, a condition and a Warning
    Event naming the field and the claim, no Job; creating the PVC unblocks it and the run succeeds."""
    ns = new_namespace(stack, op_emu)
    body = backup_body(op_emu)
    body["spec"]["target"]["pvc"]["claimName"] = "no-such-claim"
    apply(stack, ns, body)
    got = stack.wait_for("rb", ns, "rb", lambda b: b.get("status", {}).get("phase") == "Blocked", timeout=60)
    ready = next(c for c in got["status"]["conditions"] if c["type"] == "Ready")
    events = kube_json(stack, "events", "-n", ns)["items"]
    warned = any(e["reason"] == "PVCNotFound" and e["type"] == "Warning" for e in events)
    named = "spec.target.pvc.claimName" in ready["message"] and "no-such-claim" in ready["message"]
    no_job = jobs_of(stack, ns) == []
    stack.apply(*stack.local_volume(ns, "no-such-claim"))  # the claim, bound to a volume on the node
    stack.cp.kubectl("annotate", "rb", "rb", "-n", ns, "cxbackup.io/run-now=after-pvc")
    done, early = wait_done(stack, ns)
    records = len(history(done))
    r = row(
        Row(
            scenario="CR referencing a missing PVC (then created)",
            expected="Blocked, no Job",
            present_identical=f"{records} run(s) after the PVC appeared",
            duplicates="n/a",
            partial_files="n/a",
            checkpoint_ok=bool(done["status"].get("lastRecordingEndTime")) and not early,
            ok=ready["reason"] == "PVCNotFound"
            and named
            and warned
            and no_job
            and history(done)[0]["result"] == "Succeeded",
            notes=f"Ready={ready['status']} {ready['reason']}: {ready['message'][:120]}; Warning event {warned}; "
            f"Jobs while blocked: {0 if no_job else 'SOME'}",
            level="bad-input",
        )
    )
    assert r.ok, r.notes
