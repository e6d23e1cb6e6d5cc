"""The chart's admission policies against a taken-over operator and a taken-over worker pod, on the real API server.

One `helm install` per module (per namespace, the default `rbac.clusterWide=false`, watching two namespaces).
Every attack is a request the account's RBAC allows, sent as that account (`--as`, and for a worker pod the
`authentication.kubernetes.io/pod-name` its token carries) with server-side dry run, so admission runs and
nothing is stored; each must be refused, naming the policy's rule. The other side is proved with the same
requests the operator really makes: Jobs made by the real builders (controller/*/manifests.py) from the test
resources, the certificate handler writing its Secrets through the operator's account, and the exact pod
names Kubernetes gives a run's and an audit's pods. The policy and the builders therefore cannot drift apart.
"""

from __future__ import annotations

import base64
import copy
import dataclasses
import datetime as dt
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from cxbackup.api import workerenv
from cxbackup.api.common import GROUP, VERSION
from cxbackup.api.erasure import RecordingErasure
from cxbackup.api.exportjob import ExportJob
from cxbackup.api.recordingbackup import RecordingBackup, RecordingBackupStatus
from cxbackup.api.workerenv import StatusResource
from cxbackup.backup.audit import AuditReport
from cxbackup.backup.progress import RecordingResult, RecordingStatus, RunSummary
from cxbackup.backup.removal import SweepSummary
from cxbackup.backup.sharding import ShardAssignment
from cxbackup.backup.window import RecordingWindow
from cxbackup.commands.audit import _report_to_operator as report_to_operator
from cxbackup.controller.backup.manifests import build_audit_job, build_backup_job
from cxbackup.controller.certificate.handler import reconcile_certificate
from cxbackup.controller.cluster import KubeCluster
from cxbackup.controller.erasure.manifests import build_erasure_job
from cxbackup.controller.export.manifests import (
    CertificateSource,
    Decryption,
    SubjectAccessSources,
    build_export_job,
    build_export_sweep_job,
    subject_access_args,
)
from cxbackup.controller.manifests import JobSettings, run_id_for
from cxbackup.controller.podlimits import PodLimits
from cxbackup.controller.settings import load_settings
from cxbackup.core.times import iso
from cxbackup.export.request import ExportRequest
from cxbackup.worker import status as worker_status
from cxbackup_dev.localcluster.controlplane import ControlPlane
from tests import resources
from tests.integration.helm_fixtures import Helm

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "cxbackup"
NOW = dt.datetime(2026, 11, 29, 10, 10, 10, tzinfo=dt.UTC)
RUN_ID = run_id_for(NOW)
WINDOW = RecordingWindow(1_700_000_000_000, 1_700_086_400_000)
RANDOM_SUFFIX = "x7b2k"
"""Five characters as Kubernetes' name generator picks them (from bcdfghjklmnpqrstvwxz2456789)."""

Doc = dict[str, Any]


@dataclass(frozen=True)
class _Vendor:
    """What tests/resources.py reads of an emulator: its endpoints (nothing is contacted here)."""

    gws_uri_prefix: str = "https://vendor.example.com/api/v2"
    s3_endpoint: str = "https://s3.vendor.example.com"


VENDOR: Any = _Vendor()  # stands in for an Emulator in tests/resources.py


@dataclass
class Chart:
    cp: ControlPlane
    release: str
    namespace: str
    tenant: str
    """A watched namespace: the attacks happen here."""
    other: str
    """Another watched namespace (for a worker reaching across)."""
    operator: str
    image: str
    worker_account: str
    jobs: JobSettings
    """The job settings the installed operator runs with (read from its Deployment's environment)."""

    def worker(self, namespace: str | None = None) -> str:
        return f"system:serviceaccount:{namespace or self.tenant}:{self.worker_account}"

    def settings(self, **changes: Any) -> JobSettings:
        return dataclasses.replace(self.jobs, **changes)


def _kubectl(chart: Chart, *args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    return chart.cp.kubectl(*args, input_text=input_text, check=False)


def as_operator(chart: Chart, doc: Doc) -> subprocess.CompletedProcess[str]:
    """Server-side dry run of creating `doc` as the operator's account."""
    return _kubectl(
        chart, "create", "--dry-run=server", f"--as={chart.operator}", "-f", "-", input_text=json.dumps(doc)
    )


@dataclass(frozen=True)
class Answer:
    """The API server's answer to one request made through the client library (like a finished kubectl)."""

    returncode: int
    stderr: str


def _client(chart: Chart, user: str, pod: str | None = None) -> client.ApiClient:
    """A client acting as `user` (impersonation), with the pod name a bound service-account token carries.
    Requests go out as the operator and the workers send them: a PATCH without a GET first (kubectl patch
    reads the object, which neither account may)."""
    api = config.new_client_from_config(config_file=str(chart.cp.kubeconfig))
    api.set_default_header("Impersonate-User", user)
    if pod is not None:
        api.set_default_header("Impersonate-Extra-authentication.kubernetes.io%2Fpod-name", pod)
    return api


def _answer(call: Callable[[], object]) -> Answer:
    try:
        call()
    except ApiException as exc:
        return Answer(1, str(exc.body))
    return Answer(0, "")


def patch_as_operator(chart: Chart, kind: str, name: str, patch: Doc) -> Answer:
    """A merge patch (server-side dry run) as the operator's account, of a Secret, ConfigMap or Job."""
    api = _client(chart, chart.operator)
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    calls = {"secret": core.patch_namespaced_secret, "configmap": core.patch_namespaced_config_map,
             "job": batch.patch_namespaced_job}  # fmt: skip
    return _answer(lambda: calls[kind](name, chart.tenant, patch, dry_run="All"))


def delete_as_operator(chart: Chart, kind: str, name: str) -> Answer:
    api = _client(chart, chart.operator)
    core, batch = client.CoreV1Api(api), client.BatchV1Api(api)
    calls = {"configmap": core.delete_namespaced_config_map, "job": batch.delete_namespaced_job}
    return _answer(lambda: calls[kind](name, chart.tenant, dry_run="All"))


def refused(proc: subprocess.CompletedProcess[str] | Answer, message: str | tuple[str, ...]) -> bool:
    """Refused, naming one of `message` (the first rule of a policy that fails is the one named)."""
    messages = (message,) if isinstance(message, str) else message
    return proc.returncode != 0 and any(m in proc.stderr for m in messages)


def _admin_apply(chart: Chart, *docs: Doc) -> None:
    chart.cp.kubectl("apply", "-f", "-", input_text="\n---\n".join(json.dumps(d) for d in docs))


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# ---- the installation -----------------------------------------------------------------------------------
def _namespace(cp: ControlPlane, prefix: str) -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    cp.kubectl("create", "namespace", name)
    return name


def _wait_policies(chart: Chart) -> None:
    """Admission policies take effect a moment after they are created: wait until each refuses."""
    probe_secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "probe", "namespace": chart.tenant}}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if refused(as_operator(chart, probe_secret), "writes only Secrets it created") and refused(
            _kubectl(chart, "create", "--dry-run=server", "-f", "-", input_text=json.dumps(_backup_body("x" * 36))),
            "at most 35 characters",
        ):
            return
        time.sleep(0.5)
    raise AssertionError("the chart's admission policies did not take effect within 60 s")


TOLERATION_KEYS = ("dedicated",)
NODE_SELECTOR_KEYS = ("kubernetes.io/os",)
VENDOR_HOSTS = ("vendor.example.com", "*.vendor.example.com")
"""The installer's vendor hosts (security.vendorHosts): the hosts of `VENDOR`'s endpoints."""


