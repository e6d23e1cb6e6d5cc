"""The RecordingCertificate controller end to end on the test control plane, with the operator running:
uploads made with the vendor's openssl commands, generation, rotation that keeps every key (old
recordings still decrypt), deletion that keeps the keys, problems reported once, usages and references."""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from prometheus_client.utils import floatToGoString

from cxbackup.certs import cms
from cxbackup.certs.generate import generate_pair
from cxbackup.certs.keyring import Keyring
from cxbackup_dev.localcluster.controlplane import REPO_ROOT
from cxbackup_dev.localcluster.stack import LocalStack
from tests.resources import apply, recording_certificate

pytestmark = pytest.mark.e2e

SUBJECT = "/CN=Genesys Recording/C=US/ST=California/O=Genesys"
SUBJECT_DN = "CN=Genesys Recording,C=US,ST=California,O=Genesys"


def _ns(stack: LocalStack) -> str:
    return stack.new_namespace("e2e-cert")


def _patch(stack: LocalStack, ns: str, name: str, patch: dict[str, Any]) -> None:
    stack.cp.kubectl("patch", "rcert", name, "-n", ns, "--type", "merge", "-p", json.dumps(patch))


def _secret(stack: LocalStack, ns: str, name: str) -> dict[str, Any]:
    secret = stack.get("secret", ns, name)
    secret["decoded"] = {k: base64.b64decode(v) for k, v in (secret.get("data") or {}).items()}
    return secret


def _cond(body: dict[str, Any], ctype: str) -> dict[str, Any]:
    for cond in body.get("status", {}).get("conditions") or []:
        if cond["type"] == ctype:
            return dict(cond)
    return {}


def _ready(status: str, reason: str | None = None) -> Callable[[dict[str, Any]], bool]:
    def check(body: dict[str, Any]) -> bool:
        cond = _cond(body, "Ready")
        return cond.get("status") == status and (reason is None or cond.get("reason") == reason)

    return check


def _metrics(stack: LocalStack) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.metrics_port}/metrics", timeout=10) as response:
        text: str = response.read().decode()
    return text


# docs/reference/recordingcertificate.md: save a keyring Secret as files for `cxbackup decrypt --keyring DIR`
SAVE_KEYRING = (
    '(umask 077 && mkdir -p "$DIR" && kubectl get secret "$SECRET" -n "$NS" '
    "-o go-template='{{range $k, $v := .data}}{{$k}} {{$v}}{{\"\\n\"}}{{end}}' "
    '| while read -r k v; do printf \'%s\' "$v" | base64 -d > "$DIR/$k"; done)'
)


def _save_keyring(stack: LocalStack, ns: str, secret: str, folder: Path) -> None:
    kubectl = Path(stack.cp.binary("kubectl"))
    env = {
        **os.environ,
        "PATH": f"{kubectl.parent}:{os.environ['PATH']}",
        "KUBECONFIG": str(stack.cp.kubeconfig),
        "NS": ns,
        "SECRET": secret,
        "DIR": str(folder),
    }
    subprocess.run(["bash", "-euo", "pipefail", "-c", SAVE_KEYRING], env=env, check=True, timeout=60)


def _go(value: float) -> str:
    """A sample value as the Prometheus exposition format writes it."""
    return str(floatToGoString(value))  # type: ignore[no-untyped-call]


