"""Attacks by a namespace tenant (who may create cxbackup resources, but not read other Secrets) and by a
taken-over operator or worker, against the operator installed by its chart on a real node (RBAC and the
admission policies as a user installs them). Each attack is one row of the reliability table: it must be
refused with a condition naming the field, create no Job, change no Secret, and an attacker's HTTP server
on loopback must receive nothing."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from cxbackup_dev.emulator import Emulator
from cxbackup_dev.localcluster.stack import LocalStack
from tests.reliability.operator_helpers import backup_body, kube_json, new_namespace
from tests.reliability.table import Row
from tests.resources import apply, export_job, recording_certificate

pytestmark = pytest.mark.e2e


class _Attacker(http.server.BaseHTTPRequestHandler):
    received: list[str] = []

    def do_GET(self) -> None:
        _Attacker.received.append(f"{self.path} {self.headers.get('Authorization', '')}")
        self.send_response(401)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *_: Any) -> None:
        pass


@pytest.fixture(scope="module")
def attacker() -> Iterator[str]:
    """An HTTP server on loopback that records every request (it must receive none)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Attacker)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v2"
    finally:
        server.shutdown()
        server.server_close()


def _secret(
    name: str, data: dict[str, bytes], *, labels: dict[str, str] | None = None, kind: str = "Opaque"
) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": kind,
        "metadata": {"name": name, "labels": labels or {}},
        "data": {k: base64.b64encode(v).decode() for k, v in data.items()},
    }


def _certificate(name: str, **spec: Any) -> dict[str, Any]:
    return recording_certificate(name, spec or None)


def _stealing(emu: Emulator, name: str, secret: str, url: str) -> dict[str, Any]:
    """A backup that would send Secret `secret` as the vendor credentials to `url`."""
    source = backup_body(emu)["spec"]["source"] | {"gwsUriPrefix": url, "gwsCredentials": {"name": secret}}
    return backup_body(emu, name, source=source)


def _ready(reason: str) -> Callable[[dict[str, Any]], bool]:
    def check(body: dict[str, Any]) -> bool:
        return any(
            c["type"] == "Ready" and c["reason"] == reason for c in body.get("status", {}).get("conditions") or []
        )

    return check


def _message(body: dict[str, Any]) -> str:
    return next(c["message"] for c in body["status"]["conditions"] if c["type"] == "Ready")


def _jobs(stack: LocalStack, ns: str) -> int:
    return len(kube_json(stack, "jobs", "-n", ns)["items"])


def _data(stack: LocalStack, ns: str, name: str) -> dict[str, str]:
    found: dict[str, str] = kube_json(stack, "secret", name, "-n", ns).get("data") or {}
    return found


def _refused(stack: LocalStack, kind: str, ns: str, name: str, reason: str, field: str) -> tuple[bool, str]:
    body = stack.wait_for(kind, ns, name, _ready(reason), timeout=60)
    message = _message(body)
    return field in message, f"{reason}: {message[:110]}"