@pytest.fixture(scope="module")
def chart(helm: Helm, control_plane: ControlPlane) -> Iterator[Chart]:
    """The chart installed per namespace (its default), watching two namespaces, allowing one taint key and one
    node label key to worker pods and naming the vendor's hosts; uninstalled afterwards (its admission policies
    are cluster-wide)."""
    cp = control_plane
    release = f"adm-{uuid.uuid4().hex[:6]}"
    namespace, tenant, other = (_namespace(cp, p) for p in ("t-adm-sys", "t-adm-tenant", "t-adm-other"))
    proc = helm.run(
        "install",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--kubeconfig",
        str(cp.kubeconfig),
        "--set-json",
        f"watchNamespaces={json.dumps([tenant, other])}",
        "--set-json",
        f"worker.allowedTolerationKeys={json.dumps(list(TOLERATION_KEYS))}",
        "--set-json",
        f"worker.allowedNodeSelectorKeys={json.dumps(list(NODE_SELECTOR_KEYS))}",
        "--set-json",
        f"security.vendorHosts={json.dumps(list(VENDOR_HOSTS))}",
        "--timeout",
        "60s",
    )
    assert "STATUS: deployed" in proc.stdout, proc.stdout
    deployment = json.loads(
        cp.kubectl("get", "deployment", f"{release}-cxbackup", "-n", namespace, "-o", "json").stdout
    )
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"] if "value" in e}
    installed = Chart(
        cp=cp,
        release=release,
        namespace=namespace,
        tenant=tenant,
        other=other,
        operator=f"system:serviceaccount:{namespace}:{deployment['spec']['template']['spec']['serviceAccountName']}",
        image=env["CXBACKUP_WORKER_IMAGE"],
        worker_account=env["CXBACKUP_WORKER_SERVICE_ACCOUNT"],
        jobs=load_settings(env).jobs,
    )
    _wait_policies(installed)
    try:
        yield installed
    finally:
        helm.run("uninstall", release, "--namespace", namespace, "--kubeconfig", str(cp.kubeconfig))


def test_the_default_install_is_per_namespace_and_the_policies_type_check(chart: Chart) -> None:
    """rbac.clusterWide=false is the default: the operator can read Secrets only where it watches."""
    unwatched = _namespace(chart.cp, "t-adm-unwatched")
    for verb, resource in (("get", "secrets"), ("create", "jobs.batch"), ("create", "secrets")):
        assert (
            _kubectl(
                chart, "auth", "can-i", verb, resource, f"--as={chart.operator}", "-n", chart.tenant
            ).stdout.strip()
            == "yes"
        )
        got = _kubectl(chart, "auth", "can-i", verb, resource, f"--as={chart.operator}", "-n", unwatched)
        assert got.stdout.strip() == "no", (verb, resource, got.stdout)
    assert (
        _kubectl(chart, "auth", "can-i", "get", "secrets", f"--as={chart.operator}", "-n", "kube-system").stdout.strip()
        == "no"
    )
    policies = json.loads(
        chart.cp.kubectl(
            "get", "validatingadmissionpolicies", "-l", f"app.kubernetes.io/instance={chart.release}", "-o", "json"
        ).stdout
    )["items"]
    names = sorted(p["metadata"]["name"].removeprefix(f"{chart.release}-cxbackup-") for p in policies)
    assert names == ["names", "operator-configmaps", "operator-jobs", "operator-secrets", "worker"]
    for policy in policies:  # every expression compiled against the kinds' schemas
        warnings = (policy.get("status", {}).get("typeChecking") or {}).get("expressionWarnings") or []
        assert warnings == [], (policy["metadata"]["name"], warnings)


# ---- Secrets ------------------------------------------------------------------------------------------------
def _secret(
    chart: Chart,
    name: str,
    *,
    type_: str = "Opaque",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    data: dict[str, str] | None = None,
) -> Doc:
    meta: Doc = {"name": name, "namespace": chart.tenant}
    if labels is not None:
        meta["labels"] = labels
    if annotations is not None:
        meta["annotations"] = annotations
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": type_,
        "metadata": meta,
        "data": {k: _b64(v) for k, v in (data or {}).items()},
    }


KEYRING_LABELS = {"cxbackup.io/certificate": "rc", "cxbackup.io/keyring": "true"}


def test_the_operator_creates_only_a_certificates_pair_and_keyring(chart: Chart) -> None:
    pair = {"tls.crt": "CERT", "tls.key": "KEY"}
    ok = {
        "the pair": _secret(
            chart, "rc-tls", type_="kubernetes.io/tls", labels={"cxbackup.io/certificate": "rc"}, data=pair
        ),
        "the keyring": _secret(
            chart,
            "rc-keyring",
            labels=KEYRING_LABELS,
            annotations={"cxbackup.io/keyring": "true", "cxbackup.io/certificate-uid": "u-1"},
            data={"1234.crt": "C", "1234.key": "K", "1234.password": "P", "1234-1.crt": "C"},
        ),
    }
    for what, doc in ok.items():
        proc = as_operator(chart, doc)
        assert proc.returncode == 0, (what, proc.stderr)
    token = {"kubernetes.io/service-account.name": "privileged"}
    attacks = {
        "a service-account token for another account": (
            _secret(
                chart,
                "rc-tls",
                type_="kubernetes.io/service-account-token",
                labels={"cxbackup.io/certificate": "rc"},
                annotations=token,
            ),
            "writes only Secrets it created",
        ),
        "a token request as an annotation of a keyring": (
            _secret(chart, "rc-keyring", labels=KEYRING_LABELS, annotations=token),
            "writes only Secrets it created",
        ),
        "a token request as an annotation of a pair": (
            _secret(
                chart,
                "rc-tls",
                type_="kubernetes.io/tls",
                labels={"cxbackup.io/certificate": "rc"},
                annotations=token,
                data=pair,
            ),
            "writes only Secrets it created",
        ),
        "a Secret without the certificate label": (
            _secret(chart, "probe", data={"1.crt": "C"}),
            "writes only Secrets it created",
        ),
        "a registry Secret": (
            _secret(
                chart,
                "rc-tls",
                type_="kubernetes.io/dockerconfigjson",
                labels={"cxbackup.io/certificate": "rc"},
                data={".dockerconfigjson": "{}"},
            ),
            "only a certificate's pair",
        ),
        "a pair named for another Secret": (
            _secret(
                chart, "ingress-tls", type_="kubernetes.io/tls", labels={"cxbackup.io/certificate": "rc"}, data=pair
            ),
            "only a certificate's pair",
        ),
        "a pair with another key": (
            _secret(
                chart,
                "rc-tls",
                type_="kubernetes.io/tls",
                labels={"cxbackup.io/certificate": "rc"},
                data=pair | {"token": "T"},
            ),
            "only a certificate's pair",
        ),
        "an Opaque Secret that is no keyring": (
            _secret(chart, "rc-keyring", labels={"cxbackup.io/certificate": "rc"}, data={"1.crt": "C"}),
            "only a certificate's pair",
        ),
        "a keyring with another key": (
            _secret(chart, "rc-keyring", labels=KEYRING_LABELS, data={"token": "T"}),
            "only a certificate's pair",
        ),
        "a keyring opted in as credentials": (
            _secret(chart, "rc-keyring", labels=KEYRING_LABELS | {"cxbackup.io/credentials": "true"}),
            "writes only Secrets it created",
        ),
        "a keyring with a foreign label": (
            _secret(chart, "rc-keyring", labels=KEYRING_LABELS | {"app": "database"}),
            "writes only Secrets it created",
        ),
        "an immutable keyring": (
            _secret(chart, "rc-keyring", labels=KEYRING_LABELS) | {"immutable": True},
            "writes only Secrets it created",
        ),
    }
    failed = {
        what: proc.stderr
        for what, (doc, message) in attacks.items()
        if not refused(proc := as_operator(chart, doc), message)
    }
    assert failed == {}


