"""Shared helpers for the benchmarks: tools, timing of child processes, machine facts, results file."""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("CXBACKUP_CACHE", Path.home() / ".cache" / "cxbackup"))
RESULTS_STORE = CACHE / "bench-results"
RESULTS_MD = REPO / "bench" / "RESULTS.md"
WORK = Path(os.environ.get("BENCH_WORKDIR", CACHE / "bench-work"))
PY = sys.executable
CXBACKUP = str(Path(sys.executable).with_name("cxbackup"))


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ tools


@dataclass
class Tools:
    versitygw: str | None = None
    bench_venv: Path | None = None
    rclone: str | None = None
    toxiproxy: str | None = None
    build_seconds: dict[str, str] = field(default_factory=dict)

    def venv_bin(self, name: str) -> str | None:
        if self.bench_venv is None:
            return None
        path = self.bench_venv / "bin" / name
        return str(path) if path.exists() else None


_TOOLS: Tools | None = None


def tools(need: Sequence[str] = ("versitygw", "python", "rclone", "toxiproxy")) -> Tools:
    """Run hack/build-bench-tools.sh (cached: a no-op once built) and parse its KEY=PATH lines."""
    global _TOOLS
    if _TOOLS is None:
        _TOOLS = Tools()
    t = _TOOLS
    for part in need:
        have = {"versitygw": t.versitygw, "python": t.bench_venv, "rclone": t.rclone, "toxiproxy": t.toxiproxy}
        if have.get(part):
            continue
        log(f"build-bench-tools.sh {part} (cached after the first run)")
        proc = subprocess.run(
            [str(REPO / "hack" / "build-bench-tools.sh"), part], stdout=subprocess.PIPE, text=True, check=False
        )
        for line in proc.stdout.splitlines():
            key, _, value = line.partition("=")
            if key == "VERSITYGW" and value:
                t.versitygw = value
            elif key == "BENCH_VENV" and value:
                t.bench_venv = Path(value)
            elif key == "RCLONE" and value:
                t.rclone = value
            elif key == "TOXIPROXY" and value:
                t.toxiproxy = value
        if proc.returncode != 0:
            log(f"build-bench-tools.sh {part} failed (exit {proc.returncode})")
    for name, path in (("versitygw", t.versitygw), ("rclone", t.rclone), ("toxiproxy", t.toxiproxy)):
        if path:
            secs = Path(path).parent / ".build-seconds"
            if secs.exists():
                t.build_seconds[name] = secs.read_text().strip() + " s"
    return t


# ------------------------------------------------------------------------------------------ timing


@dataclass
class Run:
    wall: float
    cpu: float  # user + system seconds of the child processes
    maxrss_kb: int
    returncode: int


def run_timed(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    timeout: float = 900,
    stdout: Any = None,
) -> Run:
    """Run a child to completion; wall time and its CPU seconds (getrusage of children, delta)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = stdout
    fh = None
    if out is None:
        fh = open(log_path, "ab") if log_path else open(os.devnull, "wb")  # noqa: SIM115
        out = fh
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            list(argv),
            env=dict(env) if env else None,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
            check=False,
        )
    finally:
        if fh is not None:
            fh.close()
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Run(wall, cpu, after.ru_maxrss, proc.returncode)


@dataclass
class SampledRun(Run):
    """A `Run` of one child whose TCP connections to one port were counted while it ran."""

    conns_max: int = 0
    conns_mean: float = 0.0  # over the samples that saw at least one connection
    samples: int = 0


def tcp_connections_to(port: int) -> int:
    """ESTABLISHED TCP (IPv4) connections on this host whose remote end is port `port`: the connections
    clients hold to a server on that port.

    Asked of the kernel through sock_diag netlink (what `ss` uses) for established sockets only: on a
    host with thousands of TIME_WAIT sockets, reading /proc/net/tcp takes tens of milliseconds of CPU,
    which sampling every 50-100 ms would take from the tools being measured.
    """
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_SOCK_DIAG)
    try:
        # struct inet_diag_req_v2: family, protocol, ext, pad, states (bit 1: ESTABLISHED), sockid (48 bytes)
        req = struct.pack("=BBBBI", socket.AF_INET, socket.IPPROTO_TCP, 0, 0, 1 << 1) + bytes(48)
        sock.sendto(struct.pack("=IHHII", 16 + len(req), _SOCK_DIAG_BY_FAMILY, _NLM_F_DUMP, 1, 0) + req, (0, 0))
        n = 0
        while True:
            data = sock.recv(1 << 20)
            off = 0
            while off + 16 <= len(data):
                length, kind = struct.unpack_from("=IH", data, off)
                if kind == _NLMSG_DONE:
                    return n
                if kind == _NLMSG_ERROR or length < 16:
                    raise OSError("sock_diag dump failed")
                # inet_diag_msg after the 16-byte header: family, state, timer, retrans, then sport, dport
                if struct.unpack_from(">H", data, off + 16 + 6)[0] == port:
                    n += 1
                off += (length + 3) & ~3
    finally:
        sock.close()


_NETLINK_SOCK_DIAG = 4
_SOCK_DIAG_BY_FAMILY = 20
_NLM_F_DUMP = 0x1 | 0x300  # NLM_F_REQUEST | NLM_F_ROOT | NLM_F_MATCH
_NLMSG_ERROR = 2
_NLMSG_DONE = 3


def _hwm_kb(pid: int) -> int:
    """VmHWM (peak resident set) of a process in KiB, 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _descendants(root: int) -> set[int]:
    """`root` and every process below it (one pass over /proc/*/stat)."""
    parent: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1:
            parent[int(entry.name)] = int(fields[1])
    tree = {root}
    grew = True
    while grew:
        grew = False
        for pid, ppid in parent.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return tree


