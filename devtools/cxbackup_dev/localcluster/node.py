"""A real Kubernetes node on this machine for the e2e tests and `make demo`: containerd, kubelet and
kube-scheduler next to the test control plane.

Test tooling, not part of the operator. Pods run as real containers: runc from Debian's packages under
containerd, images imported from OCI archives (no registry), cgroup limits, seccomp, fsGroup, projected
ServiceAccount tokens and termination messages handled by the real kubelet.

Networking stays on loopback. A MutatingAdmissionPolicy puts every pod of a namespace labelled
`cxbackup.io/test-node=host-network` on the host network and points KUBERNETES_SERVICE_HOST/PORT at the
API server on 127.0.0.1, so that in-cluster configuration (ServiceAccount token + CA) reaches it and pods
reach servers bound to 127.0.0.1 (the vendor emulator). On the host network a container port is a host
port: one pod per port on this node.

Host state. A node changes the machine: kubelet sets kernel sysctls and iptables chains, containerd and
kubelet mount filesystems and create cgroups and folders. Everything the node starts lives under its work
directory or under one cgroup subtree (`cgroupRoot`), and what it cannot keep there is recorded in
`/run/cxbackup-test-node/state.json` before it is changed. `stop()` undoes it all: processes killed (the
containers through their cgroups), mounts unmounted, cgroups removed, sysctls restored, new iptables
chains deleted, folders it created removed. A run that was killed leaves the state file behind and the
next `start()` (or `cleanup_previous()`) undoes that run first.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxbackup_dev.localcluster.controlplane import (
    ControlPlane,
    ControlPlaneError,
    free_port,
    stop_process,
    stopped_on_error,
)

__all__ = ["HOST_NETWORK_LABEL", "Node", "NodeError", "check_host", "cleanup_previous", "host_snapshot"]

STATE_DIR = Path("/run/cxbackup-test-node")
STATE_FILE = STATE_DIR / "state.json"
CGROUP_ROOT = "cxbackup-test-node"
UNIX_SOCKET_PATH_MAX = 104
"""The longest socket path containerd accepts (it refuses more than 104 bytes, the portable limit)."""
CGROUP_FS = Path("/sys/fs/cgroup")
# The top-level cgroups a node may create in a hierarchy: its cgroupRoot, and those kubelet or containerd make
# outside it (removed on stop when they were not there before). Other top-level cgroups are not the node's.
NODE_CGROUPS = (CGROUP_ROOT, "kubepods", "kubepods.slice", "k8s.io")
HOST_NETWORK_LABEL = "cxbackup.io/test-node"
BRIDGE = "cxbtest0"
# kubelet refuses a loopback node IP: the node gets its own address on a veth pair the harness creates
# (both ends stay in this network namespace; nothing is routed anywhere)
NODE_LINK = "cxbnode0"
NODE_LINK_PEER = "cxbnode1"
NODE_IP = "10.251.0.1"
# Kernel settings kubelet changes (protectKernelDefaults: false); restored on stop.
SYSCTLS = (
    "vm.overcommit_memory",
    "vm.panic_on_oom",
    "kernel.panic",
    "kernel.panic_on_oops",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
    "net.ipv4.ip_forward",
)
# Folders kubelet, containerd or the CNI plugins create outside their configured roots.
HOST_PATHS = (
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/cni",
    "/run/netns",
    "/run/containerd",
    "/var/lib/containerd",
    "/opt/containerd",
    "/etc/cni",
)
IPTABLES = ("iptables", "ip6tables")
TABLES = ("filter", "nat", "mangle")
# The iptables chains kubelet (KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT, ...) and the CNI plugins create.
NODE_CHAINS = ("KUBE-", "CNI-")


class NodeError(ControlPlaneError):
    """The test node could not start; the message names what is missing or which part failed."""


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def check_host() -> None:
    """Fail at once, in one line, when this machine cannot run the node."""
    if os.geteuid() != 0:
        raise NodeError("the test node needs root (containerd, kubelet, cgroups and mounts); run as root")
    for tool in ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip"):
        if shutil.which(tool) is None:
            raise NodeError(
                f"{tool} is not installed: apt-get install containerd runc containernetworking-plugins iptables "
                "iproute2 (make test does this)"
            )
    if not Path("/usr/lib/cni/bridge").exists():
        raise NodeError("the CNI plugins are missing: apt-get install containernetworking-plugins")
    if not (CGROUP_FS / "memory").is_dir() and not (CGROUP_FS / "cgroup.controllers").exists():
        raise NodeError(f"no cgroup filesystem at {CGROUP_FS}: the node needs cgroups (v1 or v2)")
    if not Path("/proc/filesystems").read_text().count("overlay"):
        raise NodeError("the kernel has no overlay filesystem, which containerd's snapshotter needs")


# ---- host state: record, undo -----------------------------------------------------------------------
def _iptables_chains(tool: str) -> dict[str, list[str]]:
    chains: dict[str, list[str]] = {}
    for table in TABLES:
        proc = subprocess.run([f"{tool}-save", "-t", table], capture_output=True, text=True, check=False)
        chains[table] = [line[1:].split()[0] for line in proc.stdout.splitlines() if line.startswith(":")]
    return chains


def _record_host_state(workdir: Path) -> dict[str, Any]:
    sysctls = {}
    for name in SYSCTLS:
        with contextlib.suppress(OSError):
            sysctls[name] = _sysctl_path(name).read_text().strip()
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=False).stdout
    return {
        "workdir": str(workdir),
        "pids": {},
        "sysctls": sysctls,
        "iptables": {tool: _iptables_chains(tool) for tool in IPTABLES if shutil.which(f"{tool}-save")},
        "paths_absent": [p for p in HOST_PATHS if not Path(p).exists()],
        "cgroups": _node_cgroups(),
        "links": [line.split(":")[1].strip().split("@")[0] for line in links.splitlines() if ":" in line],
    }


def _node_cgroups() -> list[str]:
    """The top-level cgroups of every hierarchy that a node creates (NODE_CGROUPS), those that exist now."""
    return sorted(str(d) for name in NODE_CGROUPS for d in CGROUP_FS.glob(f"*/{name}") if d.is_dir()) + (
        [str(CGROUP_FS / name) for name in NODE_CGROUPS if (CGROUP_FS / name).is_dir()]
    )


def _is_node_link(name: str) -> bool:
    return name in (BRIDGE, NODE_LINK, NODE_LINK_PEER) or name.startswith("veth")


def host_snapshot(workdir: Path | None = None) -> dict[str, Any]:
    """What a node changes on this machine, for comparing before and after. Only what the node harness
    creates or sets is recorded, so that other processes on the host (which may create cgroups, mounts,
    chains or links of their own at any time) do not count as the node's leftovers: the sysctls kubelet sets,
    the iptables chains kubelet and the CNI plugins create (`KUBE-*`, `CNI-*`), the network links the node
    makes (its bridge, its veth pair, the pods' `veth*`), which of the folders outside the node's roots
    exist, the top-level cgroups a node creates (its cgroupRoot, `kubepods`, `k8s.io`; in every hierarchy),
    the mounts under those folders, the state folder and `workdir` (every mount of the machine when no
    `workdir` is given), and the node's processes (kubelet, containerd, kube-scheduler)."""
    state = _record_host_state(Path("/nonexistent"))
    mounts = sorted(line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines())
    if workdir is not None:
        mounts = sorted(_mounts_under([str(workdir), str(STATE_DIR), *HOST_PATHS]))
    return {
        "sysctls": state["sysctls"],
        "iptables": {
            tool: {table: [c for c in chains if c.startswith(NODE_CHAINS)] for table, chains in tables.items()}
            for tool, tables in state["iptables"].items()
        },
        "links": sorted(name for name in state["links"] if _is_node_link(name)),
        "paths_absent": state["paths_absent"],
        "cgroups": state["cgroups"],
        "mounts": mounts,
        "processes": sorted(
            cmd.split()[0]
            for entry in Path("/proc").iterdir()
            if entry.name.isdigit()
            and (cmd := _cmdline(int(entry.name)))
            and any(name in cmd.split()[0] for name in ("kubelet", "containerd", "kube-scheduler"))
        ),
    }


def _save_state(state: dict[str, Any]) -> None:
    STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = STATE_FILE.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(STATE_FILE)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _kill_pid(pid: int, marker: str, grace: float) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; only if the process still runs what we started."""
    if marker not in _cmdline(pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and marker in _cmdline(pid):
        time.sleep(0.1)
    if marker in _cmdline(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _cgroup_hierarchies() -> list[Path]:
    """The roots kubelet's cgroupRoot is created in: the unified root (cgroup v2), or the root of every v1
    hierarchy (each a mount point under /sys/fs/cgroup; the v2 `unified` one of a hybrid host excepted)."""
    if (CGROUP_FS / "cgroup.controllers").exists():
        return [CGROUP_FS]
    return [d for d in CGROUP_FS.iterdir() if d.is_dir() and d.name != "unified" and os.path.ismount(d)]


_GONE = (FileNotFoundError, NotADirectoryError, ProcessLookupError)
"""What reading a cgroup raises when it was removed meanwhile (kubelet or runc removing a container's cgroup,
its last process exiting): the cgroup is gone, which is not an error."""


def _cgroup_subtree(root: Path, scandir: Callable[[Path], Any] = os.scandir) -> list[Path]:
    """`root` and every cgroup folder under it, deepest first. Containers come and go while this walks (a pod
    stopped by kubelet, a container whose last process exits): a folder that vanishes between being listed
    and being read is left out, as gone, instead of failing the walk (`scandir` is the listing, a parameter
    for tests)."""
    found: list[Path] = []
    pending = [root]
    while pending:
        folder = pending.pop()
        try:
            with scandir(folder) as entries:
                subfolders = [Path(e.path) for e in entries if _is_dir(e)]
        except _GONE:
            continue
        found.append(folder)
        pending.extend(subfolders)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir(follow_symlinks=False)
    except _GONE:
        return False


def _cgroup_pids(folders: Iterable[Path], read: Callable[[Path], str] = Path.read_text) -> set[int]:
    """The processes in these cgroups; a cgroup removed while it is read has none: it is gone (`read` reads a
    file, a parameter for tests)."""
    pids: set[int] = set()
    for folder in folders:
        try:
            text = read(folder / "cgroup.procs")
        except OSError:  # _GONE, or e.g. ENODEV from a cgroup being removed: nothing to read either
            continue
        pids.update(int(p) for p in text.split() if p.isdigit())
    return pids


def _cgroup_dirs() -> list[Path]:
    """Every cgroup folder of the node's subtree, deepest first, in every hierarchy."""
    found: list[Path] = []
    for root in [*CGROUP_FS.glob(f"*/{CGROUP_ROOT}"), CGROUP_FS / CGROUP_ROOT]:
        found.extend(_cgroup_subtree(root))
    return sorted(set(found), key=lambda p: len(p.parts), reverse=True)


def _kill_cgroup_processes() -> None:
    for _ in range(50):
        pids = _cgroup_pids(_cgroup_dirs())
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _mounts_under(roots: list[str]) -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == r or point.startswith(r.rstrip("/") + "/") for r in roots):
            points.append(point)
    return sorted(set(points), key=len, reverse=True)


