"""The Helm chart: lint, render, schema errors, server-side validation and an install with RBAC checks.

helm is built from the Go module proxy by hack/build-helm.sh (cached). Rendered manifests are
validated by the real test API server (`kubectl apply --server-side --dry-run=server`: strict field
validation, and Pod Security admission at the restricted level), which knows every built-in kind of
the pinned Kubernetes release and the installed CRDs' schemas; minimal ServiceMonitor/PrometheusRule
CRDs (tests/integration/data/monitoring-crds.yaml) let the optional monitoring objects be validated
too. This replaces kubeconform, whose Kubernetes JSON schemas cannot be downloaded here. The install
runs no pods (there is no kubelet): it checks the objects and, with `kubectl auth can-i --as`, what
the operator and worker accounts may do.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import re
import subprocess
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import yaml

from cxbackup_dev.localcluster.controlplane import ControlPlane
from tests.integration.helm_fixtures import Helm
from tests.unit.test_dashboards_alerts import CHART, DASHBOARDS, chart_values, render_alert_rules

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
CUSTOM_VALUES = DATA / "helm" / "values-custom.yaml"
MONITORING_CRDS = DATA / "monitoring-crds.yaml"

Manifest = dict[str, Any]

CLUSTER_WIDE = ("--set", "rbac.clusterWide=true")
"""Watching all namespaces with a ClusterRole; the chart's default is per namespace (rbac.clusterWide=false)."""


