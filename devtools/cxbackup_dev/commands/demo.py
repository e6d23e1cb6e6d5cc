"""`cxbackup-dev demo` (what `make demo` runs): the whole product on this machine, end to end, checked.

It runs a list of named steps (`STEPS`), each of which checks its own result: the test cluster (control
plane and a real node with the project's image), the vendor-cloud emulator with a generated data set and the
Helm chart installed (the operator runs as a pod from the image); a RecordingBackup with 3 shards, its
progress, status and metrics, checked against the recordings the emulator holds in the backup's window; the
backed-up tree; one person's call found with `cxbackup search`; that recording decrypted with
`cxbackup decrypt` and compared with openssl; and `cxbackup audit` of the whole backup. A step that finds
something wrong stops the demo: it prints `FAILED step N (name): why` and exits 1. Everything the demo
started is stopped either way.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

__all__ = ["STEPS", "Demo", "DemoStepFailed", "Step", "register", "run", "run_steps"]

NAMESPACE = "contact-center"
BACKUP = "recordings"
SUBPATH = "contact-center"
MAX_AGE_DAYS = 2
"""The RecordingBackup's window: recordings that started in the last two days (`window.maxAge`)."""
INDEX_DIR = ".cxbackup-index"
CHECKPOINT = "last_recording_endtime"
"""The stored end time of each shard's last run (`last_recording_endtime-<i>-of-<N>.txt`): no recording."""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--workdir", type=Path, help="keep everything here (default: a temporary folder, removed)")
    p.add_argument("--hours", type=int, default=24, help="hours of recordings in the data set (default 24)")
    p.add_argument("--per-hour", type=int, default=8, help="recordings per hour (default 8)")
    p.add_argument("--shards", type=int, default=3, help="replicas of the RecordingBackup (default 3)")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for the backup (default 600)")
    p.set_defaults(func=run)


# ---- the step runner -------------------------------------------------------------------------------------


class DemoStepFailed(Exception):
    """A step found that something is not as it should be. The message is one line saying what was expected
    and what was found; `detail` (optional, several lines: a log tail, a command's output) is printed above."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail


@dataclass(frozen=True)
class Step:
    """One step of the demo: `check` does it, checks its result and returns one line of what it verified
    (counts, ids, sizes), or raises DemoStepFailed."""

    name: str
    title: str
    check: Callable[[Demo], str]


@dataclass
class Demo:
    """What the steps share: the options, the work folder, what was started (closed in reverse order when the
    demo ends, however it ends) and what earlier steps found out for later ones."""

    args: argparse.Namespace
    workdir: Path
    resources: contextlib.ExitStack
    emulator: Any = None
    """The vendor-cloud emulator (cxbackup_dev.emulator.Emulator), once step `cluster` started it."""
    stack: Any = None
    """The local stack (cxbackup_dev.localcluster.stack.LocalStack), once step `cluster` started it."""
    backup: dict[str, Any] = field(default_factory=dict)
    """The RecordingBackup once its run finished (step `backup`)."""
    window: tuple[int, int] = (0, 0)
    """The run's window [start, end) in epoch ms, checked against the RecordingBackup's spec."""
    expected: list[dict[str, Any]] = field(default_factory=list)
    """The emulator's recordings in the backup's window: what the backup must hold."""
    tree: Path | None = None
    """The backed-up tree (the PVC's folder on the node)."""
    person: dict[str, Any] = field(default_factory=dict)
    """The recording whose caller the search looks for (step `search`)."""
    found: list[dict[str, Any]] = field(default_factory=list)
    """What `cxbackup search --json` returned for that caller."""
    seconds: dict[str, float] = field(default_factory=dict)
    """How long each step took, by name."""

    def need(self, what: str, value: Any) -> Any:
        if value is None or value == {} or value == []:
            raise DemoStepFailed(f"{what} is not there: an earlier step did not provide it")
        return value


def _say(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def _show(text: str, lines: int = 40) -> None:
    shown = text.strip().splitlines()
    for line in shown[:lines]:
        print("    " + line)
    if len(shown) > lines:
        print(f"    ... and {len(shown) - lines} more lines")
    sys.stdout.flush()


def run_steps(demo: Demo, steps: Sequence[Step]) -> str | None:
    """Run `steps` in order until one fails; None when all passed, else the one line naming the failed step."""
    for number, step in enumerate(steps, 1):
        _say(f"step {number} ({step.name}): {step.title}")
        began = time.monotonic()
        try:
            verified = step.check(demo)
            demo.seconds[step.name] = time.monotonic() - began
        except DemoStepFailed as exc:
            if exc.detail:
                _show(exc.detail, 60)
            return f"FAILED step {number} ({step.name}): {exc}"
        except Exception as exc:  # anything else a step runs into fails it too, and is named as such
            lines = str(exc).strip().splitlines() or [""]
            if len(lines) > 1:
                _show("\n".join(lines[1:]), 60)
            return f"FAILED step {number} ({step.name}): {type(exc).__name__}: {lines[0]}"
        print(f"    OK step {number} ({step.name}): {verified}", flush=True)
    return None


def run(args: argparse.Namespace, steps: Sequence[Step] | None = None) -> int:
    """Run the demo's steps (`STEPS` unless given), stop everything they started, exit 0 only when every step
    verified its result."""
    steps = list(STEPS if steps is None else steps)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="cxbackup-demo-"))
    keep = args.workdir is not None
    workdir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    failure: str | None = None
    try:
        try:
            with contextlib.ExitStack() as resources:
                demo = Demo(args, workdir.resolve(), resources)
                failure = run_steps(demo, steps)
                _say("stopping everything the demo started")
        except Exception as exc:  # stopping failed: say so, after the step's own failure if there was one
            stopped = f"FAILED stopping what the demo started: {type(exc).__name__}: {str(exc).strip()[:500]}"
            if failure:
                print(stopped, file=sys.stderr, flush=True)
            else:
                failure = stopped
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    print("    stopped" + (f"; files kept in {workdir}" if keep else ""), flush=True)
    if failure:
        print(failure, file=sys.stderr, flush=True)
        return 1
    each = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in demo.seconds.items())
    print(f"\ndemo: all {len(steps)} steps verified in {time.monotonic() - began:.0f} s ({each})", flush=True)
    return 0


