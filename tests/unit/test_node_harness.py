"""The test harness's robustness, without root and without touching the machine: walking a node's cgroups
while containers come and go, and a harness whose start fails half-way stopping what it had started.

The node's machine-wide steps (the host check, the state file, undoing cgroups, mounts, chains and links) are
replaced in a subclass, `LocalNode`; the processes it starts are real child processes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cxbackup_dev.localcluster.controlplane import ControlPlane, stopped_on_error
from cxbackup_dev.localcluster.node import Node, NodeError, _cgroup_pids, _cgroup_subtree

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


# ---- cgroups vanishing while they are read ---------------------------------------------------------------
def _tree(root: Path) -> Path:
    for sub in ("kubepods/pod-a/ctr-1", "kubepods/pod-a/ctr-2", "kubepods/pod-b/ctr-3", "system"):
        (root / sub).mkdir(parents=True)
    return root


def test_a_container_cgroup_removed_while_the_walk_reaches_it_is_left_out_as_gone(tmp_path: Path) -> None:
    root = _tree(tmp_path / "cxbackup-test-node")
    listed: list[Path] = []

    def scandir(folder: Path) -> Any:
        listed.append(folder)
        if folder.name in ("pod-b", "ctr-1"):  # listed in its parent, removed (by kubelet, runc) before it is read
            shutil.rmtree(folder)
        return os.scandir(folder)

    found = _cgroup_subtree(root, scandir)
    assert {p.relative_to(root).as_posix() for p in found} == {
        ".", "kubepods", "kubepods/pod-a", "kubepods/pod-a/ctr-2", "system"
    }  # fmt: skip
    assert [len(p.parts) for p in found] == sorted((len(p.parts) for p in found), reverse=True)  # deepest first
    assert root / "kubepods" / "pod-b" in listed and root / "kubepods" / "pod-a" / "ctr-1" in listed


def test_a_cgroup_root_that_is_gone_has_no_folders(tmp_path: Path) -> None:
    assert _cgroup_subtree(tmp_path / "absent") == []
    assert _cgroup_subtree(_tree(tmp_path / "root"))[-1] == tmp_path / "root"  # the root itself comes last


def test_an_entry_that_vanishes_while_it_is_looked_at_is_not_a_folder(tmp_path: Path) -> None:
    class Vanished:
        path = str(tmp_path / "ctr-9")

        def is_dir(self, *, follow_symlinks: bool = True) -> bool:
            raise FileNotFoundError(self.path)

    class Listing:
        def __init__(self, folder: Path) -> None:
            self.entries = [Vanished(), *os.scandir(folder)]

        def __enter__(self) -> list[Any]:
            return self.entries

        def __exit__(self, *exc: object) -> None:
            return None

    root = _tree(tmp_path / "root")
    found = _cgroup_subtree(root, Listing)
    assert tmp_path / "ctr-9" not in found
    assert root / "kubepods" / "pod-a" / "ctr-2" in found


def test_the_processes_of_cgroups_removed_or_emptied_while_they_are_read_are_none(tmp_path: Path) -> None:
    live, removed, racing, unreadable = (tmp_path / n for n in ("live", "removed", "racing", "unreadable"))
    live.mkdir()
    (live / "cgroup.procs").write_text("101\n102\n")

    def read(path: Path) -> str:
        if path.parent == racing:
            raise ProcessLookupError(3, "No such process")  # its last process exited while the file was read
        if path.parent == unreadable:
            raise OSError(19, "No such device")  # the cgroup is being removed
        return path.read_text()  # `removed` has no file: FileNotFoundError

    assert _cgroup_pids([removed, live, racing, unreadable], read) == {101, 102}
    assert _cgroup_pids([removed]) == set()


# ---- a start that fails half-way -------------------------------------------------------------------------
def test_a_start_that_fails_is_stopped_and_its_own_error_raised() -> None:
    stopped: list[str] = []
    with pytest.raises(RuntimeError, match=r"^kubelet did not start$"), stopped_on_error(lambda: stopped.append("x")):
        raise RuntimeError("kubelet did not start")
    assert stopped == ["x"]
    with pytest.raises(KeyboardInterrupt), stopped_on_error(lambda: stopped.append("y")):
        raise KeyboardInterrupt  # Ctrl-C during a start stops what started too
    assert stopped == ["x", "y"]
    with stopped_on_error(lambda: stopped.append("z")):
        pass
    assert stopped == ["x", "y"]  # a start that succeeds is not stopped


def test_a_stop_that_fails_too_is_a_note_on_the_starts_error_never_in_its_place() -> None:
    def stop() -> None:
        raise NodeError("the test node left state behind: still mounted: /var/lib/kubelet")

    with pytest.raises(RuntimeError, match=r"^containerd did not answer\n") as caught, stopped_on_error(stop):
        raise RuntimeError("containerd did not answer")
    assert caught.value.__notes__ == [
        "stopping what had started failed too: NodeError: the test node left state behind: still mounted: "
        "/var/lib/kubelet"
    ]


class LocalNode(Node):
    """A Node whose machine-wide steps touch nothing: containerd is a sleeping child process; kubelet's
    start raises (`kubelet_error`)."""

    def __init__(self, control_plane: ControlPlane, workdir: Path) -> None:
        super().__init__(control_plane, workdir)
        self.kubelet_error: BaseException = NodeError("kubelet exited with code 1: injected")
        self.leftovers: list[str] = []
        self.released: list[dict[str, int]] = []
        self.saved: list[dict[str, int]] = []
        self.started: dict[str, subprocess.Popen[bytes]] = {}

    def _claim_host(self) -> None:
        self._state = {"workdir": str(self.workdir), "pids": {}}

    def _persist_state(self) -> None:
        self.saved.append(dict(self._state["pids"]))

    def _release_host(self) -> list[str]:
        self.released.append(dict(self._state["pids"]))
        return self.leftovers

    def _add_node_address(self) -> None:
        pass

    def _start_containerd(self) -> None:
        self._spawn("containerd", SLEEPER)
        self.started["containerd"] = self._procs["containerd"]

    def _start_kubelet(self) -> None:
        raise self.kubelet_error


@pytest.fixture
def tmp_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A short folder (pytest's own is named after the test, under an xdist worker's folder): a node refuses a
    folder whose containerd socket path would be over 104 bytes."""
    return tmp_path_factory.mktemp("n")


