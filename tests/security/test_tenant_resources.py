"""A tenant tries to turn the operator against Secrets, keys and the cluster's capacity through the fields of
its own resources, against the chart as installed (hardened: the vendor's host named, so that only the field
under attack can be what refuses). What must hold: each attempt is refused, by the API server or by the
operator with a condition naming the field; no Job exists; no Secret changed."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from tests.reliability.table import Row
from tests.security.bodies import CREDENTIALS, GENERATE, pvc, ready_condition, resource, secret, vendor_secrets
from tests.security.conftest import VENDOR_HOST
from tests.security.installed import InstalledChart

pytestmark = pytest.mark.integration


def _backup(name: str, *, credentials: str = "gws", **spec: Any) -> dict[str, Any]:
    source = {"gwsUriPrefix": f"https://{VENDOR_HOST}/api/v2", "gwsCredentials": {"name": credentials},
              "s3Credentials": {"name": "s3"}, "retentionDays": 30}  # fmt: skip
    base = {"source": source, "window": {"minAge": 0, "maxAge": 1},
            "target": {"pvc": {"claimName": "recordings", "subPath": name}}}  # fmt: skip
    return resource("RecordingBackup", name, base | spec)


def test_a_tenant_cannot_reach_secrets_keys_or_capacity_through_its_resources(
    chart_hardened: InstalledChart, row: Callable[[Row], Row]
) -> None:
    chart = chart_hardened
    ns = chart.tenant_namespace()
    chart.apply(
        ns,
        pvc(),
        *vendor_secrets(b"the-vendor-password"),
        secret("other-team", {"GWS_USERNAME": b"theirs", "GWS_PASSWORD": b"their-password"}),
        secret("their-config", {"config": b"theirs"}),
        resource("RecordingCertificate", "rc", {"generate": GENERATE}),
    )
    chart.wait_for("rcert", ns, "rc", lambda b: (ready_condition(b) or {}).get("status") == "True", timeout=60)
    # a TLS Secret the tenant labelled as credentials (it may create Secrets, not read them)
    tls = secret("tls-creds", {"GWS_USERNAME": b"u", "GWS_PASSWORD": b"p", "tls.crt": b"c", "tls.key": b"k"},
                  CREDENTIALS, kind="kubernetes.io/tls")  # fmt: skip
    assert chart.create_as_tenant(ns, tls).returncode == 0
    keyring_before = chart.get("secret", ns, "rc-keyring")["data"]  # type: ignore[index]

    by_operator: list[tuple[str, str, str, str, str]] = [  # scenario, kind, name, reason, field in the message
        ("a backup names the certificate's keyring as vendor credentials", "rb", "steal-keyring",
         "SecretNotAllowed", "spec.source.gwsCredentials"),
        ("a backup names a TLS Secret labelled as credentials", "rb", "steal-tls", "SecretNotAllowed",
         "kubernetes.io/tls"),
        ("a backup names another team's Secret, never opted in", "rb", "steal-other", "SecretNotLabelled",
         "cxbackup.io/credentials=true"),
        ("a certificate names another Secret as its keyring", "rcert", "hijack", "SecretNotManaged",
         "spec.keyringSecret"),
        ("an uploaded certificate names another certificate's pair", "rcert", "borrowed", "SecretNotManaged",
         "spec.secretRef.name"),
        ("a backup asks for 64 CPUs for its pods", "rb", "big-cpu", "PodSettingsNotAllowed", "spec.pod.resources"),
        ("a backup asks for a 100000Gi /tmp", "rb", "big-tmp", "PodSettingsNotAllowed", "spec.pod.tmpSizeLimit"),
        ("a backup tolerates every taint", "rb", "any-node", "PodSettingsNotAllowed", "spec.pod.tolerations"),
        ("a backup pins its pods to a node", "rb", "one-node", "PodSettingsNotAllowed", "spec.pod.nodeSelector"),
    ]  # fmt: skip
    for body in (
        _backup("steal-keyring", credentials="rc-keyring"),
        _backup("steal-tls", credentials="tls-creds"),
        _backup("steal-other", credentials="other-team"),
        resource("RecordingCertificate", "hijack", {"generate": GENERATE, "keyringSecret": "their-config"}),
        resource("RecordingCertificate", "borrowed", {"secretRef": {"name": "rc-tls"}}),
        _backup("big-cpu", pod={"resources": {"limits": {"cpu": "64"}}}),
        _backup("big-tmp", pod={"tmpSizeLimit": "100000Gi"}),
        _backup("any-node", pod={"tolerations": [{"operator": "Exists"}]}),
        _backup("one-node", pod={"nodeSelector": {"kubernetes.io/hostname": "node-1"}}),
    ):
        proc = chart.apply_as_tenant(ns, body)
        assert proc.returncode == 0, proc.stderr
    results = []
    for scenario, kind, name, reason, field in by_operator:
        got = chart.wait_for(
            kind, ns, name, lambda b, r=reason: (ready_condition(b) or {}).get("reason") == r, timeout=30
        )
        message = (ready_condition(got) or {}).get("message", "")
        results.append((scenario, field in message, f"operator: {reason}: {message[:90]}"))
    by_api = [
        ("worker pods under another ServiceAccount", _backup("own-account", pod={"serviceAccountName": "default"}),
         "serviceAccountName"),
        ("a certificate made to rotate at every reconcile", resource("RecordingCertificate", "storm", {
            "generate": GENERATE | {"validityDays": 1}, "rotation": {"renewBefore": "PT23H59M"}}), "validityDays"),
    ]  # fmt: skip
    for scenario, body, field in by_api:
        proc = chart.apply_as_tenant(ns, body)
        results.append((scenario, proc.returncode != 0 and field in proc.stderr, f"API server: {proc.stderr[:90]}"))

    jobs = chart.items("jobs", ns)
    unchanged = (
        chart.get("secret", ns, "rc-keyring")["data"] == keyring_before  # type: ignore[index]
        and chart.get("secret", ns, "their-config")["data"] == {"config": base64.b64encode(b"theirs").decode()}  # type: ignore[index]
    )
    for scenario, ok, notes in results:
        row(Row(scenario=f"attack: {scenario}", expected="refused", ok=ok and not jobs and unchanged, notes=notes,
                level="attack"))  # fmt: skip
    assert [(s, n) for s, ok, n in results if not ok] == []
    assert jobs == [], json.dumps([j["metadata"]["name"] for j in jobs])
    assert unchanged, "a Secret the tenant named was changed"
