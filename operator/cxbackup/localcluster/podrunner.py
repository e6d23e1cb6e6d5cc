"""A stand-in for a kubelet: run the test control plane's Pending pods as local processes.

This is a TEST STAND-IN used by the e2e tests and `make demo`; it is not part of the operator or the Helm
chart. The test control plane (controlplane.py) has no scheduler and no kubelet, so pods - including the
ones the Job controller creates for an Indexed Job - would stay Pending forever. `PodRunner` watches
pods, claims each unbound Pending pod by binding it to a node name of its own (the pods/binding
subresource, so two runners never run the same pod), runs its containers one after another (init
containers first, then the single main container) as local processes in their own process groups, and
reports what happened through the pods/status subresource the way a kubelet does: phase Running with
a running container status, then Succeeded or Failed with `state.terminated` {exitCode, reason,
message, startedAt, finishedAt}. The Job controller counts successes and failures from that.

What a pod sees, and how it differs from a real node:

- Command: `command` + `args` after `$(VAR)` expansion (`$$` escapes), as the kubelet does. The image is
  ignored: when the command is `cxbackup` (or there is no command and the image is the cxbackup image)
  the runner runs `<python> -m cxbackup ...` so the local checkout's code runs; `python`/`python3`
  run the runner's Python. Anything else is executed from the host's PATH.
- Paths: every volumeMount is a local directory under the runner's workdir, and pods see HOST PATHS.
  Every occurrence of a mountPath (and of the termination message path) in command/args, env values and
  the files materialized from ConfigMaps and Secrets (PEM excepted) is rewritten to its local directory. Code that
  builds a path some other way (e.g. hard-codes `/backup` in Python) will not find the volume.
  Volumes: configMap, secret, projected (configMap, secret, downwardAPI, serviceAccountToken),
  downwardAPI, emptyDir (a fresh directory per pod), hostPath (the path itself) and
  persistentVolumeClaim (`<workdir>/pvc/<namespace>/<claimName>`, shared by every pod that uses the
  claim and kept across pods, so backups persist; the PVC must exist). `subPath` is honoured.
- Identity: the runner requests a token for the pod's ServiceAccount with the TokenRequest API, bound
  to the pod, and writes a per-pod kubeconfig (the runner's server and CA, user = that token); the
  process gets KUBECONFIG pointing at it, so RBAC applies to the pod exactly as in a cluster.
  KUBERNETES_SERVICE_HOST is not set, so in-cluster config loading falls back to KUBECONFIG.
- Environment: a minimal base (PATH, LANG, PYTHONPATH with the local checkout first, HOME = the pod's
  directory, TMPDIR = the pod's tmp dir, KUBECONFIG), then envFrom, then env (value, secretKeyRef,
  configMapKeyRef, fieldRef). Missing required Secrets, ConfigMaps, keys, PVCs or ServiceAccounts fail
  the pod with a message naming them (a kubelet would keep retrying with CreateContainerConfigError).
- Logs: stdout+stderr of each container go to `<workdir>/pods/<ns>/<pod>/<container>.log`
  (`PodRunner.logs`). The termination message file (terminationMessagePath) is a local file per
  container; FallbackToLogsOnError uses the log's last 80 lines.
- Deletion: a deleted running pod gets SIGTERM on its process group, then SIGKILL after
  min(deletionGracePeriodSeconds, 3 s); the runner then finishes the deletion (grace period 0), as a
  kubelet does for bound pods. `PodRunner.kill` sends a signal for fault tests (SIGKILL ends the pod
  Failed with exit code 137); it raises LookupError when the pod has no running process here.
- Claims: a pod is bound (pods/binding) to `node_name` (default cxbackup-podrunner; no Node object is
  created) just before it runs, so when two runners watch the same namespace, each pod runs once, on
  whichever binds it first. Give each test its own runner watching only its namespaces.
- Outages: the watch lists again after errors and expiry; API calls retry connection errors, 429 and
  5xx for up to a minute, so a kube-apiserver restart is survived (a pod finishing meanwhile is
  reported once the API server is back).

Not done: no isolation of any kind (users, security contexts, resource limits, network, read-only
mounts, the image's filesystem); restartPolicy is treated as Never (Jobs with backoffLimitPerIndex
require Never anyway); no sidecar init containers, probes, lifecycle hooks, service links,
resourceFieldRef or subPathExpr; the token is not refreshed (it is valid for 24 hours); a pod that was
running when its runner stopped is reported Failed if the API server can still be reached, and a pod
bound by a runner that died stays Running.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import functools
import json
import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

import cxbackup

__all__ = [
    "DEFAULT_NODE_NAME",
    "LOCAL_IP",
    "PathRewriter",
    "PodConfigError",
    "PodRunner",
    "expand_references",
    "main",
]

log = logging.getLogger(__name__)

DEFAULT_NODE_NAME = "cxbackup-podrunner"
LOCAL_IP = "127.0.0.1"
KILL_GRACE_SECONDS = 3.0
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
TERMINATION_MESSAGE_MAX_BYTES = 4096
FALLBACK_LOG_LINES = 80
TOKEN_EXPIRATION_SECONDS = 24 * 3600
START_ERROR_EXIT_CODE = 128  # what container runtimes report for a container that could not start
API_RETRY_SECONDS = 60.0  # how long reads and status writes retry through API server outages
WATCH_TIMEOUT_SECONDS = 60
POLL_SECONDS = 0.1
CXBACKUP_IMAGE = re.compile(r"(^|/)cxbackup(:[^/]*)?(@sha256:[0-9a-f]+)?$")
_FIELD_KEY = re.compile(r"^metadata\.(labels|annotations)\['(.+)'\]$")


class PodConfigError(Exception):
    """A pod cannot be started as specified (a missing Secret, an unsupported feature, ...).

    The pod ends Failed with `reason` and the message, which names the missing object or feature.
    """

    def __init__(self, message: str, reason: str = "CreateContainerConfigError") -> None:
        super().__init__(message)
        self.reason = reason


# ---- pure helpers -------------------------------------------------------------------------------------


def expand_references(text: str, env: Mapping[str, str]) -> str:
    """Expand `$(VAR)` from `env` as the kubelet does: `$$` is a literal `$`, unknown or unterminated
    references are kept as written (a port of k8s.io/kubernetes third_party/forked/golang/expansion)."""
    out: list[str] = []
    checkpoint = 0
    cursor = 0
    while cursor < len(text):
        if text[cursor] == "$" and cursor + 1 < len(text):
            out.append(text[checkpoint:cursor])
            nxt = text[cursor + 1]
            advance = 1
            if nxt == "$":
                out.append("$")
            elif nxt == "(":
                close = text.find(")", cursor + 2)
                if close == -1:
                    out.append("$(")
                else:
                    name = text[cursor + 2 : close]
                    out.append(env.get(name, f"$({name})"))
                    advance = close - cursor
            else:
                out.append("$" + nxt)
            cursor += advance
            checkpoint = cursor + 1
        cursor += 1
    out.append(text[checkpoint:])
    return "".join(out)


class PathRewriter:
    """Rewrites in-pod paths (mount paths) to local paths, longest mount path first, in one pass.

    A mount path matches where it is not preceded by a name character and is followed by `/`, the end
    or a character that cannot continue a file name, so `/data` matches `/data/x` and `dir=/data` but
    not `/database` or `/mnt/data`.
    """

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self.mapping = {k.rstrip("/"): v for k, v in mapping.items() if k.rstrip("/")}
        names = sorted(self.mapping, key=len, reverse=True)
        self._pattern = (
            re.compile(r"(?<![\w.\-])(" + "|".join(re.escape(n) for n in names) + r")(?![\w.\-])") if names else None
        )

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: self.mapping[m.group(1)], text)

    def rewrite_bytes(self, data: bytes) -> bytes:
        """Rewrite text content; bytes that are not UTF-8, and PEM (base64 may contain `/x`), are left alone."""
        if b"-----BEGIN " in data:
            return data
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return data
        return self(text).encode("utf-8")


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _exit_code(returncode: int) -> int:
    """Popen's -N for "killed by signal N" becomes 128+N, as a container runtime reports it."""
    return 128 - returncode if returncode < 0 else returncode