def _unmount_all(roots: list[str]) -> None:
    for _ in range(5):
        points = _mounts_under(roots)
        if not points:
            return
        for point in points:
            if subprocess.run(["umount", point], capture_output=True, check=False).returncode != 0:
                subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _remove_new_iptables_chains(before: dict[str, dict[str, list[str]]]) -> None:
    for tool, tables in before.items():
        for table, old in tables.items():
            saved = subprocess.run([f"{tool}-save", "-t", table], capture_output=True, text=True, check=False).stdout
            new = {line[1:].split()[0] for line in saved.splitlines() if line.startswith(":")} - set(old)
            if not new:
                continue
            for line in saved.splitlines():
                parts = line.split()
                # a rule of an older chain that jumps into a chain the node created
                if line.startswith("-A ") and parts[1] not in new and any(p in new for p in parts[2:]):
                    subprocess.run([tool, "-t", table, "-D", *parts[1:]], capture_output=True, check=False)
            for chain in new:
                subprocess.run([tool, "-t", table, "-F", chain], capture_output=True, check=False)
            for chain in new:
                subprocess.run([tool, "-t", table, "-X", chain], capture_output=True, check=False)


def _undo(state: dict[str, Any]) -> list[str]:
    """Undo everything a node (running, stopped or killed) did to this machine; returns what failed."""
    problems: list[str] = []
    workdir = state["workdir"]
    pids: dict[str, int] = state.get("pids", {})
    for name in ("kube-scheduler", "kubelet"):
        if name in pids:
            _kill_pid(pids[name], name, 10)
    _kill_cgroup_processes()
    if "containerd" in pids:
        _kill_pid(pids["containerd"], "containerd", 10)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and "containerd-shim" in (cmd := _cmdline(int(entry.name))) and workdir in cmd:
            _kill_pid(int(entry.name), "containerd-shim", 3)
    _kill_cgroup_processes()
    roots = [workdir, str(STATE_DIR), *HOST_PATHS]
    _unmount_all(roots)
    for d in _cgroup_dirs():
        with contextlib.suppress(OSError):
            d.rmdir()
    old_cgroups = set(state.get("cgroups", []))
    for d in sorted(CGROUP_FS.glob("*/*"), key=lambda p: len(p.parts), reverse=True):
        if d.is_dir() and str(d) not in old_cgroups and d.name in NODE_CGROUPS[1:]:
            for sub in _cgroup_subtree(d):  # deepest first, `d` last
                with contextlib.suppress(OSError):
                    sub.rmdir()
    problems += [str(d) for d in _cgroup_dirs()]
    for name, value in state.get("sysctls", {}).items():
        try:
            if _sysctl_path(name).read_text().strip() != value:
                _sysctl_path(name).write_text(value + "\n")
        except OSError as exc:
            problems.append(f"sysctl {name}: {exc}")
    _remove_new_iptables_chains(state.get("iptables", {}))
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=False).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
        if name and name not in state.get("links", []) and (name in (BRIDGE, NODE_LINK) or name.startswith("veth")):
            subprocess.run(["ip", "link", "delete", name], capture_output=True, check=False)
    for path in state.get("paths_absent", []):
        if Path(path).exists():
            _unmount_all([path])
            shutil.rmtree(path, ignore_errors=True)
    _unmount_all([workdir])
    shutil.rmtree(Path(workdir) / "node", ignore_errors=True)
    problems += [f"still mounted: {p}" for p in _mounts_under(roots)]
    return problems


