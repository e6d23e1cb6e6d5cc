"""RecordingCertificate (short name rcert): the RSA key and X.509 certificate recordings are encrypted to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator

from cxbackup.api.common import ISO_DURATION_PATTERN, CamelModel, Condition
from cxbackup.api.status import CERTIFICATE_CONDITIONS, ConditionType, one_of

__all__ = [
    "KEYRING_SUFFIX",
    "LEGACY_CONSENT_UID",
    "TLS_SUFFIX",
    "UID_PATTERN",
    "CertificateGenerate",
    "CertificateReadiness",
    "CertificateRotation",
    "CertificateSecretRef",
    "DecryptionConsent",
    "RecordingCertificate",
    "RecordingCertificateSpec",
    "RecordingCertificateStatus",
    "RetiredCertificate",
    "certificate_readiness",
    "keyring_name_problem",
]


class CertificateSecretRef(CamelModel):
    """A Secret holding an uploaded certificate and key."""

    name: str = Field(min_length=1, max_length=253, description="Name of the Secret (same namespace).")
    certificate_key: str = Field(default="tls.crt", description="Key holding the PEM certificate.")
    private_key_key: str = Field(default="tls.key", description="Key holding the PEM private key.")
    password_key: str | None = Field(
        default=None,
        description="Key holding the private key password (the upload panel's Private Key Password).",
    )


KEYRING_SUFFIX = "-keyring"
"""The default keyring Secret is `<name>-keyring`."""
TLS_SUFFIX = "-tls"
"""A generated pair is kept in `<name>-tls`."""
UID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
"""A Kubernetes metadata.uid (a UUID, as the API server writes it)."""


def keyring_name_problem(name: str, keyring_secret: str | None) -> str | None:
    """Why RecordingCertificate `name` may not use `spec.keyringSecret`, or None. A certificate's default
    Secrets are `<name>-keyring` and `<name>-tls`; a keyringSecret ending like that (other than this
    certificate's own default) could be another certificate's, e.g. certificate `vic` naming `victim-keyring`.
    The CRD refuses such names (CEL, on the field); the operator refuses them in every case."""
    if keyring_secret is None or keyring_secret == f"{name}{KEYRING_SUFFIX}":
        return None
    if keyring_secret.endswith((KEYRING_SUFFIX, TLS_SUFFIX)):
        return (
            f"spec.keyringSecret: {keyring_secret} ends with {KEYRING_SUFFIX} or {TLS_SUFFIX}, like the Secrets "
            f"another RecordingCertificate keeps its keys in; remove spec.keyringSecret (the keyring is then "
            f"{name}{KEYRING_SUFFIX}) or name a Secret ending otherwise"
        )
    return None


MIN_ROTATED_VALIDITY_DAYS = 7
"""The shortest validity of a generated certificate the operator rotates."""


def _default_usages() -> list[Literal["voice", "screen"]]:
    return ["voice"]


class CertificateGenerate(CamelModel):
    """Generate a key and self-signed certificate, as the vendor's openssl commands do."""

    common_name: str = Field(min_length=1, max_length=64, description="CN, e.g. Genesys Recording.")
    country: str = Field(pattern=r"^[A-Z]{2}$", description="C, a two-letter country code, e.g. US.")
    state: str = Field(min_length=1, max_length=128, description="ST, the full state or province.")
    organization: str = Field(min_length=1, max_length=64, description="O, the exact legal organisation name.")
    key_size: Literal[2048, 3072, 4096] = Field(default=2048, description="RSA key size in bits.")
    validity_days: int = Field(default=3650, ge=1, le=36500, description="Validity in days.")


class CertificateRotation(CamelModel):
    """Rotation before expiry."""

    enabled: bool = Field(default=True, description="Rotate automatically (generated certificates only).")
    renew_before: str | None = Field(
        default=None,
        pattern=ISO_DURATION_PATTERN,
        description="ISO 8601 duration before notAfter to rotate; default a third of the lifetime.",
    )
    window_start: str | None = Field(
        default=None, pattern=r"^[0-2][0-9]:[0-5][0-9]$", description="Rotation allowed from HH:MM UTC."
    )
    window_end: str | None = Field(
        default=None, pattern=r"^[0-2][0-9]:[0-5][0-9]$", description="Rotation allowed until HH:MM UTC."
    )


class DecryptionConsent(CamelModel):
    """The key owner's consent for one ExportJob (that very object: name and uid) to decrypt with the keyring."""

    export_job: str = Field(
        min_length=1, max_length=253, description="Name of the subjectAccess ExportJob (same namespace)."
    )
    uid: str = Field(
        pattern=UID_PATTERN,
        description="Its metadata.uid (kubectl get exportjob NAME -o jsonpath='{.metadata.uid}'), read after "
        "reviewing its spec, which cannot change once it decrypts. An ExportJob deleted and created again has "
        "another uid, so the consent does not carry over.",
    )


LEGACY_CONSENT_UID = ""
"""The uid given to a consent entry in the old form (a bare ExportJob name), which no ExportJob has: such an
entry allows nothing, and the ExportJob's condition says how to give consent in the new form."""


class RecordingCertificateSpec(CamelModel):
    """Desired state of a RecordingCertificate."""

    model_config = CamelModel.model_config | {
        "json_schema_extra": {
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.secretRef) != has(self.generate)",
                    "message": "set exactly one of secretRef (upload) or generate",
                },
                {
                    "rule": "!has(self.generate) || (has(self.rotation) && has(self.rotation.enabled) && "
                    f"!self.rotation.enabled) || self.generate.validityDays >= {MIN_ROTATED_VALIDITY_DAYS}",
                    "message": f"generate.validityDays must be at least {MIN_ROTATED_VALIDITY_DAYS} while rotation "
                    "is enabled: a shorter certificate would be rotated almost at once",
                    "fieldPath": ".generate.validityDays",
                },
                {
                    "rule": "!has(self.secretRef) || self.secretRef.certificateKey != self.secretRef.privateKeyKey",
                    "message": "secretRef.certificateKey and secretRef.privateKeyKey must be different keys",
                    "fieldPath": ".secretRef.certificateKey",
                },
            ]
        }
    }

    secret_ref: CertificateSecretRef | None = Field(default=None, description="Use an uploaded pair.")
    generate: CertificateGenerate | None = Field(default=None, description="Generate a pair.")
    usages: list[Literal["voice", "screen"]] = Field(
        default_factory=_default_usages,
        min_length=1,
        max_length=2,
        description="What the certificate encrypts: voice and/or screen recordings.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    rotation: CertificateRotation | None = Field(default=None, description="Rotation before expiry.")
    keyring_secret: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="Secret keeping every key this certificate ever had (default <name>-keyring); never "
        "deleted by the operator. Another name must not end with -keyring or -tls (those may be another "
        "certificate's Secrets).",
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": f"!self.endsWith('{KEYRING_SUFFIX}') && !self.endsWith('{TLS_SUFFIX}')",
                    "message": "keyringSecret must not end with -keyring or -tls (another certificate's Secrets "
                    "are named so): remove it to use <name>-keyring, or name a Secret ending otherwise",
                }
            ]
        },
    )
    decryption_allowed_for: list[DecryptionConsent] | None = Field(
        default=None,
        max_length=50,
        description="The subjectAccess ExportJobs (same namespace) allowed to decrypt the media they hand over "
        "with this certificate's keyring (spec.decryptMedia), each by name and metadata.uid: each one a request "
        "the key owner reviewed and approved. Their pod mounts the keyring; whoever controls such an ExportJob "
        "reads those recordings in clear. Default: none.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["exportJob"]},
    )

    @field_validator("decryption_allowed_for", mode="before")
    @classmethod
    def _legacy_consent(cls, value: Any) -> Any:
        """Entries of the old form (a bare name, stored before consent named the uid) are read as consent
        for no ExportJob, so that the certificate itself still validates."""
        if not isinstance(value, list):
            return value
        return [
            DecryptionConsent.model_construct(export_job=item, uid=LEGACY_CONSENT_UID)
            if isinstance(item, str)
            else item
            for item in value
        ]