# ---- helpers ------------------------------------------------------------------------------------
def render(
    helm: Helm, *args: str, namespace: str = "cxbackup", release: str = "rel", cluster_wide: bool = True
) -> list[Manifest]:
    """`helm template` with `args`, by default cluster-wide (the default, per namespace, needs watchNamespaces)."""
    wide = CLUSTER_WIDE if cluster_wide else ()
    out = helm.run("template", release, str(CHART), "--namespace", namespace, *wide, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(docs: list[Manifest], kind: str, name: str | None = None, namespace: str | None = None) -> list[Manifest]:
    return [
        d
        for d in docs
        if d["kind"] == kind
        and (name is None or d["metadata"]["name"] == name)
        and (namespace is None or d["metadata"].get("namespace") == namespace)
    ]


def one(docs: list[Manifest], kind: str, name: str | None = None, namespace: str | None = None) -> Manifest:
    found = find(docs, kind, name, namespace)
    assert len(found) == 1, f"expected one {kind} {namespace}/{name}, got {len(found)}"
    return found[0]


def merged(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's value merge: maps merge recursively, everything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# ---- lint and render ----------------------------------------------------------------------------
def test_lint_strict(helm: Helm) -> None:
    watched = ("--set-json", 'watchNamespaces=["contact-center"]')
    for extra in (watched, ["--strict", *watched], ["--strict", *CLUSTER_WIDE], ["--strict", "-f", str(CUSTOM_VALUES)]):
        proc = helm.run("lint", str(CHART), *extra)
        assert "0 chart(s) failed" in proc.stdout, proc.stdout
        assert "[WARNING]" not in proc.stdout and "[ERROR]" not in proc.stdout, proc.stdout
    # the default is per namespace: without namespaces to watch, the chart says what to set
    proc = helm.run("lint", str(CHART), check=False)
    assert "rbac.clusterWide=false needs watchNamespaces" in proc.stdout + proc.stderr, proc.stdout


def test_chart_ships_every_crd_of_crds_folder(helm: Helm) -> None:
    """crds/ (generated cxbackup CRDs and kopf's peering CRDs) and the chart's crds/ hold the same CRDs."""
    wanted = {
        doc["metadata"]["name"]: doc
        for path in sorted((REPO / "crds").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    }
    # `helm show crds` concatenates the files without separators; `template --include-crds` separates them.
    rendered = helm.run("template", "rel", str(CHART), "--include-crds", *CLUSTER_WIDE).stdout
    shipped = {
        doc["metadata"]["name"]: doc
        for doc in yaml.safe_load_all(rendered)
        if doc and doc["kind"] == "CustomResourceDefinition"
    }
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= set(wanted)
    missing = sorted(set(wanted) - set(shipped))
    assert not missing, f"the chart does not install {missing}: copy them from crds/ into helm/cxbackup/crds/"
    for name, crd in wanted.items():
        assert shipped[name] == crd, f"the chart's CRD {name} differs from crds/"


WORKER_RESOURCES = {
    "limits": {"ephemeral-storage": "2Gi", "memory": "1Gi"},
    "requests": {"cpu": "100m", "ephemeral-storage": "64Mi", "memory": "128Mi"},
}


def test_render_defaults(helm: Helm) -> None:
    """The defaults, given the one value they need: the namespaces to watch (per namespace is the default)."""
    docs = render(helm, "--set-json", 'watchNamespaces=["team-a"]', namespace="backup-system", cluster_wide=False)
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "KopfPeering",
            "ClusterRole",  # reads CRDs only
            "ClusterRoleBinding",
            "Deployment",
            "PodDisruptionBudget",
            *["ValidatingAdmissionPolicy"] * 5,
            *["ValidatingAdmissionPolicyBinding"] * 5,
            "Role",  # the operator's, in team-a
            "RoleBinding",
            "Role",  # the worker's, in backup-system and team-a
            "Role",
            "RoleBinding",
            "RoleBinding",
            "Service",
            "ServiceAccount",
            "ServiceAccount",
            "ServiceAccount",
        ]
    )
    deployment = one(docs, "Deployment", "rel-cxbackup", "backup-system")
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    pod = spec["template"]["spec"]
    assert pod["serviceAccountName"] == "rel-cxbackup"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    assert container["image"] == "ghcr.io/cxbackup/cxbackup:0.1.0"  # the chart's appVersion
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["args"] == [
        "operator",
        "--metrics-port=8080",
        "--health-port=8081",
        "--bind-address=0.0.0.0",
        "--peering-name=cxbackup",
        "--namespace=team-a",
    ]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {
        "CXBACKUP_ALLOW_PLAIN_HTTP": "false",  # https only unless the installer allows plain HTTP
        "CXBACKUP_VENDOR_HOSTS": "",
        "CXBACKUP_WORKER_RESOURCES": json.dumps(WORKER_RESOURCES, separators=(",", ":")),
        "CXBACKUP_WORKER_ACTIVE_DEADLINE_SECONDS": "86400",
        "CXBACKUP_WORKER_TMP_SIZE_LIMIT": "1Gi",
        # the caps on what a resource's spec.pod may ask for (worker.limits, worker.allowed*)
        "CXBACKUP_WORKER_MAX_RESOURCES": '{"cpu":"4","ephemeral-storage":"16Gi","memory":"8Gi"}',
        "CXBACKUP_WORKER_MAX_TMP_SIZE": "8Gi",
        "CXBACKUP_WORKER_TOLERATION_KEYS": "",
        "CXBACKUP_WORKER_NODE_SELECTOR_KEYS": "",
        "CXBACKUP_RECONCILE_INTERVAL": "10",
        "CXBACKUP_STATUS_INTERVAL": "5",
        "CXBACKUP_WORKER_IMAGE": container["image"],
        "CXBACKUP_WORKER_IMAGE_PULL_POLICY": "IfNotPresent",
        "CXBACKUP_WORKER_SERVICE_ACCOUNT": "cxbackup-worker",
    }
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert security["runAsNonRoot"] is True
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    assert container["resources"]["requests"] == {"cpu": "50m", "memory": "128Mi", "ephemeral-storage": "128Mi"}
    assert container["resources"]["limits"] == {"memory": "512Mi", "ephemeral-storage": "256Mi"}
    # replicas spread over nodes, softly (a one-node cluster still runs both), and drained one at a time
    [term] = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert (
        term["podAffinityTerm"]["labelSelector"]["matchLabels"].items()
        <= spec["template"]["metadata"]["labels"].items()
    )
    pdb = one(docs, "PodDisruptionBudget", "rel-cxbackup", "backup-system")["spec"]
    assert pdb["maxUnavailable"] == 1 and pdb["unhealthyPodEvictionPolicy"] == "AlwaysAllow"
    assert pdb["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
    service = one(docs, "Service", "rel-cxbackup")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert service["spec"]["selector"].items() <= spec["template"]["metadata"]["labels"].items()
    assert one(docs, "KopfPeering", "cxbackup", "team-a")

    def granted(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
        return {(g, res, verb) for r in rules for g in r["apiGroups"] for res in r["resources"] for verb in r["verbs"]}

    role = granted(one(docs, "Role", "rel-cxbackup", "team-a")["rules"])
    assert ("", "secrets", "get") in role
    assert ("", "secrets", "delete") not in role and ("", "secrets", "list") not in role
    assert ("kopf.dev", "kopfpeerings", "patch") in role
    assert granted(one(docs, "ClusterRole", "rel-cxbackup-crds")["rules"]) == {
        ("apiextensions.k8s.io", "customresourcedefinitions", "list"),
        ("apiextensions.k8s.io", "customresourcedefinitions", "watch"),
    }
    wide = render(helm, namespace="backup-system")  # rbac.clusterWide=true: one ClusterRole
    cluster_role = granted(one(wide, "ClusterRole", "rel-cxbackup")["rules"])
    assert ("", "secrets", "get") in cluster_role and ("", "secrets", "list") not in cluster_role
    assert ("kopf.dev", "clusterkopfpeerings", "patch") in cluster_role
    assert ("", "namespaces", "watch") in cluster_role
    assert one(wide, "ClusterKopfPeering")["metadata"]["name"] == "cxbackup"
    # the worker: only backup and audit pods have a token, and they only report a backup's progress
    for ns in ("backup-system", "team-a"):
        worker_role = one(docs, "Role", "rel-cxbackup-worker", ns)
        assert worker_role["rules"] == [
            {"apiGroups": ["cxbackup.io"], "resources": ["recordingbackups/status"], "verbs": ["patch"]}
        ]
    assert one(docs, "ServiceAccount", "cxbackup-worker", "backup-system")


def test_spreading_disruption_budget_and_network_policy_options(helm: Helm) -> None:
    single = render(helm, "--set", "replicaCount=1")
    assert find(single, "PodDisruptionBudget") == []  # one replica: a budget would block every drain
    hard = one(render(helm, "--set", "podAntiAffinity=hard"), "Deployment")["spec"]["template"]["spec"]
    assert hard["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0]["topologyKey"] == (
        "kubernetes.io/hostname"
    )
    none = one(render(helm, "--set", "podAntiAffinity=none"), "Deployment")["spec"]["template"]["spec"]
    assert "affinity" not in none
    own = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}
    custom = one(render(helm, "--set-json", f"affinity={json.dumps(own)}"), "Deployment")["spec"]["template"]["spec"]
    assert custom["affinity"] == own  # the user's affinity replaces the preset
    assert find(render(helm), "NetworkPolicy") == []
    docs = render(
        helm, "--set", "networkPolicy.enabled=true",
        "--set-json", 'networkPolicy.metricsNamespaceSelector={"kubernetes.io/metadata.name":"monitoring"}',
    )  # fmt: skip
    policy = one(docs, "NetworkPolicy", "rel-cxbackup")["spec"]
    assert policy["policyTypes"] == ["Ingress"]
    assert policy["podSelector"]["matchLabels"] == one(docs, "Deployment")["spec"]["selector"]["matchLabels"]
    [rule] = policy["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert rule["ports"] == [{"port": "metrics", "protocol": "TCP"}]
    everyone = one(render(helm, "--set", "networkPolicy.enabled=true"), "NetworkPolicy")["spec"]["ingress"][0]
    assert everyone["from"] == [{"namespaceSelector": {}}]
    bad = helm.run("template", "rel", str(CHART), "--set", "podAntiAffinity=sometimes", check=False)
    assert bad.returncode != 0 and "podAntiAffinity" in bad.stderr


def test_render_custom_values(helm: Helm) -> None:
    docs = render(helm, "-f", str(CUSTOM_VALUES), namespace="backup-system", cluster_wide=False)
    custom = yaml.safe_load(CUSTOM_VALUES.read_text())
    deployment = one(docs, "Deployment", "rel-cxbackup")
    assert deployment["spec"]["replicas"] == 3
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"example.com/owner": "contact-center"}
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["spec"]["tolerations"] == custom["tolerations"]
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "registry.example.com/contact-center/cxbackup:1.2.3"
    assert container["imagePullPolicy"] == "Always"
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    assert container["resources"] == merged(defaults["resources"], custom["resources"])  # helm merges maps
    assert container["resources"]["limits"]["cpu"] == "1"
    assert container["args"][-4:] == ["--namespace=team-a", "--namespace=team-b", "--plain-logs", "--verbose"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["CXBACKUP_WORKER_IMAGE"] == container["image"]
    assert env["CXBACKUP_WORKER_IMAGE_PULL_POLICY"] == "IfNotPresent"
    assert env["CXBACKUP_RECONCILE_INTERVAL"] == "30"
    assert env["TZ"] == "UTC"

    # Namespaced RBAC: a Role + RoleBinding per watched namespace, and cluster-wide only CRD reads.
    for ns in ("team-a", "team-b"):
        role = one(docs, "Role", "rel-cxbackup", ns)
        assert {
            "apiGroups": ["kopf.dev"],
            "resources": ["kopfpeerings"],
            "verbs": ["get", "list", "watch", "patch"],
        } in (role["rules"])
        binding = one(docs, "RoleBinding", "rel-cxbackup", ns)
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "rel-cxbackup", "namespace": "backup-system"}]
        assert one(docs, "KopfPeering", "cxbackup", ns)
    (cluster_role,) = find(docs, "ClusterRole")
    assert cluster_role["metadata"]["name"] == "rel-cxbackup-crds"
    assert cluster_role["rules"] == [
        {"apiGroups": ["apiextensions.k8s.io"], "resources": ["customresourcedefinitions"], "verbs": ["list", "watch"]}
    ]
    assert not find(docs, "ClusterKopfPeering")
    # The worker account where backups live: release namespace, watched ones, worker.namespaces.
    worker_namespaces = {d["metadata"]["namespace"] for d in find(docs, "ServiceAccount", "cxbackup-worker")}
    assert worker_namespaces == {"backup-system", "team-a", "team-b", "archive"}
    for ns in worker_namespaces:
        assert one(docs, "RoleBinding", "rel-cxbackup-worker", ns)["subjects"][0]["namespace"] == ns

    # Monitoring: ServiceMonitor, PrometheusRule (exactly files/alerts.yaml with these values), dashboards.
    monitor = one(docs, "ServiceMonitor", "rel-cxbackup", "backup-system")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["interval"] == "15s"
    # the objects' namespace label wins over the target's (tests/integration/test_prometheus_harness.py)
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    service = one(docs, "Service", "rel-cxbackup")
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    rule = one(docs, "PrometheusRule", "rel-cxbackup", "backup-system")
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    alerts = merged(chart_values(), custom)["alerts"]
    assert rule["spec"] == render_alert_rules(alerts)
    lag = next(r for g in rule["spec"]["groups"] for r in g["rules"] if r["alert"] == "CxbackupBackupLagHigh")
    assert "> 21 * 86400" in lag["expr"]
    assert lag["labels"] == {"severity": "critical", "team": "contact-center"}
    configmaps = find(docs, "ConfigMap")
    assert len(configmaps) == len(list(DASHBOARDS.glob("*.json")))
    for cm in configmaps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert cm["metadata"]["annotations"] == {"grafana_folder": "cxbackup"}
        ((file_name, text),) = cm["data"].items()
        assert text == (DASHBOARDS / file_name).read_text().rstrip("\n")
        assert json.loads(text)["uid"] == Path(file_name).stem


def _policy(docs: list[Manifest], suffix: str) -> Manifest:
    [policy] = [d for d in docs if d["kind"] == "ValidatingAdmissionPolicy" and d["metadata"]["name"].endswith(suffix)]
    return policy


WORKER_WRITES = {"shards", "audit"}
"""The status fields worker pods write (cxbackup.worker.status): a run pod its own shard's entry of `shards`, the
audit pod `audit`."""

PINNED_RULE = re.compile(r"^!variables\.statusUpdate \|\| object\.\?status\.\?(\w+) == oldObject\.\?status\.\?\1$")
"""The worker policy's rule that a status field stays as it was (present in both and equal, or absent in both)."""


def test_the_worker_policy_pins_every_status_field_but_those_workers_write(helm: Helm) -> None:
    """Every field of RecordingBackupStatus is in the worker policy: the two workers write (under the rules for a run
    pod's own shard and the audit pod) and every other one pinned by its own rule naming it. A field added to the
    model but not to the policy, which a taken-over worker could then forge, fails here."""
    from cxbackup.api.recordingbackup import RecordingBackupStatus

    model = {field.alias or name for name, field in RecordingBackupStatus.model_fields.items()}
    policy = _policy(render(helm), "-worker")
    validations = policy["spec"]["validations"]
    pinned = {m[1]: v["message"] for v in validations if (m := PINNED_RULE.match(v["expression"]))}
    assert len(pinned) == sum(bool(PINNED_RULE.match(v["expression"])) for v in validations)  # each once
    texts = [v["expression"] for v in [*validations, *policy["spec"]["variables"]]]
    named = {f for text in texts for f in re.findall(r"\bobject\.\?status\.\?(\w+)", text)}
    assert named - pinned.keys() == WORKER_WRITES
    assert pinned.keys() | WORKER_WRITES == model
    assert {f: m for f, m in pinned.items() if f"status.{f} " not in m} == {}


def test_the_jobs_policy_requires_the_vendor_hosts_the_operator_hands_its_workers(helm: Helm) -> None:
    """The operator-jobs policy's vendor hosts are the text the operator gets (the Deployment's
    CXBACKUP_VENDOR_HOSTS) and, split and joined again, gives every worker container; empty by default."""
    from cxbackup.controller.settings import load_settings

    hosts = ["api.example.com", "*.s3.amazonaws.com", "10.0.0.5", "2001:db8::1"]
    for values, expected in (((), ""), (("--set-json", f"security.vendorHosts={json.dumps(hosts)}"), ",".join(hosts))):
        docs = render(helm, *values)
        container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
        [variable] = [v for v in _policy(docs, "-operator-jobs")["spec"]["variables"] if v["name"] == "vendorHosts"]
        policy_value = json.loads(variable["expression"])  # a CEL string literal, written as JSON
        assert policy_value == env["CXBACKUP_VENDOR_HOSTS"] == expected
        assert ",".join(load_settings(env).jobs.vendor_hosts) == policy_value


def test_private_ca_reaches_the_operator_only_when_set(helm: Helm, tmp_path: Path) -> None:
    from cxbackup_dev.emulator import TestCA

    ca = TestCA.create(tmp_path)
    (container,) = one(render(helm), "Deployment", "rel-cxbackup")["spec"]["template"]["spec"]["containers"]
    assert "CXBACKUP_CA_CERTIFICATES" not in {e["name"] for e in container["env"]}
    docs = render(helm, "--set-file", f"security.caCertificates={ca.cert_path}")
    (container,) = one(docs, "Deployment", "rel-cxbackup")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["CXBACKUP_CA_CERTIFICATES"] == ca.pem


@pytest.mark.parametrize(
    ("flag", "setting", "message"),
    [
        ("--set", "replicaCount=two", "/replicaCount': got string, want integer"),
        ("--set", "replicaCount=-1", "/replicaCount"),
        ("--set", "image.pullPolicy=Sometimes", "/image/pullPolicy': value must be one of"),
        ("--set", "rbac.clusterWide=yes", "/rbac/clusterWide': got string, want boolean"),
        ("--set", "image.repository=", "/image/repository"),
        ("--set", "operator.metricsPort=80", "/operator/metricsPort"),
        ("--set", "operator.logFormat=xml", "/operator/logFormat"),
        ("--set", "alerts.backupLag.maxLagDays=0", "/alerts/backupLag/maxLagDays"),
        ("--set", "alerts.operatorDown.for=5 minutes", "/alerts/operatorDown/for"),
        ("--set-json", 'watchNamespaces=["Team_A"]', "/watchNamespaces/0"),
        ("--set", "replicas=3", "additional properties 'replicas' not allowed"),
        ("--set", "rbac.clusterWide=false", "rbac.clusterWide=false needs watchNamespaces"),
        ("--set", "replicaCount=2", "rbac.clusterWide=false needs watchNamespaces"),  # the default
        ("--set", "security.caCertificates=not-a-pem", "/security/caCertificates"),
    ],
)
def test_wrong_values_fail_naming_the_value(helm: Helm, flag: str, setting: str, message: str) -> None:
    proc = helm.run("template", "rel", str(CHART), flag, setting, check=False)
    assert proc.returncode != 0, f"{setting} was accepted"
    assert message in proc.stderr, proc.stderr


# ---- against the test API server ----------------------------------------------------------------
@pytest.fixture(scope="module")
def monitoring_crds(control_plane: ControlPlane) -> None:
    control_plane.kubectl("apply", "--server-side", "-f", str(MONITORING_CRDS))
    control_plane.wait_crds_established("cxbackup.io/test-data=true", timeout=60)


def create_namespaces(control_plane: ControlPlane, count: int) -> list[str]:
    names = [unique("t-helm") for _ in range(count)]
    for name in names:
        control_plane.kubectl("create", "namespace", name)
    return names


def dry_run(control_plane: ControlPlane, manifests: str) -> subprocess.CompletedProcess[str]:
    """Server-side apply, dry run: the API server validates every object (strict field validation)."""
    return control_plane.kubectl(
        "apply", "--server-side", "--force-conflicts", "--dry-run=server", "-f", "-", input_text=manifests, check=False
    )


def test_rendered_manifests_pass_server_side_validation(
    helm: Helm, control_plane: ControlPlane, namespace: str, monitoring_crds: None
) -> None:
    watched_a, watched_b, archive = create_namespaces(control_plane, 3)
    # Pod Security admission warns on a Deployment whose pods would break the restricted profile.
    control_plane.kubectl(
        "label",
        "namespace",
        namespace,
        "pod-security.kubernetes.io/enforce=restricted",
        "pod-security.kubernetes.io/warn=restricted",
    )
    renders = {
        "defaults": ["--include-crds", "--set-json", f'watchNamespaces=["{watched_a}"]'],
        "cluster-wide": ["--include-crds", *CLUSTER_WIDE],
        "custom": [
            "--include-crds",
            "-f",
            str(CUSTOM_VALUES),
            "--set-json",
            f'watchNamespaces=["{watched_a}","{watched_b}"]',
            "--set-json",
            f'worker.namespaces=["{archive}"]',
        ],
    }
    for label, args in renders.items():
        out = helm.run("template", unique("rel"), str(CHART), "--namespace", namespace, *args).stdout
        proc = dry_run(control_plane, out)
        assert proc.returncode == 0, f"{label}: the API server rejected the chart:\n{proc.stderr}"
        assert "PodSecurity" not in proc.stderr, f"{label}: not the restricted profile:\n{proc.stderr}"
        applied = [line for line in proc.stdout.splitlines() if line.endswith("(server dry run)")]
        assert len(applied) == len([d for d in yaml.safe_load_all(out) if d]), proc.stdout
        if label == "custom":
            for kind in ("servicemonitor", "prometheusrule", "kopfpeering", "deployment", "role"):
                assert any(line.startswith(f"{kind}.") for line in applied), f"no {kind} in {proc.stdout}"

    # The check has teeth: a misplaced field or a bad duration is rejected, not silently pruned.
    docs = render(helm, "-f", str(CUSTOM_VALUES), namespace=namespace, cluster_wide=False)
    rule = one(docs, "PrometheusRule")
    rule["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    proc = dry_run(control_plane, yaml.safe_dump(rule))
    assert proc.returncode != 0 and "spec.groups[0].rules[0].for" in proc.stderr, proc.stderr
    deployment = one(docs, "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]["readOnlyRootFS"] = True
    proc = dry_run(control_plane, yaml.safe_dump(deployment))
    assert proc.returncode != 0 and "readOnlyRootFS" in proc.stderr, proc.stderr


def can_i(
    control_plane: ControlPlane, user: str, verb: str, resource: str, namespace: str, subresource: str = ""
) -> bool:
    args = ["auth", "can-i", verb, resource, f"--as={user}", "-n", namespace]
    if subresource:
        args.append(f"--subresource={subresource}")
    proc = control_plane.kubectl(*args, check=False)
    assert proc.stdout.strip() in {"yes", "no"}, proc.stderr
    return proc.stdout.strip() == "yes"


class Access:
    """`kubectl auth can-i --as` checks, each run as its own kubectl, four at a time (they only read):
    `allowed(...)` and `denied(...)` note what is expected, `check()` runs them all and names every one
    that came out otherwise."""

    def __init__(self, control_plane: ControlPlane) -> None:
        self.control_plane = control_plane
        self.expected: list[tuple[bool, tuple[str, ...]]] = []

    def allowed(self, user: str, verb: str, resource: str, namespace: str, subresource: str = "") -> None:
        self.expected.append((True, (user, verb, resource, namespace, subresource)))

    def denied(self, user: str, verb: str, resource: str, namespace: str, subresource: str = "") -> None:
        self.expected.append((False, (user, verb, resource, namespace, subresource)))

    def check(self) -> None:
        with ThreadPoolExecutor(max_workers=4) as pool:
            answers = list(pool.map(lambda e: can_i(self.control_plane, *e[1]), self.expected))
        wrong = [
            (args, "allowed" if got else "denied")
            for (want, args), got in zip(self.expected, answers, strict=True)
            if got != want
        ]
        assert not wrong, f"can-i (user, verb, resource, namespace, subresource) came out otherwise: {wrong}"
        self.expected.clear()


def helm_install(
    helm: Helm, control_plane: ControlPlane, release: str, namespace: str, *args: str
) -> subprocess.CompletedProcess[str]:
    # No --wait: without a kubelet the operator's pods never run; the objects are what is checked.
    return helm.run(
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--kubeconfig",
        str(control_plane.kubeconfig),
        "--timeout",
        "60s",
        *args,
    )


def test_install_cluster_wide_and_rbac(helm: Helm, control_plane: ControlPlane, namespace: str) -> None:
    release = unique("rel")
    peering = unique("cxbackup")  # the session already has the ClusterKopfPeering "cxbackup"
    proc = helm_install(helm, control_plane, release, namespace, *CLUSTER_WIDE, "--set", f"peering.name={peering}")
    assert "STATUS: deployed" in proc.stdout, proc.stdout
    assert "watches all namespaces" in proc.stdout and "never upgrades them" in proc.stdout, proc.stdout
    (other,) = create_namespaces(control_plane, 1)
    operator = f"system:serviceaccount:{namespace}:{release}-cxbackup"
    worker = f"system:serviceaccount:{namespace}:cxbackup-worker"

    got = control_plane.kubectl("get", "deployment", f"{release}-cxbackup", "-n", namespace, "-o", "json").stdout
    assert json.loads(got)["spec"]["replicas"] == 2
    control_plane.kubectl("get", "clusterkopfpeering", peering)
    control_plane.kubectl("get", "serviceaccount", "cxbackup-worker", "-n", namespace)

    access = Access(control_plane)
    # The operator, cluster-wide: in any namespace.
    for ns in (namespace, other):
        access.allowed(operator, "create", "jobs.batch", ns)
        access.allowed(operator, "delete", "jobs.batch", ns)
        access.allowed(operator, "watch", "recordingbackups.cxbackup.io", ns)
        access.allowed(operator, "patch", "recordingbackups.cxbackup.io", ns, "status")
        access.allowed(operator, "patch", "recordingcertificates.cxbackup.io", ns, "status")
        access.allowed(operator, "patch", "recordingerasures.cxbackup.io", ns, "status")
        access.denied(operator, "update", "recordingcertificates.cxbackup.io", ns, "status")
        access.denied(operator, "update", "secrets", ns)
        access.denied(operator, "list", "configmaps", ns)
        access.allowed(operator, "get", "secrets", ns)
        access.allowed(operator, "create", "secrets", ns)
        access.allowed(operator, "create", "events", ns)
        access.allowed(operator, "create", "events.events.k8s.io", ns)
        access.allowed(operator, "create", "configmaps", ns)
        access.allowed(operator, "patch", "configmaps", ns)  # the audit's configuration, per audit
        access.denied(operator, "delete", "secrets", ns)
        access.denied(operator, "list", "secrets", ns)
        access.denied(operator, "delete", "recordingbackups.cxbackup.io", ns)
        access.denied(operator, "create", "pods", ns)
        access.allowed(operator, "list", "pods", ns)  # a Job's pods: summary, failure cause
        access.denied(operator, "delete", "pods", ns)
    access.allowed(operator, "patch", "clusterkopfpeerings.kopf.dev", "default")
    access.allowed(operator, "watch", "namespaces", "default")
    access.allowed(operator, "list", "customresourcedefinitions.apiextensions.k8s.io", "default")
    access.denied(operator, "create", "customresourcedefinitions.apiextensions.k8s.io", "default")

    # The worker: only its own backups' status, in its own namespace (export and erasure pods have no token).
    access.allowed(worker, "patch", "recordingbackups.cxbackup.io", namespace, "status")
    access.denied(worker, "get", "recordingbackups.cxbackup.io", namespace, "status")
    access.denied(worker, "patch", "exportjobs.cxbackup.io", namespace, "status")
    access.denied(worker, "patch", "recordingbackups.cxbackup.io", namespace)
    access.denied(worker, "get", "secrets", namespace)
    access.denied(worker, "list", "secrets", namespace)
    access.denied(worker, "create", "jobs.batch", namespace)
    access.denied(worker, "patch", "recordingbackups.cxbackup.io", other, "status")
    access.denied(worker, "get", "recordingbackups.cxbackup.io", other)
    access.check()

    _admission_policies_hold(control_plane, namespace, operator, worker, f"{release}-cxbackup")

    helm.run("uninstall", release, "--namespace", namespace, "--kubeconfig", str(control_plane.kubeconfig))
    gone = control_plane.kubectl("get", "clusterrole", f"{release}-cxbackup", check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


def _as(control_plane: ControlPlane, user: str, doc: dict[str, Any], *extra: str) -> subprocess.CompletedProcess[str]:
    """Server-side dry-run of creating `doc` as `user` (RBAC and admission run, nothing is stored)."""
    return control_plane.kubectl(
        "create", "--dry-run=server", f"--as={user}", *extra, "-f", "-", input_text=json.dumps(doc), check=False
    )


def _admission_policies_hold(control_plane: ControlPlane, ns: str, operator: str, worker: str, image_of: str) -> None:
    """What RBAC allows the operator's account but the chart's ValidatingAdmissionPolicies refuse: anything
    in kube-system, Jobs that are not worker Jobs (another image, another account, a hostPath), Secrets and
    ConfigMaps without cxbackup's labels; and a worker changing another resource's status. (Every attack in
    detail, against the policies of the default installation: tests/security/test_admission.py.)"""
    from cxbackup.api.recordingbackup import RecordingBackup
    from cxbackup.backup.window import RecordingWindow
    from cxbackup.controller.backup.manifests import build_backup_job
    from cxbackup.controller.manifests import JobSettings

    deployment = json.loads(control_plane.kubectl("get", "deployment", image_of, "-n", ns, "-o", "json").stdout)
    image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
    example = yaml.safe_load((REPO / "examples" / "recordingbackup.yaml").read_text())
    example["metadata"] |= {"namespace": ns, "uid": "uid-1"}
    run = build_backup_job(
        RecordingBackup.model_validate(example), "20261129-101010", RecordingWindow(0, 1), JobSettings(image=image),
        run_start=dt.datetime(2026, 11, 29, tzinfo=dt.UTC),
    )  # fmt: skip

    def job(**changes: Any) -> dict[str, Any]:
        built = copy.deepcopy(run)
        built["spec"]["template"]["spec"].update(changes)
        return built

    ok = _as(control_plane, operator, job())  # a Job as the operator builds it
    assert ok.returncode == 0, ok.stderr
    for bad in (
        job(containers=[{**run["spec"]["template"]["spec"]["containers"][0], "image": "evil/image:1"}]),
        job(serviceAccountName="default"),
        job(volumes=[*run["spec"]["template"]["spec"]["volumes"], {"name": "h", "hostPath": {"path": "/"}}]),
        job(hostNetwork=True),
    ):
        denied = _as(control_plane, operator, bad)
        assert denied.returncode != 0 and "creates only worker Jobs" in denied.stderr, (bad, denied.stderr)
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "probe", "namespace": ns}, "data": {}}
    denied = _as(control_plane, operator, secret)
    assert denied.returncode != 0 and "writes only Secrets it created" in denied.stderr, denied.stderr
    keyring = {"cxbackup.io/certificate": "rc", "cxbackup.io/keyring": "true"}
    labelled = {**secret, "metadata": {**secret["metadata"], "labels": keyring}}
    assert _as(control_plane, operator, labelled).returncode == 0
    labels = {"app.kubernetes.io/name": "cxbackup"}
    cm = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "probe", "namespace": "kube-system", "labels": labels},
    }
    denied = _as(control_plane, operator, cm)
    assert denied.returncode != 0 and "never writes into kube-system" in denied.stderr, denied.stderr

    # a worker pod may write the status of its own resource only (its token names its pod)
    backup = yaml.safe_load((REPO / "examples" / "recordingbackup.yaml").read_text())
    backup["metadata"] |= {"name": "victim", "namespace": ns}
    control_plane.kubectl("apply", "-f", "-", input_text=json.dumps(backup))
    shards = {"status": {"shards": {"0": {"runId": "20261129-101010", "phase": "Succeeded"}}}}

    def patch_status(pod: str) -> str:
        """The worker's status patch (no GET first: the worker may only patch), as the pod `pod`; the error."""
        from kubernetes import client, config
        from kubernetes.client.exceptions import ApiException

        api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
        api.set_default_header("Impersonate-User", worker)
        api.set_default_header("Impersonate-Extra-authentication.kubernetes.io%2Fpod-name", pod)
        try:
            client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
                "cxbackup.io", "v1alpha1", ns, "recordingbackups", "victim", shards
            )
        except ApiException as exc:
            return str(exc.body)
        return ""

    other = patch_status("attacker-0-abcde")
    assert "only the status of the RecordingBackup whose Job" in other, other
    own = patch_status("victim-20261129-101010-0-abcde")  # shard 0 of victim's run 20261129-101010
    assert own == "", own
    control_plane.kubectl("delete", "recordingbackups.cxbackup.io", "victim", "-n", ns)


