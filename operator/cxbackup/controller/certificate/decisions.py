"""Decisions about RecordingCertificates, as pure functions of (resource, Secret contents, now).

Nothing here does I/O; the clock is passed in. recordingcertificate.py reads the Secrets, calls these
functions and writes what they decide.

- `plan_source` says where the current key pair comes from: the uploaded Secret (spec.secretRef), the
  generated Secret `<name>-tls`, a pair still to generate (spec.generate, first reconcile), or a problem
  (Secret or key missing, a Secret of that name the operator does not manage).
- `evaluate` validates the pair at `now` and says whether the key belongs to the certificate (only
  such pairs go into the keyring; expired ones do, their keys read old recordings).
- `keyring_additions` / `keyring_fingerprints` keep the keyring Secret: every pair as `<serial>.crt` +
  `<serial>.key` (decimal serial), added, never overwritten, never removed.
- `plan_rotation` says whether the operator renews the certificate now (generated certificates with
  rotation enabled only) and when the certificate enters its renewal period.
- `certificate_conditions` / `problem_conditions` give Ready, Expiring, Expired and Invalid;
  `condition_events` the Events for conditions that changed (so nothing is repeated every tick).
- `usage_events` warns when screen encryption is removed, `retire` keeps status.retired,
  `count_references` gives deployedCount, `status_changes` the status fields that differ.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes

from cxbackup.api.certificate import CertificateRotation, RecordingCertificate, keyring_name_problem
from cxbackup.api.status import CertificateReason, ConditionType
from cxbackup.certs.keyring import secret_additions
from cxbackup.certs.rotation import parse_duration, parse_window, rotation_due
from cxbackup.certs.validation import (
    CertificateInfo,
    CertificateInvalid,
    Reason,
    check_private_key,
    inspect_certificate,
    load_certificate,
)
from cxbackup.controller.conditions import condition, set_condition
from cxbackup.controller.events import EventSpec

__all__ = [
    "ANNOTATION_CERTIFICATE_UID",
    "ANNOTATION_KEYRING",
    "EXPIRING_WITHIN",
    "LABEL_CERTIFICATE",
    "LABEL_KEYRING",
    "TLS_CERT",
    "TLS_KEY",
    "Evaluation",
    "EventSpec",
    "GeneratePair",
    "KeyPair",
    "RotationPlan",
    "SourceProblem",
    "certificate_conditions",
    "condition_events",
    "count_references",
    "evaluate",
    "keyring_additions",
    "keyring_fingerprints",
    "keyring_problem",
    "keyring_read_problem",
    "keyring_secret_name",
    "plan_rotation",
    "plan_source",
    "problem_conditions",
    "retire",
    "source_secret_name",
    "status_changes",
    "usage_events",
]

LABEL_CERTIFICATE = "cxbackup.io/certificate"
"""Label on every key-holding Secret the operator writes: the RecordingCertificate's name."""
LABEL_KEYRING = "cxbackup.io/keyring"
"""Label (and annotation) "true" on keyring Secrets, so `kubectl get secret -l cxbackup.io/keyring=true`
finds them all for a backup."""
ANNOTATION_KEYRING = "cxbackup.io/keyring"
ANNOTATION_CERTIFICATE_UID = "cxbackup.io/certificate-uid"
"""On a keyring Secret: the metadata.uid of the RecordingCertificate it was created for (or adopted by, once it
was shown to hold that certificate's current pair). A certificate deleted and created again with the same name
has another uid, so the name label alone does not make a keyring its own."""
TLS_CERT = "tls.crt"
TLS_KEY = "tls.key"
EXPIRING_WITHIN = dt.timedelta(days=30)
"""Expiring is True this long before notAfter at the latest (or from the renewal time, if earlier)."""

_VALIDITY_REASONS = {Reason.EXPIRED, Reason.NOT_YET_VALID}
_KEY_REASONS = {Reason.KEY_INVALID, Reason.PASSWORD_REQUIRED, Reason.WRONG_PASSWORD, Reason.KEY_MISMATCH}


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key (PEM bytes, as stored), and the key's password if any."""

    cert_pem: bytes
    key_pem: bytes
    password: bytes | None = None


