"""The test node's harness: a run that was killed is cleaned up by the next one, leaving the machine as it was;
a machine that cannot run a node is told so at once, in one line.

These run after the e2e package has stopped its node (one node per machine)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import cast

import pytest

from cxbackup_dev.localcluster.controlplane import ControlPlane
from cxbackup_dev.localcluster.images import build_image
from cxbackup_dev.localcluster.node import (
    STATE_FILE,
    Node,
    NodeError,
    check_host,
    cleanup_previous,
    host_snapshot,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]

START_AND_HANG = """
import json, sys, time
from pathlib import Path
from cxbackup_dev.localcluster.controlplane import ControlPlane
from cxbackup_dev.localcluster.node import Node
wd = Path(sys.argv[1])
cp = ControlPlane(workdir=wd / "cp").start()
try:  # until the pids are printed, a failure stops the control plane here (nobody else knows its pids)
    node = Node(cp, wd, pause_image=sys.argv[3], pause_archive=Path(sys.argv[2])).start()
    node.install_host_network_policy()
    cp.kubectl("apply", "-f", "-", input_text=json.dumps({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "sleeper", "namespace": "cxbackup-test-node"},
        "spec": {"containers": [{"name": "c", "image": sys.argv[3], "imagePullPolicy": "Never"}]},
    }))
    while json.loads(cp.kubectl("get", "pod", "sleeper", "-n", "cxbackup-test-node", "-o", "json").stdout)[
        "status"].get("phase") != "Running":
        time.sleep(0.3)
except BaseException:
    cp.stop()
    raise
print(json.dumps([p.pid for p in cp._procs.values()]), flush=True)
time.sleep(3600)
"""


@pytest.mark.node
def test_a_killed_node_is_cleaned_up_by_the_next_run(tmp_path_factory: pytest.TempPathFactory) -> None:
    # a short folder: containerd's socket path may have at most 104 bytes (an xdist worker's tmp_path is deeper)
    tmp_path = tmp_path_factory.mktemp("killed")
    pause_archive, pause_ref = build_image("pause")
    before = host_snapshot()
    proc = subprocess.Popen(
        [sys.executable, "-c", START_AND_HANG, str(tmp_path), str(pause_archive), pause_ref],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO / "operator")},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line, "the node did not start (see the output above)"
        control_plane_pids = json.loads(line)
        during = host_snapshot()
        assert during != before  # the node really changed the machine: processes, mounts, cgroups
        assert STATE_FILE.exists()
    finally:
        proc.kill()  # SIGKILL: no clean-up code runs
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    time.sleep(0.5)
    assert cleanup_previous() is True
    for pid in control_plane_pids:
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.5)
    after = host_snapshot()
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not changed
    assert not STATE_FILE.parent.exists()  # not even the empty folder is left
    assert cleanup_previous() is False


def test_a_machine_without_root_fails_at_once_naming_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(NodeError, match=r"^the test node needs root \(containerd, kubelet, cgroups and mounts\)"):
        check_host()
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "runc" else "/usr/bin/" + tool)
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    with pytest.raises(NodeError, match=r"^runc is not installed: apt-get install containerd runc"):
        check_host()


def test_a_folder_too_deep_for_containerds_socket_is_refused_before_anything_starts(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    node = Node(cast(ControlPlane, None), deep)
    with pytest.raises(NodeError, match=r"^the node's folder .* is too deep: containerd's socket .* would be \d+"):
        node.start()
    assert not deep.exists()  # nothing made
