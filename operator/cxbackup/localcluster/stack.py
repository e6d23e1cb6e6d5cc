"""The local stack used by `make demo` and the e2e tests: control plane, pod runner and operator.

`LocalStack` starts (in order) the control plane with the CRDs, the local pod runner and the operator as
a subprocess (`cxbackup operator`), all on 127.0.0.1, and stops them in reverse order. `prepare_namespace`
creates what a RecordingBackup needs in a namespace: the vendor credentials as Secrets (from the
emulator), a PVC (mapped by the pod runner to a local folder) and the worker's ServiceAccount with a Role
that may only patch the status of cxbackup resources.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxbackup.localcluster.controlplane import REPO_ROOT, ControlPlane, free_port
from cxbackup.localcluster.podrunner import PodRunner

__all__ = ["LocalStack", "worker_rbac"]

PEERING = {"apiVersion": "kopf.dev/v1", "kind": "ClusterKopfPeering", "metadata": {"name": "cxbackup"}}


def worker_rbac(namespace: str, service_account: str = "cxbackup-worker") -> list[dict[str, Any]]:
    """The worker pods' identity: patch status of cxbackup resources, nothing else (no Secrets)."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": service_account, "namespace": namespace},
        "rules": [
            {
                "apiGroups": ["cxbackup.io"],
                "resources": ["recordingbackups/status", "exportjobs/status"],
                "verbs": ["get", "patch"],
            }
        ],
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
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
    }


@dataclass
class LocalStack:
    """Control plane + pod runner + operator on 127.0.0.1, rooted at `workdir`."""

    workdir: Path
    control_plane: ControlPlane | None = None
    reconcile_interval: float = 1.0
    status_interval: float = 1.0
    operator_extra_args: list[str] = field(default_factory=list)
    runner: PodRunner | None = field(default=None, init=False)
    metrics_port: int = field(default=0, init=False)
    _operator: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _own_control_plane: bool = field(default=False, init=False)

    @property
    def cp(self) -> ControlPlane:
        assert self.control_plane is not None
        return self.control_plane

    def apply(self, *objects: dict[str, Any]) -> None:
        text = "\n".join(json.dumps(o) for o in objects)
        self.cp.kubectl("apply", "-f", "-", input_text=text)

    def install_crds(self) -> None:
        self.cp.kubectl("apply", "--server-side", "-f", str(REPO_ROOT / "crds"))
        self.cp.kubectl(
            "wait", "--for=condition=Established", "--timeout=180s", "crd", "-l", "app.kubernetes.io/part-of=cxbackup"
        )
        self.apply(PEERING)

    def start(self) -> LocalStack:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.control_plane is None:
            self.control_plane = ControlPlane(workdir=self.workdir / "controlplane")
            self.control_plane.start()
            self._own_control_plane = True
            self.install_crds()
        self.runner = PodRunner(kubeconfig=self.cp.kubeconfig, workdir=self.workdir / "pods")
        self.runner.start()
        self.start_operator()
        return self

    def operator_env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.cp.kubeconfig),
            "CXBACKUP_RECONCILE_INTERVAL": str(self.reconcile_interval),
            "CXBACKUP_STATUS_INTERVAL": str(self.status_interval),
        }

    def start_operator(self) -> None:
        self.metrics_port = free_port()
        with (self.workdir / "operator.log").open("ab") as log:
            self._operator = self._spawn_operator(log)

    def _spawn_operator(self, log: Any) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [
                sys.executable, "-m", "cxbackup", "operator", "--plain-logs",
                "--bind-address", "127.0.0.1",
                "--metrics-port", str(self.metrics_port), "--health-port", str(free_port()),
                *self.operator_extra_args,
            ],
            env=self.operator_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip

    def stop_operator(self, *, kill: bool = False) -> None:
        if self._operator is None:
            return
        if self._operator.poll() is None:
            if kill:
                self._operator.kill()
            else:
                self._operator.terminate()
            try:
                self._operator.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._operator.kill()
                self._operator.wait(timeout=5)
        self._operator = None

    def operator_log(self) -> str:
        path = self.workdir / "operator.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        self.stop_operator()
        if self.runner is not None:
            self.runner.stop()
        if self._own_control_plane and self.control_plane is not None:
            self.control_plane.stop()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- namespaces ----------------------------------------------------------------------------------
    def prepare_namespace(self, namespace: str, emulator_env: dict[str, str], *, pvc: str = "recordings") -> None:
        """Secrets gws-credentials and vendor-s3, a PVC, and the worker's RBAC in `namespace`."""
        self.cp.kubectl("create", "namespace", namespace, check=False)
        self.apply(
            _secret(namespace, "gws-credentials", {k: emulator_env[k] for k in ("GWS_USERNAME", "GWS_PASSWORD")}),
            _secret(
                namespace,
                "vendor-s3",
                {k: emulator_env[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")},
            ),
            {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "metadata": {"name": pvc, "namespace": namespace},
                "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
            },
            *worker_rbac(namespace),
        )

    def pvc_dir(self, namespace: str, claim: str = "recordings") -> Path:
        assert self.runner is not None
        return self.runner.pvc_dir(namespace, claim)

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
            if self._operator is not None and self._operator.poll() is not None:
                raise RuntimeError(f"the operator exited:\n{self.operator_log()[-3000:]}")
            time.sleep(poll)
        raise TimeoutError(
            f"{kind} {namespace}/{name} did not reach the expected state in {timeout:.0f}s; last status: "
            f"{json.dumps(last.get('status'), indent=1)[:3000]}\noperator log tail:\n{self.operator_log()[-3000:]}"
        )
