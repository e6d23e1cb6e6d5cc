"""Shared helpers for the benchmarks: tools, timing of child processes, machine facts, results file."""

from __future__ import annotations

import json
import os
import platform
import resource
import shutil
import statistics
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
    build_seconds: dict[str, str] = field(default_factory=dict)

    def venv_bin(self, name: str) -> str | None:
        if self.bench_venv is None:
            return None
        path = self.bench_venv / "bin" / name
        return str(path) if path.exists() else None


_TOOLS: Tools | None = None


def tools(need: Sequence[str] = ("versitygw", "python", "rclone")) -> Tools:
    """Run hack/build-bench-tools.sh (cached: a no-op once built) and parse its KEY=PATH lines."""
    global _TOOLS
    if _TOOLS is None:
        _TOOLS = Tools()
    t = _TOOLS
    for part in need:
        have = {"versitygw": t.versitygw, "python": t.bench_venv, "rclone": t.rclone}
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
        if proc.returncode != 0:
            log(f"build-bench-tools.sh {part} failed (exit {proc.returncode})")
    for name, path in (("versitygw", t.versitygw), ("rclone", t.rclone)):
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
