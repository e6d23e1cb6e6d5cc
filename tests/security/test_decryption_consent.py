"""A tenant who may create cxbackup resources and Secrets in a namespace tries to have the operator mount the
key owner's keyring (every key recordings were ever encrypted to) into a pod of the tenant's ExportJob,
through the operator as the chart installs it. The key owner's RecordingCertificate `victim` consents to one
ExportJob, `dsar`, by name and uid. What must hold: only the Job of that very ExportJob, as it was when the
key owner consented, ever mounts the keyring; every other way in is refused by the API server or by the
operator (condition naming the field), with no Job."""

from __future__ import annotations

import base64
import json
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.reliability.table import Row
from tests.security.bodies import CREDENTIALS, GENERATE, pvc, ready_condition, resource, secret, vendor_secrets
from tests.security.conftest import VENDOR_HOST
from tests.security.installed import InstalledChart

pytestmark = pytest.mark.integration


def _export(name: str, certificate: str = "victim", subject: str = "dsar-117") -> dict[str, Any]:
    return resource("ExportJob", name, {
        "type": "subjectAccess", "subject": {"secret": subject}, "backup": {"recordingBackup": "rb"},
        "certificate": {"secret": "requester"}, "store": {"pvc": "recordings", "subPath": "exports"},
        "decryptMedia": {"recordingCertificate": certificate},
    })  # fmt: skip


def _reason(reason: str) -> Callable[[dict[str, Any]], bool]:
    return lambda body: (ready_condition(body) or {}).get("reason") == reason


def _keyring_jobs(chart: InstalledChart, ns: str) -> list[tuple[str, str]]:
    """(owner uid, Job name) of every Job whose pod mounts the victim's keyring."""
    found = []
    for job in chart.items("jobs", ns):
        volumes = job["spec"]["template"]["spec"].get("volumes") or []
        if any((v.get("secret") or {}).get("secretName") == "victim-keyring" for v in volumes):
            owner = next(iter(job["metadata"].get("ownerReferences") or [{}])).get("uid", "")
            found.append((owner, job["metadata"]["name"]))
    return found


def _consent(chart: InstalledChart, ns: str, *exports: dict[str, Any]) -> None:
    """The key owner (the cluster admin here) lets exactly these ExportJobs decrypt."""
    entries = [{"exportJob": e["metadata"]["name"], "uid": e["metadata"]["uid"]} for e in exports]
    patch = json.dumps({"spec": {"decryptionAllowedFor": entries}})
    chart.cp.kubectl("patch", "rcert", "victim", "-n", ns, "--type=merge", "-p", patch)