def test_a_tenant_cannot_turn_the_operator_against_keys_and_secrets(
    stack: LocalStack, emu: Emulator, attacker: str, row: Callable[[Row], Row]
) -> None:
    ns = new_namespace(stack, emu, prefix="attack")
    apply(stack, ns, _certificate("rc"))
    stack.wait_for("rcert", ns, "rc", _ready("CertificateValid"), timeout=60)
    ring_before = _data(stack, ns, "rc-keyring")
    results: list[tuple[str, bool, str]] = []

    def attack(scenario: str, refused: tuple[bool, str], check: bool = True) -> None:
        results.append((scenario, refused[0] and check, refused[1]))

    # 1. the certificate's keyring as the vendor password, sent to the attacker's URL
    apply(stack, ns, _stealing(emu, "steal-keyring", "rc-keyring", attacker))
    attack(
        "a backup names the certificate keyring as its vendor credentials",
        _refused(stack, "rb", ns, "steal-keyring", "SecretNotAllowed", "spec.source.gwsCredentials"),
    )
    # 2. a TLS Secret someone labelled as credentials
    apply(
        stack,
        ns,
        _secret(
            "tls-creds",
            {"GWS_USERNAME": b"u", "GWS_PASSWORD": b"p", "tls.crt": b"c", "tls.key": b"k"},
            labels={"cxbackup.io/credentials": "true"},
            kind="kubernetes.io/tls",
        ),
    )
    apply(stack, ns, _stealing(emu, "steal-tls", "tls-creds", attacker))
    attack(
        "a backup names a TLS Secret (labelled as credentials) as its vendor credentials",
        _refused(stack, "rb", ns, "steal-tls", "SecretNotAllowed", "type kubernetes.io/tls"),
    )
    # 3. another team's Secret that was never opted in
    apply(stack, ns, _secret("other-team", {"GWS_USERNAME": b"their-user", "GWS_PASSWORD": b"their-password"}))
    apply(stack, ns, _stealing(emu, "steal-other", "other-team", attacker))
    attack(
        "a backup names a Secret not opted in for cxbackup",
        _refused(stack, "rb", ns, "steal-other", "SecretNotLabelled", "cxbackup.io/credentials=true"),
    )
    # 4. the operator asked to write a certificate's keys into someone else's Secret
    apply(stack, ns, _secret("victim", {"config": b"theirs"}))
    apply(
        stack,
        ns,
        _certificate(
            "hijack",
            generate={"commonName": "Rec", "country": "US", "state": "California", "organization": "Org"},
            keyringSecret="victim",
        ),
    )
    refused = _refused(stack, "rcert", ns, "hijack", "SecretNotManaged", "spec.keyringSecret")
    attack(
        "a certificate names someone else's Secret as its keyring",
        refused,
        _data(stack, ns, "victim") == {"config": base64.b64encode(b"theirs").decode()},
    )
    # 5. an upload pointing at another certificate's pair, and an export encrypting to it
    apply(stack, ns, _certificate("borrowed", secretRef={"name": "rc-tls"}))
    refused = _refused(stack, "rcert", ns, "borrowed", "SecretNotManaged", "spec.secretRef.name")
    attack("an uploaded certificate names another certificate's key pair", refused)
    source = {"apiUriPrefix": attacker, "credentialsSecret": "gws-credentials"}
    export = export_job(
        emu, "exfiltrate", source=source, range={"last": "PT1H"}, certificate={"recordingCertificate": "borrowed"}
    )
    apply(stack, ns, export)
    attack(
        "an export encrypts to a certificate that is not Ready",
        _refused(stack, "ej", ns, "exfiltrate", "CertificateNotReady", "spec.certificate.recordingCertificate"),
    )
    # 6. worker pods under an account of the author's choosing: the field does not exist
    body = backup_body(emu, "own-account")
    body["spec"]["pod"] = {"serviceAccountName": "default"}
    proc = stack.cp.kubectl("apply", "-n", ns, "-f", "-", input_text=json.dumps(body), check=False)
    attack(
        "a backup asks for its worker pods to run under another ServiceAccount",
        (proc.returncode != 0 and "serviceAccountName" in proc.stderr, f"API server: {proc.stderr.strip()[:110]}"),
    )
    # 7. a certificate made to rotate at every reconcile
    proc = stack.cp.kubectl(
        "apply",
        "-n",
        ns,
        "-f",
        "-",
        check=False,
        input_text=json.dumps(
            _certificate(
                "storm",
                generate={
                    "commonName": "Rec",
                    "country": "US",
                    "state": "California",
                    "organization": "Org",
                    "validityDays": 1,
                },
                rotation={"renewBefore": "PT23H59M"},
            )
        ),
    )
    attack(
        "a certificate made to rotate at every reconcile (1-day validity)",
        (proc.returncode != 0 and "validityDays" in proc.stderr, f"API server: {proc.stderr.strip()[:110]}"),
    )

    time.sleep(2)  # a run that would have started would have reached the attacker by now
    leaked = list(_Attacker.received)
    unchanged = _data(stack, ns, "rc-keyring") == ring_before
    no_jobs = _jobs(stack, ns) == 0
    for scenario, ok, notes in results:
        row(
            Row(
                scenario=f"attack: {scenario}",
                expected="refused",
                ok=ok and not leaked and no_jobs and unchanged,
                notes=notes,
                level="attack",
            )
        )
    assert leaked == [], "the attacker's server received requests"
    assert no_jobs and unchanged
    assert [(s, ok) for s, ok, _ in results if not ok] == [], results


def test_a_taken_over_operator_or_worker_is_held_by_the_admission_policies(
    stack: LocalStack, emu: Emulator, row: Callable[[Row], Row]
) -> None:
    ns = new_namespace(stack, emu, prefix="attack")
    operator = f"system:serviceaccount:{stack.operator_namespace}:{stack.release}"
    worker = f"system:serviceaccount:{ns}:cxbackup-worker"

    def as_user(user: str, doc: dict[str, Any], *extra: str) -> tuple[bool, str]:
        proc = stack.cp.kubectl(
            "create", "--dry-run=server", f"--as={user}", *extra, "-f", "-", input_text=json.dumps(doc), check=False
        )
        return proc.returncode != 0, proc.stderr.strip()[:120]

    pod = {
        "serviceAccountName": "cxbackup-worker",
        "restartPolicy": "Never",
        "containers": [{"name": "w", "image": stack.image}],
        "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
    }
    host_job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "x", "namespace": ns},
        "spec": {"template": {"spec": pod}},
    }
    secret = _secret("planted", {"k": b"v"}) | {"metadata": {"name": "planted", "namespace": "kube-system"}}
    checks = {
        "the operator's account creates a Job mounting the host's root": as_user(operator, host_job),
        "the operator's account writes a Secret into kube-system": as_user(operator, secret),
    }
    apply(stack, ns, backup_body(emu, "victim-rb", suspend=True))
    # As a worker pod sends it (cxbackup.worker.status): a merge patch of the status without a GET first (the
    # worker's RBAC grants only patch, so `kubectl patch`, which reads the object, would be refused by RBAC
    # before the admission policy saw it). Refused by the policy, naming its rule, proves the policy.
    api = config.new_client_from_config(config_file=str(stack.cp.kubeconfig))
    api.set_default_header("Impersonate-User", worker)
    api.set_default_header("Impersonate-Extra-authentication.kubernetes.io%2Fpod-name", "other-20261129-000000-0-abcde")
    shards = {"status": {"shards": {"0": {"runId": "forged", "phase": "Succeeded"}}}}
    try:
        client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
            "cxbackup.io", "v1alpha1", ns, "recordingbackups", "victim-rb", shards, dry_run="All"
        )
        refused, why = False, "admitted"
    except ApiException as exc:
        why = str(exc.body)
        refused = "only the status of the RecordingBackup whose Job it runs in" in why
    checks["a worker pod writes another resource's status"] = (refused, why.strip()[:120])
    for scenario, (refused, notes) in checks.items():
        row(Row(scenario=f"attack: {scenario}", expected="refused", ok=refused, notes=notes, level="attack"))
    assert all(refused for refused, _ in checks.values()), checks