def test_the_operator_changes_only_secrets_that_already_were_the_certificates(chart: Chart) -> None:
    """The label, the type and (for a keyring) every key must have been there before: a foreign Secret
    cannot be taken over in one patch, and a keyring only grows."""
    pair = {"tls.crt": "CERT", "tls.key": "KEY"}
    _admin_apply(
        chart,
        _secret(chart, "app-credentials", data={"password": "hunter2"}),
        _secret(chart, "foreign-tls", type_="kubernetes.io/tls", data=pair),
        _secret(chart, "upd-tls", type_="kubernetes.io/tls", labels={"cxbackup.io/certificate": "upd"}, data=pair),
        _secret(
            chart,
            "upd-keyring",
            labels=KEYRING_LABELS | {"cxbackup.io/certificate": "upd"},
            annotations={"cxbackup.io/keyring": "true"},
            data={"1.crt": "C", "1.key": "K"},
        ),
    )
    ok: dict[str, tuple[str, Doc]] = {
        "a rotation of the pair": ("upd-tls", {"data": {"tls.crt": _b64("NEW"), "tls.key": _b64("NEWKEY")}}),
        "a new serial in the keyring": ("upd-keyring", {"data": {"2.crt": _b64("C2"), "2.key": _b64("K2")}}),
        "the certificate's uid on the keyring": (
            "upd-keyring",
            {"metadata": {"annotations": {"cxbackup.io/certificate-uid": "u-1"}}},
        ),
    }
    for what, (name, patch) in ok.items():
        proc = patch_as_operator(chart, "secret", name, patch)
        assert proc.returncode == 0, (what, proc.stderr)
    take_over: Doc = {"metadata": {"labels": KEYRING_LABELS}, "data": {"1.crt": _b64("C")}}
    attacks: dict[str, tuple[str, Doc, str | tuple[str, ...]]] = {
        "label a foreign Secret and write into it in one patch": (
            "app-credentials",
            take_over,
            ("already was", "only a certificate's pair"),  # its key `password` is no keyring key either
        ),
        "label a foreign TLS Secret as a pair and rotate it": (
            "foreign-tls",
            {"metadata": {"labels": {"cxbackup.io/certificate": "foreign"}}, "data": {"tls.crt": _b64("X")}},
            "already was",
        ),
        "hand the pair to another certificate": (
            "upd-tls",
            {"metadata": {"labels": {"cxbackup.io/certificate": "other"}}},
            "only a certificate's pair",
        ),
        "hand the keyring to another certificate": (
            "upd-keyring",
            {"metadata": {"labels": {"cxbackup.io/certificate": "other"}}},
            "already was",
        ),
        "overwrite a key of the keyring": ("upd-keyring", {"data": {"1.key": _b64("GONE")}}, "only adds keys"),
        "remove a key from the keyring": ("upd-keyring", {"data": {"1.key": None}}, "only adds keys"),
        "ask for a token through an annotation": (
            "upd-keyring",
            {"metadata": {"annotations": {"kubernetes.io/service-account.name": "admin"}}},
            "writes only Secrets it created",
        ),
        "turn the pair into a keyring": (
            "upd-tls",
            {"metadata": {"labels": {"cxbackup.io/keyring": "true"}}},
            "only a certificate's pair",
        ),
        "plant a key in the keyring": ("upd-keyring", {"data": {"token": _b64("T")}}, "only a certificate's pair"),
    }
    failed = {
        what: proc.stderr
        for what, (name, patch, message) in attacks.items()
        if not refused(proc := patch_as_operator(chart, "secret", name, patch), message)
    }
    assert failed == {}
    # A type never changes: the API server refuses it itself, and the policy would too.
    typed = patch_as_operator(
        chart, "secret", "upd-tls", {"type": "Opaque", "metadata": {"labels": {"cxbackup.io/keyring": "true"}}}
    )
    assert refused(typed, ("immutable", "already was")), typed.stderr


def _operator_api(chart: Chart) -> client.ApiClient:
    """A client of the API server that acts as the operator's account (impersonation)."""
    api = config.new_client_from_config(config_file=str(chart.cp.kubeconfig))
    api.set_default_header("Impersonate-User", chart.operator)
    return api


def test_the_certificate_handler_writes_its_secrets_through_the_policy(chart: Chart) -> None:
    """The real handler, as the operator's account: it generates the pair, creates the keyring, and on
    rotation adds to the keyring and renews the pair; every write passes the policy."""
    ns = chart.tenant
    body = resources.generated_certificate("rc", validityDays=30)
    body["metadata"] |= {"namespace": ns, "uid": "cert-uid-1", "generation": 1}
    cluster = KubeCluster(_operator_api(chart))
    events: list[Any] = []
    status = reconcile_certificate(body, cluster=cluster, emit=events.append, now=NOW)
    ring = cluster.read_secret(ns, "rc-keyring")
    pair = cluster.read_secret(ns, "rc-tls")
    assert pair is not None and pair.type == "kubernetes.io/tls", status
    assert ring is not None and len(ring.data) == 2, status
    later = NOW + dt.timedelta(days=25)  # within the last third of the lifetime: rotation is due
    body["status"] = status
    status = reconcile_certificate(body, cluster=cluster, emit=events.append, now=later)
    ring = cluster.read_secret(ns, "rc-keyring")
    renewed = cluster.read_secret(ns, "rc-tls")
    assert ring is not None and len(ring.data) == 4, (status, events)
    assert renewed is not None and renewed.data["tls.crt"] != pair.data["tls.crt"], (status, events)


# ---- ConfigMaps -----------------------------------------------------------------------------------------------
def test_the_operator_writes_and_deletes_only_its_own_configmaps(chart: Chart) -> None:
    own = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "data": {"config.properties": "x=1"},
        "metadata": {"name": "rb-config", "namespace": chart.tenant, "labels": {"app.kubernetes.io/name": "cxbackup"}},
    }
    foreign = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "data": {"setting": "1"},
        "metadata": {"name": "app-settings", "namespace": chart.tenant},
    }
    _admin_apply(chart, own, foreign)
    assert patch_as_operator(chart, "configmap", "rb-config", {"data": {"config.properties": "x=2"}}).returncode == 0
    delete_own = delete_as_operator(chart, "configmap", "rb-config")
    assert delete_own.returncode == 0, delete_own.stderr
    message = "writes only its own ConfigMaps"
    take_over = {"metadata": {"labels": {"app.kubernetes.io/name": "cxbackup"}}, "data": {"setting": "2"}}
    attacks = {
        "create one without cxbackup's label": as_operator(
            chart, foreign | {"metadata": {"name": "x", "namespace": chart.tenant}}
        ),
        "label a foreign one and change it": patch_as_operator(chart, "configmap", "app-settings", take_over),
        "change the cluster's CA bundle": patch_as_operator(chart, "configmap", "kube-root-ca.crt", take_over),
        "delete a foreign one": delete_as_operator(chart, "configmap", "app-settings"),
    }
    assert {what: proc.stderr for what, proc in attacks.items() if not refused(proc, message)} == {}


# ---- Jobs --------------------------------------------------------------------------------------------------------
def _backup_body(name: str, namespace: str | None = None, **spec: Any) -> Doc:
    body = resources.recording_backup(VENDOR, name, **spec)
    if namespace:
        body["metadata"]["namespace"] = namespace
    return body


def _model(body: Doc, namespace: str, uid: str = "uid-1") -> Doc:
    doc = copy.deepcopy(body)
    doc["metadata"] |= {"namespace": namespace, "uid": uid}
    return doc


S3_TARGET = {
    "s3": {
        "bucket": "archive",
        "prefix": "cc/",
        "endpointUrl": "https://s3.customer.example",
        "credentials": {"name": "archive-s3"},
    }
}