@dataclass(frozen=True)
class GeneratePair:
    """spec.generate and no `<name>-tls` Secret yet: generate a pair with these parameters."""

    common_name: str
    country: str
    state: str
    organization: str
    validity_days: int
    key_size: int


@dataclass(frozen=True)
class SourceProblem:
    """The pair cannot be read; `reason` is a constant for the Ready condition and the Event."""

    reason: str
    message: str


@dataclass(frozen=True)
class Evaluation:
    """A pair validated at a moment: what it is, what is wrong with it, whether the key is its own."""

    info: CertificateInfo | None
    problem: CertificateInvalid | None
    key_matches: bool


@dataclass(frozen=True)
class RotationPlan:
    """What rotation does: `automatic` (the operator renews), `due` now, `at` (nextRotationTime),
    `renewal` (start of the renewal period, for Expiring), `error` (invalid rotation settings)."""

    automatic: bool
    due: bool
    at: dt.datetime | None
    renewal: dt.datetime | None
    error: str | None = None


def _day(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _name(cert: RecordingCertificate) -> str:
    return str(cert.metadata.get("name", ""))


def _namespace(cert: RecordingCertificate) -> str:
    return str(cert.metadata.get("namespace", ""))


def source_secret_name(cert: RecordingCertificate) -> str:
    """The Secret holding the current pair: spec.secretRef.name, or `<name>-tls` for generated ones."""
    if cert.spec.secret_ref is not None:
        return cert.spec.secret_ref.name
    return f"{_name(cert)}-tls"


def keyring_secret_name(cert: RecordingCertificate) -> str:
    return cert.spec.keyring_secret or f"{_name(cert)}-keyring"


def _uid(cert: RecordingCertificate) -> str:
    return str(cert.metadata.get("uid") or "")


def _keyring_field(cert: RecordingCertificate) -> str:
    return "spec.keyringSecret" if cert.spec.keyring_secret else "the keyring Secret"


def keyring_problem(
    cert: RecordingCertificate, labels: Mapping[str, str] | None, annotations: Mapping[str, str] | None = None
) -> SourceProblem | None:
    """None when the keyring Secret does not exist yet (the operator creates it) or is the one the operator
    created for this certificate (labels, and the certificate's uid when the keyring names one; a keyring
    naming none is adopted by the handler only once it holds the current pair); otherwise the operator must not
    write into it. A keyringSecret that could be another certificate's (`keyring_name_problem`) is InvalidSpec."""
    if (name_problem := keyring_name_problem(_name(cert), cert.spec.keyring_secret)) is not None:
        return SourceProblem(CertificateReason.INVALID_SPEC, name_problem)
    if labels is None:
        return None
    field, where = _keyring_field(cert), f"{_namespace(cert)}/{keyring_secret_name(cert)}"
    if labels.get(LABEL_KEYRING) != "true" or labels.get(LABEL_CERTIFICATE) != _name(cert):
        return SourceProblem(
            CertificateReason.SECRET_NOT_MANAGED,
            f"{field}: Secret {where} exists but is not the keyring the operator created for this certificate "
            f"(labels {LABEL_KEYRING}=true, {LABEL_CERTIFICATE}={_name(cert)}); the operator writes only into "
            "Secrets it created. Name a Secret that does not exist yet (the operator creates it)",
        )
    owner = (annotations or {}).get(ANNOTATION_CERTIFICATE_UID)
    if owner is not None and owner != _uid(cert):
        return SourceProblem(
            CertificateReason.SECRET_NOT_MANAGED,
            f"{field}: Secret {where} is the keyring of an earlier RecordingCertificate {_name(cert)} (uid {owner}), "
            f"not of this one (uid {_uid(cert)}): the certificate was deleted and created again. If this one is "
            f"its successor with the same keys, let the keyring's owner remove its annotation "
            f"{ANNOTATION_CERTIFICATE_UID}; the operator adopts it once it holds this certificate's current pair",
        )
    return None


def keyring_read_problem(
    cert: RecordingCertificate, labels: Mapping[str, str] | None, annotations: Mapping[str, str] | None
) -> str | None:
    """Why the keyring Secret of `cert` (its labels and annotations; None: it does not exist) cannot be taken
    for this certificate's own when something is about to use its keys, or None. Stricter than
    `keyring_problem`: the keyring must name this certificate's uid (annotation cxbackup.io/certificate-uid,
    written when the operator created or adopted it), so another certificate pointing spec.keyringSecret at
    it, or a certificate recreated under the same name, never makes it theirs."""
    where = f"{_keyring_field(cert)} (Secret {_namespace(cert)}/{keyring_secret_name(cert)})"
    if (name_problem := keyring_name_problem(_name(cert), cert.spec.keyring_secret)) is not None:
        return name_problem
    if labels is None:
        return f"{where} does not exist yet"
    if (problem := keyring_problem(cert, labels, annotations)) is not None:
        return problem.message
    if not _uid(cert) or (annotations or {}).get(ANNOTATION_CERTIFICATE_UID) != _uid(cert):
        return (
            f"{where} does not name this RecordingCertificate's uid ({_uid(cert) or 'unknown'}) in its annotation "
            f"{ANNOTATION_CERTIFICATE_UID}: it is not known to be this certificate's own. The operator adds the "
            "annotation when it reconciles the RecordingCertificate and finds its current pair in the keyring"
        )
    return None


def plan_source(
    cert: RecordingCertificate, data: Mapping[str, bytes] | None, labels: Mapping[str, str] | None
) -> KeyPair | GeneratePair | SourceProblem:
    """Where the current pair comes from, given the source Secret's data and labels (None: no Secret)."""
    ns, secret = _namespace(cert), source_secret_name(cert)
    ref = cert.spec.secret_ref
    if ref is not None:
        keys = [ref.certificate_key, ref.private_key_key] + ([ref.password_key] if ref.password_key else [])
        if data is None:
            return SourceProblem(
                CertificateReason.SECRET_NOT_FOUND,
                f"spec.secretRef.name: Secret {ns}/{secret} not found; create it with keys {', '.join(keys)} "
                "(the certificate PEM and its private key PEM)",
            )
        owner = (labels or {}).get(LABEL_CERTIFICATE)
        if (labels or {}).get(LABEL_KEYRING) or (owner is not None and owner != _name(cert)):
            return SourceProblem(
                CertificateReason.SECRET_NOT_MANAGED,
                f"spec.secretRef.name: Secret {ns}/{secret} holds the keys of "
                + ("a keyring" if (labels or {}).get(LABEL_KEYRING) else f"RecordingCertificate {owner}")
                + "; an uploaded certificate must be in a Secret of its own",
            )
        missing = [k for k in keys if k not in data]
        if missing:
            return SourceProblem(
                CertificateReason.SECRET_KEY_MISSING,
                f"spec.secretRef: Secret {ns}/{secret} has no key {', '.join(missing)}",
            )
        password = data[ref.password_key] if ref.password_key else None
        return KeyPair(data[ref.certificate_key], data[ref.private_key_key], password or None)
    generate = cert.spec.generate
    if generate is None:  # the CRD's CEL rule requires one of them
        return SourceProblem(
            CertificateReason.INVALID_SPEC, "set exactly one of spec.secretRef (upload) or spec.generate"
        )
    if data is None:
        return GeneratePair(
            generate.common_name,
            generate.country,
            generate.state,
            generate.organization,
            generate.validity_days,
            generate.key_size,
        )
    if (labels or {}).get(LABEL_CERTIFICATE) != _name(cert):
        return SourceProblem(
            CertificateReason.SECRET_NOT_MANAGED,
            f"Secret {ns}/{secret} exists but is not labelled {LABEL_CERTIFICATE}={_name(cert)}; the operator "
            "does not use or overwrite a Secret it did not create. Rename that Secret, or label it if it "
            "holds this certificate's pair (restored from a backup)",
        )
    missing = [k for k in (TLS_CERT, TLS_KEY) if k not in data]
    if missing:
        return SourceProblem(
            CertificateReason.SECRET_KEY_MISSING, f"Secret {ns}/{secret} has no key {', '.join(missing)}"
        )
    return KeyPair(data[TLS_CERT], data[TLS_KEY])


def evaluate(pair: KeyPair, now: dt.datetime) -> Evaluation:
    """Validate the pair at `now`; `key_matches` also for expired or not-yet-valid certificates."""
    try:
        info = inspect_certificate(pair.cert_pem, pair.key_pem, pair.password, now=now)
    except CertificateInvalid as exc:
        matches = False
        if exc.info is not None and exc.reason not in _KEY_REASONS:
            try:
                check_private_key(load_certificate(pair.cert_pem), pair.key_pem, pair.password)
                matches = True
            except CertificateInvalid:
                matches = False
        return Evaluation(exc.info, exc, matches)
    return Evaluation(info, None, True)


def _fingerprint(cert_pem: bytes) -> str | None:
    try:
        return load_certificate(cert_pem).fingerprint(hashes.SHA256()).hex(":").upper()
    except CertificateInvalid:
        return None


def keyring_fingerprints(data: Mapping[str, bytes]) -> set[str]:
    """SHA-256 fingerprints of the certificates in a keyring that have their key next to them."""
    out: set[str] = set()
    for name, value in data.items():
        if name.endswith(".crt") and f"{name[:-4]}.key" in data:
            fingerprint = _fingerprint(value)
            if fingerprint:
                out.add(fingerprint)
    return out


def keyring_additions(data: Mapping[str, bytes], serial: str, pair: KeyPair) -> dict[str, bytes]:
    """The data keys to add so the keyring holds `pair` ({} when it already does): `<serial>.crt`,
    `<serial>.key` (exactly as stored; an encrypted key stays encrypted) and, for an encrypted key, its
    password as `<serial>.password`, so that every key in the keyring stays usable. Names already taken
    are never overwritten (certs.keyring.secret_additions)."""
    return secret_additions(data, serial, pair.cert_pem, pair.key_pem, pair.password)


MIN_ROTATION_INTERVAL = dt.timedelta(days=1)
"""The least time between two rotations of one certificate (its notBefore and the next rotation)."""


def plan_rotation(cert: RecordingCertificate, info: CertificateInfo, now: dt.datetime) -> RotationPlan:
    """Rotation for the current certificate: generated ones with rotation enabled are renewed by the
    operator when rotation_due says so (renewBefore default: a third of the lifetime). Others are not
    renewed; their renewal period (for Expiring) starts renewBefore before expiry when it is set, else
    only the 30-day rule applies (a third of a 10-year upload would warn for three years)."""
    rotation = cert.spec.rotation or CertificateRotation()
    try:
        renew_before = parse_duration(rotation.renew_before) if rotation.renew_before else None
        window = parse_window(rotation.window_start, rotation.window_end)
        _, renewal = rotation_due(info.not_before, info.not_after, now, renew_before)
        if cert.spec.generate is None or not rotation.enabled:
            return RotationPlan(False, False, None, renewal if renew_before is not None else None)
        lifetime = info.not_after - info.not_before
        if renew_before is not None and renew_before > lifetime / 2:
            raise ValueError(
                f"renewBefore {rotation.renew_before} is more than half the certificate's lifetime "
                f"({lifetime.days} days): rotating that often only fills the keyring; use at most "
                f"{(lifetime / 2).days} days"
            )
        due, at = rotation_due(info.not_before, info.not_after, now, renew_before, window)
    except ValueError as exc:
        return RotationPlan(False, False, None, None, f"spec.rotation: {exc}")
    # never two rotations closer than MIN_ROTATION_INTERVAL, whatever the certificate's dates say
    earliest = info.not_before + MIN_ROTATION_INTERVAL
    if at < earliest:
        due, at = now >= earliest and due, earliest
    return RotationPlan(True, due, at, renewal)


def _set(
    conditions: list[dict[str, Any]] | None,
    ctype: str,
    status: str,
    reason: str,
    message: str,
    now: dt.datetime,
    generation: int | None,
) -> list[dict[str, Any]]:
    return set_condition(
        conditions, ctype, status, str(reason), message, now=now.replace(microsecond=0), generation=generation
    )


def _expiring(
    cert: RecordingCertificate, info: CertificateInfo, plan: RotationPlan, now: dt.datetime, rotation_error: str | None
) -> tuple[str, str, str]:
    """(status, reason, message) of the Expiring condition."""
    threshold = info.not_after - EXPIRING_WITHIN
    if plan.renewal is not None:
        threshold = min(threshold, plan.renewal)
    expires = _day(info.not_after)
    if now < threshold:
        return "False", CertificateReason.NOT_EXPIRING, f"expires {expires}; renewal period from {_day(threshold)}"
    if rotation_error is not None:
        return (
            "True",
            CertificateReason.ROTATION_FAILED,
            f"expires {expires}; rotation failed, the current pair stays in use: {rotation_error}",
        )
    if plan.automatic and plan.at is not None:
        return (
            "True",
            CertificateReason.ROTATION_SCHEDULED,
            f"expires {expires}; the operator rotates it at {_day(plan.at)}",
        )
    if cert.spec.generate is not None:
        return (
            "True",
            CertificateReason.ROTATION_DISABLED,
            (
                f"expires {expires} and spec.rotation.enabled is false; enable rotation, or renew it yourself "
                "(`cxbackup cert generate`) and ask your vendor to provision the new certificate"
            ),
        )
    ref = source_secret_name(cert)
    return (
        "True",
        CertificateReason.RENEWAL_REQUIRED,
        (
            f"expires {expires}; uploaded certificates are not rotated automatically: generate a new key and "
            f"certificate, put them into Secret {_namespace(cert)}/{ref} before then and ask your vendor to "
            "provision the new certificate (every old key stays in the keyring)"
        ),
    )


def certificate_conditions(
    conditions: list[dict[str, Any]] | None,
    cert: RecordingCertificate,
    evaluation: Evaluation,
    plan: RotationPlan | None,
    now: dt.datetime,
    *,
    rotation_error: str | None = None,
) -> list[dict[str, Any]]:
    """Ready, Expiring, Expired and Invalid for a pair that was read (valid or not)."""
    gen = cert.metadata.get("generation")
    info, problem = evaluation.info, evaluation.problem
    if problem is not None:
        out = _set(conditions, ConditionType.READY, "False", problem.reason, problem.message, now, gen)
        if problem.reason in _VALIDITY_REASONS:
            out = _set(
                out,
                ConditionType.INVALID,
                "False",
                CertificateReason.VALID,
                "the certificate and key are usable otherwise",
                now,
                gen,
            )
        else:
            out = _set(out, ConditionType.INVALID, "True", problem.reason, problem.message, now, gen)
    elif plan is not None and plan.error is not None:
        out = _set(conditions, ConditionType.READY, "False", CertificateReason.INVALID_SPEC, plan.error, now, gen)
        out = _set(
            out, ConditionType.INVALID, "False", CertificateReason.VALID, "the certificate and key are valid", now, gen
        )
    else:
        assert info is not None
        message = f"valid until {_day(info.not_after)}; the private key matches the certificate"
        out = _set(conditions, ConditionType.READY, "True", CertificateReason.VALID, message, now, gen)
        out = _set(
            out, ConditionType.INVALID, "False", CertificateReason.VALID, "the certificate and key are valid", now, gen
        )
    if info is None:
        for ctype in (ConditionType.EXPIRED, ConditionType.EXPIRING):
            reason = problem.reason if problem else "Unknown"
            out = _set(out, ctype, "Unknown", reason, "the certificate could not be read", now, gen)
        return out
    if now > info.not_after:
        out = _set(out, ConditionType.EXPIRED, "True", Reason.EXPIRED, f"expired {_day(info.not_after)}", now, gen)
    else:
        out = _set(
            out,
            ConditionType.EXPIRED,
            "False",
            CertificateReason.NOT_EXPIRED,
            f"expires {_day(info.not_after)}",
            now,
            gen,
        )
    if plan is None or plan.error is not None:
        out = _set(
            out,
            ConditionType.EXPIRING,
            "Unknown",
            CertificateReason.INVALID_SPEC,
            (plan.error or "") if plan else "",
            now,
            gen,
        )
    else:
        status, reason, message = _expiring(cert, info, plan, now, rotation_error)
        out = _set(out, ConditionType.EXPIRING, status, reason, message, now, gen)
    return out


def problem_conditions(
    conditions: list[dict[str, Any]] | None, cert: RecordingCertificate, problem: SourceProblem, now: dt.datetime
) -> list[dict[str, Any]]:
    """Ready False with the problem; the other conditions Unknown (nothing to look at)."""
    gen = cert.metadata.get("generation")
    out = _set(conditions, ConditionType.READY, "False", problem.reason, problem.message, now, gen)
    for ctype in (ConditionType.EXPIRED, ConditionType.EXPIRING, ConditionType.INVALID):
        out = _set(out, ctype, "Unknown", problem.reason, "the key pair could not be read", now, gen)
    return out


def _changed(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> bool:
    if new is None:
        return False
    if old is None:
        return True
    return any(old.get(k) != new.get(k) for k in ("status", "reason", "message"))


def condition_events(
    old: list[dict[str, Any]] | None, new: list[dict[str, Any]], *, automatic_rotation: bool
) -> list[EventSpec]:
    """Events for conditions that changed: Ready going False (or back to True), Expiring going True."""
    events: list[EventSpec] = []
    before, after = condition(old, ConditionType.READY), condition(new, ConditionType.READY)
    if after is not None and _changed(before, after):
        if after["status"] == "False":
            events.append(EventSpec(True, after["reason"], after["message"]))
        elif before is not None and before.get("status") != "True":
            events.append(EventSpec(False, after["reason"], after["message"]))
    before, after = condition(old, ConditionType.EXPIRING), condition(new, ConditionType.EXPIRING)
    # a scheduled automatic rotation is reported by its own CertificateRotated Event
    scheduled = automatic_rotation and after is not None and after["reason"] == CertificateReason.ROTATION_SCHEDULED
    if after is not None and after["status"] == "True" and _changed(before, after) and not scheduled:
        events.append(EventSpec(True, after["reason"], after["message"]))
    return events


def usage_events(previous: Sequence[str] | None, current: Sequence[str]) -> list[EventSpec]:
    """Events for a change of spec.usages against the usages last observed (none on first sight)."""
    if previous is None:
        return []
    if "screen" in previous and "screen" not in current:
        return [
            EventSpec(
                True,
                CertificateReason.SCREEN_REMOVED,
                "screen was removed from spec.usages: screen recordings will no longer be encrypted with this "
                "certificate once the vendor's assignment is removed (this turns off screen encryption; "
                "recordings made before stay encrypted). Do not remove it without discussing this with your "
                "vendor (Genesys Professional)",
            )
        ]
    if "screen" not in previous and "screen" in current:
        return [
            EventSpec(
                False,
                CertificateReason.SCREEN_ADDED,
                "screen was added to spec.usages: ask your vendor to assign this certificate to screen recording "
                "(Screen Recording Certificates) so new screen recordings are encrypted with it",
            )
        ]
    return []


def retire(status: Mapping[str, Any], info: CertificateInfo | None, keyring: set[str]) -> list[dict[str, Any]]:
    """status.retired once `info` is the current certificate: the previous certificate appended when it
    changed and its key is in the keyring (fingerprints `keyring`); the current one never listed."""
    retired = [dict(r) for r in status.get("retired") or []]
    if info is None:
        return retired
    old_fingerprint = status.get("fingerprint")
    if (
        old_fingerprint
        and old_fingerprint != info.fingerprint
        and old_fingerprint in keyring
        and not any(r.get("fingerprint") == old_fingerprint for r in retired)
        and status.get("serialNumber")
        and status.get("notAfter")
    ):
        retired.append(
            {"serialNumber": status["serialNumber"], "fingerprint": old_fingerprint, "notAfter": status["notAfter"]}
        )
    return [r for r in retired if r.get("fingerprint") != info.fingerprint]


def _references(obj: Mapping[str, Any], name: str) -> bool:
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        return False
    ref = ((obj.get("spec") or {}).get("certificate") or {}).get("recordingCertificate")
    return bool(ref == name)


def count_references(
    name: str, export_jobs: Sequence[Mapping[str, Any]], backups: Sequence[Mapping[str, Any]] = ()
) -> int:
    """deployedCount: ExportJobs (and RecordingBackups, once they have spec.certificate) naming `name` in
    spec.certificate.recordingCertificate; objects being deleted do not count."""
    return sum(1 for obj in [*export_jobs, *backups] if _references(obj, name))


def status_changes(old: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of `desired` that differ from `old` (None and absent are the same)."""
    return {k: v for k, v in desired.items() if old.get(k) != v}
