"""reconcile_certificate against an in-memory Secret store and an injected clock: generation, keyring,
rotation (and its failure: nothing lost), uploads, Events only on change, status writes only on change."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
from cryptography.hazmat.primitives import serialization

from cxbackup import metrics
from cxbackup.certs.generate import generate_pair
from cxbackup.certs.validation import inspect_certificate, load_certificate
from cxbackup.controller.certificate.handler import reconcile_certificate
from cxbackup.controller.cluster import SecretView
from cxbackup.controller.events import EventSpec
from tests.unit.controller.fakes import ReconcileHarness

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
PASSWORD = b"correct horse battery staple"
GENERATE = {"commonName": "Genesys Recording", "country": "US", "state": "California", "organization": "Genesys"}


@functools.cache
def _pair(seed: str, days: int = 365, start: dt.datetime = T0) -> tuple[bytes, bytes]:
    """(key_pem, cert_pem), cached; `seed` only tells pairs apart."""
    return generate_pair("Genesys Recording", "US", "California", "Genesys", days, now=start)


@dataclass
class Harness(ReconcileHarness):
    """One RecordingCertificate."""

    name: ClassVar[str] = "rc"
    reconciler = staticmethod(reconcile_certificate)

    def secret(self, name: str) -> SecretView:
        view = self.cluster.secrets.get(("ns", name))
        assert view is not None, name
        return view


def _reasons(events: list[EventSpec]) -> list[str]:
    return [e.reason for e in events]


def _serial(cert_pem: bytes) -> str:
    return str(load_certificate(cert_pem).serial_number)


def _generated(days: int = 30, **over: Any) -> Harness:
    return Harness({"generate": {**GENERATE, "validityDays": days}, **over})


# ---- generated certificates ----------------------------------------------------------------------------------


def test_generate_stores_the_pair_and_the_keyring_then_settles() -> None:
    h = _generated(days=90)
    events = h.tick(T0)
    tls = h.secret("rc-tls")
    assert tls.type == "kubernetes.io/tls"
    assert tls.labels == {"cxbackup.io/certificate": "rc"}
    serial = _serial(tls.data["tls.crt"])
    ring = h.secret("rc-keyring")
    assert ring.data == {f"{serial}.crt": tls.data["tls.crt"], f"{serial}.key": tls.data["tls.key"]}
    assert ring.labels == {"cxbackup.io/certificate": "rc", "cxbackup.io/keyring": "true"}
    assert ring.annotations == {"cxbackup.io/keyring": "true", "cxbackup.io/certificate-uid": "u"}  # its uid
    assert _reasons(events) == ["CertificateGenerated", "KeyringUpdated"]
    assert "BEGIN" not in " ".join(e.message for e in events)
    assert h.status["issuedTo"] == "Genesys Recording"
    assert h.status["subjectDn"] == "CN=Genesys Recording,C=US,ST=California,O=Genesys"
    assert h.status["serialNumber"] == serial
    assert h.status["notAfter"] == "2026-05-30T12:00:00Z"
    assert h.status["nextRotationTime"] == "2026-04-30T12:00:00Z"  # a third of 90 days before expiry
    assert h.status["keySize"] == 2048
    assert h.status["usages"] == ["voice"]
    assert h.status["deployedCount"] == 0
    assert h.status["observedGeneration"] == 1
    assert "keyDetails" not in h.status
    assert h.cond("Ready")["status"] == "True"
    assert h.states.certificates[("ns", "rc")] == metrics.CertificateState(
        not_after=dt.datetime(2026, 5, 30, 12, 0, tzinfo=dt.UTC).timestamp(), ready=True
    )
    # later ticks: nothing to write, nothing to say, no second pair
    assert h.tick(T0 + dt.timedelta(seconds=10)) == []
    assert h.last_changes == {}
    assert h.secret("rc-tls") == tls
    assert h.cluster.calls == ["create rc-tls", "create rc-keyring"]


def test_rotation_keyring_first_old_key_kept_and_no_loop() -> None:
    h = _generated(days=30, rotation={"renewBefore": "P10D"})
    h.tick(T0)
    old = h.secret("rc-tls").data
    old_serial = _serial(old["tls.crt"])
    assert h.tick(T0 + 19 * DAY) == []  # not due yet
    h.cluster.calls.clear()
    events = h.tick(T0 + 20 * DAY)
    assert _reasons(events) == ["CertificateRotated"]
    assert h.cluster.calls == ["patch rc-keyring", "patch rc-tls"]  # keyring first
    new = h.secret("rc-tls").data
    new_serial = _serial(new["tls.crt"])
    assert new_serial != old_serial
    assert old_serial in events[0].message
    assert new_serial in events[0].message
    info = inspect_certificate(new["tls.crt"], new["tls.key"], now=T0 + 20 * DAY)
    assert info.subject_dn == "CN=Genesys Recording,C=US,ST=California,O=Genesys"
    assert info.not_after - info.not_before == 30 * DAY
    assert h.secret("rc-keyring").data == {
        f"{old_serial}.crt": old["tls.crt"],
        f"{old_serial}.key": old["tls.key"],
        f"{new_serial}.crt": new["tls.crt"],
        f"{new_serial}.key": new["tls.key"],
    }
    assert h.status["serialNumber"] == new_serial
    assert h.status["retired"] == [
        {
            "serialNumber": old_serial,
            "fingerprint": h.status["retired"][0]["fingerprint"],
            "notAfter": "2026-03-31T12:00:00Z",
        }
    ]
    assert h.status["nextRotationTime"] == "2026-04-10T12:00:00Z"
    assert h.cond("Ready")["status"] == "True"
    assert h.cond("Expiring")["reason"] == "RotationScheduled"
    # the next tick neither rotates again nor writes anything
    assert h.tick(T0 + 20 * DAY + dt.timedelta(seconds=10)) == []
    assert h.last_changes == {}
    assert _serial(h.secret("rc-tls").data["tls.crt"]) == new_serial


def test_rotation_failure_keeps_the_old_pair_and_reports_once() -> None:
    h = _generated(days=30, rotation={"renewBefore": "P10D"})
    h.tick(T0)
    old = dict(h.secret("rc-tls").data)
    old_serial = _serial(old["tls.crt"])
    h.cluster.fail_patch.add("rc-tls")
    failures = metrics.CERT_ROTATIONS.labels("ns", "rc", "failed")._value.get()
    events = h.tick(T0 + 20 * DAY)
    assert _reasons(events) == ["RotationFailed"]
    assert events[0].warning
    assert "HTTP 500" in events[0].message
    assert metrics.CERT_ROTATIONS.labels("ns", "rc", "failed")._value.get() == failures + 1
    assert h.secret("rc-tls").data == old
    assert h.status["serialNumber"] == old_serial
    assert "retired" not in h.status
    expiring = h.cond("Expiring")
    assert (expiring["status"], expiring["reason"]) == ("True", "RotationFailed")
    assert h.cond("Ready")["status"] == "True"  # the old pair is still valid and in use
    ring = h.secret("rc-keyring").data
    assert ring[f"{old_serial}.key"] == old["tls.key"]  # nothing lost (the unused new pair is kept too)
    # the same failure again: counted, but no second Event
    assert h.tick(T0 + 20 * DAY + dt.timedelta(seconds=10)) == []
    # recovered: rotates, every key written so far is still there
    h.cluster.fail_patch.clear()
    assert _reasons(h.tick(T0 + 20 * DAY + dt.timedelta(seconds=20))) == ["CertificateRotated"]
    assert set(ring.items()) <= set(h.secret("rc-keyring").data.items())
    assert [r["serialNumber"] for r in h.status["retired"]] == [old_serial]


def test_rotation_waits_for_the_window() -> None:
    h = _generated(days=30, rotation={"renewBefore": "P10D", "windowStart": "02:00", "windowEnd": "03:00"})
    h.tick(T0)
    serial = h.status["serialNumber"]
    assert h.status["nextRotationTime"] == "2026-03-22T02:00:00Z"
    h.tick(T0 + 20 * DAY)  # 12:00, outside the window
    assert h.status["serialNumber"] == serial
    events = h.tick(dt.datetime(2026, 3, 22, 2, 5, tzinfo=dt.UTC))
    assert _reasons(events) == ["CertificateRotated"]
    assert h.status["serialNumber"] != serial


def test_rotation_disabled_warns_instead() -> None:
    h = _generated(days=90, rotation={"enabled": False})
    assert _reasons(h.tick(T0)) == ["CertificateGenerated", "KeyringUpdated"]
    serial = h.status["serialNumber"]
    assert "nextRotationTime" not in h.status
    assert h.tick(T0 + 59 * DAY) == []  # a third of the lifetime does not apply without rotation
    events = h.tick(T0 + 61 * DAY)
    assert h.status["serialNumber"] == serial
    assert _reasons(events) == ["RotationDisabled"]


def test_a_foreign_secret_with_the_generated_name_is_not_touched() -> None:
    h = _generated()
    h.cluster.put("rc-tls", {"tls.crt": b"someone else's", "tls.key": b"data"})
    events = h.tick(T0)
    assert _reasons(events) == ["SecretNotManaged"]
    assert h.secret("rc-tls").data == {"tls.crt": b"someone else's", "tls.key": b"data"}
    assert ("ns", "rc-keyring") not in h.cluster.secrets


# ---- uploaded certificates -----------------------------------------------------------------------------------


def _uploaded(key: bytes, cert: bytes, **ref: Any) -> Harness:
    h = Harness({"secretRef": {"name": "upload", **ref}, "usages": ["voice", "screen"]})
    h.cluster.put("upload", {"tls.crt": cert, "tls.key": key})
    return h


def test_upload_is_validated_kept_in_the_keyring_and_not_rotated() -> None:
    key, cert = _pair("up", days=40)
    h = _uploaded(key, cert)
    events = h.tick(T0)
    assert _reasons(events) == ["KeyringUpdated"]
    serial = _serial(cert)
    assert h.secret("rc-keyring").data == {f"{serial}.crt": cert, f"{serial}.key": key}
    assert h.cond("Ready")["status"] == "True"
    assert h.cond("Expiring")["status"] == "False"
    assert "nextRotationTime" not in h.status
    # within 30 days of expiry: a warning telling the user to upload a new pair, once; never rotated
    events = h.tick(T0 + 11 * DAY)
    assert _reasons(events) == ["RenewalRequired"]
    assert events[0].warning
    assert "Secret ns/upload" in events[0].message
    assert h.tick(T0 + 12 * DAY) == []
    assert h.secret("upload").data == {"tls.crt": cert, "tls.key": key}
    assert "patch upload" not in h.cluster.calls


def test_upload_replaced_by_the_user_retires_the_old_one() -> None:
    key, cert = _pair("up", days=40)
    h = _uploaded(key, cert)
    h.tick(T0)
    new_key, new_cert = _pair("up2", days=400)
    h.cluster.put("upload", {"tls.crt": new_cert, "tls.key": new_key})
    events = h.tick(T0 + DAY)
    assert _reasons(events) == ["KeyringUpdated", "CertificateReplaced"]
    assert h.status["serialNumber"] == _serial(new_cert)
    assert [r["serialNumber"] for r in h.status["retired"]] == [_serial(cert)]
    assert len(h.secret("rc-keyring").data) == 4


def test_expired_upload_is_listed_and_its_key_kept() -> None:
    key, cert = _pair("up", days=5)
    h = _uploaded(key, cert)
    events = h.tick(T0 + 6 * DAY)
    ready = h.cond("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Expired")
    assert h.cond("Expired")["status"] == "True"
    assert h.cond("Invalid")["status"] == "False"
    assert h.status["issuedTo"] == "Genesys Recording"
    assert _serial(cert) + ".key" in h.secret("rc-keyring").data
    assert set(_reasons(events)) == {"KeyringUpdated", "Expired", "RenewalRequired"}
    assert h.states.certificates[("ns", "rc")].ready is False


def test_key_mismatch_is_reported_once_and_not_kept() -> None:
    _, cert = _pair("up")
    other_key, _ = _pair("other")
    h = _uploaded(other_key, cert)
    events = h.tick(T0)
    assert [(e.warning, e.reason) for e in events] == [(True, "KeyMismatch")]
    ready, invalid = h.cond("Ready"), h.cond("Invalid")
    assert (ready["status"], ready["reason"]) == ("False", "KeyMismatch")
    assert (invalid["status"], invalid["reason"]) == ("True", "KeyMismatch")
    assert ("ns", "rc-keyring") not in h.cluster.secrets
    assert h.tick(T0 + DAY) == []


def test_missing_secret_then_created() -> None:
    h = Harness({"secretRef": {"name": "later"}})
    events = h.tick(T0)
    assert [(e.warning, e.reason) for e in events] == [(True, "SecretNotFound")]
    assert "Secret ns/later not found" in events[0].message
    assert h.cond("Ready")["reason"] == "SecretNotFound"
    assert h.tick(T0 + DAY) == []  # not every tick
    assert h.last_changes == {}
    key, cert = _pair("up")
    h.cluster.put("later", {"tls.crt": cert, "tls.key": key})
    events = h.tick(T0 + 2 * DAY)
    assert _reasons(events) == ["KeyringUpdated", "CertificateValid"]
    assert h.cond("Ready")["status"] == "True"


def test_password_protected_key_is_kept_as_uploaded() -> None:
    key, cert = _pair("up")
    private = serialization.load_pem_private_key(key, None)
    encrypted = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(PASSWORD)
    )
    h = Harness({"secretRef": {"name": "upload", "passwordKey": "password"}})
    h.cluster.put("upload", {"tls.crt": cert, "tls.key": encrypted})
    assert _reasons(h.tick(T0)) == ["SecretKeyMissing"]
    h.cluster.put("upload", {"tls.crt": cert, "tls.key": encrypted, "password": b"wrong"})
    assert _reasons(h.tick(T0)) == ["WrongPassword"]
    h.cluster.put("upload", {"tls.crt": cert, "tls.key": encrypted, "password": PASSWORD})
    events = h.tick(T0)
    assert _reasons(events) == ["KeyringUpdated", "CertificateValid"]
    ring = h.secret("rc-keyring").data
    assert ring[f"{_serial(cert)}.key"] == encrypted  # not decrypted, the password is not copied
    assert ring[f"{_serial(cert)}.password"] == PASSWORD
    assert all(PASSWORD.decode() not in e.message for e in h.events)
    assert PASSWORD.decode() not in repr(h.status)


# ---- usages, references, spec problems -------------------------------------------------------------------------


def test_usages_change_events() -> None:
    key, cert = _pair("up")
    h = _uploaded(key, cert)
    h.tick(T0)
    assert h.status["usages"] == ["voice", "screen"]
    h.spec["usages"] = ["voice"]
    h.generation = 2
    events = h.tick(T0 + DAY)
    assert [(e.warning, e.reason) for e in events] == [(True, "ScreenEncryptionRemoved")]
    assert "screen recordings will no longer be encrypted" in events[0].message
    assert h.status["usages"] == ["voice"]
    assert h.status["observedGeneration"] == 2
    assert h.tick(T0 + 2 * DAY) == []
    h.spec["usages"] = ["voice", "screen"]
    assert [(e.warning, e.reason) for e in h.tick(T0 + 3 * DAY)] == [(False, "ScreenEncryptionAdded")]


def test_deployed_count_from_export_jobs() -> None:
    key, cert = _pair("up")
    h = _uploaded(key, cert)
    h.cluster.objects["exportjobs"] = [
        {"metadata": {"name": "a"}, "spec": {"certificate": {"recordingCertificate": "rc"}}},
        {"metadata": {"name": "b"}, "spec": {"certificate": {"secret": "tls"}}},
    ]
    h.tick(T0)
    assert h.status["deployedCount"] == 1
    h.cluster.objects["exportjobs"] = []
    h.tick(T0)
    assert h.last_changes == {"deployedCount": 0}


def test_invalid_generate_parameters() -> None:
    h = Harness({"generate": {**GENERATE, "state": "   "}})
    events = h.tick(T0)
    assert _reasons(events) == ["InvalidSpec"]
    assert "spec.generate" in events[0].message
    assert ("ns", "rc-tls") not in h.cluster.secrets


def test_spec_the_api_would_reject_is_reported_not_raised() -> None:
    h = Harness({"generate": {**GENERATE, "keySize": 1024}})
    events = h.tick(T0)
    assert _reasons(events) == ["InvalidSpec"]
    assert "spec.generate.keySize" in events[0].message
    assert h.cond("Ready")["status"] == "False"


def test_a_resource_being_deleted_is_left_alone() -> None:
    h = _generated()
    h.tick(T0)
    h.states.certificates.clear()  # as the delete handler does
    body = h.body()
    body["metadata"]["deletionTimestamp"] = "2026-03-01T12:00:05Z"
    changes = reconcile_certificate(body, cluster=h.cluster, emit=h.events.append, now=T0, states=h.states)
    assert changes == {}
    assert h.states.certificates == {}
    assert ("ns", "rc-keyring") in h.cluster.secrets


# ---- nobody gets more than they had: the operator writes only into Secrets it created --------------------------


def test_a_keyring_secret_the_operator_did_not_create_is_never_written() -> None:
    h = _generated(keyringSecret="victim")
    h.cluster.put("victim", {"password": b"hunter2"}, {"app": "theirs"})
    events = h.tick(T0)
    assert [(e.warning, e.reason) for e in events] == [(True, "SecretNotManaged")]
    assert h.cond("Ready")["status"] == "False"
    assert h.cond("Ready")["message"].startswith("spec.keyringSecret: Secret ns/victim exists but is not the keyring")
    assert h.secret("victim").data == {"password": b"hunter2"} and h.secret("victim").labels == {"app": "theirs"}
    assert not [c for c in h.cluster.calls if c.endswith("victim")]
    assert ("ns", "rc-tls") not in h.cluster.secrets  # nothing generated while the keyring is refused


def test_another_certificates_keyring_is_not_shared() -> None:
    h = _generated(keyringSecret="other-ring")
    h.cluster.put("other-ring", {"1.key": b"k"}, {"cxbackup.io/keyring": "true", "cxbackup.io/certificate": "other"})
    assert _reasons(h.tick(T0)) == ["SecretNotManaged"]
    assert h.secret("other-ring").data == {"1.key": b"k"}


@pytest.mark.parametrize("keyring", ["rc2-keyring", "rcx-keyring", "victim-keyring", "rc-tls", "victim-tls"])
def test_a_keyring_secret_named_like_another_certificates_secrets_is_refused_naming_the_field(keyring: str) -> None:
    """`rc` may not name `rcx-keyring` (the default keyring of certificate `rcx`, whose name starts like its
    own) nor any other `-keyring` or `-tls` name but its own default, whether or not that Secret exists yet."""
    h = _generated(keyringSecret=keyring)
    events = h.tick(T0)
    assert [(e.warning, e.reason) for e in events] == [(True, "InvalidSpec")]
    message = h.cond("Ready")["message"]
    assert message.startswith(f"spec.keyringSecret: {keyring} ends with -keyring or -tls")
    assert "remove spec.keyringSecret (the keyring is then rc-keyring)" in message
    assert h.cluster.calls == []  # nothing created, nothing written


def test_its_own_default_name_may_be_given_explicitly() -> None:
    h = _generated(keyringSecret="rc-keyring")
    assert _reasons(h.tick(T0)) == ["CertificateGenerated", "KeyringUpdated"]
    assert h.secret("rc-keyring").annotations["cxbackup.io/certificate-uid"] == "u"


def test_a_keyring_made_before_keyrings_named_their_certificate_is_adopted_when_it_holds_the_current_pair() -> None:
    key, cert = _pair("legacy", days=40)
    h = Harness({"secretRef": {"name": "upload"}})
    h.cluster.put("upload", {"tls.crt": cert, "tls.key": key})
    serial = _serial(cert)
    labels = {"cxbackup.io/certificate": "rc", "cxbackup.io/keyring": "true"}
    h.cluster.put("rc-keyring", {f"{serial}.crt": cert, f"{serial}.key": key}, labels,
                  annotations={"cxbackup.io/keyring": "true"})  # fmt: skip
    h.tick(T0)
    assert h.cond("Ready")["status"] == "True"
    assert h.secret("rc-keyring").annotations == {"cxbackup.io/keyring": "true", "cxbackup.io/certificate-uid": "u"}


def test_a_keyring_made_before_keyrings_named_their_certificate_that_does_not_hold_its_pair_is_not_adopted() -> None:
    """A certificate created anew under the name of a deleted one (another pair) does not inherit its keyring."""
    key, cert = _pair("new", days=40)
    old_key, old_cert = _pair("old", days=41)
    h = Harness({"secretRef": {"name": "upload"}})
    h.cluster.put("upload", {"tls.crt": cert, "tls.key": key})
    labels = {"cxbackup.io/certificate": "rc", "cxbackup.io/keyring": "true"}
    old = {f"{_serial(old_cert)}.crt": old_cert, f"{_serial(old_cert)}.key": old_key}
    h.cluster.put("rc-keyring", old, labels)
    assert _reasons(h.tick(T0)) == ["SecretNotManaged"]
    message = h.cond("Ready")["message"]
    assert "names no certificate uid (cxbackup.io/certificate-uid)" in message
    assert "kubectl annotate secret rc-keyring -n ns cxbackup.io/certificate-uid=u" in message
    assert h.secret("rc-keyring").data == old and h.secret("rc-keyring").annotations == {}
    assert not [c for c in h.cluster.calls if c.endswith("rc-keyring")]


def test_the_keyring_of_a_deleted_certificate_of_the_same_name_is_not_written() -> None:
    h = _generated()
    labels = {"cxbackup.io/certificate": "rc", "cxbackup.io/keyring": "true"}
    h.cluster.put("rc-keyring", {"1.key": b"k"}, labels, annotations={"cxbackup.io/certificate-uid": "earlier"})
    assert _reasons(h.tick(T0)) == ["SecretNotManaged"]
    assert "is the keyring of an earlier RecordingCertificate rc (uid earlier)" in h.cond("Ready")["message"]
    assert h.secret("rc-keyring").data == {"1.key": b"k"}
    assert ("ns", "rc-tls") not in h.cluster.secrets


@pytest.mark.parametrize(
    ("labels", "owner"),
    [
        ({"cxbackup.io/certificate": "other"}, "RecordingCertificate other"),
        ({"cxbackup.io/keyring": "true", "cxbackup.io/certificate": "rc"}, "a keyring"),
    ],
)
def test_an_upload_cannot_point_at_another_certificates_keys(labels: dict[str, str], owner: str) -> None:
    key, cert = _pair("up", days=40)
    h = Harness({"secretRef": {"name": "upload"}})
    h.cluster.put("upload", {"tls.crt": cert, "tls.key": key}, labels)
    assert _reasons(h.tick(T0)) == ["SecretNotManaged"]
    assert f"holds the keys of {owner}" in h.cond("Ready")["message"]
    assert ("ns", "rc-keyring") not in h.cluster.secrets