def _openssl(*args: str, cwd: Path) -> str:
    return subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def test_uploaded_openssl_pair_usages_and_references(stack: LocalStack, tmp_path: Path) -> None:
    """(1) status from an openssl-made upload, printer columns; (7) deployedCount; (6) screen removed."""
    ns = _ns(stack)
    # the vendor's documented commands, verbatim apart from the file locations
    _openssl("genrsa", "-out", "tenant.key", "2048", cwd=tmp_path)
    _openssl("req", "-new", "-x509", "-key", "tenant.key", "-out", "tenant.pem", "-days", "3650", "-subj", SUBJECT,
             cwd=tmp_path)  # fmt: skip
    serial = str(int(_openssl("x509", "-in", "tenant.pem", "-noout", "-serial", cwd=tmp_path).split("=", 1)[1], 16))
    end = _openssl("x509", "-in", "tenant.pem", "-noout", "-enddate", cwd=tmp_path).split("=", 1)[1]
    not_after = dt.datetime.strptime(end, "%b %d %H:%M:%S %Y %Z").strftime("%Y-%m-%dT%H:%M:%SZ")
    files = [f"--from-file=tls.crt={tmp_path / 'tenant.pem'}", f"--from-file=tls.key={tmp_path / 'tenant.key'}"]
    stack.cp.kubectl("create", "secret", "generic", "tenant", "-n", ns, *files)
    apply(
        stack,
        ns,
        recording_certificate("recording-cert", {"secretRef": {"name": "tenant"}, "usages": ["voice", "screen"]}),
    )

    body = stack.wait_for("rcert", ns, "recording-cert", _ready("True"), timeout=60)
    status = body["status"]
    assert status["issuedTo"] == "Genesys Recording"
    assert status["issuedBy"] == "Genesys Recording"
    assert status["serialNumber"] == serial
    assert status["subjectDn"] == SUBJECT_DN
    assert status["issuerDn"] == SUBJECT_DN
    assert status["notAfter"] == not_after
    assert status["keySize"] == 2048
    assert status["usages"] == ["voice", "screen"]
    assert status["deployedCount"] == 0
    assert _cond(body, "Expiring")["status"] == "False"
    assert "nextRotationTime" not in status  # uploads are not rotated by the operator
    ring = _secret(stack, ns, "recording-cert-keyring")
    assert ring["decoded"][f"{serial}.key"] == (tmp_path / "tenant.key").read_bytes()
    assert ring["decoded"][f"{serial}.crt"] == (tmp_path / "tenant.pem").read_bytes()
    assert ring["metadata"]["labels"]["cxbackup.io/certificate"] == "recording-cert"
    assert ring["metadata"]["annotations"]["cxbackup.io/keyring"] == "true"
    assert "ownerReferences" not in ring["metadata"]

    scrape = _metrics(stack)
    labels = f'{{name="recording-cert",namespace="{ns}"}}'
    assert f"cxbackup_certificate_ready{labels} 1.0" in scrape
    expiry = dt.datetime.strptime(not_after, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()
    assert f"cxbackup_certificate_expiry_timestamp_seconds{labels} {_go(expiry)}" in scrape
    assert f"cxbackup_certificate_seconds_to_expiry{labels}" in scrape

    table = stack.cp.kubectl("get", "rcert", "-n", ns).stdout.splitlines()
    header = table[0]
    for column in ("ISSUED TO", "ISSUED BY", "EXPIRES", "DEPLOYED COUNT"):
        assert column in header, header
    assert "Genesys Recording" in table[1]

    # (7) an ExportJob naming the certificate counts as a deployment
    export = yaml.safe_load((REPO_ROOT / "examples" / "exportjob.yaml").read_text())
    assert export["spec"]["certificate"] == {"recordingCertificate": "recording-cert"}
    apply(stack, ns, export)
    stack.wait_for("rcert", ns, "recording-cert", lambda b: b["status"].get("deployedCount") == 1, timeout=30)
    row = stack.cp.kubectl("get", "rcert", "recording-cert", "-n", ns, "--no-headers").stdout.split()
    assert "1" in row

    # (6) removing screen from usages warns that screen recordings lose encryption
    _patch(stack, ns, "recording-cert", {"spec": {"usages": ["voice"]}})
    event = stack.wait_event(ns, "RecordingCertificate", "recording-cert", "ScreenEncryptionRemoved")
    assert event["type"] == "Warning"
    assert "screen recordings will no longer be encrypted" in event["message"]
    assert "without discussing this with your vendor" in event["message"]


def test_generate_rotate_keep_every_key_and_survive_deletion(stack: LocalStack, tmp_path: Path) -> None:
    """(2) generation, (3) rotation keeping both keys without looping, (4) deletion keeps the Secrets.

    Rotation needs a certificate close to its expiry, and the CRD and the operator refuse the short
    lifetimes and early renewals that would rotate at once. So the pair in use is one the operator
    generated 25 days ago for 30 days (restored into `gen-tls` with the operator's label, as after a
    backup restore): with renewBefore P10D it is due now. Rotation starts disabled so the old
    certificate can be used first; the renewed certificate is due only 20 days later.
    """
    # (2) generation, in a namespace of its own
    fresh_ns = _ns(stack)
    subject = {"commonName": "Genesys Recording", "country": "US", "state": "California", "organization": "Genesys"}
    apply(stack, fresh_ns, recording_certificate("fresh", {"generate": subject}))
    fresh = stack.wait_for("rcert", fresh_ns, "fresh", _ready("True"), timeout=60)
    assert fresh["status"]["subjectDn"] == SUBJECT_DN
    stack.wait_event(fresh_ns, "RecordingCertificate", "fresh", "CertificateGenerated")
    fresh_tls = _secret(stack, fresh_ns, "fresh-tls")
    assert fresh_tls["type"] == "kubernetes.io/tls"
    assert fresh_tls["metadata"]["labels"] == {"cxbackup.io/certificate": "fresh"}
    assert "ownerReferences" not in fresh_tls["metadata"]

    # (3) a generated pair 25 days into its 30 days
    ns = _ns(stack)
    key_pem, cert_pem = generate_pair(
        "Genesys Recording", "US", "California", "Genesys", 30, now=dt.datetime.now(dt.UTC) - dt.timedelta(days=25)
    )
    restored = {
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": "gen-tls", "labels": {"cxbackup.io/certificate": "gen"}},
        "data": {"tls.crt": base64.b64encode(cert_pem).decode(), "tls.key": base64.b64encode(key_pem).decode()},
    }  # fmt: skip
    apply(stack, ns, restored)
    spec = {
        "generate": {"commonName": "Genesys Recording", "country": "US", "state": "California",
                     "organization": "Genesys", "validityDays": 30},
        "rotation": {"enabled": False, "renewBefore": "P10D"},
    }  # fmt: skip
    apply(stack, ns, recording_certificate("gen", spec))
    body = stack.wait_for("rcert", ns, "gen", _ready("True"), timeout=60)
    old_serial = body["status"]["serialNumber"]
    assert body["status"]["subjectDn"] == SUBJECT_DN

    tls = _secret(stack, ns, "gen-tls")
    old_cert, old_key = tls["decoded"]["tls.crt"], tls["decoded"]["tls.key"]
    assert old_cert == cert_pem
    assert str(x509.load_pem_x509_certificate(old_cert).serial_number) == old_serial
    ring = _secret(stack, ns, "gen-keyring")
    assert ring["decoded"] == {f"{old_serial}.crt": old_cert, f"{old_serial}.key": old_key}
    assert "ownerReferences" not in ring["metadata"]

    # a recording encrypted to the certificate in use before the rotation
    old_recording = cms.encrypt(b"recorded before rotation", x509.load_pem_x509_certificate(old_cert))

    _patch(stack, ns, "gen", {"spec": {"rotation": {"enabled": True}}})
    body = stack.wait_for("rcert", ns, "gen", lambda b: bool(b["status"].get("retired")), timeout=30)
    status = body["status"]
    new_serial = status["serialNumber"]
    assert new_serial != old_serial
    assert [r["serialNumber"] for r in status["retired"]] == [old_serial]
    assert _cond(body, "Ready")["status"] == "True"
    event = stack.wait_event(ns, "RecordingCertificate", "gen", "CertificateRotated")
    assert event["type"] == "Normal"
    assert old_serial in event["message"]
    assert new_serial in event["message"]

    tls = _secret(stack, ns, "gen-tls")
    new_cert = tls["decoded"]["tls.crt"]
    assert str(x509.load_pem_x509_certificate(new_cert).serial_number) == new_serial
    ring = _secret(stack, ns, "gen-keyring")["decoded"]
    assert ring[f"{old_serial}.key"] == old_key
    assert ring[f"{old_serial}.crt"] == old_cert
    assert ring[f"{new_serial}.key"] == tls["decoded"]["tls.key"]
    assert ring[f"{new_serial}.crt"] == new_cert
    new_recording = cms.encrypt(b"recorded after rotation", x509.load_pem_x509_certificate(new_cert))

    # the keyring Secret, saved to files with the README's command, reads both
    _save_keyring(stack, ns, "gen-keyring", tmp_path / "keyring")
    assert {p.name: p.read_bytes() for p in (tmp_path / "keyring").iterdir()} == ring
    keyring = Keyring.from_directory(tmp_path / "keyring")
    assert keyring.decrypt(old_recording) == b"recorded before rotation"
    assert keyring.decrypt(new_recording) == b"recorded after rotation"

    # no second rotation: the renewed certificate is not due for 20 days
    time.sleep(3)
    body = stack.get("rcert", ns, "gen")
    assert body["status"]["serialNumber"] == new_serial
    assert len(body["status"]["retired"]) == 1
    reasons = [e["reason"] for e in stack.events(ns, "RecordingCertificate", "gen")]
    assert reasons.count("CertificateRotated") == 1
    assert "CertificateReplaced" not in reasons
    keyrings = stack.cp.kubectl("get", "secret", "-n", ns, "-l", "cxbackup.io/keyring=true", "-o", "name").stdout
    assert keyrings.split() == ["secret/gen-keyring"]
    assert _secret(stack, ns, "gen-tls")["decoded"]["tls.crt"] == new_cert

    # (4) deleting the resource keeps its keys
    stack.cp.kubectl("delete", "rcert", "gen", "-n", ns, "--wait=true", "--timeout=90s")
    assert stack.cp.kubectl("get", "rcert", "gen", "-n", ns, check=False).returncode != 0
    assert _secret(stack, ns, "gen-keyring")["decoded"] == ring
    assert _secret(stack, ns, "gen-tls")["decoded"] == tls["decoded"]
    scrape = _metrics(stack)
    assert f'cxbackup_certificate_rotations_total{{name="gen",namespace="{ns}",result="succeeded"}} 1.0' in scrape
    assert f'cxbackup_certificate_ready{{name="gen",namespace="{ns}"}}' not in scrape  # forgotten: no stale series


def test_key_mismatch_and_missing_secret_are_reported_once(stack: LocalStack) -> None:
    """(5) a key that is not the certificate's, and a Secret that does not exist."""
    ns = _ns(stack)
    now = dt.datetime.now(dt.UTC)
    _, cert = generate_pair("Genesys Recording", "US", "California", "Genesys", 365, now=now)
    other_key, _ = generate_pair("Genesys Recording", "US", "California", "Genesys", 365, now=now)
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "mismatch"},
        "data": {"tls.crt": base64.b64encode(cert).decode(), "tls.key": base64.b64encode(other_key).decode()},
    }
    apply(stack, ns, secret)
    apply(stack, ns, recording_certificate("mismatch", {"secretRef": {"name": "mismatch"}}))
    apply(stack, ns, recording_certificate("missing", {"secretRef": {"name": "does-not-exist"}}))

    body = stack.wait_for("rcert", ns, "mismatch", _ready("False", "KeyMismatch"), timeout=60)
    assert _cond(body, "Invalid")["reason"] == "KeyMismatch"
    assert body["status"]["issuedTo"] == "Genesys Recording"  # the certificate is still shown
    event = stack.wait_event(ns, "RecordingCertificate", "mismatch", "KeyMismatch")
    assert event["type"] == "Warning"
    assert stack.cp.kubectl("get", "secret", "mismatch-keyring", "-n", ns, check=False).returncode != 0

    body = stack.wait_for("rcert", ns, "missing", _ready("False", "SecretNotFound"), timeout=30)
    assert "does-not-exist" in _cond(body, "Ready")["message"]
    event = stack.wait_event(ns, "RecordingCertificate", "missing", "SecretNotFound")
    assert event["type"] == "Warning"
    assert "does-not-exist" in event["message"]

    time.sleep(3)  # several reconcile ticks: still one Event each
    assert [e["reason"] for e in stack.events(ns, "RecordingCertificate", "missing")] == ["SecretNotFound"]
    assert [e["reason"] for e in stack.events(ns, "RecordingCertificate", "mismatch")] == ["KeyMismatch"]