def real_jobs(chart: Chart) -> dict[str, Doc]:
    """Every kind of Job the operator builds, by its real builders, from the test resources."""
    ns = chart.tenant
    settings = chart.settings()
    pvc = RecordingBackup.model_validate(_model(_backup_body("rb", replicas=64), ns))
    scheduled = RecordingBackup.model_validate(
        _model(
            _backup_body(
                "rb-pod",
                pod={
                    "nodeSelector": {"kubernetes.io/os": "linux"},
                    "tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}],
                    "resources": {"requests": {"cpu": "200m"}, "limits": {"memory": "512Mi"}},
                    "activeDeadlineSeconds": 3600,
                    "tmpSizeLimit": "512Mi",
                },
            ),
            ns,
        )
    )
    limits = settings.limits
    caps = {
        "resources": {"requests": dict(limits.max_resources), "limits": dict(limits.max_resources)},
        "tmpSizeLimit": limits.max_tmp_size,
        "tolerations": [{"key": k, "operator": "Exists", "effect": "NoSchedule"} for k in limits.toleration_keys],
        "nodeSelector": dict.fromkeys(limits.node_selector_keys, "linux"),
    }
    at_caps = RecordingBackup.model_validate(_model(_backup_body("rb-caps", pod=caps), ns))
    s3 = RecordingBackup.model_validate(_model(_backup_body("rb-s3", target=S3_TARGET), ns))
    contacts = ExportJob.model_validate(_model(resources.export_job(VENDOR, "contacts"), ns))
    chat_s3 = ExportJob.model_validate(
        _model(
            resources.export_job(
                VENDOR,
                "chat",
                type="gdprChat",
                users=["user-4711"],
                store={
                    "s3": "s3://exports/cc",
                    "s3EndpointUrl": "https://s3.customer.example",
                    "s3Credentials": {"name": "archive-s3"},
                },
            ),
            ns,
        )
    )
    subject_doc = resources.export_job(
        VENDOR,
        "dsar",
        type="subjectAccess",
        subject={"secret": "dsar-117"},
        backup={"recordingBackup": "rb"},
        decryptMedia={"recordingCertificate": "rc"},
    )
    for vendor_only in ("source", "range"):
        subject_doc["spec"].pop(vendor_only)
    subject = ExportJob.model_validate(_model(subject_doc, ns))
    erasure_doc = yaml.safe_load((REPO / "examples" / "recordingerasure.yaml").read_text())
    erasure = RecordingErasure.model_validate(_model(erasure_doc, ns))
    erasure_at_caps = RecordingErasure.model_validate(
        _model({**erasure_doc, "spec": {**erasure_doc["spec"], "pod": caps}}, ns)
    )
    cert = CertificateSource("rc-tls")

    def export_run(export: ExportJob, sources: SubjectAccessSources | None = None) -> Doc:
        args = subject_access_args(export) if sources else ExportRequest.from_spec(export.spec, "x").to_args()
        return build_export_job(export, RUN_ID, args, cert, settings, run_start=NOW, subject_access=sources)

    decryption = Decryption("rc-keyring", "a" * 64, "b" * 64)
    return {
        "backup run, PVC target, 64 shards": build_backup_job(pvc, RUN_ID, WINDOW, settings, run_start=NOW),
        "backup run with the resource's pod settings": build_backup_job(
            scheduled, RUN_ID, WINDOW, settings, run_start=NOW
        ),
        "backup run with the resource's pod settings at the caps": build_backup_job(
            at_caps, RUN_ID, WINDOW, settings, run_start=NOW
        ),
        "erasure with its own pod settings at the caps": build_erasure_job(
            erasure_at_caps, pvc, RUN_ID, settings, run_start=NOW
        ),
        "backup run, S3 target": build_backup_job(s3, RUN_ID, WINDOW, settings, run_start=NOW),
        "backup run trusting a private CA": build_backup_job(
            pvc, RUN_ID, WINDOW, chart.settings(ca_certificates="-----BEGIN CERTIFICATE-----\nx\n"), run_start=NOW
        ),
        "audit": build_audit_job(pvc, RUN_ID, WINDOW, settings, run_start=NOW),
        "contact history export": export_run(contacts),
        "chat export into S3": export_run(chat_s3),
        "subject access, decrypted with the keyring": export_run(
            subject, SubjectAccessSources(CertificateSource("dsar-117", "subject"), s3, decryption)
        ),
        "subject access of a PVC backup": export_run(
            subject, SubjectAccessSources(CertificateSource("dsar-117", "subject"), pvc)
        ),
        "export retention sweep": build_export_sweep_job(contacts, RUN_ID, settings, cutoff=NOW),
        "erasure, PVC target": build_erasure_job(erasure, pvc, RUN_ID, settings, run_start=NOW),
        "erasure, S3 target": build_erasure_job(erasure, s3, RUN_ID, settings, run_start=NOW),
    }


def test_every_job_the_operator_builds_is_admitted(chart: Chart) -> None:
    """Including those built from a resource's own pod settings at the installer's caps (the chart's values):
    the operator's caps (podlimits.py) and the policy's are the same; and every one hands its container the
    installer's vendor hosts as the operator read them from its Deployment, which the policy requires."""
    assert chart.jobs.limits == PodLimits(toleration_keys=TOLERATION_KEYS, node_selector_keys=NODE_SELECTOR_KEYS)
    assert chart.jobs.vendor_hosts == VENDOR_HOSTS
    jobs = real_jobs(chart)
    refusals = {what: proc.stderr for what, job in jobs.items() if (proc := as_operator(chart, job)).returncode != 0}
    assert refusals == {}


Mutation = Callable[[Doc], object]


def _pod(job: Doc) -> Doc:
    pod: Doc = job["spec"]["template"]["spec"]
    return pod


def _c(job: Doc) -> Doc:
    container: Doc = _pod(job)["containers"][0]
    return container


def _tmp(job: Doc) -> Doc:
    [tmp] = [v["emptyDir"] for v in _pod(job)["volumes"] if v["name"] == "tmp"]
    empty_dir: Doc = tmp
    return empty_dir


HOSTNAME_IN_CP = {"key": "kubernetes.io/hostname", "operator": "In", "values": ["control-plane"]}
CAPPED_RESOURCES = "every container with a limit for each resource of worker.limits.max"


def _sc(job: Doc) -> Doc:
    security: Doc = _c(job)["securityContext"]
    return security


VENDOR_HOSTS_VAR = "CXBACKUP_VENDOR_HOSTS"
VENDOR_HOSTS_RULE = "CXBACKUP_VENDOR_HOSTS defined once, exactly security.vendorHosts"


def _drop_vendor_hosts(job: Doc) -> None:
    _c(job)["env"] = [e for e in _c(job)["env"] if e["name"] != VENDOR_HOSTS_VAR]


def _set_vendor_hosts(job: Doc, value: str) -> None:
    [entry] = [e for e in _c(job)["env"] if e["name"] == VENDOR_HOSTS_VAR]
    entry["value"] = value


