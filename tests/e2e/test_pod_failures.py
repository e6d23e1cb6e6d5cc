"""Pod-level failures on the real node, each with what the user sees (status condition, Event) and what must
hold (checkpoint not advanced past failed work, nothing lost, the next run completes the window): a worker
killed by its memory limit, a worker pod deleted mid-run, the worker image missing on the node, the operator
pod deleted mid-run, and kubelet stopped and started during a run."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from cxbackup_dev.emulator import Emulator, FaultConfig
from cxbackup_dev.emulator.faults import EndpointFaults
from cxbackup_dev.localcluster.stack import LocalStack
from tests.e2e.test_backup_operator import _backup, _expected, _hidden, _ns, _tree, _wait_runs
from tests.resources import apply, history

pytestmark = pytest.mark.e2e


def _pods(stack: LocalStack, ns: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(stack.cp.kubectl("get", "pods", "-n", ns, "-o", "json").stdout)["items"]
    return items


def _jobs(stack: LocalStack, ns: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(stack.cp.kubectl("get", "jobs", "-n", ns, "-o", "json").stdout)["items"]
    return items


def _wait_running_pod(stack: LocalStack, ns: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [p for p in _pods(stack, ns) if p.get("status", {}).get("phase") == "Running"]
        if running:
            return running[0]
        time.sleep(0.3)
    raise TimeoutError(f"no worker pod Running in {ns} after {timeout:.0f}s: {_pods(stack, ns)}")


def _condition(body: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(c for c in body["status"]["conditions"] if c["type"] == ctype)


def _completes_the_window(stack: LocalStack, ns: str, emulator: Emulator, runs: int) -> None:
    body = _wait_runs(stack, ns, runs, timeout=240)
    latest = history(body)[0]
    assert latest["result"] == "Succeeded", latest
    assert body["status"]["lastRecordingEndTime"] == latest["windowEnd"]
    assert set(_tree(stack, ns)) >= _expected(emulator, body)
    assert _hidden(stack, ns) == []


def test_a_worker_killed_by_its_memory_limit_is_named_and_the_next_run_completes(
    stack: LocalStack, emulator: Emulator
) -> None:
    ns = _ns(stack, emulator)
    small = {"resources": {"requests": {"memory": "40Mi"}, "limits": {"memory": "40Mi"}}}
    apply(stack, ns, _backup(emulator, pod=small, backoffLimitPerIndex=0))
    body = _wait_runs(stack, ns, 1, timeout=240)
    run = history(body)[0]
    assert run["result"] == "Failed"
    assert "OOMKilled" in run["message"] and "spec.pod.resources.limits.memory" in run["message"], run
    assert "lastRecordingEndTime" not in body["status"]
    degraded = _condition(body, "Degraded")
    assert degraded["status"] == "True" and "OOMKilled" in degraded["message"]
    event = stack.wait_event(ns, "RecordingBackup", "rb", "RunFailed")
    assert event["type"] == "Warning" and "OOMKilled" in event["message"]
    # the user raises the limit: the next run backs up the whole window
    stack.cp.kubectl("patch", "rb", "rb", "-n", ns, "--type=json", "-p", '[{"op":"remove","path":"/spec/pod"}]')
    stack.cp.kubectl("annotate", "rb", "rb", "-n", ns, "cxbackup.io/run-now=after-oom")
    _completes_the_window(stack, ns, emulator, 2)


def test_a_worker_pod_deleted_mid_run_is_replaced_and_nothing_is_lost(stack: LocalStack, emulator: Emulator) -> None:
    ns = _ns(stack, emulator)
    emulator.set_faults(FaultConfig(endpoints={"s3": EndpointFaults(latency_s=0.2)}))
    apply(stack, ns, _backup(emulator, replicas=2, concurrency=1))
    victim = _wait_running_pod(stack, ns)
    time.sleep(1.5)
    stack.cp.kubectl("delete", "pod", "-n", ns, victim["metadata"]["name"], "--wait=false")
    emulator.set_faults(None)
    _completes_the_window(stack, ns, emulator, 1)
    assert len(_jobs(stack, ns)) == 1


def test_a_missing_worker_image_is_reported_and_the_run_goes_on_once_it_is_back(
    stack: LocalStack, emulator: Emulator
) -> None:
    assert stack.node is not None
    ns = _ns(stack, emulator)
    stack.node.ctr("images", "rm", stack.image)
    try:
        apply(stack, ns, _backup(emulator))
        # the cause named is the image (a pod may first wait, Unschedulable, for its PVC to be bound)
        body = stack.wait_for(
            "rb", ns, "rb",
            lambda b: any(c["reason"] == "WorkerPodsNotStarting" and ("ImagePull" in c["message"]
                                                                      or "ErrImage" in c["message"])
                          for c in b.get("status", {}).get("conditions", [])),
            timeout=120,
        )  # fmt: skip
        degraded = _condition(body, "Degraded")
        assert degraded["status"] == "True"
        assert "ImagePull" in degraded["message"] or "ErrImage" in degraded["message"], degraded
        assert stack.wait_event(ns, "RecordingBackup", "rb", "WorkerPodsNotStarting")["type"] == "Warning"
        assert body["status"]["phase"] == "Running"
    finally:
        stack.import_image()
    _completes_the_window(stack, ns, emulator, 1)
    assert _condition(stack.get("rb", ns, "rb"), "Degraded")["status"] == "False"


def test_the_operator_pod_deleted_mid_run_is_replaced_and_adopts_the_running_job(
    stack: LocalStack, emulator: Emulator
) -> None:
    ns = _ns(stack, emulator)
    emulator.set_faults(FaultConfig(endpoints={"s3": EndpointFaults(latency_s=0.2)}))
    apply(stack, ns, _backup(emulator, concurrency=1))
    _wait_running_pod(stack, ns)
    old = stack.wait_operator_ready()
    stack.cp.kubectl("delete", "pod", "-n", stack.operator_namespace, old["metadata"]["name"], "--wait=false")
    new = stack.wait_operator_ready(not_uid=old["metadata"]["uid"])
    assert new["metadata"]["uid"] != old["metadata"]["uid"]
    emulator.set_faults(None)
    _completes_the_window(stack, ns, emulator, 1)
    assert len(_jobs(stack, ns)) == 1  # adopted, not a second run


def test_kubelet_stopped_and_started_during_a_run(stack: LocalStack, emulator: Emulator) -> None:
    assert stack.node is not None
    ns = _ns(stack, emulator)
    emulator.set_faults(FaultConfig(endpoints={"s3": EndpointFaults(latency_s=0.1)}))
    apply(stack, ns, _backup(emulator, concurrency=1))
    _wait_running_pod(stack, ns)
    stack.node.stop_kubelet()
    time.sleep(8)
    stack.node.start_kubelet()
    emulator.set_faults(None)
    _completes_the_window(stack, ns, emulator, 1)
    assert len(_jobs(stack, ns)) == 1