def run_sampled(
    argv: Sequence[str],
    *,
    port: int,
    env: Mapping[str, str] | None = None,
    log_path: Path | None = None,
    timeout: float = 300,
    interval: float = 0.1,
) -> SampledRun:
    """Run a child to completion, counting its connections to `port` every `interval` seconds.

    CPU comes from wait4() on the child (its own rusage, including the descendants it waited for).
    Peak RSS is sampled: the sum over the child's process tree of each process's VmHWM (its own peak),
    as last seen; neither RUSAGE_CHILDREN's maxrss (the largest child so far) nor wait4's (which
    keeps the RSS of the forking parent across exec) says what the tool itself used. A child still
    running at `timeout` is killed (returncode -9).
    """
    fh = open(log_path, "ab") if log_path else open(os.devnull, "wb")  # noqa: SIM115
    counts: list[int] = []
    hwm: dict[int, int] = {}
    t0 = time.perf_counter()
    try:
        proc = subprocess.Popen(list(argv), env=dict(env) if env else None, stdout=fh, stderr=subprocess.STDOUT)
        deadline = t0 + timeout
        status = None
        tree = {proc.pid}
        while status is None:
            if len(counts) % 10 == 1:  # a new child process is rare: look for one every 10 samples
                tree |= _descendants(proc.pid)
            for p in tree:
                hwm[p] = max(hwm.get(p, 0), _hwm_kb(p))
            pid, st, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                status = st
                break
            counts.append(tcp_connections_to(port))
            if time.perf_counter() > deadline:
                proc.kill()
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(interval)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        fh.close()
    return SampledRun(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        maxrss_kb=sum(hwm.values()),
        returncode=proc.returncode,
        conns_max=max(counts, default=0),
        conns_mean=sum(busy) / len(busy) if (busy := [c for c in counts if c]) else 0.0,
        samples=len(counts),
    )


def sync_disk() -> None:
    os.sync()


def best(runs: Sequence[Run]) -> Run:
    return min(runs, key=lambda r: r.wall)


def fmt_ratio(x: float) -> str:
    return f"{x:.2f}x"


def pct(values: Sequence[float], q: float) -> float:
    data = sorted(values)
    if not data:
        return float("nan")
    k = (len(data) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def tree_size(root: Path) -> tuple[int, int]:
    files = size = 0
    for dirpath, _dirs, names in os.walk(root):
        for n in names:
            files += 1
            size += (Path(dirpath) / n).stat().st_size
    return files, size


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


# ------------------------------------------------------------------------------------------ machine


def machine() -> dict[str, str]:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    except OSError:
        pass
    go = shutil.which("go")
    go_version = subprocess.run([go, "version"], capture_output=True, text=True).stdout.strip() if go else "none"
    ossl = subprocess.run(["openssl", "version"], capture_output=True, text=True).stdout.strip()
    return {
        "nproc": str(os.cpu_count()),
        "memory": mem,
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "go": go_version,
        "openssl": ossl,
    }


# ------------------------------------------------------------------------------------------ results


def save_result(name: str, line: str, markdown: str, data: dict[str, Any] | None = None) -> None:
    """Keep a benchmark's result (its one-line summary and its RESULTS.md section) and print the line."""
    RESULTS_STORE.mkdir(parents=True, exist_ok=True)
    payload = {
        "name": name,
        "line": line,
        "markdown": markdown,
        "data": data or {},
        "at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }
    (RESULTS_STORE / f"{name}.json").write_text(json.dumps(payload, indent=1))
    print(line, flush=True)


def load_results() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if RESULTS_STORE.exists():
        for p in RESULTS_STORE.glob("*.json"):
            d = json.loads(p.read_text())
            out[d["name"]] = d
    return out


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value