JOB_ATTACKS: dict[str, tuple[str, Mutation, str]] = {
    # what: (the real Job it starts from, the change, words of the refusal)
    "a shell as the command": ("backup", lambda j: _c(j).update(command=["/bin/sh", "-c", "id"]), "its own image"),
    "the image's shell through the args": (
        "backup",
        lambda j: _c(j).update(command=["sh"], args=["-c", "id"]),
        "its own image",
    ),
    "the entrypoint left to the image": ("backup", lambda j: _c(j).pop("command"), "its own image"),
    "another cxbackup command": ("backup", lambda j: _c(j).update(args=["operator"]), "its own image"),
    "another image": ("backup", lambda j: _c(j).update(image="evil.example.com/tools:1"), "its own image"),
    "root (container)": ("backup", lambda j: _sc(j).update(runAsUser=0, runAsNonRoot=False), "non-root"),
    "root (pod)": (
        "backup",
        lambda j: _pod(j)["securityContext"].update(runAsUser=0, runAsNonRoot=False),
        "non-root pod",
    ),
    "root's group": ("backup", lambda j: _pod(j)["securityContext"].update(supplementalGroups=[0]), "non-root pod"),
    "capabilities added": ("backup", lambda j: _sc(j)["capabilities"].update(add=["SYS_ADMIN"]), "none added"),
    "capabilities not dropped": ("backup", lambda j: _sc(j).pop("capabilities"), "every capability dropped"),
    "privileged": ("backup", lambda j: _sc(j).update(privileged=True, allowPrivilegeEscalation=True), "privileged"),
    "privilege escalation": ("backup", lambda j: _sc(j).update(allowPrivilegeEscalation=True), "no privilege"),
    "a writable root filesystem": ("backup", lambda j: _sc(j).update(readOnlyRootFilesystem=False), "read-only root"),
    "no seccomp profile": (
        "backup",
        lambda j: _pod(j)["securityContext"].update(seccompProfile={"type": "Unconfined"}),
        "RuntimeDefault seccomp",
    ),
    "a privileged SELinux type": ("backup", lambda j: _sc(j).update(seLinuxOptions={"type": "spc_t"}), "non-root"),
    "a foreign Secret mounted whole": (
        "export",
        lambda j: _pod(j)["volumes"].append({"name": "loot", "secret": {"secretName": "app-credentials"}}),
        "Secret volumes of one key",
    ),
    "a foreign Secret's key mounted": (
        "export",
        lambda j: _pod(j)["volumes"].append(
            {"name": "loot", "secret": {"secretName": "app-credentials", "items": [{"key": "password", "path": "p"}]}}
        ),
        "Secret volumes of one key",
    ),
    "a projected token": (
        "backup",
        lambda j: _pod(j)["volumes"].append(
            {"name": "t", "projected": {"sources": [{"serviceAccountToken": {"path": "t", "audience": "vault"}}]}}
        ),
        "Secret volumes of one key",
    ),
    "a hostPath": (
        "backup",
        lambda j: _pod(j)["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
        "Secret volumes of one key",
    ),
    "an inline ephemeral volume": (
        "backup",
        lambda j: _pod(j)["volumes"].append(
            {
                "name": "e",
                "ephemeral": {
                    "volumeClaimTemplate": {
                        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Ti"}}}
                    }
                },
            }
        ),
        "Secret volumes of one key",
    ),
    "a subPath into a volume": ("backup", lambda j: _c(j)["volumeMounts"][0].update(subPath="x"), "no subPath"),
    "envFrom a Secret": (
        "backup",
        lambda j: _c(j).update(envFrom=[{"secretRef": {"name": "app-credentials"}}]),
        "envFrom",
    ),
    "a foreign Secret key as a vendor variable": (
        "backup",
        lambda j: _c(j)["env"].append(
            {
                "name": "AWS_SECRET_ACCESS_KEY",
                "valueFrom": {"secretKeyRef": {"name": "app-credentials", "key": "password"}},
            }
        ),
        "credentials only as secretKeyRef",
    ),
    "a Secret key under another variable": (
        "backup",
        lambda j: _c(j)["env"].append(
            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "app-credentials", "key": "GWS_PASSWORD"}}}
        ),
        "credentials only as secretKeyRef",
    ),
    "the pod's own fields as variables": (
        "backup",
        lambda j: _c(j)["env"].append(
            {"name": "CXBACKUP_X", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
        ),
        "credentials only as secretKeyRef",
    ),
    "a library preloaded": (
        "backup",
        lambda j: _c(j)["env"].append({"name": "LD_PRELOAD", "value": "/backup/x.so"}),
        "credentials only as secretKeyRef",
    ),
    "HOME on the target volume": (
        "backup",
        lambda j: [e.update(value="/backup") for e in _c(j)["env"] if e["name"] == "HOME"],
        "credentials only as secretKeyRef",
    ),
    "the host's network": ("backup", lambda j: _pod(j).update(hostNetwork=True), "no host"),
    "the host's processes": ("backup", lambda j: _pod(j).update(hostPID=True), "no host"),
    "another ServiceAccount": (
        "backup",
        lambda j: _pod(j).update(serviceAccountName="default"),
        "worker ServiceAccount",
    ),
    "another ServiceAccount by the old field": (
        "backup",
        lambda j: [_pod(j).pop("serviceAccountName"), _pod(j).update(serviceAccount="admin")],
        "worker ServiceAccount",
    ),
    "a token in an export pod": (
        "export",
        lambda j: _pod(j).update(automountServiceAccountToken=True),
        "no token for export",
    ),
    "a token in an erasure pod": (
        "erasure",
        lambda j: _pod(j).pop("automountServiceAccountToken"),
        "no token for export",
    ),
    "an ephemeral container": (
        "backup",
        lambda j: _pod(j).update(ephemeralContainers=[{"name": "debug", "image": "busybox", "command": ["sh"]}]),
        "ephemeral",
    ),
    "an init container": ("backup", lambda j: _pod(j).update(initContainers=[dict(_c(j), name="init")]), "init"),
    "a second container": (
        "backup",
        lambda j: _pod(j)["containers"].append(dict(_c(j), name="second")),
        "one container",
    ),
    "a postStart hook": (
        "backup",
        lambda j: _c(j).update(lifecycle={"postStart": {"exec": {"command": ["sh"]}}}),
        "no hooks",
    ),
    "an exec probe": (
        "backup",
        lambda j: _c(j).update(livenessProbe={"exec": {"command": ["sh", "-c", "id"]}}),
        "probes",
    ),
    "a host port": ("backup", lambda j: _c(j).update(ports=[{"containerPort": 22, "hostPort": 22}]), "ports"),
    "a chosen node": ("backup", lambda j: _pod(j).update(nodeName="control-plane"), "node name"),
    "a runtime class": ("backup", lambda j: _pod(j).update(runtimeClassName="unsafe"), "runtime class"),
    "an AppArmor opt-out": (
        "backup",
        lambda j: j["spec"]["template"]["metadata"].update(
            annotations={"container.apparmor.security.beta.kubernetes.io/worker": "unconfined"}
        ),
        "pod labels and annotations",
    ),
    "a pod label another policy selects": (
        "backup",
        lambda j: j["spec"]["template"]["metadata"]["labels"].update({"role": "database-admin"}),
        "pod labels and annotations",
    ),
    "a manual selector": (
        "backup",
        # a selector as wide as cxbackup's pod labels: the Job controller would adopt (and delete) other pods
        lambda j: j["spec"].update(
            manualSelector=True, selector={"matchLabels": {"app.kubernetes.io/name": "cxbackup"}}
        ),
        "manual selector",
    ),
    "no deadline": ("backup", lambda j: j["spec"].pop("activeDeadlineSeconds"), "a deadline"),
    # the installer's caps (worker.limits, worker.allowedTolerationKeys, worker.allowedNodeSelectorKeys)
    "a container without limits": ("backup", lambda j: _c(j)["resources"].pop("limits"), CAPPED_RESOURCES),
    "a limit left out": ("backup", lambda j: _c(j)["resources"]["limits"].pop("cpu"), CAPPED_RESOURCES),
    "a limit over the cap": (
        "backup",
        lambda j: _c(j)["resources"]["limits"].update(memory="9Gi"),
        CAPPED_RESOURCES,
    ),
    "a GPU": ("backup", lambda j: _c(j)["resources"]["limits"].update({"nvidia.com/gpu": "1"}), CAPPED_RESOURCES),
    "pod-level resources": (
        "backup",
        lambda j: _pod(j).update(resources={"limits": {"cpu": "4", "memory": "8Gi"}}),
        CAPPED_RESOURCES,
    ),
    "a 100000Gi emptyDir": ("backup", lambda j: _tmp(j).update(sizeLimit="100000Gi"), "a sizeLimit of at most"),
    "an emptyDir without a sizeLimit": ("erasure", lambda j: _tmp(j).pop("sizeLimit"), "a sizeLimit of at most"),
    "a second emptyDir without a sizeLimit": (
        "export",
        lambda j: _pod(j)["volumes"].append({"name": "more", "emptyDir": {}}),
        "a sizeLimit of at most",
    ),
    "a toleration of the control plane": (
        "backup",
        lambda j: _pod(j).update(
            tolerations=[{"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]
        ),
        "tolerations only of the taint keys",
    ),
    "a toleration without a key (every taint)": (
        "backup",
        lambda j: _pod(j).update(tolerations=[{"operator": "Exists"}]),
        "tolerations only of the taint keys",
    ),
    "a node chosen by its host name": (
        "backup",
        lambda j: _pod(j).update(nodeSelector={"kubernetes.io/hostname": "control-plane"}),
        "node selectors only on the label",
    ),
    "a node chosen by affinity": (
        "backup",
        lambda j: _pod(j).update(
            affinity={
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [{"matchExpressions": [HOSTNAME_IN_CP]}]
                    }
                }
            }
        ),
        "node selectors only on the label",
    ),
    # the installer's vendor hosts, which the worker checks every vendor endpoint against again
    "the vendor hosts dropped from a backup pod": ("backup", _drop_vendor_hosts, VENDOR_HOSTS_RULE),
    "the vendor hosts dropped from an export pod": ("export", _drop_vendor_hosts, VENDOR_HOSTS_RULE),
    "the vendor hosts dropped from an erasure pod": ("erasure", _drop_vendor_hosts, VENDOR_HOSTS_RULE),
    "the vendor hosts widened by a host": (
        "backup",
        lambda j: _set_vendor_hosts(j, ",".join((*VENDOR_HOSTS, "evil.example.net"))),
        VENDOR_HOSTS_RULE,
    ),
    "the vendor hosts widened to a parent domain": (
        "export",
        lambda j: _set_vendor_hosts(j, "*.example.com"),
        VENDOR_HOSTS_RULE,
    ),
    "the vendor hosts emptied": ("backup", lambda j: _set_vendor_hosts(j, ""), VENDOR_HOSTS_RULE),
    "a second, wider definition after the real one (the last one wins)": (
        "backup",
        lambda j: _c(j)["env"].append({"name": VENDOR_HOSTS_VAR, "value": "*.example.com"}),
        VENDOR_HOSTS_RULE,
    ),
    "a second definition of the same value": (
        "erasure",
        lambda j: _c(j)["env"].append({"name": VENDOR_HOSTS_VAR, "value": ",".join(VENDOR_HOSTS)}),
        VENDOR_HOSTS_RULE,
    ),
    "without cxbackup's labels": (
        "backup",
        lambda j: j["metadata"].update(labels={"app.kubernetes.io/name": "cxbackup"}),
        "only its own Jobs",
    ),
}