# ---- helpers ---------------------------------------------------------------------------------------------


def _ms(text: str) -> int:
    """Epoch ms of an ISO 8601 UTC time (`2026-11-29T19:40:44.067000Z`)."""
    return round(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _cli(demo: Demo, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real `cxbackup` command line of this environment (next to its Python), run in the work folder."""
    exe = Path(sys.executable).parent / "cxbackup"
    if not exe.exists():
        raise DemoStepFailed(f"no cxbackup command next to {sys.executable}: run the demo from the venv")
    print(f"    $ cxbackup {' '.join(_quote(a) for a in args)}", flush=True)
    return subprocess.run(
        [str(exe), *args], cwd=demo.workdir, env=env, capture_output=True, text=True, check=False, timeout=300
    )


def _quote(arg: str) -> str:
    return f"'{arg}'" if any(c in arg for c in " *") else arg


def _rel(demo: Demo, path: Path) -> str:
    return str(path.relative_to(demo.workdir))


def _digits(text: object) -> str:
    return "".join(c for c in str(text) if c.isdigit())


def phone_numbers(record: dict[str, Any]) -> set[str]:
    """The digits of every phone number of a recording, as docs/cli.md#search defines them: caller, dialed,
    the participants' in eventHistory, the media files' ani, dnis and recordDN, and a screen recording's
    agentID when it looks like a phone number."""
    values: list[object] = [record.get("callerPhoneNumber"), record.get("dialedPhoneNumber")]
    values += [(e.get("contact") or {}).get("phoneNumber") for e in record.get("eventHistory", [])]
    for media in record.get("mediaFiles", []):
        params = media.get("parameters") or {}
        values += [params.get(k) for k in ("ani", "dnis", "recordDN", "agentID")]
    phone = re.compile(r"^\+?[\d\s()-]+$")
    return {_digits(v) for v in values if isinstance(v, str) and phone.match(v) and len(_digits(v)) >= 3}


# ---- the steps -------------------------------------------------------------------------------------------


def step_cluster(demo: Demo) -> str:
    from cxbackup_dev.emulator import DatasetSpec, Emulator
    from cxbackup_dev.localcluster.controlplane import build_binaries
    from cxbackup_dev.localcluster.stack import LocalStack

    args = demo.args
    print("    building (or reusing) etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubelet, kubectl,")
    print("    helm and the image", flush=True)
    build_binaries()
    spec = DatasetSpec.recent(hours=args.hours, recordings_per_hour=args.per_hour, seed=7)
    emu = demo.emulator = demo.resources.enter_context(Emulator(spec, demo.workdir / "emulator"))
    records = list(emu.records())
    media = sum(len(r["mediaFiles"]) for r in records)
    print(
        f"    emulator      {len(records)} recordings, {media} media files, {_utc(emu.start_ms)} to {_utc(emu.end_ms)}"
    )
    print(f"    recording API {emu.gws_uri_prefix}\n    S3            {emu.s3_endpoint}", flush=True)
    stack = demo.stack = demo.resources.enter_context(LocalStack(demo.workdir / "stack"))
    node = stack.node.name if stack.node else ""
    print(f"    API server    {stack.cp.server}")
    print(f"    node          {node} (containerd + kubelet), image {stack.image}")
    print(f"\n    $ helm install {stack.release} helm/cxbackup --namespace {stack.operator_namespace}")
    _show("\n".join(stack.helm_run("status", stack.release, "-n", stack.operator_namespace).stdout.splitlines()[:6]))
    release = json.loads(stack.helm_run("status", stack.release, "-n", stack.operator_namespace, "-o", "json").stdout)
    status = release.get("info", {}).get("status")
    if status != "deployed":
        raise DemoStepFailed(f"helm release {stack.release} is {status!r}, not deployed")
    print(f"\n    $ kubectl get pods -n {stack.operator_namespace}")
    _show(stack.cp.kubectl("get", "pods", "-n", stack.operator_namespace, "-o", "wide").stdout)
    pods = stack.operator_pods()
    running = [
        p
        for p in pods
        if p.get("status", {}).get("phase") == "Running"
        and any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    ]
    if len(running) != 1:
        phases = [(p["metadata"]["name"], p.get("status", {}).get("phase")) for p in pods]
        raise DemoStepFailed(f"expected 1 operator pod Running and Ready, found {len(running)} ({phases})")
    pod = running[0]
    return (
        f"emulator holds {len(records)} recordings ({media} media files); helm release {stack.release} deployed "
        f"(revision {release.get('version')}); operator pod {pod['metadata']['name']} Running and Ready on "
        f"{pod['spec'].get('nodeName')}"
    )


def _backup_resource(namespace: str, emu: Any, shards: int) -> dict[str, Any]:
    return {
        "apiVersion": "cxbackup.io/v1alpha1",
        "kind": "RecordingBackup",
        "metadata": {"name": BACKUP, "namespace": namespace},
        "spec": {
            "source": {
                "gwsUriPrefix": emu.gws_uri_prefix,
                "retentionDays": 90,
                "gwsCredentials": {"name": "gws-credentials"},
                "s3Credentials": {"name": "vendor-s3"},
                "s3EndpointUrl": emu.s3_endpoint,
            },
            "window": {"minAge": 0, "maxAge": MAX_AGE_DAYS},
            "target": {"pvc": {"claimName": "recordings", "subPath": SUBPATH}},
            "replicas": shards,
            "concurrency": 8,
            "schedule": "30 4,10,16,22 * * *",
        },
    }


def _watch(stack: Any, timeout: float) -> dict[str, Any]:
    """Print each new line of `kubectl get rb` until the run is in the history; the resource then."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        out = stack.cp.kubectl("get", "rb", "-n", NAMESPACE, check=False).stdout.strip()
        line = out.splitlines()[-1] if out else ""
        if line and line != last:
            if not last:
                print("    " + out.splitlines()[0])
            print("    " + line, flush=True)
            last = line
        body: dict[str, Any] = stack.get("rb", NAMESPACE, BACKUP)
        if body.get("status", {}).get("history"):
            return body
        time.sleep(1)
    raise DemoStepFailed(
        f"the backup did not finish in {timeout:.0f} s", detail=f"operator log tail:\n{stack.operator_log()[-3000:]}"
    )


_METRIC = re.compile(r"^(cxbackup_backup_\w+)\{([^}]*)\} (\S+)$")


def _metrics(port: int) -> dict[tuple[str, str], float]:
    """The cxbackup_backup_* samples of the operator's /metrics, by (name, labels)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    samples = {}
    for line in text.splitlines():
        m = _METRIC.match(line)
        if m and "_bucket" not in m.group(1) and "_created" not in m.group(1):
            samples[(m.group(1), m.group(2))] = float(m.group(3))
    return samples


def step_backup(demo: Demo) -> str:
    emu, stack = demo.need("the emulator", demo.emulator), demo.need("the cluster", demo.stack)
    print(f"    namespace {NAMESPACE}: Secrets gws-credentials and vendor-s3, PVC recordings, worker RBAC")
    stack.prepare_namespace(NAMESPACE, emu.env())
    applied_ms = round(time.time() * 1000)
    manifest = demo.workdir / "recordingbackup.yaml"
    manifest.write_text(yaml.safe_dump(_backup_resource(NAMESPACE, emu, demo.args.shards), sort_keys=False))
    print(f"    {manifest.name}:")
    _show(manifest.read_text())
    print(f"    $ kubectl apply -f {manifest.name}")
    _show(stack.cp.kubectl("apply", "-f", str(manifest)).stdout)
    print("\n    $ kubectl get rb -n contact-center   (progress)", flush=True)
    body = demo.backup = _watch(stack, demo.args.timeout)
    print(f"\n    $ kubectl get jobs,pods -n {NAMESPACE}")
    _show(stack.cp.kubectl("get", "jobs,pods", "-n", NAMESPACE).stdout)
    status = body.get("status", {})
    last = status["history"][0]
    print(f"\n    status of RecordingBackup {BACKUP} (conditions and the shards' downloaded counts shortened)")
    for name in ("phase", "progress", "counts", "lastRecordingEndTime", "lastSuccessfulTime", "nextScheduleTime"):
        print(f"    {name}: {json.dumps(status.get(name))}")
    print(f"    conditions: {json.dumps({c.get('type'): c.get('status') for c in status.get('conditions', [])})}")
    per_shard = {k: (v or {}).get("downloaded") for k, v in (status.get("shards") or {}).items()}
    print(f"    shards: {json.dumps(per_shard)}\n    history[0]:")
    for name, value in last.items():
        print(f"      {name}: {json.dumps(value)}")
    sys.stdout.flush()
    if last.get("result") != "Succeeded":
        raise DemoStepFailed(
            f"the run {last.get('jobName')} ended {last.get('result')!r}: {last.get('message')}",
            detail=f"operator log tail:\n{stack.operator_log()[-3000:]}",
        )
    # the run's window, checked against the resource's spec and this clock, then the emulator's count in it
    start, end = _ms(last["windowStart"]), _ms(last["windowEnd"])
    now_ms = round(time.time() * 1000)
    if abs(end - start - MAX_AGE_DAYS * 86_400_000) > 1000 or not applied_ms - 60_000 <= end <= now_ms:
        raise DemoStepFailed(
            f"the run's window {last['windowStart']} to {last['windowEnd']} is not the last {MAX_AGE_DAYS} days "
            f"before the backup was applied ({_utc(applied_ms)})"
        )
    demo.window = (start, end)
    demo.expected = list(emu.records(start, end))
    want = len(demo.expected)
    counts = last.get("counts", {})
    got = (counts.get("downloaded"), counts.get("failed"), counts.get("skipped"))
    if got != (want, 0, 0):
        raise DemoStepFailed(
            f"expected {want} recordings downloaded (the emulator's in the window), 0 failed, 0 skipped; the run "
            f"reports downloaded {got[0]}, failed {got[1]}, skipped {got[2]}"
        )
    if (status.get("counts") or {}).get("downloaded") != want:
        raise DemoStepFailed(f"expected status.counts.downloaded {want}, found {status.get('counts')}")
    labels = f'name="{BACKUP}",namespace="{NAMESPACE}"'
    key_runs = ("cxbackup_backup_runs_total", labels + ',result="succeeded"')
    key_down = ("cxbackup_backup_recordings_total", labels + ',outcome="downloaded"')
    key_fail = ("cxbackup_backup_recordings_total", labels + ',outcome="failed"')
    key_index = ("cxbackup_backup_index_recordings", labels)
    print(f"\n    metrics (http://127.0.0.1:{stack.metrics_port}/metrics)")
    want_metrics = (1.0, float(want), 0.0, float(want))
    keys = (key_runs, key_down, key_fail, key_index)
    deadline = time.monotonic() + 30
    samples = _metrics(stack.metrics_port)
    while tuple(samples.get(k) for k in keys) != want_metrics and time.monotonic() < deadline:
        time.sleep(1)  # the status reaches the metrics in a moment
        samples = _metrics(stack.metrics_port)
    for (name, label), value in samples.items():
        if f'name="{BACKUP}"' in label:
            print(f"    {name}{{{label}}} {value}")
    metric = tuple(samples.get(k) for k in keys)
    if metric != want_metrics:
        raise DemoStepFailed(
            f"expected metrics runs succeeded 1, recordings downloaded {want}, failed 0, in the search index {want}; "
            f"found {metric[0]}, {metric[1]}, {metric[2]}, {metric[3]}"
        )
    return (
        f"run {last.get('jobName')} Succeeded; the emulator holds {want} recordings in the run's window "
        f"{_utc(start)} to {_utc(end)}; status: downloaded {want}, failed 0, skipped 0, {counts.get('bytes')} "
        f"bytes; metrics: runs succeeded 1, recordings downloaded {want}, failed 0, in the search index {want}"
    )


def step_tree(demo: Demo) -> str:
    stack = demo.need("the cluster", demo.stack)
    expected = demo.need("the emulator's recordings in the window", demo.expected)
    tree = demo.tree = stack.pvc_dir(NAMESPACE) / SUBPATH
    if not tree.is_dir():
        raise DemoStepFailed(f"the backed-up tree {tree} is not there")
    meta: dict[str, Path] = {}
    media: dict[tuple[str, str], Path] = {}
    other: list[str] = []  # no recordings': the search index, the shards' checkpoints and locks
    for path in sorted(tree.rglob("*")):
        rel = path.relative_to(tree)
        folder = rel.parent.name
        if not path.is_file():
            continue
        if rel.parts[0] == INDEX_DIR or rel.name.startswith(CHECKPOINT):
            other.append(str(rel))
        elif rel.name == f"{folder}.json":
            meta[folder] = path
        elif len(rel.parts) > 1 and (path.parent / f"{folder}.json").exists():
            media[(folder, rel.name)] = path
        else:
            other.append(str(rel))
    want_ids = {r["id"] for r in expected}
    want_media = {(r["id"], m["mediaId"]) for r in expected for m in r["mediaFiles"]}
    size = sum(p.stat().st_size for p in [*meta.values(), *media.values()])
    index = [p for p in other if p.startswith(INDEX_DIR + "/")]
    print(f"    {_rel(demo, tree)}/ (sorted)")
    listing = sorted([*meta.values(), *media.values()])
    for path in listing[:5]:
        print(f"    {path.relative_to(tree)}  ({path.stat().st_size} bytes)")
    if len(listing) > 5:
        print(f"    ... and {len(listing) - 5} more files of recordings")
    print(f"    not recordings: {', '.join(other) or 'none'}", flush=True)
    if set(meta) != want_ids:
        missing, extra = sorted(want_ids - set(meta)), sorted(set(meta) - want_ids)
        raise DemoStepFailed(
            f"expected {len(want_ids)} recordings' metadata files, found {len(meta)} "
            f"(missing {missing[:3]}, unexpected {extra[:3]})"
        )
    if set(media) != want_media:
        missing_m, extra_m = sorted(want_media - set(media)), sorted(set(media) - want_media)
        raise DemoStepFailed(
            f"expected {len(want_media)} media files, found {len(media)} "
            f"(missing {[m for _, m in missing_m[:3]]}, unexpected {[m for _, m in extra_m[:3]]})"
        )
    if not index:
        raise DemoStepFailed(f"the backed-up tree has no search index ({INDEX_DIR}/ is empty or missing)")
    empty = [str(p.relative_to(tree)) for p in [*meta.values(), *media.values()] if p.stat().st_size == 0]
    if empty:
        raise DemoStepFailed(f"{len(empty)} backed-up files are empty, e.g. {empty[0]}")
    return (
        f"{len(meta)} recordings (metadata files) and {len(media)} media files, exactly the emulator's, "
        f"{size / 1e6:.1f} MB; search index: {len(index)} file(s)"
    )


def _choose_person(expected: list[dict[str, Any]]) -> dict[str, Any]:
    """A recording of the middle of the window, one with a screen recording when there is one."""
    middle = expected[len(expected) // 2 :] + expected[: len(expected) // 2]
    return next((r for r in middle if len(r["mediaFiles"]) > 1), middle[0])


def step_search(demo: Demo) -> str:
    expected = demo.need("the emulator's recordings in the window", demo.expected)
    tree = demo.need("the backed-up tree", demo.tree)
    person = demo.person = _choose_person(expected)
    phone = person["callerPhoneNumber"]
    digits = _digits(phone)
    want = sorted(r["id"] for r in expected if any(n.endswith(digits) for n in phone_numbers(r)))
    print(f"    the emulator's data set has {len(want)} recording(s) with the number {phone}: {', '.join(want)}")
    target = _rel(demo, tree)
    table = _cli(demo, "search", "--target", target, "--phone", phone)
    _show(table.stdout + table.stderr)
    if table.returncode != 0:
        raise DemoStepFailed(f"cxbackup search exited {table.returncode}: {table.stderr.strip()[-300:]}")
    proc = _cli(demo, "search", "--target", target, "--phone", phone, "--json")
    if proc.returncode != 0:
        raise DemoStepFailed(f"cxbackup search --json exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    result = json.loads(proc.stdout)
    demo.found = result.get("recordings", [])
    got = sorted(r["id"] for r in demo.found)
    print(f"    (--json: total {result.get('total')}, ids {', '.join(got)})")
    if got != want or result.get("total") != len(want):
        raise DemoStepFailed(
            f"expected {len(want)} recording(s) for {phone} ({', '.join(want)}), found {result.get('total')} "
            f"({', '.join(got) or 'none'})"
        )
    paths = [m.get("path") for r in demo.found for m in r.get("media", [])]
    absent = [p for p in paths if not p or not (tree / p).is_file()]
    if absent:
        raise DemoStepFailed(f"the search names media files that are not in the backed-up tree: {absent[:3]}")
    return f"cxbackup search --phone {phone} found {len(got)} recording(s), {', '.join(got)}, as the data set has"


def _openssl(key: Path, src: Path, out: Path) -> subprocess.CompletedProcess[str]:
    cmd = ["openssl", "cms", "-decrypt", "-inform", "DER", "-binary", "-inkey", str(key), "-in", str(src),
           "-out", str(out)]  # fmt: skip
    return subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)


def step_decrypt(demo: Demo) -> str:
    emu = demo.need("the emulator", demo.emulator)
    tree = demo.need("the backed-up tree", demo.tree)
    person = demo.need("the recording found", demo.person)
    found = next((r for r in demo.found if r["id"] == person["id"]), None)
    if found is None:
        raise DemoStepFailed(f"the search did not return recording {person['id']}")
    folder = tree / found["folder"]
    key = emu.tenant_key_path
    out = demo.workdir / "decrypted"
    proc = _cli(demo, "decrypt", "--key", _rel(demo, key), _rel(demo, folder), "--out", _rel(demo, out))
    _show(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise DemoStepFailed(f"cxbackup decrypt exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    by_openssl = demo.workdir / "openssl"
    by_openssl.mkdir(exist_ok=True)
    outputs = [p for p in out.rglob("*") if p.is_file() and not p.name.endswith(".json")]
    lines, plain_total, cipher_total = [], 0, 0
    for media in person["mediaFiles"]:
        media_id = media["mediaId"]
        src = folder / media_id
        if not src.is_file():
            raise DemoStepFailed(f"media file {media_id} of {person['id']} is not in the backed-up tree")
        base = media_id[: -len(".bin")] if media_id.endswith(".bin") else media_id
        mine = [p for p in outputs if p.name == base or p.name.startswith(base + ".")]
        if len(mine) != 1:
            raise DemoStepFailed(f"expected 1 decrypted file for {media_id}, found {len(mine)} in {_rel(demo, out)}")
        print(f"    $ openssl cms -decrypt -inform DER -binary -inkey {_rel(demo, key)} -in {src.name}")
        reference = by_openssl / base
        ossl = _openssl(key, src, reference)
        if ossl.returncode != 0:
            raise DemoStepFailed(f"openssl cms -decrypt of {media_id} failed: {ossl.stderr.strip()[-300:]}")
        ciphertext, plaintext, theirs = src.read_bytes(), mine[0].read_bytes(), reference.read_bytes()
        if plaintext != theirs:
            raise DemoStepFailed(
                f"cxbackup decrypt and openssl differ for {media_id} ({len(plaintext)} and {len(theirs)} bytes)"
            )
        if plaintext == ciphertext:
            raise DemoStepFailed(f"the decrypted {media_id} is the encrypted file itself")
        original = emu.media_plaintext(media_id)
        if plaintext != original:
            raise DemoStepFailed(
                f"the decrypted {media_id} is not the media the emulator holds ({len(original)} bytes)"
            )
        lines.append(
            f"    {mine[0].name}: {len(ciphertext)} encrypted bytes -> {len(plaintext)} bytes of {media['type']}"
        )
        plain_total += len(plaintext)
        cipher_total += len(ciphertext)
    print("\n".join(lines), flush=True)
    n = len(person["mediaFiles"])
    return (
        f"{n} media file(s) of {person['id']} decrypted ({cipher_total} encrypted bytes -> {plain_total} bytes): "
        "equal byte for byte to openssl cms -decrypt and to the emulator's original media"
    )


def step_audit(demo: Demo) -> str:
    emu = demo.need("the emulator", demo.emulator)
    tree = demo.need("the backed-up tree", demo.tree)
    expected = demo.need("the emulator's recordings in the window", demo.expected)
    start, end = demo.window
    config = emu.write_config(demo.workdir / "config.properties", target_dir=_rel(demo, tree))
    print(f"    {config.name}: the emulator's gwsUriPrefix and awsEndpointUrl, targetDir the backed-up tree;")
    print(
        "    its credentials in the environment (GWS_USERNAME, GWS_PASSWORD, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
    )
    env = {**os.environ, **emu.env()}
    key = _rel(demo, emu.tenant_key_path)
    window = ("--window-start", str(start), "--window-end", str(end))
    proc = _cli(demo, "audit", "-config", config.name, "--key", key, *window, "--json", env=env)
    _show(proc.stderr, 5)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        raise DemoStepFailed(
            f"cxbackup audit exited {proc.returncode} without its report: {proc.stderr.strip()[-300:]}"
        ) from None
    counts = report.get("counts", {})
    print(f"    checked {report.get('checked')}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), flush=True)
    want = len(expected)
    problems = {k: v for k, v in counts.items() if k != "ok" and v}
    if proc.returncode != 0 or report.get("checked") != want or counts.get("ok") != want or problems:
        bad = [f"{r.get('id')} {r.get('status')}" for r in report.get("recordings", []) if r.get("status") != "ok"]
        raise DemoStepFailed(
            f"expected the audit to find all {want} recordings ok and exit 0; it exited {proc.returncode}, checked "
            f"{report.get('checked')}: ok {counts.get('ok')}, {problems or 'no problems'}"
            + (f" (e.g. {', '.join(bad[:3])})" if bad else "")
        )
    return f"cxbackup audit --key: {want} of {want} recordings ok (media test-decrypted), nothing missing, exit 0"


STEPS: list[Step] = [
    Step("cluster", "the test cluster, the vendor-cloud emulator and the operator (helm install)", step_cluster),
    Step("backup", "a RecordingBackup: its run, status and metrics", step_backup),
    Step("tree", "the backed-up tree", step_tree),
    Step("search", "one person's call, found with cxbackup search", step_search),
    Step("decrypt", "that recording decrypted with cxbackup decrypt, compared with openssl", step_decrypt),
    Step("audit", "cxbackup audit: every recording of the window in the backup", step_audit),
]
"""The demo's steps, in order. A later step appends itself here (it finds what earlier steps found on `Demo`)."""
