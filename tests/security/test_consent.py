"""The key owner's consent for decrypted media, attacked on a real API server (the generated CRDs' CEL rules):
a tenant who wrote an ExportJob with spec.decryptMedia cannot change it after the key owner consented (not the
subject, the range, the backup, the artifact's certificate, the store, nor decryptMedia itself), cannot add
decryptMedia to an ExportJob later, cannot send decrypted media to a RecordingCertificate (whose pair can change),
and gets another uid when deleting and recreating it, which a consent naming the old uid does not cover; a
RecordingCertificate cannot name a keyring Secret that could be another certificate's, and its consent names an
ExportJob only with a well-formed uid. The operator's own checks (which hold without CEL) are in
tests/unit/controller/test_export_reconcile.py."""

from __future__ import annotations

import json
from typing import Any

import pytest

from cxbackup_dev.localcluster.controlplane import ControlPlane

pytestmark = pytest.mark.integration

UID = "0b1f7c1e-4f5a-4c8e-9a51-2f2d6b6f0a11"


def _decrypting(name: str = "dsar") -> dict[str, Any]:
    return {
        "apiVersion": "cxbackup.io/v1alpha1",
        "kind": "ExportJob",
        "metadata": {"name": name},
        "spec": {
            "type": "subjectAccess",
            "subject": {"secret": "dsar-117"},
            "backup": {"recordingBackup": "recordings"},
            "range": {"from": "2026-01-01T00:00:00Z"},
            "decryptMedia": {"recordingCertificate": "recording-cert"},
            "certificate": {"secret": "requester-cert"},
            "store": {"pvc": "exports"},
        },
    }


def _certificate(name: str = "recording-cert", **spec: Any) -> dict[str, Any]:
    generate = {"commonName": "Rec", "country": "US", "state": "California", "organization": "Org"}
    return {
        "apiVersion": "cxbackup.io/v1alpha1",
        "kind": "RecordingCertificate",
        "metadata": {"name": name},
        "spec": {"generate": generate, **spec},
    }


def _create(cp: ControlPlane, ns: str, doc: dict[str, Any]) -> tuple[int, str]:
    proc = cp.kubectl("create", "-n", ns, "-f", "-", input_text=json.dumps(doc), check=False)
    return proc.returncode, proc.stdout + proc.stderr


def _patch(cp: ControlPlane, ns: str, kind: str, name: str, patch: dict[str, Any]) -> tuple[int, str]:
    proc = cp.kubectl("patch", kind, name, "-n", ns, "--type=merge", "-p", json.dumps(patch), check=False)
    return proc.returncode, proc.stdout + proc.stderr