def test_the_operator_creates_only_jobs_of_the_shape_it_builds(chart: Chart) -> None:
    built = real_jobs(chart)
    bases = {
        "backup": built["backup run, PVC target, 64 shards"],
        "export": built["subject access of a PVC backup"],
        "erasure": built["erasure, PVC target"],
    }
    failed: dict[str, str] = {}
    for what, (base, change, message) in JOB_ATTACKS.items():
        job = copy.deepcopy(bases[base])
        change(job)
        proc = as_operator(chart, job)
        if not refused(proc, message):
            failed[what] = proc.stderr or "admitted"
    assert failed == {}


def test_the_operator_changes_only_its_annotations_and_deletes_only_its_jobs(chart: Chart) -> None:
    job = real_jobs(chart)["contact history export"]
    job["metadata"].pop("ownerReferences")  # the owner does not exist here; the garbage collector would delete it
    foreign = copy.deepcopy(job)
    foreign["metadata"] = {"name": "nightly-report", "namespace": chart.tenant, "labels": {"app": "reports"}}
    _admin_apply(chart, job, foreign)
    name = job["metadata"]["name"]
    accounted = patch_as_operator(chart, "job", name, {"metadata": {"annotations": {"cxbackup.io/accounted": "true"}}})
    assert accounted.returncode == 0, accounted.stderr
    delete = delete_as_operator(chart, "job", name)
    assert delete.returncode == 0, delete.stderr
    changes: dict[str, tuple[str, Doc, str]] = {
        "resume a suspended Job or change its pods": (name, {"spec": {"parallelism": 5}}, "never its spec"),
        "change its labels": (name, {"metadata": {"labels": {"role": "database-admin"}}}, "never its spec"),
        "annotate it for someone else": (name, {"metadata": {"annotations": {"example.com/x": "1"}}}, "never its spec"),
        "annotate a foreign Job": (
            "nightly-report",
            {"metadata": {"annotations": {"cxbackup.io/accounted": "true"}}},
            "only its own Jobs",
        ),
    }
    failed = {
        what: proc.stderr
        for what, (target, patch, message) in changes.items()
        if not refused(proc := patch_as_operator(chart, "job", target, patch), message)
    }
    gone = delete_as_operator(chart, "job", "nightly-report")
    if not refused(gone, "only its own Jobs"):
        failed["delete a foreign Job"] = gone.stderr
    assert failed == {}


# ---- worker pods ---------------------------------------------------------------------------------------------
def pod_name(job: str, index: int | None = None) -> str:
    """The name Kubernetes gives a Job's pod: `<job>-<index>-` (Indexed, the Job's name cut so the index stays)
    or `<job>-`, at most 58 characters, and 5 random ones."""
    if index is None:
        return f"{job}-"[:58] + RANDOM_SUFFIX
    suffix = f"-{index}-"
    return (f"{job}{suffix}" if len(job) + len(suffix) <= 58 else job[: 58 - len(suffix)] + suffix) + RANDOM_SUFFIX


def patch_status_as_worker(
    chart: Chart,
    plural: str,
    name: str,
    pod: str | None,
    *,
    namespace: str | None = None,
    status: bool = True,
    body: Doc | None = None,
) -> Answer:
    """What a worker pod sends (cxbackup.worker.status): a merge patch of a resource's status, as the worker
    account of the tenant namespace, from the pod `pod` (None: a token bound to no pod); by default a shard's
    entry. `status=False` patches the resource itself."""
    custom = client.CustomObjectsApi(_client(chart, chart.worker(), pod))
    call = custom.patch_namespaced_custom_object_status if status else custom.patch_namespaced_custom_object
    if body is None:
        body = {"status": {"shards": {"0": {"runId": "forged", "phase": "Succeeded"}}}} if status else {}
    if not status:
        body = {"spec": {"replicas": 2}}
    return _answer(
        lambda: call("cxbackup.io", "v1alpha1", namespace or chart.tenant, plural, name, body, dry_run="All")
    )


LONGEST = "b" * 30 + "-long"  # 35 characters


@pytest.fixture(scope="module")
def backups(chart: Chart) -> Chart:
    for ns in (chart.tenant, chart.other):
        _admin_apply(chart, *(_backup_body(n, ns) for n in ("prod", "prod-eu", "eu.prod", LONGEST)))
    export = resources.export_job(VENDOR, "prod")
    export["metadata"]["namespace"] = chart.tenant
    _admin_apply(chart, export)
    return chart


@dataclass(frozen=True)
class WorkerPod:
    """A pod of a backup's run or audit Job as the real builder makes it."""

    name: str
    env: dict[str, str]
    """The plain variables of its container (the Job's, as the pod sees them)."""
    shard: int | None
    """Its JOB_COMPLETION_INDEX; None for the audit pod."""


def worker_pods(chart: Chart, name: str) -> list[WorkerPod]:
    """The pods of a run (first and last of 64 shards) and of an audit of the backup `name`."""
    backup = RecordingBackup.model_validate(_model(_backup_body(name, replicas=64), chart.tenant))
    run = build_backup_job(backup, RUN_ID, WINDOW, chart.settings(), run_start=NOW)
    audit = build_audit_job(backup, RUN_ID, WINDOW, chart.settings(), run_start=NOW)

    def env(job: Doc) -> dict[str, str]:
        return {e["name"]: e.get("value", "") for e in _c(job)["env"] if "valueFrom" not in e}

    run_name, audit_name = run["metadata"]["name"], audit["metadata"]["name"]
    return [
        WorkerPod(pod_name(run_name, 0), env(run), 0),
        WorkerPod(pod_name(run_name, 63), env(run), 63),
        WorkerPod(pod_name(audit_name), env(audit), None),
    ]


def _worker_pods(chart: Chart, name: str) -> list[str]:
    """The names of the pods of a run (first and last shard) and of an audit of the backup `name`."""
    return [pod.name for pod in worker_pods(chart, name)]