def test_only_the_export_the_key_owner_consented_to_ever_mounts_the_keyring(
    chart_hardened: InstalledChart, row: Callable[[Row], Row]
) -> None:
    chart = chart_hardened
    ns = chart.tenant_namespace()
    source = {"gwsUriPrefix": f"https://{VENDOR_HOST}/api/v2", "gwsCredentials": {"name": "gws"},
              "s3Credentials": {"name": "s3"}, "retentionDays": 30}  # fmt: skip
    backup = {"source": source, "window": {"minAge": 0, "maxAge": 1},
              "target": {"pvc": {"claimName": "recordings", "subPath": "rb"}}}  # fmt: skip
    # the key owner's certificate and the backup (the cluster admin's)
    chart.apply(
        ns,
        resource("RecordingCertificate", "victim", {"generate": GENERATE}),
        *vendor_secrets(),
        pvc(),
        resource("RecordingBackup", "rb", backup),
    )
    victim = chart.wait_for("rcert", ns, "victim", _reason("CertificateValid"), timeout=60)
    certificate = base64.b64decode(chart.get("secret", ns, "victim-tls")["data"]["tls.crt"])  # type: ignore[index]
    # the tenant's own Secrets: a subject, the requester's certificate (immutable, older than the exports)
    for doc in (
        secret("dsar-117", {"subject": b"+15550100\n"}, CREDENTIALS, immutable=True),
        secret("dsar-118", {"subject": b"+15550101\n"}, CREDENTIALS, immutable=True),
        secret("requester", {"tls.crt": certificate}, immutable=True),
    ):
        assert chart.create_as_tenant(ns, doc).returncode == 0
    time.sleep(1.1)  # creation times have whole seconds: the Secrets are strictly older than what follows
    results: list[tuple[str, bool, str]] = []

    def refused_by_api(what: str, proc: subprocess.CompletedProcess[str], field: str) -> None:
        results.append((what, proc.returncode != 0 and field in proc.stderr, f"API server: {proc.stderr[:100]}"))

    def refused_by_operator(what: str, kind: str, name: str, reason: str, field: str) -> None:
        body = chart.wait_for(kind, ns, name, lambda b: ready_condition(b) is not None, timeout=30)
        if ready_condition(body)["reason"] != reason:  # type: ignore[index]
            body = chart.wait_for(kind, ns, name, _reason(reason), timeout=15)
        message = ready_condition(body)["message"]  # type: ignore[index]
        results.append((what, field in message, f"operator: {reason}: {message[:90]}"))

    # 1. the tenant's own certificate claims the victim's keyring (or pair) and consents for the tenant
    for i, claimed in enumerate(("victim-keyring", "victim-tls")):
        cert = resource("RecordingCertificate", f"mine-{i}", {"generate": GENERATE, "keyringSecret": claimed})
        refused_by_api(f"a tenant's certificate names {claimed} as its keyring", chart.apply_as_tenant(ns, cert),
                       "keyringSecret")  # fmt: skip
    # 2. a keyring forged to look like the victim's (its label and uid), under the tenant's certificate
    forged = secret("forged-ring", {"1.crt": certificate},
                     {"cxbackup.io/certificate": "victim", "cxbackup.io/keyring": "true"},
                     metadata={"annotations": {"cxbackup.io/certificate-uid": victim["metadata"]["uid"]}})  # fmt: skip
    assert chart.create_as_tenant(ns, forged).returncode == 0
    mine = resource("RecordingCertificate", "forger", {"generate": GENERATE, "keyringSecret": "forged-ring"})
    assert chart.apply_as_tenant(ns, mine).returncode == 0
    assert chart.apply_as_tenant(ns, _export("via-forged", certificate="forger")).returncode == 0
    refused_by_operator("an export decrypts with a certificate whose keyring was forged", "ej", "via-forged",
                        "DecryptionNotAllowed", "spec.decryptMedia")  # fmt: skip
    # 3. an export names the victim's certificate without its consent
    assert chart.apply_as_tenant(ns, _export("unasked")).returncode == 0
    refused_by_operator("an export decrypts without the key owner's consent", "ej", "unasked",
                        "DecryptionNotAllowed", "spec.decryptMedia")  # fmt: skip
    # 4. the key owner consents to dsar (and to dsar-2, whose subject is swapped before the consent)
    assert chart.apply_as_tenant(ns, _export("dsar")).returncode == 0
    assert chart.apply_as_tenant(ns, _export("dsar-2", subject="dsar-118")).returncode == 0
    assert chart.as_tenant("delete", "secret", "dsar-118", "-n", ns).returncode == 0
    swapped = secret("dsar-118", {"subject": b"+15550199\n"}, CREDENTIALS, immutable=True)
    assert chart.create_as_tenant(ns, swapped).returncode == 0
    dsar = chart.wait_for("ej", ns, "dsar", _reason("DecryptionNotAllowed"), timeout=30)
    dsar2 = chart.wait_for("ej", ns, "dsar-2", _reason("DecryptionNotAllowed"), timeout=30)
    _consent(chart, ns, dsar, dsar2)
    chart.wait_for("ej", ns, "dsar", lambda b: bool(_keyring_jobs(chart, ns)), timeout=60)
    consented = dsar["metadata"]["uid"]
    # the control: the consented export's Job mounts the keyring (the refusals below are not refusals of all)
    assert {owner for owner, _ in _keyring_jobs(chart, ns)} == {consented}
    refused_by_operator("a consented export's subject Secret created after the export", "ej", "dsar-2",
                        "DecryptionNotAllowed", "spec.subject.secret")  # fmt: skip
    # 5. edits of the consented export after the consent
    for what, patch in (
        ("another subject", {"spec": {"subject": {"secret": "dsar-118"}}}),
        ("another artifact certificate", {"spec": {"certificate": {"secret": "other"}}}),
        ("another backup", {"spec": {"backup": {"recordingBackup": "other"}}}),
        ("decryptMedia removed", {"spec": {"decryptMedia": None}}),
    ):
        proc = chart.as_tenant("patch", "ej", "dsar", "-n", ns, "--type=merge", "-p", json.dumps(patch))
        refused_by_api(f"the consented export edited afterwards: {what}", proc, "spec")
    # 6. the consented export deleted and created again under the same name
    chart.as_tenant("delete", "ej", "dsar", "-n", ns, "--wait=false")
    deadline = time.monotonic() + 30
    while chart.get("ej", ns, "dsar") is not None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert chart.apply_as_tenant(ns, _export("dsar")).returncode == 0
    refused_by_operator("the consented export deleted and created again (same name, new uid)", "ej", "dsar",
                        "DecryptionNotAllowed", "uid")  # fmt: skip

    time.sleep(2)  # a Job the operator would start for any of them has been created by now
    mounting = _keyring_jobs(chart, ns)  # the consented one's Job may be gone with it (garbage collection)
    only_consented = {owner for owner, _ in mounting} <= {consented}
    for what, ok, notes in results:
        row(Row(scenario=f"attack: {what}", expected="refused", ok=ok and only_consented, notes=notes,
                level="attack"))  # fmt: skip
    assert [(w, n) for w, ok, n in results if not ok] == []
    assert only_consented, f"Jobs mounting the keyring: {mounting}; the consented ExportJob was {consented}"
