"""The local stack used by `make demo` and the e2e tests: the product installed as a user installs it.

`LocalStack` starts (in order) the test control plane, a real node (containerd + kubelet + kube-scheduler,
see node.py) with the project's image imported, and then installs the Helm chart with `helm install`: its
CRDs, RBAC, ServiceAccounts and the operator's Deployment, whose pod runs from the image. Worker Jobs run as
real containers from the same image. `prepare_namespace` creates what a RecordingBackup needs in a
namespace: the vendor credentials as Secrets (from the emulator), a PVC bound to a local PersistentVolume
on the node, and the worker's ServiceAccount with a Role that may only patch the status of cxbackup
resources. Everything stops in reverse order and the machine is left as it was.

With `hardened=True` the chart is installed as docs/security.md tells a production installer to: per
namespace (`rbac.clusterWide=false`, `watchNamespaces` = a pool of tenant namespaces made before the install,
handed out by `new_namespace`; the chart, not the test, makes the worker accounts), plain HTTP refused, and a
private certificate authority (`test_ca`, which signs the emulator's HTTPS certificates) given as
`security.caCertificates`. Without it the chart is installed cluster-wide with plain HTTP allowed (for the
emulator's fault injection and for attacks from any namespace).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxbackup.api.common import CREDENTIALS_LABEL
from cxbackup_dev.emulator.tls import TestCA
from cxbackup_dev.localcluster.controlplane import (
    REPO_ROOT,
    ControlPlane,
    ControlPlaneError,
    free_port,
    stopped_on_error,
)
from cxbackup_dev.localcluster.images import build_image
from cxbackup_dev.localcluster.node import HOST_NETWORK_LABEL, Node, check_host

__all__ = [
    "EMULATOR_HOSTS",
    "LocalStack",
    "build_helm",
    "credential_secrets",
    "helm_env",
    "operator_env",
    "start_operator_process",
    "worker_rbac",
]

EMULATOR_HOSTS = ("127.0.0.1",)
"""The emulator's hosts (its recording API and S3 listen on loopback; worker pods use the node's network),
given as the chart's security.vendorHosts: the chart's default names none and refuses every vendor endpoint."""

CHART = REPO_ROOT / "helm" / "cxbackup"
OPERATOR_SELECTOR = "app.kubernetes.io/component=operator"
LOCAL_STORAGE_CLASS = "cxbackup-test-local"


def worker_rbac(namespace: str, service_account: str = "cxbackup-worker") -> list[dict[str, Any]]:
    """The worker pods' identity, as the chart makes it (worker-rbac.yaml): patch of recordingbackups/status,
    nothing else (no get, no Secrets; export and erasure pods have no token)."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": service_account, "namespace": namespace},
        "rules": [{"apiGroups": ["cxbackup.io"], "resources": ["recordingbackups/status"], "verbs": ["patch"]}],
    }
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": service_account, "namespace": namespace}},
        role,
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": service_account, "namespace": namespace},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": service_account},
            "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
        },
    ]


def _secret(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    """A Secret opted in as credentials for cxbackup."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace, "labels": {CREDENTIALS_LABEL: "true"}},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


def credential_secrets(namespace: str, emulator_env: dict[str, str]) -> list[dict[str, Any]]:
    """The vendor credentials as the Secrets gws-credentials and vendor-s3 (values from the emulator)."""
    return [
        _secret(namespace, "gws-credentials", {k: emulator_env[k] for k in ("GWS_USERNAME", "GWS_PASSWORD")}),
        _secret(namespace, "vendor-s3", {k: emulator_env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}),
    ]


def operator_env(kubeconfig: Path, *, reconcile_interval: float = 1.0, status_interval: float = 1.0) -> dict[str, str]:
    """Environment of an operator run as a local process against `kubeconfig` (load tests and benchmarks,
    which measure the operator alone on a control plane without a node)."""
    return {
        **os.environ,
        "KUBECONFIG": str(kubeconfig),
        "CXBACKUP_RECONCILE_INTERVAL": str(reconcile_interval),
        "CXBACKUP_STATUS_INTERVAL": str(status_interval),
        "CXBACKUP_ALLOW_PLAIN_HTTP": "true",  # the emulator serves plain HTTP on loopback
        "CXBACKUP_VENDOR_HOSTS": ",".join(EMULATOR_HOSTS),  # and is the only vendor
    }


def start_operator_process(env: dict[str, str], log: Path, *extra_args: str) -> subprocess.Popen[bytes]:
    """`cxbackup operator` as a local process (its own process group), logging to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "cxbackup", "operator", "--plain-logs", "--bind-address", "127.0.0.1",
             "--metrics-port", str(free_port()), "--health-port", str(free_port()), *extra_args],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def build_helm() -> str:
    """hack/build-helm.sh (a no-op when cached): the path of helm."""
    proc = subprocess.run(
        [str(REPO_ROOT / "hack" / "build-helm.sh")], stdout=subprocess.PIPE, text=True, check=False, timeout=1200
    )
    if proc.returncode != 0:
        raise ControlPlaneError("hack/build-helm.sh failed; see its output above")
    return proc.stdout.strip().splitlines()[-1]