def send_real_reports(chart: Chart, pod: WorkerPod, monkeypatch: pytest.MonkeyPatch) -> list[Answer]:
    """Every status patch the real worker code sends from `pod`, sent as that pod (server-side dry run): a run
    pod's ShardStatusReporter (made by reporter_from_env from its Job's environment, each write sent) over a run
    with a downloaded, a skipped and a failed recording, a retention sweep and an index; an audit pod's findings
    (cxbackup audit's report to the operator). Returns the API server's answer to each."""
    answers: list[Answer] = []

    def kube_patcher(resource: StatusResource) -> Callable[[Doc], None]:
        custom = client.CustomObjectsApi(_client(chart, chart.worker(), pod.name))

        def patch(body: Doc) -> None:
            answer = _answer(
                lambda: custom.patch_namespaced_custom_object_status(
                    GROUP, VERSION, resource.namespace, resource.plural, resource.name, body, dry_run="All"
                )
            )
            answers.append(answer)
            if answer.returncode != 0:
                raise RuntimeError(answer.stderr)  # as the real patcher's ApiException: counted, logged

        return patch

    monkeypatch.setattr(worker_status, "_kube_patcher", kube_patcher)
    if pod.shard is None:  # cxbackup audit reads the resource to report to from its environment
        monkeypatch.setenv(workerenv.STATUS_RESOURCE, pod.env[workerenv.STATUS_RESOURCE])
        report = AuditReport(WINDOW, checked=40, oldest_missing_start=WINDOW.start_ms)
        report.counts |= {"ok": 36, "missing": 2, "metadata_missing": 1, "size_mismatch": 1}
        report_to_operator(report)
        return answers
    reporter = worker_status.reporter_from_env({**pod.env, workerenv.STATUS_INTERVAL: "0"}, pod.shard)
    assert reporter is not None, pod.env
    reporter.on_start(3)
    for status in RecordingStatus:
        reporter.on_recording(RecordingResult(f"call-{status}", status, files=2, bytes=1024))
    sweep = SweepSummary("P7Y", WINDOW.start_ms, dry_run=False, expired=2, held=1, deleted=2, deleted_bytes=4096)
    summary = RunSummary(
        ShardAssignment(pod.shard, 64), WINDOW, NOW, downloaded=1, skipped=1, failed=1, files=2, bytes=1024,
        retention=sweep, index_recordings=120, index_bytes=8192,
    )  # fmt: skip
    reporter.on_finish(summary)
    assert reporter.write_failures == sum(a.returncode != 0 for a in answers)
    return answers


def test_a_worker_pod_reports_to_the_backup_its_job_runs_for(backups: Chart, monkeypatch: pytest.MonkeyPatch) -> None:
    """The real reports of a run's first and last shard and of the audit, for names that differ by a suffix, a
    dot, and the longest name allowed."""
    chart = backups
    refusals: dict[str, list[str]] = {}
    for name in ("prod", "prod-eu", "eu.prod", LONGEST):
        for pod in worker_pods(chart, name):
            answers = send_real_reports(chart, pod, monkeypatch)
            assert answers, pod.name  # the reporter wrote
            if any(a.returncode != 0 for a in answers):
                refusals[pod.name] = [a.stderr for a in answers]
    assert refusals == {}


# ---- which status fields a worker pod may change -------------------------------------------------------------
def _when(days: float) -> str:
    return iso(NOW + dt.timedelta(days=days))


def _shard_entry(shard_phase: str = "Running", downloaded: int = 10) -> Doc:
    return {"runId": RUN_ID, "phase": shard_phase, "total": 40, "downloaded": downloaded, "skipped": 0, "failed": 0,
            "bytes": 1 << 20, "updatedAt": _when(0)}  # fmt: skip


WINDOW_START, WINDOW_END = iso(dt.datetime.fromtimestamp(WINDOW.start_ms / 1000, dt.UTC)), _when(-1)
STORED_STATUS: Doc = {
    # what the operator wrote while a run of 64 shards is under way, after a failed run: three shards reported
    "phase": "Running",
    "observedGeneration": 1,
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "RunStarted",
            "message": "references resolved",
            "lastTransitionTime": _when(-2),
            "observedGeneration": 1,
        },
        {
            "type": "Degraded",
            "status": "True",
            "reason": "RunFailed",
            "message": "3 recordings failed",
            "lastTransitionTime": _when(-1),
            "observedGeneration": 1,
        },
    ],
    "currentRun": {
        "jobName": f"reported-{RUN_ID}",
        "windowStart": WINDOW_START,
        "windowEnd": WINDOW_END,
        "startTime": _when(0),
        "replicas": 64,
    },
    "shards": {"0": _shard_entry(), "1": _shard_entry(), "63": _shard_entry("Succeeded", 40)},
    "progress": "40%",
    "counts": {"downloaded": 60, "skipped": 0, "failed": 0, "bytes": 3 << 20},
    "lastRecordingEndTime": _when(-3),
    "lastSuccessfulTime": _when(-3),
    "nextScheduleTime": _when(1),
    "history": [
        {
            "jobName": "reported-20261128-101010",
            "windowStart": _when(-3),
            "windowEnd": WINDOW_START,
            "startTime": _when(-1),
            "completionTime": _when(-1),
            "result": "Failed",
            "counts": {"downloaded": 7, "skipped": 0, "failed": 3, "bytes": 1024},
            "message": "3 recordings failed",
        },
    ],
    "audit": {"lastTime": _when(-1), "checked": 40, "missing": 2, "mismatched": 0, "oldestMissingStart": _when(-5)},
    "lastRunGeneration": 1,
    # retention, index and lastTrigger are absent: a worker may not add them either
}

FORGED: dict[str, object] = {
    # a status field only the operator writes -> what a taken-over worker would put there
    "phase": "Succeeded",
    "observedGeneration": 2,
    "conditions": [
        {
            "type": "Ready",
            "status": "True",
            "reason": "RunSucceeded",
            "message": "all good",
            "lastTransitionTime": _when(0),
        }
    ],
    "currentRun": None,
    "progress": "100%",
    "counts": {"failed": 0, "downloaded": 1000},
    "lastRecordingEndTime": _when(30),  # the checkpoint past recordings not yet backed up: later runs skip them
    "lastSuccessfulTime": _when(0),
    "nextScheduleTime": _when(3650),  # no run for ten years
    "history": [],
    "retention": {"deleted": 0, "failed": 0, "lastTime": _when(0)},
    "index": {"recordings": 0, "bytes": 0},
    "lastRunGeneration": 2,
    "lastTrigger": "forged",
}
"""Every field of RecordingBackupStatus but the two workers write (shards, audit), forged."""

REPORTED = "reported"
"""The RecordingBackup whose stored status is STORED_STATUS."""


@pytest.fixture(scope="module")
def reported(backups: Chart) -> Chart:
    chart = backups
    RecordingBackupStatus.model_validate(STORED_STATUS)  # what the operator could have written
    _admin_apply(chart, _backup_body(REPORTED, chart.tenant, replicas=64))
    admin = client.CustomObjectsApi(config.new_client_from_config(config_file=str(chart.cp.kubeconfig)))
    admin.patch_namespaced_custom_object_status(
        GROUP, VERSION, chart.tenant, "recordingbackups", REPORTED, {"status": STORED_STATUS}
    )
    stored = admin.get_namespaced_custom_object(GROUP, VERSION, chart.tenant, "recordingbackups", REPORTED)
    assert stored["status"]["lastRecordingEndTime"] == STORED_STATUS["lastRecordingEndTime"], stored["status"]
    assert stored["status"]["shards"].keys() == {"0", "1", "63"}, stored["status"]
    return chart