class RetiredCertificate(CamelModel):
    """A certificate replaced by rotation, whose key stays in the keyring."""

    serial_number: str = Field(description="Serial number (decimal).")
    fingerprint: str = Field(description="SHA-256 fingerprint.")
    not_after: datetime = Field(description="Expiry.")


class RecordingCertificateStatus(CamelModel):
    """Observed state of a RecordingCertificate (the vendor's certificate list and upload panel)."""

    model_config = CamelModel.model_config | {"extra": "allow"}

    issued_to: str | None = Field(default=None, description="Subject common name.")
    issued_by: str | None = Field(default=None, description="Issuer common name.")
    serial_number: str | None = Field(default=None, description="Serial number (decimal).")
    subject_dn: str | None = Field(default=None, description="Subject DN.")
    issuer_dn: str | None = Field(default=None, description="Issuer DN.")
    not_before: datetime | None = Field(default=None, description="Start of validity.")
    not_after: datetime | None = Field(default=None, description="Expiry.")
    key_size: int | None = Field(default=None, description="RSA key size in bits.")
    fingerprint: str | None = Field(default=None, description="SHA-256 fingerprint.")
    usages: list[str] | None = Field(default=None, description="voice and/or screen.")
    deployed_count: int | None = Field(
        default=None, description="RecordingBackups and ExportJobs referencing this certificate."
    )
    conditions: list[Condition] | None = Field(default=None, description=f"{one_of(CERTIFICATE_CONDITIONS)}.")
    next_rotation_time: datetime | None = Field(default=None, description="When rotation is due.")
    retired: list[RetiredCertificate] | None = Field(default=None, description="Certificates replaced.")
    observed_generation: int | None = Field(default=None, description="The generation last reconciled.")