def _forget_state() -> None:
    STATE_FILE.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        STATE_DIR.rmdir()


def cleanup_previous() -> bool:
    """Undo a node that was killed before it could stop (its state file is still there); True if one was."""
    if not STATE_FILE.exists():
        return False
    state = json.loads(STATE_FILE.read_text())
    problems = _undo(state)
    if problems:
        raise NodeError(f"could not clean up the previous test node: {'; '.join(problems)}")
    _forget_state()
    return True


# ---- the node ---------------------------------------------------------------------------------------
def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@dataclass
class Node:
    """containerd + kubelet + kube-scheduler registered with `control_plane`, rooted at `workdir/node`."""

    control_plane: ControlPlane
    workdir: Path
    images: list[Path] = field(default_factory=list)
    pause_image: str = ""
    pause_archive: Path | None = None
    name: str = "cxbackup-test-node"
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, init=False)
    _state: dict[str, Any] = field(default_factory=dict, init=False)

    @property
    def root(self) -> Path:
        return self.workdir / "node"

    @property
    def socket(self) -> Path:
        return self.root / "containerd" / "containerd.sock"

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.root / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def _spawn(self, name: str, args: list[str]) -> None:
        with (self.root / f"{name}.log").open("ab") as out:
            proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        self._procs[name] = proc
        self._state["pids"][name] = proc.pid
        self._persist_state()

    def _alive(self, name: str) -> None:
        proc = self._procs[name]
        if proc.poll() is not None:
            raise NodeError(f"{name} exited with code {proc.returncode}:\n{self.log_tail(name)}")

    # ---- start ------------------------------------------------------------------------------------------
    def start(self) -> Node:
        """Start containerd, kubelet and kube-scheduler; when a step fails, what was started and changed so far
        is stopped and undone (as `stop()` does) before the error is raised."""
        longest = f"{self.socket}.ttrpc"
        if len(os.fsencode(longest)) > UNIX_SOCKET_PATH_MAX:
            raise NodeError(
                f"the node's folder {self.workdir} is too deep: containerd's socket {longest} would be "
                f"{len(os.fsencode(longest))} bytes, over the {UNIX_SOCKET_PATH_MAX} a unix socket's path may have "
                "here; give the node a shorter folder"
            )
        self._claim_host()
        self.root.mkdir(parents=True, exist_ok=True)
        with stopped_on_error(self.stop):
            self._add_node_address()
            self._start_containerd()
            for archive in [*([self.pause_archive] if self.pause_archive else []), *self.images]:
                self.ctr("images", "import", "--no-unpack", str(archive))
            self._start_kubelet()
            self._start_scheduler()
            self._wait_ready(90)
        return self

    # The machine-wide steps (root, the state file under /run, the host's cgroups, mounts, chains and links), as
    # methods: a test replaces them to run start() and stop() without root and without touching the machine.
    def _claim_host(self) -> None:
        """Check the machine, undo a killed run, and record the host's state before anything changes it."""
        check_host()
        cleanup_previous()
        self._state = _record_host_state(self.workdir)
        self._persist_state()

    def _persist_state(self) -> None:
        _save_state(self._state)

    def _release_host(self) -> list[str]:
        """Undo everything the node did to the machine (see `_undo`); returns what could not be undone."""
        problems = _undo(self._state)
        if not problems:
            _forget_state()
        return problems

    @staticmethod
    def _add_node_address() -> None:
        for args in (
            ["ip", "link", "add", NODE_LINK, "type", "veth", "peer", "name", NODE_LINK_PEER],
            ["ip", "addr", "add", f"{NODE_IP}/32", "dev", NODE_LINK],
            ["ip", "link", "set", NODE_LINK, "up"],
            ["ip", "link", "set", NODE_LINK_PEER, "up"],
        ):
            proc = subprocess.run(args, capture_output=True, text=True, check=False)
            if proc.returncode != 0:
                raise NodeError(
                    f"{' '.join(args)} failed: {proc.stderr.strip()} (the node needs a veth pair for its address)"
                )

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            ["ctr", "--address", str(self.socket), "-n", "k8s.io", *args],
            capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise NodeError(f"ctr {' '.join(args)} failed: {proc.stderr.strip()[:1000]}")
        return proc

    def _start_containerd(self) -> None:
        c = self.root / "containerd"
        cni = _write(
            self.root / "cni" / "net.d" / "10-cxbackup-test.conflist",
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "cxbackup-test",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": BRIDGE,
                            "isGateway": True,
                            "ipMasq": False,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": "10.250.0.0/24"}]],
                                "dataDir": str(self.root / "cni" / "ipam"),
                            },
                        },
                        {"type": "loopback"},
                    ],
                }
            ),
        )
        config = _write(
            c / "config.toml",
            f"""version = 2
root = "{c / "root"}"
state = "{c / "state"}"
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{self.socket}"
[ttrpc]
  address = "{self.socket}.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{self.pause_image}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  disable_apparmor = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{cni.parent}"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        Root = "{c / "runc"}"
        SystemdCgroup = false
""",
        )
        self._spawn("containerd", ["containerd", "--config", str(config)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            self._alive("containerd")
            if self.socket.exists() and self.ctr("version", check=False).returncode == 0:
                return
            time.sleep(0.2)
        raise NodeError(f"containerd did not answer on {self.socket} in 30 s:\n{self.log_tail('containerd')}")

    def _start_kubelet(self) -> None:
        cp = self.control_plane
        for hierarchy in _cgroup_hierarchies():
            (hierarchy / CGROUP_ROOT).mkdir(exist_ok=True)
        pki = cp.workdir / "pki"
        self.kubelet_port = free_port()
        config = _write(
            self.root / "kubelet" / "config.yaml",
            json.dumps(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    "failCgroupV1": False,
                    "cgroupDriver": "cgroupfs",
                    "cgroupRoot": f"/{CGROUP_ROOT}",
                    "protectKernelDefaults": False,
                    "failSwapOn": False,
                    "makeIPTablesUtilChains": False,
                    "imageGCHighThresholdPercent": 100,
                    "imageGCLowThresholdPercent": 99,
                    "evictionHard": {"memory.available": "50Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
                    "address": NODE_IP,
                    "port": self.kubelet_port,
                    "readOnlyPort": 0,
                    "healthzBindAddress": "127.0.0.1",
                    "healthzPort": free_port(),
                    "authentication": {
                        "anonymous": {"enabled": False},
                        "webhook": {"enabled": False},
                        "x509": {"clientCAFile": str(pki / "ca.crt")},
                    },
                    "authorization": {"mode": "AlwaysAllow"},
                    "containerRuntimeEndpoint": f"unix://{self.socket}",
                    "podLogsDir": str(self.root / "pod-logs"),
                    "resolvConf": "/etc/resolv.conf",
                    "serializeImagePulls": False,
                    "syncFrequency": "5s",
                    "fileCheckFrequency": "5s",
                    "nodeStatusUpdateFrequency": "2s",
                }
            ),
        )
        self._spawn(
            "kubelet",
            [
                cp.binary("kubelet"),
                f"--config={config}",
                f"--kubeconfig={cp.kubeconfig}",
                f"--root-dir={self.root / 'kubelet' / 'root'}",
                f"--cert-dir={self.root / 'kubelet' / 'pki'}",
                f"--hostname-override={self.name}",
                f"--node-ip={NODE_IP}",
                "--v=1",
            ],
        )

    def _start_scheduler(self) -> None:
        cp = self.control_plane
        self._spawn(
            "kube-scheduler",
            [
                cp.binary("kube-scheduler"),
                f"--kubeconfig={cp.kubeconfig}",
                f"--authentication-kubeconfig={cp.kubeconfig}",
                f"--authorization-kubeconfig={cp.kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                "--v=1",
            ],
        )

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._alive("kubelet")
            self._alive("kube-scheduler")
            proc = self.control_plane.kubectl("get", "node", self.name, "-o", "json", check=False)
            if proc.returncode == 0:
                conditions = json.loads(proc.stdout).get("status", {}).get("conditions", [])
                if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                    return
            time.sleep(0.5)
        raise NodeError(f"node {self.name} not Ready after {timeout:.0f}s:\n{self.log_tail('kubelet')}")

    def install_host_network_policy(self) -> None:
        """Pods of labelled namespaces: host network, and the API server's loopback address as the in-cluster
        service address (ServiceAccount token and CA stay those kubelet mounts)."""
        cp = self.control_plane
        versions = cp.kubectl("api-versions").stdout.split()
        group = "admissionregistration.k8s.io"
        version = next((v for v in (f"{group}/v1", f"{group}/v1beta1") if v in versions), None)
        if version is None:
            raise NodeError(f"the API server serves no MutatingAdmissionPolicy ({group}/v1 or v1beta1)")
        env = (
            'Object.spec.containers.env{name: "KUBERNETES_SERVICE_HOST", value: "127.0.0.1"}, '
            f'Object.spec.containers.env{{name: "KUBERNETES_SERVICE_PORT", value: "{cp.api_port}"}}'
        )
        expression = (
            "Object{spec: Object.spec{hostNetwork: true, containers: object.spec.containers.map(c, "
            f"Object.spec.containers{{name: c.name, env: [{env}]}})}}}}"
        )
        name = "cxbackup-test-node-host-network"
        policy = {
            "apiVersion": version,
            "kind": "MutatingAdmissionPolicy",
            "metadata": {"name": name},
            "spec": {
                "failurePolicy": "Fail",
                "reinvocationPolicy": "Never",
                "matchConstraints": {
                    "resourceRules": [
                        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}
                    ],
                    "namespaceSelector": {"matchLabels": {HOST_NETWORK_LABEL: "host-network"}},
                },
                "mutations": [{"patchType": "ApplyConfiguration", "applyConfiguration": {"expression": expression}}],
            },
        }
        binding = {
            "apiVersion": version,
            "kind": "MutatingAdmissionPolicyBinding",
            "metadata": {"name": name},
            "spec": {"policyName": name},
        }
        cp.kubectl("apply", "-f", "-", input_text=json.dumps(policy) + "\n" + json.dumps(binding))
        # the API server loads policies asynchronously: wait until a dry-run pod comes out mutated
        probe_ns = "cxbackup-test-node"
        cp.kubectl("create", "namespace", probe_ns, check=False)
        cp.kubectl("label", "--overwrite", "namespace", probe_ns, f"{HOST_NETWORK_LABEL}=host-network")
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "probe", "namespace": probe_ns},
            "spec": {"containers": [{"name": "probe", "image": self.pause_image or "probe"}]},
        }
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            out = cp.kubectl("create", "--dry-run=server", "-o", "json", "-f", "-", input_text=json.dumps(pod))
            if json.loads(out.stdout)["spec"].get("hostNetwork"):
                return
            time.sleep(0.3)
        raise NodeError("the host-network MutatingAdmissionPolicy was not in effect after 30 s")

    # ---- faults -----------------------------------------------------------------------------------------
    def stop_kubelet(self) -> None:
        proc = self._procs.pop("kubelet")
        proc.terminate()
        proc.wait(timeout=30)

    def start_kubelet(self) -> None:
        self._start_kubelet()
        self._wait_ready(90)

    # ---- stop -------------------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop everything and restore this machine's state; raises NodeError naming what is left over."""
        if not self._state:
            return
        with contextlib.suppress(ControlPlaneError, subprocess.TimeoutExpired):
            # let kubelet stop the pods it runs while it still can
            self.control_plane.kubectl(
                "delete", "pods", "--all-namespaces", "--all", "--grace-period=1", "--wait=false", check=False
            )
        problems = self._release_host()
        # what this object started, stopped in reverse order (already gone after a normal undo; waited for)
        for proc in reversed(list(self._procs.values())):
            stop_process(proc, grace=5)
        self._procs.clear()
        self._state = {}
        if problems:
            raise NodeError(f"the test node left state behind: {'; '.join(problems)}")

    def __enter__(self) -> Node:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
