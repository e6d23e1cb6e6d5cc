"""Helpers for the operator-level scenarios: a RecordingBackup body for an emulator, waiting for runs,
counting Jobs, and turning a finished run into a table row."""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from typing import Any

from cxbackup_dev.emulator import Emulator
from cxbackup_dev.localcluster.stack import LocalStack
from tests.reliability.table import Row, assess_target
from tests.resources import history, recording_backup

LABEL = "cxbackup.io/recordingbackup"


def new_namespace(stack: LocalStack, emu: Emulator, prefix: str = "rel") -> str:
    ns = f"{prefix}-{uuid.uuid4().hex[:8]}"
    stack.prepare_namespace(ns, emu.env())
    return ns


def backup_body(emu: Emulator, name: str = "rb", **spec: Any) -> dict[str, Any]:
    """The scenarios' backup: 2 downloads at a time, 3 retries per shard."""
    return recording_backup(emu, name, **({"concurrency": 2, "backoffLimitPerIndex": 3} | spec))


def kube_json(stack: LocalStack, *args: str) -> Any:
    return json.loads(stack.cp.kubectl("get", *args, "-o", "json").stdout)


def jobs_of(stack: LocalStack, ns: str, name: str = "rb") -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kube_json(stack, "jobs", "-n", ns, "-l", f"{LABEL}={name}")["items"]
    return items


def wait_until(predicate: Any, timeout: float, what: str, poll: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception:  # the API server may be down during a fault
            value = None
        if value:
            return value
        time.sleep(poll)
    raise TimeoutError(what)


def wait_running_pod(stack: LocalStack, ns: str, timeout: float = 90) -> str:
    def running() -> str | None:
        pods = kube_json(stack, "pods", "-n", ns)["items"]
        names = [p["metadata"]["name"] for p in pods if p.get("status", {}).get("phase") == "Running"]
        return str(names[0]) if names else None

    name: str = wait_until(running, timeout, "no running pod")
    return name


def ms(text: str) -> int:
    return int(dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def run_row(
    scenario: str,
    stack: LocalStack,
    emu: Emulator,
    ns: str,
    body: dict[str, Any],
    *,
    name: str = "rb",
    checkpoint_seen_early: bool = False,
    notes: str = "",
) -> Row:
    """The row of a one-shot run that must have succeeded exactly once with exactly one Job."""
    done = history(body)
    status = body.get("status", {})
    jobs = jobs_of(stack, ns, name)
    problems: list[str] = []
    if len(done) != 1:
        problems.append(f"{len(done)} runs in history")
    if len(jobs) != 1:
        problems.append(f"{len(jobs)} Jobs: {[j['metadata']['name'] for j in jobs]}")
    run = done[0] if done else {}
    ok_run = run.get("result") == "Succeeded"
    if not ok_run:
        problems.append(f"run result {run.get('result')}")
    lo, hi = (ms(run["windowStart"]), ms(run["windowEnd"])) if run else (0, 0)
    records = list(emu.records(lo, hi))
    report = assess_target(stack.pvc_dir(ns) / name, records, emu.media_plaintext, emu.tenant_key_path)
    checkpoint_ok = (
        bool(run) and status.get("lastRecordingEndTime") == run.get("windowEnd") and not checkpoint_seen_early
    )
    if checkpoint_seen_early:
        problems.append("lastRecordingEndTime set before the run finished")
    problems += report.problems[:2] + report.unexpected_files[:2]
    text = notes + ("; " if notes and problems else "") + "; ".join(problems)
    return Row(
        scenario=scenario,
        expected=len(records),
        present_identical=report.present_identical,
        duplicates=report.duplicates + max(0, len(jobs) - 1),
        partial_files=len(report.partial_files),
        checkpoint_ok=checkpoint_ok,
        ok=ok_run and report.complete and checkpoint_ok and len(jobs) == 1 and len(done) == 1 and len(records) > 0,
        notes=text,
        level="operator",
    )