def _node(tmp_path: Path) -> LocalNode:
    # a control plane that was never started: its kubectl is missing, which stop() tolerates
    cp = ControlPlane(workdir=tmp_path / "cp", bin_dir=tmp_path / "no-binaries")
    return LocalNode(cp, tmp_path)


def test_a_node_whose_kubelet_fails_to_start_stops_the_containerd_it_started(tmp_path: Path) -> None:
    node = _node(tmp_path)
    with pytest.raises(NodeError, match=r"^kubelet exited with code 1: injected$"):
        node.start()
    containerd = node.started["containerd"]
    assert node.saved == [{"containerd": containerd.pid}]  # recorded before anything else could fail
    assert node.released == [{"containerd": containerd.pid}]  # the host's state undone, knowing the pid
    assert containerd.poll() is not None, "containerd still runs after the failed start"
    assert containerd.returncode < 0  # stopped by a signal, not exited on its own
    assert node._procs == {} and node._state == {}
    node.stop()  # stopping again is a no-op
    assert len(node.released) == 1


def test_a_node_interrupted_during_its_start_stops_what_it_started_and_the_leftovers_are_a_note(
    tmp_path: Path,
) -> None:
    node = _node(tmp_path)
    node.kubelet_error = KeyboardInterrupt()
    node.leftovers = ["still mounted: /var/lib/kubelet"]
    with pytest.raises(KeyboardInterrupt) as caught:
        node.start()
    assert node.started["containerd"].poll() is not None
    assert caught.value.__notes__ == [
        "stopping what had started failed too: NodeError: the test node left state behind: still mounted: "
        "/var/lib/kubelet"
    ]
