"""The key owner's consent for an ExportJob's `spec.decryptMedia`, decided as a pure function of what the
handler read (the ExportJob, the RecordingCertificate, and the keyring, subject and certificate Secrets).

Mounting a keyring into a pod hands every recording encrypted to it over in clear to whoever controls the
ExportJob, so a run that decrypts starts only when all of this holds:

1. **The ExportJob is the one the key owner reviewed, as it was.** The RecordingCertificate's
   `spec.decryptionAllowedFor` names it by name *and* `metadata.uid` (an ExportJob deleted and created
   again has another uid), and its `metadata.generation` is 1: its spec never changed after creation. (The
   CRD also refuses such changes with CEL; this check holds without it.)
2. **What it reads and where the media go cannot have changed since.** The subject Secret and the
   requester's certificate Secret (`spec.certificate.secret`; a RecordingCertificate as the artifact's
   certificate is refused, its pair can change after consent) must be `immutable: true` and older than
   the ExportJob: one deleted and created again after the key owner's review is younger. The operator hands
   the pod a digest of the subject it read and the certificate's fingerprint (`Decryption`); the pod refuses
   to run when what it mounted differs (cxbackup.export.approval).
3. **The consenting certificate is the key owner's, and Ready, and the keyring is its own.** The
   RecordingCertificate is Ready for its current generation, and its keyring Secret carries the labels and
   the certificate-uid annotation the operator writes when it creates (or adopts) a keyring
   (`keyring_read_problem`): a certificate pointing `spec.keyringSecret` at another certificate's keyring
   consents for nothing.

Every refusal is a `Blocked` naming the field and the fix (reason DecryptionNotAllowed, or
CertificateNotFound / CertificateNotReady / InvalidSpec where those say it better).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from cxbackup.api.certificate import LEGACY_CONSENT_UID, RecordingCertificate, certificate_readiness
from cxbackup.api.exportjob import ExportJob
from cxbackup.api.status import Reason
from cxbackup.certs.validation import CertificateInvalid, read_certificate
from cxbackup.controller.certificate.decisions import keyring_read_problem, keyring_secret_name
from cxbackup.controller.cluster import SecretView
from cxbackup.controller.export.manifests import CERT_FILE, Decryption
from cxbackup.controller.references import Blocked
from cxbackup.core.times import parse_time
from cxbackup.export.approval import subject_digest

__all__ = ["CERTIFICATE_FIELD", "DECRYPT_FIELD", "decide_decryption"]

DECRYPT_FIELD = "spec.decryptMedia.recordingCertificate"
CERTIFICATE_FIELD = "spec.certificate.secret"
SUBJECT_FIELD = "spec.subject.secret"


def _not_allowed(message: str) -> Blocked:
    return Blocked(Reason.DECRYPTION_NOT_ALLOWED, message)


def _fixed_before(export: ExportJob, secret: SecretView, field: str) -> None:
    """Blocked unless `secret` is immutable and was created before the ExportJob (so its content is what it
    was when the key owner reviewed the ExportJob)."""
    ns, name = export.metadata["namespace"], export.metadata["name"]
    where = f"{field}: Secret {ns}/{secret.name}"
    if not secret.immutable:
        raise _not_allowed(
            f"{where} is not immutable, so its content could change after the key owner's consent: make it "
            f"immutable (kubectl patch secret {secret.name} -n {ns} -p '{{\"immutable\":true}}') before the key "
            "owner reviews it, or remove spec.decryptMedia"
        )
    created = parse_time(export.metadata.get("creationTimestamp"))
    if secret.created is None or created is None or not secret.created < created:
        raise _not_allowed(
            f"{where} was not created before ExportJob {ns}/{name} (a Secret created again after the key owner's "
            f"review would be): create the Secret first, then the ExportJob (delete ExportJob {name} and create it "
            "anew, and ask the key owner to consent to the new one's uid)"
        )


def decide_decryption(
    export: ExportJob,
    certificate: Mapping[str, Any] | None,
    keyring: SecretView | None,
    subject: SecretView | None,
    requester: SecretView | None,
    now: dt.datetime,
) -> Decryption | None:
    """What a decrypting run mounts and checks (None without spec.decryptMedia), or Blocked. `certificate` is
    the body of the RecordingCertificate spec.decryptMedia names (None: not found), `keyring` its keyring
    Secret, `subject` the subject Secret and `requester` the Secret of spec.certificate.secret (None: not
    found)."""
    ref = export.spec.decrypt_media
    if ref is None:
        return None
    ns: str = export.metadata["namespace"]
    name: str = export.metadata["name"]
    uid = str(export.metadata.get("uid") or "")
    generation = export.metadata.get("generation")
    what = f"RecordingCertificate {ns}/{ref.recording_certificate}"
    if generation != 1:
        raise _not_allowed(
            f"spec: ExportJob {ns}/{name} is at generation {generation}: the spec of an ExportJob with "
            "spec.decryptMedia may not change after it is created (the key owner consents to it as created). "
            f"Delete it, create it anew, and ask the key owner to consent to the new one's uid"
        )
    if export.spec.certificate.secret is None:
        raise Blocked(
            Reason.INVALID_SPEC,
            "spec.certificate: with spec.decryptMedia the artifact is encrypted to spec.certificate.secret (the "
            "requester's certificate in an immutable Secret), not to a RecordingCertificate, whose pair can change "
            "after the key owner's consent",
            invalid=True,
        )
    if certificate is None:
        raise Blocked(Reason.CERTIFICATE_NOT_FOUND, f"{DECRYPT_FIELD}: {what} not found")
    try:
        cert = RecordingCertificate.model_validate(dict(certificate))
    except ValidationError:
        raise Blocked(Reason.INVALID_SPEC, f"{DECRYPT_FIELD}: {what} is not valid") from None
    entries = [c for c in cert.spec.decryption_allowed_for or [] if c.export_job == name]
    grant = f"{{exportJob: {name}, uid: {uid}}}"
    if not entries:
        raise _not_allowed(
            f"{DECRYPT_FIELD}: {what} does not allow ExportJob {name} to decrypt with its keyring: its key owner "
            f"reviews this ExportJob and adds {grant} to its spec.decryptionAllowedFor (or remove "
            "spec.decryptMedia to hand the media over as the vendor encrypted them)"
        )
    if all(c.uid == LEGACY_CONSENT_UID for c in entries):
        raise _not_allowed(
            f"{DECRYPT_FIELD}: {what} names ExportJob {name} in spec.decryptionAllowedFor by name only, which no "
            f"longer allows anything: its key owner reviews this ExportJob and replaces the name with {grant}"
        )
    if not uid or not any(c.uid == uid for c in entries):
        given = ", ".join(sorted({c.uid for c in entries if c.uid != LEGACY_CONSENT_UID}))
        raise _not_allowed(
            f"{DECRYPT_FIELD}: {what} allows ExportJob {name} with uid {given}, but this ExportJob's uid is "
            f"{uid or 'unknown'}: consent is for the ExportJob the key owner reviewed, and one deleted and created "
            f"again is another. Its key owner reviews this one and sets the entry to {grant}"
        )
    body_meta = certificate.get("metadata") or {}
    readiness = certificate_readiness(certificate.get("status"), body_meta.get("generation"))
    if not readiness.ready:
        raise Blocked(
            Reason.CERTIFICATE_NOT_READY,
            f"{DECRYPT_FIELD}: {what} is not Ready ({readiness.reason}: {readiness.message}); its keyring is used "
            "only while it is",
        )
    ring = keyring_secret_name(cert)
    if keyring is None or not any(k.endswith(".key") for k in keyring.data):
        raise Blocked(
            Reason.CERTIFICATE_NOT_READY, f"{DECRYPT_FIELD}: {what} has no key in its keyring Secret {ns}/{ring} yet"
        )
    if (problem := keyring_read_problem(cert, keyring.labels, keyring.annotations)) is not None:
        raise _not_allowed(f"{DECRYPT_FIELD}: {what}'s keyring is not its own, so it consents for nothing: {problem}")
    subject_ref = export.spec.subject
    if subject_ref is None or subject is None or subject_ref.key not in subject.data:
        raise Blocked(Reason.SECRET_NOT_FOUND, f"{SUBJECT_FIELD}: the subject Secret or its key is missing")
    _fixed_before(export, subject, SUBJECT_FIELD)
    if requester is None or CERT_FILE not in requester.data:
        raise Blocked(
            Reason.CERTIFICATE_NOT_FOUND,
            f"{CERTIFICATE_FIELD}: Secret {ns}/{export.spec.certificate.secret} or its key {CERT_FILE} is missing",
        )
    _fixed_before(export, requester, CERTIFICATE_FIELD)
    try:
        _, info = read_certificate(requester.data[CERT_FILE], now=now)
    except CertificateInvalid as exc:
        raise Blocked(
            Reason.CERTIFICATE_NOT_READY,
            f"{CERTIFICATE_FIELD}: the certificate in Secret {ns}/{requester.name} cannot be used: {exc.message} "
            f"[{exc.reason}]",
        ) from None
    return Decryption(ring, subject_digest(subject.data[subject_ref.key], uid), info.fingerprint)
