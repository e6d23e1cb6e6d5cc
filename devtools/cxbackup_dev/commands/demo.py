"""`cxbackup-dev demo` (what `make demo` runs): the whole product on this machine, end to end.

It starts the test control plane and a real node (containerd + kubelet) with the project's image, installs
the Helm chart (the operator runs as a pod from the image), starts the vendor-cloud emulator with a
generated data set; applies a RecordingBackup with 3 shards; shows its progress; then prints the
backed-up tree, the resource's status and metric lines, decrypts one file with openssl, and stops
everything it started.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

__all__ = ["register", "run"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--workdir", type=Path, help="keep everything here (default: a temporary folder, removed)")
    p.add_argument("--hours", type=int, default=24, help="hours of recordings in the data set (default 24)")
    p.add_argument("--per-hour", type=int, default=8, help="recordings per hour (default 8)")
    p.add_argument("--shards", type=int, default=3, help="replicas of the RecordingBackup (default 3)")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for the backup (default 600)")
    p.set_defaults(func=run)


def _say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _backup(namespace: str, emu: Any, shards: int) -> dict[str, Any]:
    return {
        "apiVersion": "cxbackup.io/v1alpha1",
        "kind": "RecordingBackup",
        "metadata": {"name": "recordings", "namespace": namespace},
        "spec": {
            "source": {
                "gwsUriPrefix": emu.gws_uri_prefix,
                "retentionDays": 90,
                "gwsCredentials": {"name": "gws-credentials"},
                "s3Credentials": {"name": "vendor-s3"},
                "s3EndpointUrl": emu.s3_endpoint,
            },
            "window": {"minAge": 0, "maxAge": 2},
            "target": {"pvc": {"claimName": "recordings", "subPath": "contact-center"}},
            "replicas": shards,
            "concurrency": 8,
            "schedule": "30 4,10,16,22 * * *",
        },
    }


def run(args: argparse.Namespace) -> int:
    from cxbackup_dev.emulator import DatasetSpec, Emulator
    from cxbackup_dev.localcluster.controlplane import build_binaries
    from cxbackup_dev.localcluster.stack import LocalStack

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cxbackup-demo-"))
    keep = args.workdir is not None
    ns = "contact-center"
    _say(
        "building (or reusing) the test cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, "
        "kubelet, kubectl, helm and the image"
    )
    build_binaries()
    spec = DatasetSpec.recent(hours=args.hours, recordings_per_hour=args.per_hour, seed=7)
    _say(f"starting the vendor-cloud emulator: {args.hours * args.per_hour} recordings over {args.hours} hours")
    try:
        with Emulator(spec, workdir / "emulator") as emu, LocalStack(workdir / "stack") as stack:
            print(f"    recording API {emu.gws_uri_prefix}\n    S3            {emu.s3_endpoint}")
            print(f"    API server    {stack.cp.server} (kubeconfig {stack.cp.kubeconfig})")
            node = stack.node.name if stack.node else ""
            print(f"    node          {node} (containerd + kubelet), image {stack.image}")
            _say(f"helm install {stack.release} helm/cxbackup --namespace {stack.operator_namespace}")
            _show(stack.helm_run("status", stack.release, "-n", stack.operator_namespace).stdout, 6)
            _say(f"kubectl get pods -n {stack.operator_namespace}")
            _show(stack.cp.kubectl("get", "pods", "-n", stack.operator_namespace, "-o", "wide").stdout)
            _say(f"namespace {ns}: Secrets gws-credentials and vendor-s3, PVC recordings, worker RBAC")
            stack.prepare_namespace(ns, emu.env())
            _say(f"kubectl apply: RecordingBackup recordings with {args.shards} shards")
            stack.apply(_backup(ns, emu, args.shards))
            done = _watch(stack, ns, args.timeout)
            _say(f"kubectl get jobs,pods -n {ns}")
            _show(stack.cp.kubectl("get", "jobs,pods", "-n", ns).stdout)
            tree = stack.pvc_dir(ns) / "contact-center"
            _summary(stack, ns, tree, done, emu.tenant_key_path)
            ok = done.get("status", {}).get("history", [{}])[0].get("result") == "Succeeded"
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    _say("stopped everything the demo started" + (f"; files kept in {workdir}" if keep else ""))
    return 0 if ok else 1


def _show(text: str, lines: int = 40) -> None:
    for line in text.strip().splitlines()[:lines]:
        print("    " + line)


def _watch(stack: Any, ns: str, timeout: float) -> dict[str, Any]:
    _say("progress (kubectl get rb)")
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        out = stack.cp.kubectl("get", "rb", "-n", ns, check=False).stdout
        line = out.strip().splitlines()[-1] if out.strip() else ""
        if line and line != last:
            if not last:
                print("    " + out.strip().splitlines()[0])
            print("    " + line, flush=True)
            last = line
        body = stack.get("rb", ns, "recordings")
        if body.get("status", {}).get("history"):
            return dict(body)
        time.sleep(1)
    raise TimeoutError(f"the backup did not finish in {timeout:.0f}s; operator log:\n{stack.operator_log()[-3000:]}")


def _summary(stack: Any, ns: str, tree: Path, body: dict[str, Any], key: Path) -> None:
    files = [p for p in tree.rglob("*") if p.is_file() and not p.name.startswith(".")]
    # not the search index's files (.cxbackup-index/), which are no recordings' media
    media = [p for p in files if not p.name.endswith(".json") and p.name != "last_recording_endtime.txt"
             and not p.relative_to(tree).parts[0].startswith(".")]  # fmt: skip
    meta = [p for p in files if p.name.endswith(".json")]
    size = sum(p.stat().st_size for p in files)
    _say(f"backed-up tree {tree}: {len(meta)} recordings, {len(media)} media files, {size / 1e6:.1f} MB")
    for path in sorted(files)[:6]:
        print(f"    {path.relative_to(tree)}  ({path.stat().st_size} bytes)")
    if len(files) > 6:
        print(f"    ... and {len(files) - 6} more")
    _say("status of the RecordingBackup")
    status = body.get("status", {})
    shown = {k: status.get(k) for k in ("phase", "progress", "counts", "lastRecordingEndTime", "lastSuccessfulTime",
                                        "nextScheduleTime", "conditions", "shards")}  # fmt: skip
    shown["lastRun"] = (status.get("history") or [None])[0]
    print("    " + json.dumps(shown, indent=2).replace("\n", "\n    "))
    _say(f"metrics (http://127.0.0.1:{stack.metrics_port}/metrics)")
    time.sleep(2)
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=5) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("cxbackup_backup_") and "_bucket" not in line and "_created" not in line:
                print("    " + line)
    if media:
        sample = sorted(media)[0]
        out = tree.parent / "decrypted-sample.bin"
        _say(
            "decrypting one file with openssl: "
            f"openssl cms -decrypt -inform DER -binary -inkey tenant.key -in {sample.name}"
        )
        proc = subprocess.run(
            ["openssl", "cms", "-decrypt", "-inform", "DER", "-binary", "-inkey", str(key), "-in", str(sample),
             "-out", str(out)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if proc.returncode == 0:
            print(f"    decrypted {sample.stat().st_size} encrypted bytes to {out.stat().st_size} bytes of media")
        else:
            print(f"    openssl failed: {proc.stderr.strip()}", file=sys.stderr)