def test_install_namespaced_and_rbac(helm: Helm, control_plane: ControlPlane, namespace: str) -> None:
    release = unique("rel")
    watched, also_watched, unwatched = create_namespaces(control_plane, 3)
    helm_install(
        helm,
        control_plane,
        release,
        namespace,
        "--set",
        "rbac.clusterWide=false",
        "--set-json",
        f'watchNamespaces=["{watched}","{also_watched}"]',
    )
    operator = f"system:serviceaccount:{namespace}:{release}-cxbackup"
    access = Access(control_plane)
    for ns in (watched, also_watched):
        control_plane.kubectl("get", "kopfpeering", "cxbackup", "-n", ns)
        access.allowed(operator, "create", "jobs.batch", ns)
        access.allowed(operator, "patch", "kopfpeerings.kopf.dev", ns)
        access.allowed(operator, "patch", "recordingbackups.cxbackup.io", ns, "status")
        worker = f"system:serviceaccount:{ns}:cxbackup-worker"
        access.allowed(worker, "patch", "recordingbackups.cxbackup.io", ns, "status")
        access.denied(worker, "get", "secrets", ns)
    access.denied(operator, "create", "jobs.batch", unwatched)
    access.denied(operator, "get", "secrets", unwatched)
    access.denied(operator, "watch", "namespaces", "default")
    access.denied(operator, "patch", "clusterkopfpeerings.kopf.dev", "default")
    access.allowed(operator, "watch", "customresourcedefinitions.apiextensions.k8s.io", "default")
    worker_elsewhere = f"system:serviceaccount:{watched}:cxbackup-worker"
    access.denied(worker_elsewhere, "patch", "recordingbackups.cxbackup.io", also_watched, "status")
    access.check()
    # uninstalled, as the cluster-wide test is: its admission policies are cluster-wide, and the CRD tests of the
    # same control plane check rules with no chart installed
    helm.run("uninstall", release, "--namespace", namespace, "--kubeconfig", str(control_plane.kubeconfig))