class RecordingCertificate(CamelModel):
    """An RSA key and X.509 certificate for recording encryption, rotated before expiry, keys kept."""

    model_config = CamelModel.model_config | {"extra": "ignore"}

    api_version: str = Field(default="cxbackup.io/v1alpha1")
    kind: str = Field(default="RecordingCertificate")
    metadata: dict[str, Any] = Field(default_factory=dict)
    spec: RecordingCertificateSpec
    status: RecordingCertificateStatus | None = None


@dataclass(frozen=True)
class CertificateReadiness:
    """Whether a RecordingCertificate may be encrypted to now; when not, the certificate's own reason
    (KeyTooSmall, Expired, SecretNotFound ... or NotChecked) and a message saying why."""

    ready: bool
    reason: str
    message: str


def certificate_readiness(status: Mapping[str, Any] | None, generation: int | None = None) -> CertificateReadiness:
    """Read a RecordingCertificate's status (the dict, as the API server returns it): ready only when its
    Ready condition is True and, when `generation` (metadata.generation) is given, was computed from
    that generation of the spec, so a spec the operator has not looked at yet is not trusted."""
    conditions = (status or {}).get("conditions") or []
    ready = next((c for c in conditions if isinstance(c, Mapping) and c.get("type") == ConditionType.READY), None)
    if ready is None:
        return CertificateReadiness(False, "NotChecked", "the operator has not checked the certificate yet")
    observed = ready.get("observedGeneration")
    if generation is not None and isinstance(observed, int) and observed < generation:
        return CertificateReadiness(
            False,
            "NotChecked",
            f"the operator has not checked generation {generation} of the spec yet (status is of {observed})",
        )
    if ready.get("status") != "True":
        reason = str(ready.get("reason") or "Unknown")
        return CertificateReadiness(False, reason, str(ready.get("message") or f"Ready is {ready.get('status')}"))
    return CertificateReadiness(True, str(ready.get("reason") or ""), str(ready.get("message") or ""))