def test_the_real_reports_of_every_worker_pod_are_admitted_over_a_full_status(
    reported: Chart, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over the status the operator keeps (every field set, other shards reported), each write the real worker code
    sends is admitted: shard 0's and shard 63's (which replaces its finished entry), and the audit's."""
    chart = reported
    run_0, run_63, audit = worker_pods(chart, REPORTED)
    assert (run_0.shard, run_63.shard, audit.shard) == (0, 63, None)
    sent = {pod.name: send_real_reports(chart, pod, monkeypatch) for pod in (run_0, run_63, audit)}
    assert [len(answers) for answers in sent.values()] == [5, 5, 1]  # start, 3 recordings, end; the audit once
    refusals = {name: [a.stderr for a in answers if a.returncode] for name, answers in sent.items()}
    assert {name: stderr for name, stderr in refusals.items() if stderr} == {}


SHARD_RULE = "may change only its own shard's entry of status.shards"
RUN_ID_RULE = "only under the run id of its own pod's name"
AUDIT_RULE = "status.audit only from the backup's audit pod"


def test_a_worker_pod_cannot_forge_the_status_fields_the_operator_writes(reported: Chart) -> None:
    """As a run pod (shard 0) and as the audit pod of the very backup, direct PATCHes of status: every field
    the operator owns, changed, added or removed, is refused naming it; so is another shard's entry, an entry
    under another run id, and the audit from a run pod or the shards from the audit pod."""
    chart = reported
    assert FORGED.keys() == {f.alias for f in RecordingBackupStatus.model_fields.values()} - {"shards", "audit"}
    run_0, _, audit = (pod.name for pod in worker_pods(chart, REPORTED))
    attacks: dict[str, tuple[str, Doc, str]] = {}
    for field, value in FORGED.items():
        for who, pod in (("shard 0", run_0), ("the audit", audit)):
            attacks[f"{who} forges {field}"] = (pod, {field: value}, f"may not change status.{field} ")
    entry = _shard_entry("Succeeded", 40)
    attacks |= {
        "the checkpoint removed": (run_0, {"lastRecordingEndTime": None}, "status.lastRecordingEndTime "),
        "the failed run rewritten as succeeded": (
            run_0,
            {"history": [STORED_STATUS["history"][0] | {"result": "Succeeded", "message": ""}]},
            "status.history ",
        ),
        "the failure hidden": (audit, {"conditions": STORED_STATUS["conditions"][:1]}, "status.conditions "),
        "shard 0 reports shard 1 finished": (run_0, {"shards": {"1": entry}}, SHARD_RULE),
        "shard 0 reports itself and shard 1": (run_0, {"shards": {"0": entry, "1": entry}}, SHARD_RULE),
        "shard 0 removes shard 63's entry": (run_0, {"shards": {"63": None}}, SHARD_RULE),
        "shard 0 adds a shard that did not report": (run_0, {"shards": {"5": entry}}, SHARD_RULE),
        "shard 0 removes every shard's entry": (run_0, {"shards": None}, SHARD_RULE),
        "the audit reports a shard": (audit, {"shards": {"0": entry}}, SHARD_RULE),
        "the audit adds an entry under an empty key": (audit, {"shards": {"": entry}}, SHARD_RULE),
        "shard 0's entry under another run": (
            run_0,
            {"shards": {"0": entry | {"runId": "20261128-101010"}}},
            RUN_ID_RULE,
        ),
        "shard 0's entry without its run": (run_0, {"shards": {"0": {"runId": None}}}, RUN_ID_RULE),
        "shard 0 writes the audit's findings": (run_0, {"audit": {"missing": 0, "checked": 40}}, AUDIT_RULE),
        "shard 0 removes the audit's findings": (run_0, {"audit": None}, AUDIT_RULE),
    }
    failed = {
        what: answer.stderr or "admitted"
        for what, (pod, status, message) in attacks.items()
        if not refused(
            answer := patch_status_as_worker(chart, "recordingbackups", REPORTED, pod, body={"status": status}),
            message,
        )
    }
    assert failed == {}
    # the same requests without the forgery are admitted: each refusal above is the forged field's
    own = patch_status_as_worker(chart, "recordingbackups", REPORTED, run_0, body={"status": {"shards": {"0": entry}}})
    findings = patch_status_as_worker(chart, "recordingbackups", REPORTED, audit, body={"status": {"audit": {}}})
    assert (own.stderr, findings.stderr) == ("", "")


def test_a_worker_pod_cannot_write_another_resources_status(backups: Chart) -> None:
    chart = backups
    message = "only the status of the RecordingBackup whose Job it runs in"
    prod_eu, prod, dotted = _worker_pods(chart, "prod-eu"), _worker_pods(chart, "prod"), _worker_pods(chart, "eu.prod")
    attacks = (
        {f"{pod} (prod-eu's) writes prod": ("prod", pod) for pod in prod_eu}
        | {f"{pod} (prod's) writes prod-eu": ("prod-eu", pod) for pod in prod}
        | {
            "a pod of eu.prod writes eu-prod's namesake": ("prod-eu", dotted[0]),
            "a dot in a name is not any character": ("eu.prod", "euxprod-" + prod[0].removeprefix("prod-")),
            "a pod name with more after it": ("prod", prod[0] + "-x"),
            "a pod name cut short": ("prod", prod[0][:-1]),
            "a run id that is not one": ("prod", f"prod-eu-0-{RANDOM_SUFFIX}"),
            "the longest name's pod cut one short": (LONGEST, pod_name(f"{LONGEST[:-1]}-{RUN_ID}", 0)),
        }
    )
    failed = {
        what: proc.stderr
        for what, (name, pod) in attacks.items()
        if not refused(proc := patch_status_as_worker(chart, "recordingbackups", name, pod), message)
    }
    no_pod = patch_status_as_worker(chart, "recordingbackups", "prod", None)  # a token not bound to a pod
    if not refused(no_pod, message):
        failed["a token without a pod"] = no_pod.stderr
    assert failed == {}


def test_a_worker_has_no_grant_beyond_its_backups_status_and_the_policy_holds_without_rbac(backups: Chart) -> None:
    """RBAC: a worker may only patch recordingbackups/status (export and erasure pods have no token). Even when
    someone grants it more, the policy refuses another kind, another namespace and the resource itself."""
    chart = backups
    own_pod = _worker_pods(chart, "prod")[0]
    for verb, resource, sub in (
        ("get", "recordingbackups.cxbackup.io", "status"),
        ("patch", "exportjobs.cxbackup.io", "status"),
        ("get", "secrets", ""),
        ("patch", "recordingbackups.cxbackup.io", ""),
    ):
        args = ["auth", "can-i", verb, resource, f"--as={chart.worker()}", "-n", chart.tenant]
        assert _kubectl(chart, *args, *([f"--subresource={sub}"] if sub else [])).stdout.strip() == "no", (
            verb,
            resource,
        )
    other_kind = patch_status_as_worker(chart, "exportjobs", "prod", own_pod)
    other_ns = patch_status_as_worker(chart, "recordingbackups", "prod", own_pod, namespace=chart.other)
    assert other_kind.returncode != 0 and "forbidden" in other_kind.stderr.lower(), other_kind.stderr
    assert other_ns.returncode != 0 and "forbidden" in other_ns.stderr.lower(), other_ns.stderr

    # a cluster admin's mistake: the tenant namespace's worker account may write anything of cxbackup's anywhere
    grant = f"too-much-{uuid.uuid4().hex[:6]}"
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": {"name": grant},
        "rules": [{"apiGroups": ["cxbackup.io"], "resources": ["*"], "verbs": ["*"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": {"name": grant},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": grant},
        "subjects": [{"kind": "ServiceAccount", "name": chart.worker_account, "namespace": chart.tenant}],
    }
    _admin_apply(chart, role, binding)
    try:
        deadline = time.monotonic() + 30
        while (
            time.monotonic() < deadline
            and "forbidden" in patch_status_as_worker(chart, "exportjobs", "prod", own_pod).stderr.lower()
        ):
            time.sleep(0.5)  # until RBAC sees the grant
        spec = patch_status_as_worker(chart, "recordingbackups", "prod", own_pod, status=False)
        attacks = {
            "another kind (ExportJob) of the same name": (
                patch_status_as_worker(chart, "exportjobs", "prod", own_pod),
                "only the status of a RecordingBackup",
            ),
            "the same name in another namespace": (
                patch_status_as_worker(chart, "recordingbackups", "prod", own_pod, namespace=chart.other),
                "of its own namespace",
            ),
            "the resource instead of its status": (spec, "only the status of a RecordingBackup"),
        }
        assert {what: proc.stderr for what, (proc, message) in attacks.items() if not refused(proc, message)} == {}
    finally:
        chart.cp.kubectl("delete", "clusterrolebinding,clusterrole", grant, check=False)


def test_recordingbackup_names_fit_in_their_worker_pods_names(backups: Chart) -> None:
    chart = backups
    assert len(LONGEST) == 35
    proc = _kubectl(
        chart, "create", "--dry-run=server", "-f", "-", input_text=json.dumps(_backup_body("c" * 36, chart.tenant))
    )
    assert refused(proc, "at most 35 characters"), proc.stderr
    for pod in _worker_pods(chart, LONGEST):
        assert LONGEST in pod and len(pod) <= 63, pod
