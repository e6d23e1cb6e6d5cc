"""The product as its chart installs it, on a real API server, with the operator run as a local process that
authenticates as the chart's operator ServiceAccount (a token the API server issued for it).

RBAC, the CRDs' schemas and CEL rules, and the admission policies therefore apply to everything the operator
does, exactly as in a cluster; its settings (environment and arguments) are read from the Deployment the
chart rendered, so the chart's values are what the operator runs with. There is no node: a Job the operator
creates is looked at, not run. That is what the attacks in this package are about: what the operator would
start, mount or send, and whether the API server lets it.

Each `InstalledChart` has its own control plane, so an installation in default values and a hardened one
never see each other's objects. Both are per namespace (the chart's default): `watchNamespaces` is the one
value every installation sets.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cxbackup_dev.localcluster.controlplane import REPO_ROOT, ControlPlane, build_binaries, stop_process
from cxbackup_dev.localcluster.stack import start_operator_process

__all__ = ["TENANT", "InstalledChart", "installed"]

CHART = REPO_ROOT / "helm" / "cxbackup"
TENANT = "tenant"
"""The user every attack runs as: in each tenant namespace it may create and change cxbackup resources and
create, update, patch and delete (not read) Secrets; nothing else."""


def _tenant_rbac(namespace: str) -> list[dict[str, Any]]:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": TENANT, "namespace": namespace},
        "rules": [
            {
                "apiGroups": ["cxbackup.io"],
                "resources": ["recordingbackups", "exportjobs", "recordingcertificates", "recordingerasures"],
                "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"],
            },
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "update", "patch", "delete"]},
            {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["get", "create"]},
        ],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": TENANT, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": TENANT},
        "subjects": [{"kind": "User", "name": TENANT, "apiGroup": "rbac.authorization.k8s.io"}],
    }
    return [role, binding]


@dataclass
class InstalledChart:
    """One control plane, the chart installed by `helm install` with `values`, and the operator running."""

    workdir: Path
    helm: str
    helm_env: Mapping[str, str]
    values: tuple[str, ...] = ()
    pool: int = 12
    """Namespaces made before the install and given as `watchNamespaces` (handed out by `tenant_namespace`):
    the operator is installed per namespace, as the chart's default `rbac.clusterWide=false` needs."""
    release: str = "cxbackup"
    namespace: str = "cxbackup-system"
    cp: ControlPlane = field(init=False)
    operator_user: str = field(init=False)
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False)
    _free: list[str] = field(default_factory=list, init=False)

    # ---- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> InstalledChart:
        self.cp = ControlPlane(workdir=self.workdir / "controlplane", bin_dir=build_binaries())
        self.cp.start()
        self.cp.kubectl("create", "namespace", self.namespace)
        self._free = [self._new_namespace() for _ in range(self.pool)]
        args = ["--set-json", f"watchNamespaces={json.dumps(self._free)}", *self.values]
        proc = subprocess.run(
            [self.helm, "install", self.release, str(CHART), "--namespace", self.namespace,
             "--kubeconfig", str(self.cp.kubeconfig), "--timeout", "60s", *args],
            capture_output=True, text=True, check=False, timeout=180, env=dict(self.helm_env),
        )  # fmt: skip
        assert proc.returncode == 0, f"helm install failed:\n{proc.stderr}"
        self.cp.wait_crds_established("app.kubernetes.io/part-of=cxbackup")
        self._start_operator()
        return self

    def stop(self) -> None:
        stop_process(self._proc)
        self._proc = None
        self.cp.stop()

    def _deployment(self) -> dict[str, Any]:
        out = self.cp.kubectl("get", "deployment", "-n", self.namespace, "-l", "app.kubernetes.io/component=operator",
                              "-o", "json").stdout  # fmt: skip
        items: list[dict[str, Any]] = json.loads(out)["items"]
        assert len(items) == 1, f"expected one operator Deployment, found {len(items)}"
        return items[0]

    def _start_operator(self) -> None:
        """The operator with the Deployment's environment and arguments, as its ServiceAccount."""
        pod = self._deployment()["spec"]["template"]["spec"]
        account: str = pod["serviceAccountName"]
        self.operator_user = f"system:serviceaccount:{self.namespace}:{account}"
        token = self.cp.kubectl("create", "token", account, "-n", self.namespace, "--duration=4h").stdout.strip()
        kubeconfig = self.workdir / "operator.kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters:\n- name: c\n  cluster:\n    server: {self.cp.server}\n"
            f"    certificate-authority: {self.cp.workdir / 'pki' / 'ca.crt'}\n"
            f"users:\n- name: operator\n  user:\n    token: {token}\n"
            "contexts:\n- name: c\n  context:\n    cluster: c\n    user: operator\ncurrent-context: c\n"
        )
        kubeconfig.chmod(0o600)
        container = pod["containers"][0]
        env = {e["name"]: e["value"] for e in container.get("env") or [] if "value" in e}
        env |= {"CXBACKUP_RECONCILE_INTERVAL": "1", "CXBACKUP_STATUS_INTERVAL": "1"}  # quicker, same decisions
        keep = [a for a in container["args"][1:] if a.startswith(("--peering-name=", "--namespace=", "--verbose"))]
        full_env = {**os.environ, **env, "KUBECONFIG": str(kubeconfig)}
        self._proc = start_operator_process(full_env, self.workdir / "operator.log", *keep)

    # ---- tenants --------------------------------------------------------------------------------------
    def _new_namespace(self) -> str:
        name = f"tenant-{uuid.uuid4().hex[:8]}"
        self.cp.kubectl("create", "namespace", name)
        self.cp.kubectl("apply", "-f", "-", input_text="\n---\n".join(json.dumps(d) for d in _tenant_rbac(name)))
        return name

    def tenant_namespace(self) -> str:
        """A namespace the operator watches, where TENANT may create cxbackup resources and Secrets."""
        assert self._free, "the installation's pool of watched namespaces is used up"
        return self._free.pop()

    def operator_log(self) -> str:
        path = self.workdir / "operator.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ---- acting and looking ---------------------------------------------------------------------------
    def as_tenant(self, *args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.cp.kubectl(f"--as={TENANT}", *args, input_text=input_text, check=False)

    def apply_as_tenant(self, namespace: str, *bodies: Mapping[str, Any]) -> subprocess.CompletedProcess[str]:
        text = "\n---\n".join(json.dumps(b) for b in bodies)
        return self.as_tenant("apply", "-n", namespace, "-f", "-", input_text=text)

    def create_as_tenant(self, namespace: str, body: Mapping[str, Any]) -> subprocess.CompletedProcess[str]:
        """`kubectl create` (a tenant may not read Secrets, which `kubectl apply` does first)."""
        return self.as_tenant("create", "-n", namespace, "-f", "-", input_text=json.dumps(body))

    def apply(self, namespace: str, *bodies: Mapping[str, Any]) -> None:
        """As the cluster admin (the key owner, the installer)."""
        text = "\n---\n".join(json.dumps(b) for b in bodies)
        self.cp.kubectl("apply", "-n", namespace, "-f", "-", input_text=text)

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        proc = self.cp.kubectl("get", kind, name, "-n", namespace, "-o", "json", check=False)
        if proc.returncode != 0:
            assert "NotFound" in proc.stderr, proc.stderr
            return None
        body: dict[str, Any] = json.loads(proc.stdout)
        return body

    def items(self, kind: str, namespace: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(self.cp.kubectl("get", kind, "-n", namespace, "-o", "json").stdout)[
            "items"
        ]
        return items

    def wait_for(
        self, kind: str, namespace: str, name: str, done: Callable[[dict[str, Any]], bool], timeout: float = 60
    ) -> dict[str, Any]:
        """The object once `done(body)` holds; fails naming its last status and the operator's log tail."""
        deadline = time.monotonic() + timeout
        body: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            body = self.get(kind, namespace, name)
            if body is not None and done(body):
                return body
            assert self._proc is not None and self._proc.poll() is None, (
                f"the operator exited:\n{self.operator_log()[-3000:]}"
            )
            time.sleep(0.3)
        status = json.dumps((body or {}).get("status"), indent=1)[:3000]
        raise AssertionError(
            f"{kind} {namespace}/{name} did not get there in {timeout:.0f}s; status: {status}\n"
            f"operator log:\n{self.operator_log()[-3000:]}"
        )


def installed(workdir: Path, helm: str, helm_env: Mapping[str, str], *values: str) -> Iterator[InstalledChart]:
    """An `InstalledChart`, stopped afterwards (for a fixture)."""
    chart = InstalledChart(workdir, helm, helm_env, tuple(values))
    try:
        yield chart.start()
    finally:
        if hasattr(chart, "cp"):
            chart.stop()