def _field_value(pod: Mapping[str, Any], path: str, node_name: str) -> str:
    meta = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "spec.nodeName": node_name,
        "status.podIP": LOCAL_IP,
        "status.podIPs": LOCAL_IP,
        "status.hostIP": LOCAL_IP,
        "status.hostIPs": LOCAL_IP,
    }
    if path in simple:
        return str(simple[path])
    if path in ("metadata.labels", "metadata.annotations"):
        values = meta.get(path.split(".")[1]) or {}
        return "\n".join(f"{k}={json.dumps(v)}" for k, v in sorted(values.items()))
    match = _FIELD_KEY.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise PodConfigError(f"fieldRef {path!r} is not supported by the local pod runner")


def _argv(container: Mapping[str, Any], python: str) -> list[str]:
    """The process to run for a container (already expanded): cxbackup and python map to the local ones."""
    command: list[str] = list(container.get("command") or [])
    args: list[str] = list(container.get("args") or [])
    image = str(container.get("image") or "")
    if not command:
        if CXBACKUP_IMAGE.search(image):
            return [python, "-m", "cxbackup", *args]
        raise PodConfigError(
            f"container {container.get('name')!r} has no command and the local pod runner does not know "
            f"the entrypoint of image {image!r}; set command",
            reason="StartError",
        )
    head = command[0]
    if head == "cxbackup" or head.endswith("/cxbackup"):
        return [python, "-m", "cxbackup", *command[1:], *args]
    if head in ("python", "python3") or re.fullmatch(r"(/usr(/local)?/bin/)?python3(\.\d+)?", head):
        return [python, *command[1:], *args]
    return [*command, *args]


def _safe_join(base: Path, relative: str) -> Path:
    """base/relative, refusing absolute paths and `..` (as the API server does for subPath and items)."""
    rel = Path(relative)
    if rel.is_absolute() or ".." in rel.parts:
        raise PodConfigError(f"path {relative!r} must be relative and must not contain '..'")
    return base / rel


def _tail(path: Path, lines: int, max_bytes: int) -> str:
    try:
        text = path.read_bytes()[-64 * 1024 :].decode("utf-8", "replace")
    except OSError:
        return ""
    tail = "\n".join(text.splitlines()[-lines:])
    return tail.encode("utf-8")[-max_bytes:].decode("utf-8", "ignore")


# ---- per-pod state ------------------------------------------------------------------------------------


@dataclass
class _ContainerRecord:
    name: str
    image: str
    init: bool
    state: str = "waiting"  # waiting | running | terminated
    waiting_reason: str = "ContainerCreating"
    pid: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    reason: str = ""
    message: str = ""

    def status(self) -> dict[str, Any]:
        state: dict[str, Any]
        if self.state == "running":
            state = {"running": {"startedAt": self.started_at}}
        elif self.state == "terminated":
            terminated: dict[str, Any] = {
                "exitCode": self.exit_code,
                "reason": self.reason,
                "startedAt": self.started_at or self.finished_at,
                "finishedAt": self.finished_at,
            }
            if self.message:
                terminated["message"] = self.message
            if self.pid is not None:
                terminated["containerID"] = f"local://{self.pid}"
            state = {"terminated": terminated}
        else:
            state = {"waiting": {"reason": self.waiting_reason}}
        out: dict[str, Any] = {
            "name": self.name,
            "image": self.image,
            "imageID": self.image,
            "ready": self.state == "running" and not self.init,
            "started": self.state == "running",
            "restartCount": 0,
            "state": state,
        }
        if self.pid is not None:
            out["containerID"] = f"local://{self.pid}"
        return out