def _get(cp: ControlPlane, ns: str, kind: str, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(cp.kubectl("get", kind, name, "-n", ns, "-o", "json").stdout)
    return doc


FROZEN = "the spec of an ExportJob with decryptMedia cannot change"

EDITS = [
    ("subject", {"subject": {"secret": "someone-else"}}),
    ("subject key", {"subject": {"key": "other"}}),
    ("range", {"range": {"from": "2020-01-01T00:00:00Z"}}),
    ("backup", {"backup": {"recordingBackup": "another-backup"}}),
    ("artifact certificate", {"certificate": {"secret": "attacker-cert"}}),
    ("consenting certificate", {"decryptMedia": {"recordingCertificate": "other-cert"}}),
    ("store", {"store": {"pvc": "attacker-pvc"}}),
    ("retention", {"retentionDays": 3650}),
    ("schedule", {"schedule": "*/5 * * * *"}),
    ("suspend", {"suspend": True}),
    ("decryptMedia removed", {"decryptMedia": None}),
]


@pytest.mark.parametrize(("what", "patch"), EDITS, ids=[w for w, _ in EDITS])
def test_a_decrypting_export_job_cannot_be_edited_after_creation(
    control_plane: ControlPlane, namespace: str, what: str, patch: dict[str, Any]
) -> None:
    code, out = _create(control_plane, namespace, _decrypting())
    assert code == 0, out
    before = _get(control_plane, namespace, "exportjob", "dsar")
    code, out = _patch(control_plane, namespace, "exportjob", "dsar", {"spec": patch})
    assert code != 0, f"accepted an edit of the {what}"
    assert FROZEN in out, out
    after = _get(control_plane, namespace, "exportjob", "dsar")
    assert after["spec"] == before["spec"] and after["metadata"]["generation"] == 1
    # the spec is frozen, not the object: asking for another run of the same request is fine
    code, out = _patch(control_plane, namespace, "exportjob", "dsar",
                       {"metadata": {"annotations": {"cxbackup.io/run-now": "1"}}})  # fmt: skip
    assert code == 0, out


def test_decrypt_media_cannot_be_added_to_an_existing_export_job(control_plane: ControlPlane, namespace: str) -> None:
    plain = _decrypting()
    del plain["spec"]["decryptMedia"]
    assert _create(control_plane, namespace, plain)[0] == 0
    code, out = _patch(control_plane, namespace, "exportjob", "dsar",
                       {"spec": {"decryptMedia": {"recordingCertificate": "recording-cert"}}})  # fmt: skip
    assert code != 0 and FROZEN in out, out


def test_decrypted_media_cannot_be_encrypted_to_a_recording_certificate(
    control_plane: ControlPlane, namespace: str
) -> None:
    doc = _decrypting()
    doc["spec"]["certificate"] = {"recordingCertificate": "attacker-controlled"}
    code, out = _create(control_plane, namespace, doc)
    assert code != 0 and "with decryptMedia the artifact is encrypted to certificate.secret" in out, out


def test_an_export_job_deleted_and_created_again_is_another_object(control_plane: ControlPlane, namespace: str) -> None:
    """What a consent entry's uid tells apart: the ExportJob the key owner reviewed from one recreated under its
    name (possibly with another spec)."""
    assert _create(control_plane, namespace, _decrypting())[0] == 0
    reviewed = _get(control_plane, namespace, "exportjob", "dsar")["metadata"]["uid"]
    control_plane.kubectl("delete", "exportjob", "dsar", "-n", namespace)
    again = _decrypting()
    again["spec"]["subject"] = {"secret": "someone-else"}
    assert _create(control_plane, namespace, again)[0] == 0
    recreated = _get(control_plane, namespace, "exportjob", "dsar")["metadata"]
    assert recreated["uid"] != reviewed and recreated["generation"] == 1
    # and the recreated one is as frozen as the first
    code, out = _patch(control_plane, namespace, "exportjob", "dsar", {"spec": {"subject": {"secret": "dsar-117"}}})
    assert code != 0 and FROZEN in out, out


@pytest.mark.parametrize(
    "keyring",
    ["victim-keyring", "recording-cert2-keyring", "victim-tls", "recording-cert-tls", "recording-cert-keyring"],
)
def test_a_keyring_secret_that_could_be_another_certificates_is_refused(
    control_plane: ControlPlane, namespace: str, keyring: str
) -> None:
    """Certificate `vic` may not claim `victim-keyring` (a prefix of another name), nor any `-keyring` or `-tls`
    name; CEL cannot see the certificate's own name, so its own default is given by leaving the field out (the
    operator also accepts it spelled out, for resources made before this rule)."""
    code, out = _create(control_plane, namespace, _certificate("vic", keyringSecret=keyring))
    assert code != 0 and "keyringSecret must not end with -keyring or -tls" in out, out
    # a name of another form, and the default (no keyringSecret), are fine
    assert _create(control_plane, namespace, _certificate("vic", keyringSecret="team-a-keys"))[0] == 0
    assert _create(control_plane, namespace, _certificate("victim"))[0] == 0


BAD_CONSENTS = [
    ("a bare name (the old form)", ["dsar"], "decryptionAllowedFor[0]"),
    ("no uid", [{"exportJob": "dsar"}], "uid: Required value"),
    ("not a uid", [{"exportJob": "dsar", "uid": "dsar"}], "decryptionAllowedFor[0].uid"),
    ("the same ExportJob twice", [{"exportJob": "dsar", "uid": UID},
                                  {"exportJob": "dsar", "uid": UID.replace("0b1f", "ffff")}], "Duplicate value"),
]  # fmt: skip


@pytest.mark.parametrize(("what", "allowed", "says"), BAD_CONSENTS, ids=[w for w, _, _ in BAD_CONSENTS])
def test_consent_names_an_export_job_by_name_and_uid(
    control_plane: ControlPlane, namespace: str, what: str, allowed: list[Any], says: str
) -> None:
    code, out = _create(control_plane, namespace, _certificate(decryptionAllowedFor=allowed))
    assert code != 0, f"accepted {what}"
    assert says in out, out


def test_consent_by_name_and_uid_is_accepted(control_plane: ControlPlane, namespace: str) -> None:
    code, out = _create(
        control_plane, namespace, _certificate(decryptionAllowedFor=[{"exportJob": "dsar", "uid": UID}])
    )
    assert code == 0, out