def helm_env(home: Path) -> dict[str, str]:
    """The environment helm runs with: its cache, config and data dirs under `home`, not the user's."""
    return {
        **os.environ,
        **{var: str(home / var.lower()) for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME")},
        "KUBECACHEDIR": str(home / "kube-cache"),  # client-go's discovery cache, not the user's ~/.kube
    }


@dataclass
class LocalStack:
    """Control plane + real node + the chart installed by helm, rooted at `workdir`."""

    workdir: Path
    reconcile_interval: int = 1
    status_interval: int = 1
    operator_namespace: str = "cxbackup-system"
    release: str = "cxbackup"
    hardened: bool = False
    """Per-namespace install, https only, a private CA (see the module's text)."""
    pool_size: int = 40
    """Tenant namespaces a hardened install watches (each test takes fresh ones with `new_namespace`)."""
    test_ca: TestCA | None = field(default=None, init=False)
    """The CA of the emulator's HTTPS certificates, trusted by worker pods (hardened installs only)."""
    pool: list[str] = field(default_factory=list, init=False)
    _next: int = field(default=0, init=False)
    control_plane: ControlPlane | None = field(default=None, init=False)
    node: Node | None = field(default=None, init=False)
    image: str = field(default="", init=False)
    image_archive: Path | None = field(default=None, init=False)
    metrics_port: int = field(default=0, init=False)
    health_port: int = field(default=0, init=False)
    values: dict[str, Any] = field(default_factory=dict, init=False)
    """The chart values the release was installed with."""
    helm: str = field(default="", init=False)

    @property
    def cp(self) -> ControlPlane:
        assert self.control_plane is not None
        return self.control_plane

    def apply(self, *objects: dict[str, Any]) -> None:
        text = "\n".join(json.dumps(o) for o in objects)
        self.cp.kubectl("apply", "-f", "-", input_text=text)

    def start(self) -> LocalStack:
        check_host()  # fail at once, in one line, on a machine that cannot run the node
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.helm = build_helm()
        self.image_archive, self.image = build_image("cxbackup")
        pause_archive, pause_ref = build_image("pause")
        self.control_plane = ControlPlane(workdir=self.workdir / "controlplane")
        # a failure half-way stops the node and the control plane started so far, then is raised as it was
        with stopped_on_error(self.stop):
            self.control_plane.start()
            self.node = Node(
                self.control_plane,
                self.workdir,
                images=[self.image_archive],
                pause_image=pause_ref,
                pause_archive=pause_archive,
            )
            self.node.start()
            self.node.install_host_network_policy()
            if self.hardened:
                self.test_ca = TestCA.create(self.workdir / "test-ca")
                self.pool = [f"tenant-{i:02d}" for i in range(1, self.pool_size + 1)]
                for namespace in self.pool:
                    self.create_namespace(namespace)
            self.install_chart()
        return self

    # ---- the chart ---------------------------------------------------------------------------------------
    def helm_run(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**helm_env(self.workdir / "helm-home"), "KUBECONFIG": str(self.cp.kubeconfig)}
        proc = subprocess.run([self.helm, *args], env=env, capture_output=True, text=True, check=False, timeout=600)
        if proc.returncode != 0:
            raise ControlPlaneError(f"helm {' '.join(args[:2])} failed: {proc.stderr.strip()[:3000]}")
        return proc

    def chart_values(self) -> dict[str, Any]:
        repository, tag = self.image.rsplit(":", 1)
        self.metrics_port, self.health_port = free_port(), free_port()
        return {
            "image": {"repository": repository, "tag": tag, "pullPolicy": "IfNotPresent"},
            # on the test node pods share the host's network: one operator pod per port
            "replicaCount": 1,
            "operator": {
                "reconcileIntervalSeconds": self.reconcile_interval,
                "statusIntervalSeconds": self.status_interval,
                "metricsPort": self.metrics_port,
                "healthPort": self.health_port,
                "logFormat": "plain",
            },
            **(
                self._hardened_values()
                if self.hardened
                else {  # every namespace (the chart's default is per namespace), as the attacks from any need
                    "rbac": {"clusterWide": True},
                    "security": {"allowPlainHttp": True, "vendorHosts": list(EMULATOR_HOSTS)},
                }
            ),
        }

    def _hardened_values(self) -> dict[str, Any]:
        assert self.test_ca is not None
        return {
            "rbac": {"clusterWide": False},
            "watchNamespaces": self.pool,
            "security": {
                "allowPlainHttp": False,
                "vendorHosts": list(EMULATOR_HOSTS),
                "caCertificates": self.test_ca.pem,
            },
            "admissionPolicy": {"enabled": True},
        }

    def install_chart(self) -> None:
        self.cp.kubectl("create", "namespace", self.operator_namespace)
        self.cp.kubectl("label", "namespace", self.operator_namespace, f"{HOST_NETWORK_LABEL}=host-network")
        self.values = self.chart_values()
        values = self.workdir / "values.yaml"
        values.write_text(json.dumps(self.values, indent=1))
        self.helm_run(
            "install", self.release, str(CHART), "--namespace", self.operator_namespace,
            "-f", str(values), "--wait", "--timeout", "5m",
        )  # fmt: skip

    def operator_pods(self) -> list[dict[str, Any]]:
        out = self.cp.kubectl("get", "pods", "-n", self.operator_namespace, "-l", OPERATOR_SELECTOR, "-o", "json")
        pods: list[dict[str, Any]] = json.loads(out.stdout)["items"]
        return pods

    def wait_operator_ready(self, timeout: float = 180, *, not_uid: str = "") -> dict[str, Any]:
        """The operator pod once Ready (another pod than `not_uid`, when given)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for pod in self.operator_pods():
                if pod["metadata"]["uid"] == not_uid or pod["metadata"].get("deletionTimestamp"):
                    continue
                conditions = pod.get("status", {}).get("conditions", [])
                if any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                    return pod
            time.sleep(0.5)
        raise TimeoutError(f"no Ready operator pod after {timeout:.0f}s:\n{self.operator_log()[-3000:]}")

    def operator_log(self) -> str:
        """The operator pods' logs (the current and, after a restart, the previous container)."""
        texts = []
        for pod in self.operator_pods() if self.control_plane is not None else []:
            name = pod["metadata"]["name"]
            for extra in (["--previous"], []):
                proc = self.cp.kubectl("logs", "-n", self.operator_namespace, name, *extra, check=False)
                if proc.returncode == 0 and proc.stdout:
                    texts.append(proc.stdout)
        return "\n".join(texts)

    def operator_env(self) -> dict[str, str]:
        """Environment of a second operator replica run as a local process with the chart's settings."""
        return {
            **operator_env(self.cp.kubeconfig, reconcile_interval=self.reconcile_interval,
                           status_interval=self.status_interval),
            "CXBACKUP_WORKER_IMAGE": self.image,
            "CXBACKUP_WORKER_IMAGE_PULL_POLICY": "IfNotPresent",
        }  # fmt: skip

    def pod_logs(self, namespace: str, pod: str) -> str:
        return self.cp.kubectl("logs", "-n", namespace, pod, check=False).stdout

    def import_image(self) -> None:
        """Import the project's image into the node again (after a test removed it)."""
        assert self.node is not None and self.image_archive is not None
        self.node.ctr("images", "import", "--no-unpack", str(self.image_archive))

    def kill_container(self, namespace: str, pod: str) -> None:
        """SIGKILL the main container of a running pod on the node (the container exits 137)."""
        assert self.node is not None
        body = self.get("pod", namespace, pod)
        statuses = body.get("status", {}).get("containerStatuses") or []
        ids = [
            c["containerID"].split("://", 1)[1] for c in statuses if c.get("containerID") and "running" in c["state"]
        ]
        if not ids:
            raise LookupError(f"pod {namespace}/{pod} has no running container")
        self.node.ctr("tasks", "kill", "--signal", "SIGKILL", ids[0])

    def stop(self) -> None:
        try:
            if self.node is not None:
                node, self.node = self.node, None
                node.stop()
        finally:  # the control plane stops also when the node could not be stopped cleanly
            if self.control_plane is not None:
                self.control_plane.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- namespaces ----------------------------------------------------------------------------------
    def create_namespace(self, namespace: str) -> None:
        """A namespace whose pods the test node runs on its host network (see node.py)."""
        self.cp.kubectl("create", "namespace", namespace, check=False)
        self.cp.kubectl("label", "--overwrite", "namespace", namespace, f"{HOST_NETWORK_LABEL}=host-network")

    def new_namespace(self, prefix: str = "e2e") -> str:
        """A fresh namespace the operator watches: the next of the pool (hardened), else a new one."""
        if not self.hardened:
            namespace = f"{prefix}-{uuid.uuid4().hex[:8]}"
            self.create_namespace(namespace)
            return namespace
        if self._next >= len(self.pool):
            raise ControlPlaneError(f"all {len(self.pool)} watched namespaces are taken; raise pool_size")
        self._next += 1
        return self.pool[self._next - 1]

    def prepare_namespace(self, namespace: str, emulator_env: dict[str, str], *, pvc: str = "recordings") -> None:
        """Secrets gws-credentials and vendor-s3, a PVC on a local PersistentVolume, and (unless the chart
        made it, in a hardened install) the worker's RBAC."""
        if self.hardened and namespace not in self.pool:
            raise ControlPlaneError(f"{namespace} is not watched by the hardened install; use new_namespace()")
        self.create_namespace(namespace)
        self.apply(
            *credential_secrets(namespace, emulator_env),
            *self.local_volume(namespace, pvc),
            *([] if self.hardened else worker_rbac(namespace)),
        )

    def local_volume(self, namespace: str, claim: str) -> list[dict[str, Any]]:
        """A local PersistentVolume on the node (a folder of the work directory) and the PVC bound to it."""
        assert self.node is not None
        path = self.pvc_dir(namespace, claim)
        path.mkdir(parents=True, exist_ok=True)
        pv_name = f"{namespace}-{claim}"[:63]
        return [
            {
                "apiVersion": "v1",
                "kind": "PersistentVolume",
                "metadata": {"name": pv_name},
                "spec": {
                    "capacity": {"storage": "1Gi"},
                    "accessModes": ["ReadWriteOnce", "ReadWriteMany"],
                    "persistentVolumeReclaimPolicy": "Retain",
                    "storageClassName": LOCAL_STORAGE_CLASS,
                    "claimRef": {"namespace": namespace, "name": claim},
                    "local": {"path": str(path)},
                    "nodeAffinity": {
                        "required": {
                            "nodeSelectorTerms": [
                                {
                                    "matchExpressions": [
                                        {
                                            "key": "kubernetes.io/hostname",
                                            "operator": "In",
                                            "values": [self.node.name],
                                        }
                                    ]
                                }
                            ]
                        }
                    },
                },
            },
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": claim, "namespace": namespace},
                "spec": {
                    "accessModes": ["ReadWriteMany"],
                    "storageClassName": LOCAL_STORAGE_CLASS,
                    "volumeName": pv_name,
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            },
        ]

    def pvc_dir(self, namespace: str, claim: str = "recordings") -> Path:
        """The node folder behind a PVC made by `local_volume`."""
        return self.workdir / "volumes" / namespace / claim

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any]:
        out = self.cp.kubectl("get", kind, name, "-n", namespace, "-o", "json").stdout
        result: dict[str, Any] = json.loads(out)
        return result

    def events(self, namespace: str, kind: str | None = None, name: str | None = None) -> list[dict[str, Any]]:
        """The namespace's Events, those about one object when `kind` and `name` are given."""
        out = self.cp.kubectl("get", "events", "-n", namespace, "-o", "json").stdout
        items: list[dict[str, Any]] = json.loads(out)["items"]
        return [
            e
            for e in items
            if (kind is None or e["involvedObject"].get("kind") == kind)
            and (name is None or e["involvedObject"].get("name") == name)
        ]

    def wait_event(
        self, namespace: str, kind: str | None, name: str | None, reason: str, *, timeout: float = 30
    ) -> dict[str, Any]:
        """The first Event with `reason` (about that object, when given); TimeoutError names what was seen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events(namespace, kind, name):
                if event["reason"] == reason:
                    return event
            time.sleep(0.5)
        seen = [(e["type"], e["reason"], e.get("message", "")[:120]) for e in self.events(namespace, kind, name)]
        raise TimeoutError(
            f"no {reason} Event for {kind} {namespace}/{name}; seen {seen}\n{self.operator_log()[-3000:]}"
        )

    def wait_for(
        self, kind: str, namespace: str, name: str, predicate: Any, *, timeout: float = 180, poll: float = 0.5
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            proc = self.cp.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
            if proc.returncode == 0:
                last = json.loads(proc.stdout)
                if predicate(last):
                    return last
            time.sleep(poll)
        raise TimeoutError(
            f"{kind} {namespace}/{name} did not reach the expected state in {timeout:.0f}s; last status: "
            f"{json.dumps(last.get('status'), indent=1)[:3000]}\noperator log tail:\n{self.operator_log()[-3000:]}"
        )