@dataclass
class _PodRun:
    namespace: str
    name: str
    uid: str
    pod: dict[str, Any]
    directory: Path
    records: list[_ContainerRecord]
    start_time: str = field(default_factory=_now)
    started: float = field(default_factory=time.monotonic)
    phase: str = "Pending"
    reason: str = ""
    message: str = ""
    proc: subprocess.Popen[bytes] | None = None
    deleting: bool = False
    stopping: bool = False
    kill_deadline: float | None = None
    bound: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class _Launch:
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    termination_file: Path
    fallback_to_logs: bool


_File = tuple[Path, bytes, int | None, bool]  # path, content, mode, rewrite mount paths in it


class _WatchExpired(Exception):
    """The watch's resourceVersion is too old (410 Gone): list again."""


_TRANSIENT = (urllib3.exceptions.HTTPError, OSError)


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, ApiException):
        return exc.status in (0, 429, 500, 502, 503, 504) or exc.status is None
    return isinstance(exc, _TRANSIENT)


# ---- the runner ---------------------------------------------------------------------------------------


class PodRunner:
    """Runs unbound Pending pods as local processes and reports their status (a kubelet stand-in).

    `start()` starts background threads (a watch per namespace, or one over all namespaces, and
    `max_parallel` workers); `stop()` kills running pod processes and joins the threads. Use it as a
    context manager in tests.
    """

    def __init__(
        self,
        kubeconfig: Path,
        workdir: Path,
        namespaces: list[str] | None = None,
        python_executable: str = sys.executable,
        max_parallel: int = 8,
        *,
        node_name: str = DEFAULT_NODE_NAME,
    ) -> None:
        self.kubeconfig = Path(kubeconfig)
        self.workdir = Path(workdir)
        self.namespaces = list(namespaces) if namespaces else None
        self.python_executable = python_executable
        self.max_parallel = max(1, max_parallel)
        self.node_name = node_name
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(self.kubeconfig), client_configuration=cfg, persist_config=False)
        cfg.connection_pool_maxsize = self.max_parallel + len(self.namespaces or [None]) + 4
        cfg.retries = 0  # _retry() retries with backoff; urllib3's immediate retries only add log noise
        self._server: str = cfg.host
        self._ca_pem = Path(cfg.ssl_ca_cert).read_bytes() if cfg.ssl_ca_cert else b""
        self._verify_tls: bool = bool(cfg.verify_ssl)
        self._api = client.ApiClient(cfg)
        self._core = client.CoreV1Api(self._api)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._seen: set[str] = set()
        self._runs: dict[str, _PodRun] = {}
        self._containers: dict[str, list[str]] = {}
        self._streams: set[Any] = set()
        self._threads: list[threading.Thread] = []

    # ---- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> PodRunner:
        if self._threads:
            raise RuntimeError("PodRunner already started")
        (self.workdir / "pods").mkdir(parents=True, exist_ok=True)
        (self.workdir / "pvc").mkdir(parents=True, exist_ok=True)
        for i in range(self.max_parallel):
            self._spawn(f"podrunner-worker-{i}", self._worker)
        targets: list[str | None] = list(self.namespaces) if self.namespaces else [None]
        for ns in targets:
            self._spawn(f"podrunner-watch-{ns or 'all'}", self._watcher(ns))
        log.info(
            "pod runner started: node %s, namespaces %s, workdir %s",
            self.node_name,
            ",".join(self.namespaces) if self.namespaces else "(all)",
            self.workdir,
        )
        return self

    def stop(self) -> None:
        """Stop watching, kill running pod processes (reported Failed, best effort) and join threads."""
        self._stopping.set()
        with self._lock:
            streams = list(self._streams)
            runs = list(self._runs.values())
        for stream in streams:
            with contextlib.suppress(Exception):
                stream.shutdown()
        for run in runs:
            run.stopping = True
            self._signal(run, signal.SIGKILL)
        for _ in range(self.max_parallel):
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads.clear()
        self._api.close()
        log.info("pod runner stopped")

    def __enter__(self) -> PodRunner:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, name: str, target: Callable[[], None]) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    # ---- public helpers for tests -------------------------------------------------------------------
    def pod_dir(self, namespace: str, pod: str) -> Path:
        return self.workdir / "pods" / namespace / pod

    def pvc_dir(self, namespace: str, claim: str) -> Path:
        return self.workdir / "pvc" / namespace / claim

    def logs(self, namespace: str, pod: str, container: str | None = None) -> str:
        """A container's log, or all of the pod's container logs (init containers first) concatenated."""
        directory = self.pod_dir(namespace, pod)
        if container is not None:
            path = directory / f"{container}.log"
            return path.read_text(errors="replace") if path.exists() else ""
        names = self._containers.get(f"{namespace}/{pod}")
        paths = [directory / f"{n}.log" for n in names] if names else sorted(directory.glob("*.log"))
        return "".join(p.read_text(errors="replace") for p in paths if p.exists())

    def kill(self, namespace: str, pod: str, sig: signal.Signals = signal.SIGKILL) -> None:
        """Send `sig` to the process group of the pod's running container (a fault injection)."""
        with self._lock:
            run = next((r for r in self._runs.values() if r.namespace == namespace and r.name == pod), None)
        if run is None or run.proc is None or run.proc.poll() is not None:
            raise LookupError(f"pod {namespace}/{pod} has no running process in this pod runner")
        log.info("pod %s: sending %s", run.key, sig.name)
        self._signal(run, sig)

    @staticmethod
    def _signal(run: _PodRun, sig: signal.Signals) -> None:
        proc = run.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, sig)

    # ---- API access -----------------------------------------------------------------------------------
    def _retry(self, what: str, call: Callable[[], Any], *, seconds: float = API_RETRY_SECONDS) -> Any:
        """Run an API call, retrying connection errors, 429 and 5xx (an API server restart) for a while."""
        started = time.monotonic()
        delay = 0.2
        while True:
            try:
                return call()
            except Exception as exc:
                # Once stopping, give up soon: the API server may be gone for good.
                limit = started + (min(seconds, 2.0) if self._stopping.is_set() else seconds)
                if not _transient(exc) or time.monotonic() + delay > limit:
                    raise
                log.debug("%s: %s; retrying in %.1fs", what, exc, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, 3.0)

    def _read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """GET a namespaced object as a dict, None when it does not exist."""
        method = {
            "pod": self._core.read_namespaced_pod,
            "secret": self._core.read_namespaced_secret,
            "configmap": self._core.read_namespaced_config_map,
            "persistentvolumeclaim": self._core.read_namespaced_persistent_volume_claim,
        }[kind]
        try:
            resp = self._retry(
                f"read {kind} {namespace}/{name}",
                lambda: method(name, namespace, _preload_content=False, _request_timeout=30),
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        obj: dict[str, Any] = json.loads(resp.data)
        return obj

    # ---- watching -------------------------------------------------------------------------------------
    def _watcher(self, namespace: str | None) -> Callable[[], None]:
        return lambda: self._watch_loop(namespace)

    def _watch_loop(self, namespace: str | None) -> None:
        delay = 0.2
        while not self._stopping.is_set():
            try:
                rv = self._relist(namespace)
                delay = 0.2
                while not self._stopping.is_set():
                    rv = self._watch_once(namespace, rv)
            except _WatchExpired:
                log.debug("watch on %s expired; listing again", namespace or "all namespaces")
            except Exception as exc:
                if self._stopping.is_set():
                    break
                if isinstance(exc, ApiException) and exc.status == 410:
                    continue  # resourceVersion too old: list again
                log.warning("watching pods in %s failed (%s); listing again in %.1fs", namespace or "all", exc, delay)
                self._stopping.wait(delay)
                delay = min(delay * 2, 5.0)

    def _list_call(self, namespace: str | None) -> Callable[..., Any]:
        if namespace is None:
            return self._core.list_pod_for_all_namespaces  # type: ignore[no-any-return]
        return lambda **kw: self._core.list_namespaced_pod(namespace, **kw)

    def _relist(self, namespace: str | None) -> str:
        resp = self._list_call(namespace)(_preload_content=False, _request_timeout=30)
        body = json.loads(resp.data)
        items: list[dict[str, Any]] = body.get("items") or []
        present = {item["metadata"]["uid"] for item in items}
        with self._lock:
            gone = [
                r.uid
                for r in self._runs.values()
                if r.uid not in present and (namespace is None or r.namespace == namespace)
            ]
        for uid in gone:  # deleted while we were not watching
            self._terminate(uid, 0.0)
        for item in items:
            self._handle("ADDED", item)
        rv: str = body["metadata"]["resourceVersion"]
        return rv

    def _watch_once(self, namespace: str | None, rv: str) -> str:
        resp = self._list_call(namespace)(
            watch=True,
            resource_version=rv,
            allow_watch_bookmarks=True,
            timeout_seconds=WATCH_TIMEOUT_SECONDS,
            _preload_content=False,
            _request_timeout=(10, WATCH_TIMEOUT_SECONDS + 30),
        )
        with self._lock:
            self._streams.add(resp)
        try:
            for line in resp:
                if self._stopping.is_set():
                    break
                if not line.strip():
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    if obj.get("code") == 410:
                        raise _WatchExpired
                    raise RuntimeError(f"watch error: {obj.get('message')}")
                rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                if event.get("type") != "BOOKMARK":
                    self._handle(event["type"], obj)
        finally:
            with self._lock:
                self._streams.discard(resp)
            resp.release_conn()
        return rv

    def _handle(self, kind: str, pod: dict[str, Any]) -> None:
        meta = pod.get("metadata") or {}
        uid: str = meta.get("uid", "")
        if kind == "DELETED":
            self._terminate(uid, 0.0)
            with self._lock:
                if uid not in self._runs:
                    self._seen.discard(uid)
            return
        if meta.get("deletionTimestamp"):
            grace = float(meta.get("deletionGracePeriodSeconds") or 0)
            self._terminate(uid, min(grace, KILL_GRACE_SECONDS))
            return
        if (pod.get("spec") or {}).get("nodeName") or (pod.get("status") or {}).get("phase") != "Pending":
            return
        with self._lock:
            if uid in self._seen:
                return
            self._seen.add(uid)
        self._queue.put(pod)

    def _terminate(self, uid: str, grace: float) -> None:
        """The pod is being deleted: SIGTERM its process group now, SIGKILL after `grace` seconds."""
        with self._lock:
            run = self._runs.get(uid)
            if run is None or run.deleting:
                return
            run.deleting = True
            run.kill_deadline = time.monotonic() + grace
        log.info("pod %s is being deleted; stopping it", run.key)
        self._signal(run, signal.SIGTERM if grace > 0 else signal.SIGKILL)

    # ---- running pods ---------------------------------------------------------------------------------
    def _worker(self) -> None:
        while True:
            pod = self._queue.get()
            if pod is None or self._stopping.is_set():
                return
            meta = pod["metadata"]
            try:
                self._run_pod(pod)
            except Exception:
                log.exception("pod %s/%s: the pod runner failed", meta["namespace"], meta["name"])
            finally:
                with self._lock:
                    self._runs.pop(meta["uid"], None)

    def _claim(self, run: _PodRun) -> bool:
        """Re-read the pod and bind it to this runner's node; False when it is gone or someone else has it."""
        pod = self._read("pod", run.namespace, run.name)
        if (
            pod is None
            or pod["metadata"]["uid"] != run.uid
            or pod["metadata"].get("deletionTimestamp")
            or (pod.get("spec") or {}).get("nodeName")
            or (pod.get("status") or {}).get("phase") != "Pending"
        ):
            return False
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": run.name, "namespace": run.namespace, "uid": run.uid},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            self._retry(
                f"bind pod {run.key}",
                lambda: self._core.create_namespaced_pod_binding(
                    run.name, run.namespace, binding, _preload_content=False, _request_timeout=30
                ),
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise
        pod.setdefault("spec", {})["nodeName"] = self.node_name
        run.pod = pod
        return True

    def _run_pod(self, queued: dict[str, Any]) -> None:
        meta, spec = queued["metadata"], queued.get("spec") or {}
        inits: list[dict[str, Any]] = spec.get("initContainers") or []
        mains: list[dict[str, Any]] = spec.get("containers") or []
        first = "PodInitializing" if inits else "ContainerCreating"
        records = [_ContainerRecord(c["name"], c.get("image", ""), True) for c in inits]
        records += [_ContainerRecord(c["name"], c.get("image", ""), False, waiting_reason=first) for c in mains]
        namespace, name = meta["namespace"], meta["name"]
        run = _PodRun(namespace, name, meta["uid"], queued, self.pod_dir(namespace, name), records)
        with self._lock:  # registered before binding, so a deletion from now on is seen
            self._runs[run.uid] = run
        try:
            claimed = self._claim(run)
        except Exception:
            with self._lock:  # let a later listing or event queue it again
                self._seen.discard(run.uid)
            raise
        if not claimed:
            return
        run.bound = True
        with self._lock:
            self._containers[run.key] = [r.name for r in records]
        log.info("pod %s (uid %s): starting", run.key, run.uid)
        try:
            if len(mains) != 1:
                raise PodConfigError(
                    f"the local pod runner runs exactly one (main) container; pod has {len(mains)}",
                    reason="Unsupported",
                )
            for c in inits:
                if c.get("restartPolicy") == "Always":
                    raise PodConfigError(
                        f"init container {c['name']!r} is a sidecar (restartPolicy Always), "
                        "which the local pod runner does not support",
                        reason="Unsupported",
                    )
            self._prepare_pod_dir(run)
            volumes = self._materialize_volumes(run)
            kubeconfig = self._write_kubeconfig(run)
            exit_code = 0
            for container, record in zip([*inits, *mains], records, strict=True):
                if run.deleting or run.stopping:
                    break
                exit_code = self._run_container(run, container, record, volumes, kubeconfig)
                if exit_code != 0:
                    break
            run.phase = "Succeeded" if exit_code == 0 and records[-1].state == "terminated" else "Failed"
        except PodConfigError as exc:
            log.info("pod %s: cannot run: %s", run.key, exc)
            self._fail_to_start(run, exc.reason, str(exc))
        except Exception as exc:
            log.exception("pod %s: the pod runner failed", run.key)
            detail = f"API error {exc.status} {exc.reason}" if isinstance(exc, ApiException) else repr(exc)
            self._fail_to_start(run, "RunContainerError", f"the local pod runner failed: {detail}"[:1024])
        finally:
            self._finish(run)

    @staticmethod
    def _fail_to_start(run: _PodRun, reason: str, message: str) -> None:
        """The pod fails before its next container could start; that container reports why."""
        run.phase, run.reason, run.message = "Failed", reason, message
        record = next((r for r in run.records if r.state != "terminated"), None)
        if record is not None and record.state == "waiting":
            record.state, record.exit_code, record.reason, record.message = (
                "terminated",
                START_ERROR_EXIT_CODE,
                reason,
                message,
            )
            record.started_at = record.finished_at = _now()

    def _finish(self, run: _PodRun) -> None:
        now = _now()
        for record in run.records:
            if record.state != "terminated":
                if record.state == "running":  # the runner itself failed mid-container
                    self._signal(run, signal.SIGKILL)
                record.state, record.finished_at, record.exit_code = "terminated", now, 137
                record.reason = "ContainerStatusUnknown"
                record.message = "The container could not be located when the pod was terminated"
        if run.phase not in ("Succeeded", "Failed"):
            run.phase = "Failed"
        if run.stopping and not run.message:
            run.message = "the local pod runner stopped while the pod was running"
        self._push_status(run)
        main = run.records[-1]
        log.info("pod %s: %s (exit code %s)", run.key, run.phase, main.exit_code)
        if run.deleting and run.bound:
            # A bound pod is deleted gracefully; like a kubelet, finish the deletion once it has stopped.
            with contextlib.suppress(ApiException):
                self._retry(
                    f"delete pod {run.key}",
                    lambda: self._core.delete_namespaced_pod(
                        run.name,
                        run.namespace,
                        body={"gracePeriodSeconds": 0, "preconditions": {"uid": run.uid}},
                        _preload_content=False,
                        _request_timeout=30,
                    ),
                )

    def _prepare_pod_dir(self, run: _PodRun) -> None:
        marker = run.directory / ".uid"
        if run.directory.exists() and (not marker.exists() or marker.read_text() != run.uid):
            shutil.rmtree(run.directory)  # an earlier pod of the same name
        (run.directory / "tmp").mkdir(parents=True, exist_ok=True)
        marker.write_text(run.uid)

    # ---- volumes --------------------------------------------------------------------------------------
    def _key_data(self, kind: str, namespace: str, name: str, optional: bool) -> dict[str, bytes] | None:
        """The data of a Secret or ConfigMap (decoded), None when it is missing and optional."""
        obj = self._read(kind, namespace, name)
        if obj is None:
            if kind == "configmap" and name == "kube-root-ca.crt" and self._ca_pem:
                return {"ca.crt": self._ca_pem}  # root-ca-cert-publisher is not running in the test cluster
            if optional:
                return None
            label = "secret" if kind == "secret" else "configmap"
            raise PodConfigError(f'{label} "{name}" not found (namespace {namespace})')
        data: dict[str, bytes] = {}
        if kind == "secret":
            data.update({k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()})
        else:
            data.update({k: v.encode("utf-8") for k, v in (obj.get("data") or {}).items()})
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return data

    def _token(self, run: _PodRun, audience: str | None, expiration: int) -> str:
        sa = run.pod["spec"].get("serviceAccountName") or "default"
        spec: dict[str, Any] = {
            "expirationSeconds": expiration,
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": run.name, "uid": run.uid},
        }
        if audience:
            spec["audiences"] = [audience]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        try:
            resp = self._retry(
                f"token for serviceaccount {run.namespace}/{sa}",
                lambda: self._core.create_namespaced_service_account_token(
                    sa, run.namespace, body, _preload_content=False, _request_timeout=30
                ),
            )
        except ApiException as exc:
            if exc.status == 404:
                raise PodConfigError(f'serviceaccount "{sa}" not found (namespace {run.namespace})') from exc
            raise
        token: str = json.loads(resp.data)["status"]["token"]
        return token

    def _write_kubeconfig(self, run: _PodRun) -> Path:
        """A kubeconfig with the runner's server and CA and the pod's ServiceAccount token."""
        cluster: dict[str, Any] = {"server": self._server}
        if self._ca_pem:
            cluster["certificate-authority-data"] = base64.b64encode(self._ca_pem).decode()
        if not self._verify_tls:
            cluster["insecure-skip-tls-verify"] = True
        user: dict[str, Any] = {}
        if run.pod["spec"].get("automountServiceAccountToken", True) is not False:
            user["token"] = self._token(run, None, TOKEN_EXPIRATION_SECONDS)
        doc = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "cluster", "cluster": cluster}],
            "users": [{"name": "pod", "user": user}],
            "contexts": [{"name": "pod", "context": {"cluster": "cluster", "user": "pod", "namespace": run.namespace}}],
            "current-context": "pod",
        }
        path = run.directory / "kubeconfig"
        path.touch(mode=0o600)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def _materialize_volumes(self, run: _PodRun) -> dict[str, Path]:
        """Create every volume of the pod locally; returns volume name -> local path.

        ConfigMap and Secret files are written once all the pod's mount paths are known, because their
        content is rewritten with them; tokens and downward API values are written as they are.
        """
        pod = run.pod
        volumes: dict[str, Path] = {}
        files: list[_File] = []
        for volume in pod["spec"].get("volumes") or []:
            name: str = volume["name"]
            local = run.directory / "volumes" / name
            if "persistentVolumeClaim" in volume:
                claim: str = volume["persistentVolumeClaim"]["claimName"]
                if self._read("persistentvolumeclaim", run.namespace, claim) is None:
                    raise PodConfigError(f'persistentvolumeclaim "{claim}" not found (namespace {run.namespace})')
                local = self.pvc_dir(run.namespace, claim)
                local.mkdir(parents=True, exist_ok=True)
            elif "hostPath" in volume:
                local = Path(volume["hostPath"]["path"])
            elif "emptyDir" in volume:
                local.mkdir(parents=True, exist_ok=True)
            elif "configMap" in volume or "secret" in volume or "projected" in volume or "downwardAPI" in volume:
                local.mkdir(parents=True, exist_ok=True)
                files += self._volume_files(run, volume, local)
            else:
                kinds = sorted(set(volume) - {"name"})
                raise PodConfigError(
                    f"volume {name!r}: {', '.join(kinds)} volumes are not supported by the local pod runner",
                    reason="Unsupported",
                )
            volumes[name] = local
        mapping = {
            m["mountPath"]: str(self._mount_source(volumes, m))
            for c in [*(pod["spec"].get("initContainers") or []), *pod["spec"]["containers"]]
            for m in c.get("volumeMounts") or []
            if m.get("name") in volumes
        }
        rewrite = PathRewriter(mapping)
        for path, data, mode, rewritten in files:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(rewrite.rewrite_bytes(data) if rewritten else data)
            if mode is not None:
                path.chmod(mode & 0o777)
        return volumes

    def _volume_files(self, run: _PodRun, volume: dict[str, Any], local: Path) -> list[_File]:
        """The files of a configMap, secret, downwardAPI or projected volume."""
        files: list[_File] = []
        if "projected" in volume:
            default_mode = volume["projected"].get("defaultMode")
            sources: list[dict[str, Any]] = volume["projected"].get("sources") or []
        else:
            kind = next(k for k in ("configMap", "secret", "downwardAPI") if k in volume)
            default_mode = volume[kind].get("defaultMode")
            sources = [{kind: volume[kind]}]
        for source in sources:
            if "serviceAccountToken" in source:
                sat = source["serviceAccountToken"]
                token = self._token(run, sat.get("audience"), int(sat.get("expirationSeconds") or 3600))
                files.append((_safe_join(local, sat["path"]), token.encode(), default_mode, False))
            elif "downwardAPI" in source:
                for item in source["downwardAPI"].get("items") or []:
                    if "fieldRef" not in item:
                        raise PodConfigError(
                            f"downwardAPI item {item.get('path')!r}: only fieldRef is supported", reason="Unsupported"
                        )
                    value = _field_value(run.pod, item["fieldRef"]["fieldPath"], self.node_name)
                    path = _safe_join(local, item["path"])
                    files.append((path, value.encode(), item.get("mode", default_mode), False))
            else:
                kind = "secret" if "secret" in source else "configMap"
                ref = source[kind]
                ref_name = ref.get("secretName") or ref.get("name") or ""
                optional = bool(ref.get("optional"))
                data = self._key_data(kind.lower(), run.namespace, ref_name, optional)
                if data is None:
                    continue
                items = ref.get("items")
                if items is None:
                    files += [(_safe_join(local, k), v, default_mode, True) for k, v in data.items()]
                    continue
                for item in items:
                    if item["key"] not in data:
                        if optional:
                            continue
                        raise PodConfigError(f"couldn't find key {item['key']} in {kind} {run.namespace}/{ref_name}")
                    mode = item.get("mode", default_mode)
                    files.append((_safe_join(local, item["path"]), data[item["key"]], mode, True))
        return files

    @staticmethod
    def _mount_source(volumes: Mapping[str, Path], mount: Mapping[str, Any]) -> Path:
        if mount.get("subPathExpr"):
            raise PodConfigError(
                f"volumeMount {mount['mountPath']!r}: subPathExpr is not supported by the local pod runner",
                reason="Unsupported",
            )
        local = volumes[mount["name"]]
        if mount.get("subPath"):
            local = _safe_join(local, mount["subPath"])
        return local

    # ---- one container --------------------------------------------------------------------------------
    def _launch(
        self, run: _PodRun, container: dict[str, Any], volumes: Mapping[str, Path], kubeconfig: Path
    ) -> _Launch:
        """The process (argv, env, cwd) for a container, with in-pod paths rewritten to local ones."""
        name: str = container["name"]
        mapping: dict[str, str] = {}
        for mount in container.get("volumeMounts") or []:
            if mount.get("name") not in volumes:
                raise PodConfigError(f"volumeMount {mount.get('mountPath')!r}: no volume named {mount.get('name')!r}")
            local = self._mount_source(volumes, mount)
            if mount.get("subPath") and not local.exists():
                local.mkdir(parents=True, exist_ok=True)
            mapping[mount["mountPath"]] = str(local)
        termination_file = run.directory / f"{name}.termination-log"
        termination_file.write_bytes(b"")
        mapping[container.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH] = str(termination_file)
        rewrite = PathRewriter(mapping)

        package_root = str(Path(cxbackup.__file__).resolve().parents[1])
        pythonpath = os.pathsep.join(p for p in [package_root, os.environ.get("PYTHONPATH", "")] if p)
        env: dict[str, str] = {
            "PATH": os.environ.get("PATH", os.defpath),
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "PYTHONPATH": pythonpath,
            "HOME": str(run.directory),
            "TMPDIR": str(run.directory / "tmp"),
            "KUBECONFIG": str(kubeconfig),
            "HOSTNAME": run.name,
        }
        for source in container.get("envFrom") or []:
            kind = "secret" if "secretRef" in source else "configMap"
            ref = source.get("secretRef") or source.get("configMapRef") or {}
            data = self._key_data(kind.lower(), run.namespace, ref.get("name", ""), bool(ref.get("optional")))
            for key, raw in (data or {}).items():
                if key and "=" not in key:
                    env[source.get("prefix", "") + key] = rewrite(raw.decode("utf-8", "surrogateescape"))
        for var in container.get("env") or []:
            value_from = var.get("valueFrom")
            if value_from is None:
                env[var["name"]] = expand_references(rewrite(var.get("value") or ""), env)
                continue
            value = self._env_value(run, var["name"], value_from)
            if value is not None:
                env[var["name"]] = rewrite(value)

        expanded = {
            **container,
            "command": [expand_references(rewrite(a), env) for a in container.get("command") or []],
            "args": [expand_references(rewrite(a), env) for a in container.get("args") or []],
        }
        argv = _argv(expanded, self.python_executable)
        cwd = run.directory
        if container.get("workingDir"):
            wanted = Path(rewrite(container["workingDir"]))
            if wanted.is_dir() or wanted.is_relative_to(run.directory):
                wanted.mkdir(parents=True, exist_ok=True)
                cwd = wanted
        fallback = container.get("terminationMessagePolicy") == "FallbackToLogsOnError"
        return _Launch(argv, env, cwd, run.directory / f"{name}.log", termination_file, fallback)

    def _env_value(self, run: _PodRun, var: str, value_from: dict[str, Any]) -> str | None:
        if "fieldRef" in value_from:
            return _field_value(run.pod, value_from["fieldRef"]["fieldPath"], self.node_name)
        for kind, ref_key in (("secret", "secretKeyRef"), ("configmap", "configMapKeyRef")):
            if ref_key in value_from:
                ref = value_from[ref_key]
                optional = bool(ref.get("optional"))
                data = self._key_data(kind, run.namespace, ref["name"], optional)
                if data is None:
                    return None
                if ref["key"] not in data:
                    if optional:
                        return None
                    label = "Secret" if kind == "secret" else "ConfigMap"
                    raise PodConfigError(f"couldn't find key {ref['key']} in {label} {run.namespace}/{ref['name']}")
                return data[ref["key"]].decode("utf-8", "surrogateescape")
        raise PodConfigError(
            f"env {var}: valueFrom {sorted(value_from)} is not supported by the local pod runner", reason="Unsupported"
        )

    def _run_container(
        self,
        run: _PodRun,
        container: dict[str, Any],
        record: _ContainerRecord,
        volumes: Mapping[str, Path],
        kubeconfig: Path,
    ) -> int:
        launch = self._launch(run, container, volumes, kubeconfig)
        with launch.log.open("wb") as out:
            try:
                proc = subprocess.Popen(
                    launch.argv,
                    env=launch.env,
                    cwd=launch.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                record.state, record.exit_code, record.reason = "terminated", START_ERROR_EXIT_CODE, "StartError"
                record.started_at = record.finished_at = _now()
                record.message = f"failed to start {launch.argv[0]!r}: {exc.strerror or exc}"
                return START_ERROR_EXIT_CODE
        with self._lock:
            run.proc = proc
            cancelled = run.deleting or run.stopping
        if cancelled:  # deleted between our check and the start
            self._signal(run, signal.SIGKILL)
        record.state, record.pid, record.started_at = "running", proc.pid, _now()
        if not record.init:
            run.phase = "Running"
        log.info("pod %s: container %s started (pid %d)", run.key, record.name, proc.pid)
        self._push_status(run)

        deadline_s = run.pod["spec"].get("activeDeadlineSeconds")
        active_deadline = run.started + float(deadline_s) if deadline_s else None
        while True:
            try:
                returncode = proc.wait(timeout=POLL_SECONDS)
                break
            except subprocess.TimeoutExpired:
                now = time.monotonic()
                if run.kill_deadline is not None and now >= run.kill_deadline:
                    self._signal(run, signal.SIGKILL)
                if active_deadline is not None and now >= active_deadline and not run.reason:
                    run.reason = "DeadlineExceeded"
                    run.message = "Pod was active on the node longer than the specified deadline"
                    self._signal(run, signal.SIGKILL)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # whatever the container left behind in its group
        exit_code = _exit_code(returncode)
        record.state, record.exit_code, record.finished_at = "terminated", exit_code, _now()
        record.reason = "Completed" if exit_code == 0 else "Error"
        record.message = self._termination_message(launch, exit_code)
        with self._lock:
            run.proc = None
        return exit_code

    @staticmethod
    def _termination_message(launch: _Launch, exit_code: int) -> str:
        try:
            with launch.termination_file.open("rb") as f:
                message = f.read(TERMINATION_MESSAGE_MAX_BYTES).decode("utf-8", "replace")
        except OSError:
            message = ""
        if not message and exit_code != 0 and launch.fallback_to_logs:
            message = _tail(launch.log, FALLBACK_LOG_LINES, TERMINATION_MESSAGE_MAX_BYTES)
        return message

    # ---- status ---------------------------------------------------------------------------------------
    def _status(self, run: _PodRun, current: dict[str, Any]) -> dict[str, Any]:
        """The pod's status from the runner's view, merged into `current` (others' conditions are kept)."""
        now = _now()
        inits = [r for r in run.records if r.init]
        initialized = all(r.state == "terminated" and r.exit_code == 0 for r in inits)
        running = run.phase == "Running"
        done = run.phase in ("Succeeded", "Failed")
        wanted = {
            "PodReadyToStartContainers": ("True", ""),
            "Initialized": ("True", "") if initialized else ("False", "ContainersNotInitialized"),
            "ContainersReady": ("True", "") if running else ("False", "PodCompleted" if done else "ContainersNotReady"),
            "Ready": ("True", "") if running else ("False", "PodCompleted" if done else "ContainersNotReady"),
            "PodScheduled": ("True", ""),
        }
        conditions: list[dict[str, Any]] = []
        existing = {c.get("type"): c for c in current.get("conditions") or []}
        for ctype, (value, reason) in wanted.items():
            old = existing.pop(ctype, {})
            cond: dict[str, Any] = {
                "type": ctype,
                "status": value,
                "lastProbeTime": None,
                "lastTransitionTime": old.get("lastTransitionTime") if old.get("status") == value else now,
            }
            if reason:
                cond["reason"] = reason
            conditions.append(cond)
        conditions += existing.values()
        status: dict[str, Any] = {
            **current,
            "phase": run.phase,
            "conditions": conditions,
            "hostIP": LOCAL_IP,
            "hostIPs": [{"ip": LOCAL_IP}],
            "podIP": LOCAL_IP,
            "podIPs": [{"ip": LOCAL_IP}],
            "startTime": current.get("startTime") or run.start_time,
            "containerStatuses": [r.status() for r in run.records if not r.init],
        }
        if inits:
            status["initContainerStatuses"] = [r.status() for r in inits]
        if run.reason:
            status["reason"] = run.reason
        if run.message:
            status["message"] = run.message[:TERMINATION_MESSAGE_MAX_BYTES]
        return status

    def _push_status(self, run: _PodRun) -> None:
        """Write the status through pods/status: re-read, merge, replace; retry conflicts and outages."""
        attempts = 0
        while True:
            attempts += 1
            try:
                pod = self._read("pod", run.namespace, run.name)
                if pod is None or pod["metadata"]["uid"] != run.uid:
                    return
                if pod["metadata"].get("deletionTimestamp"):
                    run.deleting = True  # finish the deletion when done (see _finish)
                pod["status"] = self._status(run, pod.get("status") or {})
                write = functools.partial(
                    self._core.replace_namespaced_pod_status,
                    run.name,
                    run.namespace,
                    pod,
                    _preload_content=False,
                    _request_timeout=30,
                )
                self._retry(f"status of pod {run.key}", write)
                return
            except ApiException as exc:
                if exc.status == 409 and attempts < 20:
                    continue  # someone else updated the pod (the Job controller, a finalizer): read again
                if exc.status == 404:
                    return
                log.error("pod %s: status update failed: %s %s", run.key, exc.status, exc.reason)
                return
            except Exception as exc:
                log.error("pod %s: status update failed: %s", run.key, exc)
                return


# ---- CLI ----------------------------------------------------------------------------------------------


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cxbackup.localcluster.podrunner",
        description="Run the test control plane's pods as local processes (a kubelet stand-in for tests "
        "and the demo; not for real clusters). Runs until SIGTERM or SIGINT.",
    )
    parser.add_argument("--kubeconfig", type=Path, default=os.environ.get("KUBECONFIG"), help="default: $KUBECONFIG")
    parser.add_argument("--workdir", type=Path, required=True, help="pod directories, logs and PVC data")
    parser.add_argument(
        "--namespace", action="append", dest="namespaces", help="watch only this namespace (repeatable)"
    )
    parser.add_argument("--max-parallel", type=int, default=8, help="pods running at once (default 8)")
    parser.add_argument("--python", default=sys.executable, help="Python that runs `cxbackup` and `python` commands")
    parser.add_argument("--node-name", default=DEFAULT_NODE_NAME, help="node name pods are bound to")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    if args.kubeconfig is None:
        parser.error("--kubeconfig is required when KUBECONFIG is not set")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    done = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("received %s; stopping", signal.Signals(signum).name)
        done.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with PodRunner(
        args.kubeconfig,
        args.workdir,
        args.namespaces,
        python_executable=args.python,
        max_parallel=args.max_parallel,
        node_name=args.node_name,
    ):
        while not done.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
