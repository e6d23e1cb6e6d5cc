"""Load: 1,000 RecordingBackups on the test control plane, and a very large window listed by one worker.

1. 1,000 RecordingBackup CRs (metadataOnly, a tiny emulator dataset, suspend false) created at once with the
   operator running (a local process, no node: the Jobs stay pending, which is all this measures): every CR gets exactly
   one first Job. Reported: the operator's RSS (VmRSS peak sampled and VmHWM from /proc/<pid>/status) and the
   handler latency from a CR's creationTimestamp to its Job's (1 s resolution), p50/p95.
2. A window listed from the emulator (media "none") by `cxbackup download` with metadataOnly, as shard 0 of
   1000 (so it pages through every record but writes ~0.1 % of them): the worker's peak memory (ru_maxrss of
   the child, measured by a wrapper process) stays under 200 MB. Listing one million records here runs at
   ~1,400 records/s on 2 cores (over 10 minutes), so the full run lists RELIABILITY_LIST_COUNT (default
   150,000) and a 25,000 one, and extrapolates linearly to 1,000,000; the row says so. Set
   RELIABILITY_LIST_COUNT=1000000 to measure the real thing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from cxbackup_dev.emulator import DatasetSpec, Emulator
from cxbackup_dev.localcluster.controlplane import ControlPlane
from cxbackup_dev.localcluster.stack import credential_secrets, operator_env, start_operator_process, worker_rbac
from tests.reliability.operator_helpers import LABEL, backup_body
from tests.reliability.table import Row

pytestmark = [pytest.mark.reliability_full]

CRS = 1000
LIMIT_MB = 200


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _ts(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.e2e
def test_a_thousand_backups_each_get_their_first_job(control_plane: ControlPlane, tmp_path: Path, row: Any) -> None:
    spec = DatasetSpec(hours=1, recordings_per_hour=1, seed=3)
    with Emulator(spec, tmp_path / "emulator", media="none") as emu:
        # the operator alone, as a local process on a control plane without a node: the Jobs stay pending
        ns = f"load-{uuid.uuid4().hex[:8]}"
        control_plane.kubectl("create", "namespace", ns)
        pvc = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "recordings", "namespace": ns},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
        }
        objects = [*credential_secrets(ns, emu.env()), pvc, *worker_rbac(ns)]
        control_plane.kubectl("apply", "-f", "-", input_text="\n".join(json.dumps(o) for o in objects))
        log = tmp_path / "operator.log"
        op = start_operator_process(operator_env(control_plane.kubeconfig, reconcile_interval=10.0), log)
        peak_rss = 0
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak_rss
            while not stop.is_set():
                with contextlib.suppress(OSError, ValueError):
                    peak_rss = max(peak_rss, _status_kb(op.pid, "VmRSS"))
                stop.wait(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            time.sleep(3.0)
            idle_rss = _status_kb(op.pid, "VmRSS")
            items = []
            for i in range(CRS):
                body = backup_body(emu, name=f"rb-{i:04d}")
                body["spec"]["media"] = {"metadataOnly": True}
                body["spec"]["source"].pop("s3Credentials")
                body["spec"]["suspend"] = False
                items.append(body)
            started = time.monotonic()
            control_plane.kubectl(
                "create",
                "-n",
                ns,
                "-f",
                "-",
                input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}),
            )
            created_in = time.monotonic() - started
            jobs: list[dict[str, Any]] = []
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                jobs = json.loads(control_plane.kubectl("get", "jobs", "-n", ns, "-l", LABEL, "-o", "json").stdout)[
                    "items"
                ]
                if len({j["metadata"]["labels"][LABEL] for j in jobs}) >= CRS:
                    break
                if op.poll() is not None:
                    break
                time.sleep(2.0)
            all_jobs_in = time.monotonic() - started
            time.sleep(5.0)  # a duplicate, if any, would show up now
            jobs = json.loads(control_plane.kubectl("get", "jobs", "-n", ns, "-l", LABEL, "-o", "json").stdout)["items"]
            hwm = _status_kb(op.pid, "VmHWM")
            rss_now = _status_kb(op.pid, "VmRSS")
            crs = json.loads(control_plane.kubectl("get", "rb", "-n", ns, "-o", "json").stdout)["items"]
        finally:
            stop.set()
            sampler.join(timeout=5)
            op.terminate()
            try:
                op.wait(timeout=30)
            except subprocess.TimeoutExpired:
                op.kill()
                op.wait(timeout=5)
            # leave nothing for the operators of later tests to reconcile
            control_plane.kubectl("delete", "rb", "--all", "-n", ns, "--wait=false", check=False)
            control_plane.kubectl("delete", "jobs", "--all", "-n", ns, "--wait=false", check=False)
    per_cr: dict[str, list[dict[str, Any]]] = {}
    for j in jobs:
        per_cr.setdefault(j["metadata"]["labels"][LABEL], []).append(j)
    created = {c["metadata"]["name"]: _ts(c["metadata"]["creationTimestamp"]) for c in crs}
    latencies = sorted(
        min(_ts(j["metadata"]["creationTimestamp"]) for j in js) - created[name]
        for name, js in per_cr.items()
        if name in created
    )
    exactly_one = sum(1 for js in per_cr.values() if len(js) == 1)
    extra = sum(len(js) - 1 for js in per_cr.values())
    p50 = statistics.median(latencies) if latencies else float("nan")
    p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan")
    notes = (
        f"created {CRS} CRs in {created_in:.1f}s; all first Jobs after {all_jobs_in:.0f}s; handler latency "
        f"CR->Job p50 {p50:.0f}s p95 {p95:.0f}s max {latencies[-1] if latencies else float('nan'):.0f}s; "
        f"operator RSS idle {idle_rss / 1024:.0f} MB, peak sampled {peak_rss / 1024:.0f} MB, "
        f"VmHWM {hwm / 1024:.0f} MB, after {rss_now / 1024:.0f} MB (reconcile interval 10s)"
    )
    r = row(
        Row(
            scenario=f"load: {CRS} RecordingBackups, first Job each",
            expected=CRS,
            present_identical=f"{exactly_one}/{CRS} with one Job",
            duplicates=extra,
            partial_files="n/a",
            checkpoint_ok="n/a",
            ok=exactly_one == CRS and extra == 0,
            notes=notes,
            level="load",
        )
    )
    assert r.ok, (r.notes, log.read_text()[-2000:])


_WRAPPER = (
    "import resource, subprocess, sys\n"
    "r = subprocess.run(sys.argv[1:])\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)\n"
)


def _list_window(count: int, workdir: Path) -> tuple[float, float, dict[str, Any], int]:
    """(peak MB, seconds, summary, json files) of one metadata-only worker run over `count` records."""
    hours = max(1, count // 1000)
    spec = DatasetSpec(seed=5, hours=hours, recordings_per_hour=count // hours, screen_fraction=0.0)
    with Emulator(spec, workdir / "emulator", media="none") as emu:
        summary = workdir / "summary.json"
        cfg = emu.write_config(
            workdir / "c.properties",
            target_dir=workdir / "target",
            metadataOnly=True,
            totalRcbsInstances=1000,
            rcbsInstanceId=0,
            summaryFile=str(summary),
        )
        env = {**os.environ, **{k: v for k, v in emu.env().items() if k.startswith("GWS_")}}
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-c", _WRAPPER, sys.executable, "-m", "cxbackup", "download", "-config", str(cfg),
             "--progress", "none"],
            env=env, capture_output=True, text=True, timeout=3600, check=False,
        )  # fmt: skip
        seconds = time.monotonic() - started
        maxrss_kb, code = proc.stdout.split()[-2:]
        assert code == "0", proc.stderr[-2000:]
        files = sum(1 for p in (workdir / "target").rglob("*.json"))
        return int(maxrss_kb) / 1024, seconds, json.loads(summary.read_text()), files


@pytest.mark.integration
def test_a_huge_window_listed_with_bounded_worker_memory(tmp_path: Path, row: Any) -> None:
    big = int(os.environ.get("RELIABILITY_LIST_COUNT", "150000"))
    small = 25_000
    mb_small, _, sum_small, _ = _list_window(small, tmp_path / "small")
    mb_big, s_big, sum_big, files = _list_window(big, tmp_path / "big")
    slope = (mb_big - mb_small) / (big - small)
    extrapolated = mb_big + max(slope, 0.0) * max(0, 1_000_000 - big)
    rate = big / s_big
    listed_ok = sum_big["result"] == "Succeeded" and files == sum_big["downloaded"] > 0
    expected_share = big / 1000
    share_ok = 0.5 * expected_share <= sum_big["downloaded"] <= 1.5 * expected_share
    label = "measured" if big >= 1_000_000 else "EXTRAPOLATED linearly from 25k and " + f"{big // 1000}k"
    notes = (
        f"{big} records listed in {s_big:.0f}s ({rate:.0f}/s; 1M would take ~{1_000_000 / rate / 60:.0f} min); "
        f"worker peak RSS {mb_small:.0f} MB at {small // 1000}k, {mb_big:.0f} MB at {big // 1000}k; "
        f"1M: {extrapolated:.0f} MB ({label}); shard 0/1000 wrote {sum_big['downloaded']} metadata files"
    )
    r = row(
        Row(
            scenario="load: 1M-recording window listed by one worker (metadataOnly)",
            expected=f"< {LIMIT_MB} MB",
            present_identical=f"{files}/{sum_big['downloaded']} written",
            duplicates=0 if files == sum_big["downloaded"] else "?",
            partial_files="n/a",
            checkpoint_ok="n/a",
            ok=listed_ok and share_ok and mb_big < LIMIT_MB and extrapolated < LIMIT_MB,
            notes=notes,
            level="load",
        )
    )
    assert r.ok, (r.notes, sum_small)
