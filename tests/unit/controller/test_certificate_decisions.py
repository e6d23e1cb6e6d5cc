"""RecordingCertificate decisions (pure, clock injected): source, validation, keyring, rotation, events."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any

from cxbackup.api.certificate import RecordingCertificate
from cxbackup.api.status import CertificateReason
from cxbackup.certs.generate import generate_pair
from cxbackup.certs.validation import inspect_certificate
from cxbackup.controller.certificate.decisions import (
    LABEL_CERTIFICATE,
    GeneratePair,
    KeyPair,
    SourceProblem,
    certificate_conditions,
    condition_events,
    count_references,
    evaluate,
    keyring_additions,
    keyring_fingerprints,
    keyring_secret_name,
    plan_rotation,
    plan_source,
    problem_conditions,
    retire,
    source_secret_name,
    status_changes,
    usage_events,
)
from cxbackup.controller.conditions import condition

T0 = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
GENERATE = {"commonName": "Genesys Recording", "country": "US", "state": "California", "organization": "Genesys"}


@functools.cache
def _pair(seed: str, days: int = 365, start: dt.datetime = T0) -> KeyPair:
    """A real key pair (cached: RSA generation is the slow part); `seed` only tells pairs apart."""
    key, cert = generate_pair("Genesys Recording", "US", "California", "Genesys", days, now=start)
    return KeyPair(cert, key)


def _cert(spec: dict[str, Any], status: dict[str, Any] | None = None) -> RecordingCertificate:
    body: dict[str, Any] = {"metadata": {"name": "rc", "namespace": "ns", "generation": 3}, "spec": spec}
    if status is not None:
        body["status"] = status
    return RecordingCertificate.model_validate(body)


def _generated(**over: Any) -> RecordingCertificate:
    spec: dict[str, Any] = {"generate": {**GENERATE, "validityDays": 90}}
    spec.update(over)
    return _cert(spec)


def _uploaded(**ref: Any) -> RecordingCertificate:
    return _cert({"secretRef": {"name": "upload", **ref}, "usages": ["voice", "screen"]})


# ---- where the pair comes from -----------------------------------------------------------------------------


def test_secret_names_default_and_override() -> None:
    assert source_secret_name(_generated()) == "rc-tls"
    assert keyring_secret_name(_generated()) == "rc-keyring"
    assert source_secret_name(_uploaded()) == "upload"
    assert keyring_secret_name(_generated(keyringSecret="all-keys")) == "all-keys"


def test_generate_on_first_sight_then_read_back_only_our_own_secret() -> None:
    cert = _generated()
    planned = plan_source(cert, None, None)
    assert planned == GeneratePair("Genesys Recording", "US", "California", "Genesys", 90, 2048)
    pair = _pair("a")
    data = {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem}
    assert plan_source(cert, data, {LABEL_CERTIFICATE: "rc"}) == pair
    foreign = plan_source(cert, data, {})
    assert isinstance(foreign, SourceProblem)
    assert foreign.reason == CertificateReason.SECRET_NOT_MANAGED
    assert "ns/rc-tls" in foreign.message


def test_uploaded_secret_missing_or_incomplete() -> None:
    missing = plan_source(_uploaded(), None, None)
    assert isinstance(missing, SourceProblem)
    assert missing.reason == "SecretNotFound"
    assert "Secret ns/upload not found" in missing.message
    assert "spec.secretRef.name" in missing.message
    pair = _pair("a")
    incomplete = plan_source(_uploaded(passwordKey="pw"), {"tls.crt": pair.cert_pem, "tls.key": pair.key_pem}, {})
    assert isinstance(incomplete, SourceProblem)
    assert incomplete.reason == "SecretKeyMissing"
    assert incomplete.message.endswith("has no key pw")


def test_uploaded_secret_with_custom_keys_and_password() -> None:
    pair = _pair("a")
    cert = _uploaded(certificateKey="tenant.pem", privateKeyKey="tenant.key", passwordKey="pw")
    data = {"tenant.pem": pair.cert_pem, "tenant.key": pair.key_pem, "pw": b"secret"}
    assert plan_source(cert, data, None) == KeyPair(pair.cert_pem, pair.key_pem, b"secret")


# ---- validation ----------------------------------------------------------------------------------------------


def test_evaluate_valid_expired_and_mismatched() -> None:
    pair = _pair("a", days=10)
    ok = evaluate(pair, T0 + DAY)
    assert ok.problem is None
    assert ok.key_matches
    expired = evaluate(pair, T0 + 11 * DAY)
    assert expired.problem is not None
    assert expired.problem.reason == "Expired"
    assert expired.info is not None
    assert expired.key_matches  # expired pairs still go into the keyring
    other = _pair("b")
    mismatch = evaluate(KeyPair(pair.cert_pem, other.key_pem), T0 + DAY)
    assert mismatch.problem is not None
    assert mismatch.problem.reason == "KeyMismatch"
    assert not mismatch.key_matches
    garbage = evaluate(KeyPair(b"not a certificate", pair.key_pem), T0)
    assert garbage.info is None
    assert not garbage.key_matches


def test_conditions_for_valid_pair() -> None:
    cert = _generated()
    pair = _pair("a", days=90)
    ev = evaluate(pair, T0 + DAY)
    assert ev.info is not None
    plan = plan_rotation(cert, ev.info, T0 + DAY)
    conds = certificate_conditions(None, cert, ev, plan, T0 + DAY)
    assert [c["type"] for c in conds] == ["Ready", "Expired", "Expiring", "Invalid"]
    ready = condition(conds, "Ready")
    assert ready is not None
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == ("True", "CertificateValid", 3)
    statuses = {c["type"]: (c["status"], c["reason"]) for c in conds}
    assert statuses["Expiring"] == ("False", "NotExpiring")
    assert statuses["Expired"] == ("False", "NotExpired")
    assert statuses["Invalid"] == ("False", "CertificateValid")


def test_conditions_for_mismatched_and_expired_pairs() -> None:
    cert = _uploaded()
    pair = _pair("a", days=10)
    mismatch = evaluate(KeyPair(pair.cert_pem, _pair("b").key_pem), T0 + DAY)
    assert mismatch.info is not None
    conds = certificate_conditions(None, cert, mismatch, plan_rotation(cert, mismatch.info, T0 + DAY), T0 + DAY)
    assert condition(conds, "Ready")["reason"] == "KeyMismatch"  # type: ignore[index]
    assert condition(conds, "Invalid")["status"] == "True"  # type: ignore[index]
    assert condition(conds, "Invalid")["reason"] == "KeyMismatch"  # type: ignore[index]
    later = T0 + 11 * DAY
    expired = evaluate(pair, later)
    assert expired.info is not None
    conds = certificate_conditions(None, cert, expired, plan_rotation(cert, expired.info, later), later)
    assert condition(conds, "Ready")["reason"] == "Expired"  # type: ignore[index]
    assert condition(conds, "Expired")["status"] == "True"  # type: ignore[index]
    assert condition(conds, "Invalid")["status"] == "False"  # type: ignore[index]
    assert condition(conds, "Expiring")["status"] == "True"  # type: ignore[index]


def test_expiring_within_30_days_or_renew_before() -> None:
    cert = _uploaded()
    pair = _pair("a", days=3650)
    at = inspect_certificate(pair.cert_pem, now=T0).not_after
    for now, expected in ((at - 31 * DAY, "False"), (at - 29 * DAY, "True")):
        ev = evaluate(pair, now)
        assert ev.info is not None
        conds = certificate_conditions(None, cert, ev, plan_rotation(cert, ev.info, now), now)
        assert condition(conds, "Expiring")["status"] == expected, now  # type: ignore[index]
    # a renewBefore longer than 30 days moves the start of the renewal period earlier
    long = _cert({"secretRef": {"name": "upload"}, "rotation": {"renewBefore": "P90D"}})
    now = at - 60 * DAY
    ev = evaluate(pair, now)
    assert ev.info is not None
    conds = certificate_conditions(None, long, ev, plan_rotation(long, ev.info, now), now)
    expiring = condition(conds, "Expiring")
    assert expiring is not None
    assert (expiring["status"], expiring["reason"]) == ("True", "RenewalRequired")
    assert "not rotated automatically" in expiring["message"]
    assert "Secret ns/upload" in expiring["message"]


def test_problem_conditions_leave_the_rest_unknown() -> None:
    conds = problem_conditions(None, _uploaded(), SourceProblem("SecretNotFound", "Secret ns/upload not found"), T0)
    assert condition(conds, "Ready") == {
        "type": "Ready",
        "status": "False",
        "reason": "SecretNotFound",
        "message": "Secret ns/upload not found",
        "lastTransitionTime": "2026-03-01T12:00:00Z",
        "observedGeneration": 3,
    }
    assert {c["status"] for c in conds if c["type"] != "Ready"} == {"Unknown"}


# ---- rotation -------------------------------------------------------------------------------------------------


def test_rotation_default_is_a_third_of_the_lifetime() -> None:
    cert = _generated()
    info = inspect_certificate(_pair("a", days=90).cert_pem, now=T0)
    plan = plan_rotation(cert, info, T0 + 59 * DAY)
    assert (plan.automatic, plan.due, plan.at) == (True, False, T0 + 60 * DAY)
    assert plan_rotation(cert, info, T0 + 60 * DAY).due


def test_rotation_renew_before_and_window() -> None:
    cert = _generated(rotation={"renewBefore": "P10D", "windowStart": "02:00", "windowEnd": "04:00"})
    info = inspect_certificate(_pair("a", days=90).cert_pem, now=T0)
    # renewal at T0+80d 12:00 is outside 02:00-04:00: the next window start
    plan = plan_rotation(cert, info, T0 + 80 * DAY)
    assert (plan.due, plan.at) == (False, dt.datetime(2026, 5, 21, 2, 0, tzinfo=dt.UTC))
    assert plan_rotation(cert, info, dt.datetime(2026, 5, 21, 2, 30, tzinfo=dt.UTC)).due


def test_no_automatic_rotation_for_uploads_or_when_disabled() -> None:
    info = inspect_certificate(_pair("a", days=90).cert_pem, now=T0)
    late = T0 + 89 * DAY
    upload = plan_rotation(_uploaded(), info, late)
    assert (upload.automatic, upload.due, upload.at) == (False, False, None)
    assert upload.renewal is None  # only the 30-day rule, unless renewBefore is set
    explicit = plan_rotation(_cert({"secretRef": {"name": "upload"}, "rotation": {"renewBefore": "P7D"}}), info, late)
    assert explicit.renewal == T0 + 83 * DAY
    disabled = plan_rotation(_generated(rotation={"enabled": False}), info, late)
    assert (disabled.automatic, disabled.due) == (False, False)


def test_invalid_rotation_settings_are_reported() -> None:
    cert = _generated(rotation={"windowStart": "02:00"})
    info = inspect_certificate(_pair("a", days=90).cert_pem, now=T0)
    plan = plan_rotation(cert, info, T0)
    assert plan.error is not None
    assert "windowStart and windowEnd" in plan.error
    ev = evaluate(_pair("a", days=90), T0)
    conds = certificate_conditions(None, cert, ev, plan, T0)
    assert condition(conds, "Ready")["reason"] == "InvalidSpec"  # type: ignore[index]


def test_a_rotated_certificate_is_not_due_again_at_once() -> None:
    """A certificate renewed 10 days before expiry is due again only 20 days after the renewal."""
    cert = _generated(rotation={"renewBefore": "P10D"})
    first = inspect_certificate(_pair("a", days=30, start=T0 - 25 * DAY).cert_pem, now=T0)
    assert plan_rotation(cert, first, T0).due
    renewed_at = T0 + dt.timedelta(seconds=5)
    second = inspect_certificate(_pair("b", days=30, start=renewed_at).cert_pem, now=renewed_at)
    plan = plan_rotation(cert, second, renewed_at + dt.timedelta(minutes=5))
    assert not plan.due
    assert plan.at == renewed_at + 20 * DAY


def test_rotating_more_often_than_half_the_lifetime_is_refused() -> None:
    """renewBefore near the lifetime would rotate at every reconcile and fill the keyring: refused, naming
    the field and the largest allowed value."""
    cert = _generated(rotation={"renewBefore": "PT23H59M59S"})
    info = inspect_certificate(_pair("a", days=1).cert_pem, now=T0)
    plan = plan_rotation(cert, info, T0 + dt.timedelta(seconds=1))
    assert not plan.due and plan.error is not None
    assert plan.error.startswith("spec.rotation: renewBefore PT23H59M59S is more than half the certificate's lifetime")


def test_two_rotations_are_at_least_a_day_apart() -> None:
    cert = _generated(rotation={"renewBefore": "P1D"})
    info = inspect_certificate(_pair("a", days=2, start=T0).cert_pem, now=T0)
    plan = plan_rotation(cert, info, T0 + dt.timedelta(hours=23))
    assert not plan.due and plan.at == T0 + DAY
    assert plan_rotation(cert, info, T0 + DAY).due


# ---- keyring -------------------------------------------------------------------------------------------------


def test_keyring_adds_each_pair_once_under_its_serial() -> None:
    pair = _pair("a")
    serial = inspect_certificate(pair.cert_pem, now=T0).serial_number
    added = keyring_additions({}, serial, pair)
    assert added == {f"{serial}.crt": pair.cert_pem, f"{serial}.key": pair.key_pem}
    assert keyring_additions(added, serial, pair) == {}
    assert keyring_fingerprints(added) == {inspect_certificate(pair.cert_pem, now=T0).fingerprint}


def test_keyring_never_overwrites_a_taken_name() -> None:
    pair, other = _pair("a"), _pair("b")
    existing = {"2.crt": other.cert_pem, "2.key": other.key_pem}
    added = keyring_additions(existing, "2", pair)
    assert added == {"2-1.crt": pair.cert_pem, "2-1.key": pair.key_pem}
    assert keyring_additions({**existing, **added}, "2", _pair("c")).keys() == {"2-2.crt", "2-2.key"}


def test_keyring_fingerprints_need_the_key_next_to_the_certificate() -> None:
    pair = _pair("a")
    assert keyring_fingerprints({"1.crt": pair.cert_pem}) == set()
    assert keyring_fingerprints({"1.crt": b"junk", "1.key": b"junk"}) == set()


# ---- retired, usages, references, status ---------------------------------------------------------------------


def _status(pair: KeyPair) -> dict[str, Any]:
    return {k: v for k, v in inspect_certificate(pair.cert_pem, now=T0).to_dict().items() if k != "keyDetails"}


def test_retire_lists_the_previous_certificate_once_if_its_key_is_kept() -> None:
    old, new = _pair("a"), _pair("b")
    old_status, new_info = _status(old), inspect_certificate(new.cert_pem, now=T0)
    kept = {old_status["fingerprint"]}
    retired = retire(old_status, new_info, kept)
    assert retired == [
        {
            "serialNumber": old_status["serialNumber"],
            "fingerprint": old_status["fingerprint"],
            "notAfter": old_status["notAfter"],
        }
    ]
    assert retire({**old_status, "retired": retired}, new_info, kept) == retired
    assert retire(old_status, new_info, set()) == []  # not in the keyring: nothing to list
    # rolling back to a retired pair takes it off the list
    back = inspect_certificate(old.cert_pem, now=T0)
    assert retire({**_status(new), "retired": retired}, back, kept | {new_info.fingerprint}) == [
        {
            "serialNumber": new_info.serial_number,
            "fingerprint": new_info.fingerprint,
            "notAfter": _status(new)["notAfter"],
        }
    ]


def test_usage_events() -> None:
    assert usage_events(None, ["voice"]) == []
    assert usage_events(["voice"], ["voice"]) == []
    (removed,) = usage_events(["voice", "screen"], ["voice"])
    assert (removed.warning, removed.reason) == (True, "ScreenEncryptionRemoved")
    assert "screen recordings will no longer be encrypted" in removed.message
    assert "Do not remove it without discussing this with your vendor" in removed.message
    (added,) = usage_events(["voice"], ["screen", "voice"])
    assert (added.warning, added.reason) == (False, "ScreenEncryptionAdded")


def test_count_references() -> None:
    def ej(cert: str | None, deleting: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": "x"}
        if deleting:
            meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
        return {"metadata": meta, "spec": {"certificate": {"recordingCertificate": cert} if cert else {"secret": "s"}}}

    jobs = [ej("rc"), ej("rc"), ej("other"), ej(None), ej("rc", deleting=True), {"spec": {}}]
    assert count_references("rc", jobs) == 2
    assert count_references("rc", [], [{"spec": {"certificate": {"recordingCertificate": "rc"}}}]) == 1
    assert count_references("rc", []) == 0


def test_condition_events_only_on_change() -> None:
    cert = _uploaded()
    problem = SourceProblem("SecretNotFound", "Secret ns/upload not found")
    first = problem_conditions(None, cert, problem, T0)
    (event,) = condition_events(None, first, automatic_rotation=False)
    assert (event.warning, event.reason, event.message) == (True, "SecretNotFound", "Secret ns/upload not found")
    again = problem_conditions(first, cert, problem, T0 + DAY)
    assert condition_events(first, again, automatic_rotation=False) == []
    assert again == first  # lastTransitionTime kept: nothing to write
    ev = evaluate(_pair("a"), T0 + DAY)
    assert ev.info is not None
    fixed = certificate_conditions(again, cert, ev, plan_rotation(cert, ev.info, T0 + DAY), T0 + DAY)
    (back,) = condition_events(again, fixed, automatic_rotation=False)
    assert (back.warning, back.reason) == (False, "CertificateValid")


def test_status_changes_skip_equal_fields() -> None:
    old = {"issuedTo": "a", "deployedCount": 1, "retired": None}
    assert status_changes(old, {"issuedTo": "a", "deployedCount": 2, "retired": None, "nextRotationTime": None}) == {
        "deployedCount": 2
    }


def test_evaluate_never_reports_key_material() -> None:
    pair = _pair("a")
    ev = evaluate(KeyPair(pair.cert_pem, b"-----BEGIN PRIVATE KEY-----\nQUJD\n-----END PRIVATE KEY-----\n"), T0)
    assert ev.problem is not None
    assert "QUJD" not in ev.problem.message
