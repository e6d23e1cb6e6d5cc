"""Fixtures shared by every layer: the test control plane (real etcd + kube-apiserver + kcm), and for the
operator-level tests the whole product on a real node (`installed_stack`: control plane, kubelet, containerd,
the image and `helm install` of the chart)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from cxbackup_dev.localcluster.controlplane import ControlPlane, build_binaries
from cxbackup_dev.localcluster.node import host_snapshot
from cxbackup_dev.localcluster.stack import LocalStack

REPO = Path(__file__).resolve().parents[1]

pytest_plugins = ["tests.parallel", "tests.rows", "tests.timing"]
"""The reliability table (its `row` fixture and printer), for the reliability and the security suites; the time
per tier and the slowest tests, printed at the end of every run; which tests share an xdist worker."""


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    """A real control plane on 127.0.0.1 for the whole session, with the cxbackup CRDs installed."""
    bin_dir = build_binaries()
    cp = ControlPlane(workdir=tmp_path_factory.mktemp("controlplane"), bin_dir=bin_dir)
    cp.start()
    try:
        cp.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        cp.wait_crds_established("app.kubernetes.io/part-of=cxbackup")
        peering = "apiVersion: kopf.dev/v1\nkind: ClusterKopfPeering\nmetadata:\n  name: cxbackup\n"
        cp.kubectl("apply", "-f", "-", input_text=peering)
        yield cp
    finally:
        cp.stop()


@pytest.fixture
def namespace(control_plane: ControlPlane) -> str:
    """A fresh namespace per test (namespaces never finish deleting without kubelets; names are unique)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    control_plane.kubectl("create", "namespace", name)
    return name


@pytest.fixture
def kube_env(control_plane: ControlPlane) -> dict[str, str]:
    """Environment for subprocesses that talk to the test control plane."""
    return {**os.environ, "KUBECONFIG": str(control_plane.kubeconfig)}


def installed_stack(tmp_path_factory: pytest.TempPathFactory, *, hardened: bool = False) -> Iterator[LocalStack]:
    """The product installed by its chart on a real node (one node per machine: the e2e and reliability
    packages each have one, package-scoped); after it stops, the machine must be as it was before. Compared is
    only what the node harness creates or sets (`host_snapshot`: its cgroups, the mounts under its folders,
    its iptables chains and network links, kubelet's sysctls, its processes), not what other processes on the
    machine change meanwhile (a cgroup, a mount or a link of their own)."""
    workdir = tmp_path_factory.mktemp("stack")
    before = host_snapshot(workdir)
    with LocalStack(workdir, hardened=hardened) as s:
        yield s
    after = host_snapshot(workdir)
    changed = {k: (before[k], after[k]) for k in before if before[k] != after[k]}
    assert not changed, f"the test node left the machine changed: {changed}"
