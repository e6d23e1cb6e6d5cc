"""The ExportJob controller end to end on a real node (the operator installed by its chart, export pods real
containers): contact-history and GDPR chat exports into a PVC, artifacts listed in status and decrypted with openssl,
the retention sweep deleting exactly the expired artifact, an empty export outside chat retention, and a
missing certificate reported once without a Job."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cxbackup.certs.generate import generate_pair
from cxbackup_dev.emulator import Emulator
from cxbackup_dev.localcluster.stack import LocalStack
from tests.resources import (
    apply,
    emulator_s3,
    export_job,
    generated_certificate,
    history,
    recording_backup,
    recording_certificate,
)

pytestmark = pytest.mark.e2e

PAST = "2020-01-01T00:00:00Z"


def _ns(stack: LocalStack, emu: Emulator) -> str:
    ns = stack.new_namespace("e2e-ej")
    stack.prepare_namespace(ns, emu.env())
    return ns


def _export(name: str, emu: Emulator, certificate: dict[str, str], **spec: Any) -> dict[str, Any]:
    return export_job(emu, name, **({"certificate": certificate, "retentionDays": 30} | spec))


def _ready_reason(body: dict[str, Any]) -> str | None:
    conditions = body.get("status", {}).get("conditions") or []
    ready = next((c for c in conditions if c.get("type") == "Ready"), None)
    return str(ready.get("reason")) if ready else None


def _finished(body: dict[str, Any]) -> bool:
    history = body.get("status", {}).get("history") or []
    return bool(history) and history[0]["state"] in ("Succeeded", "Failed")


def _jobs(stack: LocalStack, ns: str, name: str) -> list[dict[str, Any]]:
    out = stack.cp.kubectl("get", "jobs", "-n", ns, "-l", f"cxbackup.io/exportjob={name}", "-o", "json").stdout
    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def _cond(ctype: str, status: str, reason: str) -> Callable[[dict[str, Any]], bool]:
    def check(body: dict[str, Any]) -> bool:
        for cond in body.get("status", {}).get("conditions") or []:
            if cond["type"] == ctype:
                return bool(cond["status"] == status and cond["reason"] == reason)
        return False

    return check


def _ready_any(body: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in body.get("status", {}).get("conditions") or [])


def _check_artifacts(body: dict[str, Any], folder: Path) -> list[dict[str, Any]]:
    artifacts: list[dict[str, Any]] = body["status"]["artifacts"]
    assert artifacts
    for a in artifacts:
        data = (folder / a["name"]).read_bytes()
        assert a["name"].endswith(".p7m") and a["size"] == len(data)
        assert a["sha256"] == hashlib.sha256(data).hexdigest()
        assert a["expiresAt"] > a["createdAt"] and a["expired"] is False
    return artifacts


def test_exports_run_decrypt_and_expired_artifacts_are_swept(
    stack: LocalStack, emulator: Emulator, tmp_path: Path
) -> None:
    ns = _ns(stack, emulator)
    apply(stack, ns, generated_certificate("rc", commonName="Genesys Recording", organization="Genesys"))
    stack.wait_for("rcert", ns, "rc", _ready_any, timeout=60)
    user = emulator.chat.users[0].id
    cert = {"recordingCertificate": "rc"}
    apply(stack, ns, _export("contacts", emulator, cert))
    apply(stack, ns, _export("gdpr", emulator, cert, type="gdprChat", users=[user], range={"last": "P1D"}))
    contacts = stack.wait_for("ej", ns, "contacts", _finished, timeout=60)
    gdpr = stack.wait_for("ej", ns, "gdpr", _finished, timeout=60)

    folder = stack.pvc_dir(ns) / "exports"
    for body in (contacts, gdpr):
        run = body["status"]["history"][0]
        assert run["state"] == "Succeeded", run
        assert run["records"] > 0 and run["artifacts"] == len(body["status"]["artifacts"])
        assert body["status"]["phase"] == "Succeeded" and body["status"]["lastSuccessfulTime"]
    contact_artifacts = _check_artifacts(contacts, folder)
    gdpr_artifacts = _check_artifacts(gdpr, folder)
    assert "ExportSucceeded" in {e["reason"] for e in stack.events(ns, "ExportJob", "contacts")}

    # the pod got the certificate only: no private key in the Job, credentials only by reference
    job = _jobs(stack, ns, "gdpr")[0]
    pod = job["spec"]["template"]["spec"]
    assert "tls.key" not in json.dumps(job)
    cert_volume = next(v for v in pod["volumes"] if v["name"] == "certificate")
    assert cert_volume["secret"]["items"] == [{"key": "tls.crt", "path": "tls.crt"}]
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env["GWS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "gws-credentials", "key": "GWS_PASSWORD"}

    # decrypt a GDPR artifact with openssl and the RecordingCertificate's key
    tls = stack.get("secret", ns, "rc-tls")
    key = tmp_path / "key.pem"
    key.write_bytes(base64.b64decode(tls["data"]["tls.key"]))
    plain = subprocess.run(
        ["openssl", "cms", "-decrypt", "-inform", "DER", "-binary", "-inkey", str(key),
         "-in", str(folder / gdpr_artifacts[0]["name"])],
        check=True, capture_output=True, timeout=60,
    ).stdout  # fmt: skip
    with zipfile.ZipFile(io.BytesIO(plain)) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
        assert any(user in n for n in names), names
        assert sum(1 for line in archive.read(next(n for n in names if user in n)).splitlines() if line) > 0

    # retention: the first contacts artifact reaches its expiry (in the store and in status); the sweep Job
    # deletes it and nothing else, status marks it expired
    expired = contact_artifacts[0]
    sidecar = folder / (expired["name"] + ".json")
    meta = json.loads(sidecar.read_text())
    meta["expiresAt"] = PAST
    sidecar.write_text(json.dumps(meta))
    (folder / "foreign.zip.p7m").write_bytes(b"not ours")
    (folder / "notes.txt").write_text("someone else's file")
    patched = [dict(a, expiresAt=PAST) if a["name"] == expired["name"] else a for a in contact_artifacts]
    stack.cp.kubectl("patch", "ej", "contacts", "-n", ns, "--subresource=status", "--type=merge",
                     "-p", json.dumps({"status": {"artifacts": patched}}))  # fmt: skip

    def marked(body: dict[str, Any]) -> bool:
        return any(a["name"] == expired["name"] and a["expired"] for a in body["status"].get("artifacts") or [])

    swept = stack.wait_for("ej", ns, "contacts", marked, timeout=60)
    assert not (folder / expired["name"]).exists() and not sidecar.exists()
    assert (folder / "foreign.zip.p7m").exists() and (folder / "notes.txt").exists()
    for a in [*contact_artifacts[1:], *gdpr_artifacts]:
        assert (folder / a["name"]).exists()
    assert [a["name"] for a in swept["status"]["artifacts"] if a["expired"]] == [expired["name"]]
    event = stack.wait_event(ns, "ExportJob", "contacts", "ArtifactsExpired")
    assert "deleted 1 expired artifact(s)" in event["message"] and expired["name"] in event["message"]
    assert {j["metadata"]["labels"]["cxbackup.io/export-task"] for j in _jobs(stack, ns, "contacts")} >= {"sweep"}


def test_outside_chat_retention_is_empty_and_missing_certificate_blocks(stack: LocalStack, emulator: Emulator) -> None:
    ns = _ns(stack, emulator)
    _, cert_pem = generate_pair("Genesys Recording", "US", "California", "Genesys", 365, now=dt.datetime.now(dt.UTC))
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "export-cert"},
        "data": {"tls.crt": base64.b64encode(cert_pem).decode()},
    }
    apply(stack, ns, secret)
    user = emulator.chat.users[1].id
    old = _export("old", emulator, {"secret": "export-cert"}, type="gdprChat", users=[user],
                  range={"from": "2020-01-01T00:00:00Z", "to": "2020-02-01T00:00:00Z"})  # fmt: skip
    apply(stack, ns, old)
    apply(stack, ns, _export("nocert", emulator, {"recordingCertificate": "missing"}))

    body = stack.wait_for("ej", ns, "old", _finished, timeout=60)
    run = body["status"]["history"][0]
    assert run["state"] == "Succeeded" and run["records"] == 0 and run["artifacts"] == 0, run
    assert "outside the chat retention period" in run["message"]
    assert not body["status"].get("artifacts")
    event = stack.wait_event(ns, "ExportJob", "old", "ExportSucceeded")
    assert "outside the chat retention period" in event["message"]

    blocked = stack.wait_for("ej", ns, "nocert", _cond("Ready", "False", "CertificateNotFound"), timeout=30)
    ready = next(c for c in blocked["status"]["conditions"] if c["type"] == "Ready")
    assert "spec.certificate.recordingCertificate" in ready["message"] and "missing" in ready["message"]
    time.sleep(3)  # a few more reconciliations: still one Event, still no Job
    warnings = [e for e in stack.events(ns, "ExportJob", "nocert") if e["reason"] == "CertificateNotFound"]
    assert len(warnings) == 1 and warnings[0]["type"] == "Warning" and warnings[0].get("count", 1) == 1
    assert _jobs(stack, ns, "nocert") == []
    assert stack.get("ej", ns, "nocert")["status"]["phase"] == "Blocked"


def _subject_access_members(
    stack: LocalStack, ns: str, artifacts: list[dict[str, Any]], agent: str, tmp_path: Path
) -> dict[str, bytes]:
    """The members of a subjectAccess export's artifacts (in the PVC's exports folder) by name, decrypted with
    openssl and the key of RecordingCertificate rc, each checked against its manifest; the subject nowhere in
    one."""
    tls = stack.get("secret", ns, "rc-tls")
    key = tmp_path / "key.pem"
    key.write_bytes(base64.b64decode(tls["data"]["tls.key"]))
    members: dict[str, bytes] = {}
    for artifact in artifacts:
        plain = subprocess.run(
            ["openssl", "cms", "-decrypt", "-inform", "DER", "-binary", "-inkey", str(key),
             "-in", str(stack.pvc_dir(ns) / "exports" / artifact["name"])],
            check=True, capture_output=True, timeout=60,
        ).stdout  # fmt: skip
        with zipfile.ZipFile(io.BytesIO(plain)) as archive:
            assert archive.testzip() is None
            manifest = json.loads(archive.read("manifest.json"))
            assert agent not in json.dumps(manifest)
            for entry in manifest["files"]:
                data = archive.read(entry["name"])
                assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["bytes"]
            members |= {name: archive.read(name) for name in archive.namelist()}
    return members


def test_a_subject_access_export_reads_the_backup_and_hands_over_the_persons_recordings(
    stack: LocalStack, emulator: Emulator, tmp_path: Path
) -> None:
    """type subjectAccess: a RecordingBackup backs up into the PVC, then an ExportJob whose subject is in a Secret
    packs that person's recordings (metadata, and media decrypted with the tenant's keyring, which the key
    owner allowed for this very export, by name and uid, after it was created) into an artifact encrypted to the
    requester's certificate; the pod mounts the backup read-only and never sees the subject in its spec."""
    ns = _ns(stack, emulator)
    apply(stack, ns, generated_certificate("rc", commonName="Requester", organization="Customer"))
    # the tenant's recording key (the one the vendor encrypted the media to); its owner consents below
    files = [f"--from-file=tls.crt={emulator.tenant_cert_path}", f"--from-file=tls.key={emulator.tenant_key_path}"]
    stack.cp.kubectl("create", "secret", "generic", "tenant", "-n", ns, *files)
    apply(stack, ns, recording_certificate("tenant", {"secretRef": {"name": "tenant"}}))
    apply(stack, ns, recording_backup(emulator, "rb"))
    backup = stack.wait_for("rb", ns, "rb", lambda b: bool(history(b)), timeout=180)
    assert history(backup)[0]["result"] == "Succeeded", history(backup)[0]
    stack.wait_for("rcert", ns, "rc", _ready_any, timeout=60)
    records = list(emulator.records())
    agent = records[0]["mediaFiles"][0]["parameters"]["username"]
    target = stack.pvc_dir(ns) / "rb"
    found = subprocess.run(
        [sys.executable, "-m", "cxbackup", "search", "--target", str(target), "--agent", agent, "--json",
         "--limit", "1000"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    expected = {r["id"] for r in json.loads(found.stdout)["recordings"]}
    assert expected
    stack.cp.kubectl("create", "secret", "generic", "dsar-117", "-n", ns, f"--from-literal=subject=agent:{agent}\n")
    stack.cp.kubectl("label", "secret", "dsar-117", "-n", ns, "cxbackup.io/credentials=true")
    # decrypted media go to the requester's certificate in a Secret (here rc's, whose key opens the artifact);
    # both Secrets immutable and older than the ExportJob, so they are what the key owner reviews
    requester = tmp_path / "requester.pem"
    requester.write_bytes(base64.b64decode(stack.get("secret", ns, "rc-tls")["data"]["tls.crt"]))
    stack.cp.kubectl("create", "secret", "generic", "requester", "-n", ns, f"--from-file=tls.crt={requester}")
    for secret in ("dsar-117", "requester"):
        stack.cp.kubectl("patch", "secret", secret, "-n", ns, "-p", '{"immutable":true}')
    time.sleep(1.5)  # creation times have whole seconds: the Secrets are strictly older than the ExportJob
    spec = {
        "type": "subjectAccess",
        "subject": {"secret": "dsar-117"},
        "backup": {"recordingBackup": "rb"},
        "certificate": {"secret": "requester"},
        "store": {"pvc": "recordings", "subPath": "exports"},
        "decryptMedia": {"recordingCertificate": "tenant"},
    }
    stack.wait_for("rcert", ns, "tenant", _ready_any, timeout=60)
    body = export_job(emulator, "dsar", **spec)
    for vendor_only in ("source", "range"):
        body["spec"].pop(vendor_only)
    apply(stack, ns, body)
    # no run until the key owner consents to this very ExportJob (its uid), after reviewing it
    waiting = stack.wait_for("ej", ns, "dsar", lambda b: _ready_reason(b) == "DecryptionNotAllowed", timeout=60)
    assert not _jobs(stack, ns, "dsar")
    consent = {"spec": {"decryptionAllowedFor": [{"exportJob": "dsar", "uid": waiting["metadata"]["uid"]}]}}
    stack.cp.kubectl("patch", "rcert", "tenant", "-n", ns, "--type=merge", "-p", json.dumps(consent))
    done = stack.wait_for("ej", ns, "dsar", _finished, timeout=180)
    run = done["status"]["history"][0]
    assert run["state"] == "Succeeded", run
    artifacts = _check_artifacts(done, stack.pvc_dir(ns) / "exports")
    job = _jobs(stack, ns, "dsar")[0]
    assert agent not in json.dumps(job)  # the subject stays in its Secret
    pod = job["spec"]["template"]["spec"]
    backup_volume = next(v for v in pod["volumes"] if v["name"] == "target")  # read through --backup-config
    assert backup_volume["persistentVolumeClaim"] == {"claimName": "recordings", "readOnly": True}

    args = pod["containers"][0]["args"]
    assert "--decrypt-media" in args and "--verify-subject" in args and "--verify-certificate" in args
    assert next(v for v in pod["volumes"] if v["name"] == "keyring")["secret"]["secretName"] == "tenant-keyring"

    members = _subject_access_members(stack, ns, artifacts, agent, tmp_path)
    assert {n.split("/")[1] for n in members if n.startswith("recordings/")} == expected
    for rec_id in expected:
        assert f"recordings/{rec_id}/{rec_id}.json" in members
    # each media file is the backed-up one decrypted with the tenant's key
    media = {n: data for n, data in members.items() if n.startswith("recordings/") and not n.endswith(".json")}
    assert media and not any(n.endswith(".bin") for n in media)
    for name, data in media.items():
        rec_id = name.split("/")[1]
        out = Path(name).name  # the stored name without .bin, or with the type's extension added
        (stored,) = [
            p for p in target.rglob(f"{rec_id}/*")
            if p.suffix != ".json" and out in (p.name.removesuffix(".bin"), *(p.name + e for e in (".mp3", ".mp4")))
        ]  # fmt: skip
        plain = subprocess.run(
            ["openssl", "cms", "-decrypt", "-inform", "DER", "-binary", "-inkey", str(emulator.tenant_key_path),
             "-in", str(stored)], check=True, capture_output=True, timeout=60,
        ).stdout  # fmt: skip
        assert data == plain, name


def test_a_subject_access_export_reads_an_s3_backup_target(
    stack: LocalStack, emulator: Emulator, tmp_path: Path
) -> None:
    """type subjectAccess on a RecordingBackup that backs up into an S3 bucket (the emulator's S3, HTTPS with
    the test CA): the export pod reads the bucket through the run's backup ConfigMap with the target's
    credentials (secretKeyRefs only), and the decrypted artifacts hold exactly the subject's recordings."""

    ns = _ns(stack, emulator)
    env = emulator.env()
    assert stack.test_ca is not None  # its PEM reaches the local search below
    client = emulator_s3(stack, emulator)
    client.create_bucket(Bucket="archive")
    target = {"s3": {"bucket": "archive", "prefix": "cc/", "endpointUrl": emulator.s3_endpoint,
                     "credentials": {"name": "vendor-s3"}}}  # fmt: skip
    apply(stack, ns, generated_certificate("rc"), recording_backup(emulator, "rb", target=target))
    backup = stack.wait_for("rb", ns, "rb", lambda b: bool(history(b)), timeout=240)
    assert history(backup)[0]["result"] == "Succeeded", history(backup)[0]
    stack.wait_for("rcert", ns, "rc", _ready_any, timeout=60)
    agent = next(iter(emulator.records()))["mediaFiles"][0]["parameters"]["username"]
    stack.cp.kubectl("create", "secret", "generic", "dsar-117", "-n", ns, f"--from-literal=subject=agent:{agent}\n")
    stack.cp.kubectl("label", "secret", "dsar-117", "-n", ns, "cxbackup.io/credentials=true")
    body = export_job(emulator, "dsar", type="subjectAccess", subject={"secret": "dsar-117"},
                      backup={"recordingBackup": "rb"})  # fmt: skip
    for vendor_only in ("source", "range"):
        body["spec"].pop(vendor_only)
    apply(stack, ns, body)
    done = stack.wait_for("ej", ns, "dsar", _finished, timeout=180)
    assert done["status"]["history"][0]["state"] == "Succeeded", done["status"]["history"][0]
    artifacts = _check_artifacts(done, stack.pvc_dir(ns) / "exports")
    job = _jobs(stack, ns, "dsar")[0]
    container = job["spec"]["template"]["spec"]["containers"][0]
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"]["name"] for e in container["env"] if "valueFrom" in e}
    assert refs["TARGET_AWS_ACCESS_KEY_ID"] == refs["TARGET_AWS_SECRET_ACCESS_KEY"] == "vendor-s3"
    # what the subject's recordings are: the bucket searched with the run's own ConfigMap
    configmap = stack.get("configmap", ns, f"{job['metadata']['name']}-backup")
    config = tmp_path / "config.properties"
    config.write_text(configmap["data"]["config.properties"])
    found = subprocess.run(
        [sys.executable, "-m", "cxbackup", "search", "-config", str(config), "--agent", agent, "--json",
         "--limit", "1000"],
        capture_output=True, text=True, check=True, timeout=120,
        env={**os.environ, "TARGET_AWS_ACCESS_KEY_ID": env["AWS_ACCESS_KEY_ID"],
             "TARGET_AWS_SECRET_ACCESS_KEY": env["AWS_SECRET_ACCESS_KEY"],
             "CXBACKUP_CA_CERTIFICATES": stack.test_ca.pem},
    )  # fmt: skip
    expected = {r["id"] for r in json.loads(found.stdout)["recordings"]}
    assert expected
    members = _subject_access_members(stack, ns, artifacts, agent, tmp_path)
    assert {n.split("/")[1] for n in members if n.startswith("recordings/")} == expected
