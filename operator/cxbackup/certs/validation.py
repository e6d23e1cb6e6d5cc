"""Read and validate a recording certificate and its private key, as the vendor's upload panel does.

Public API (pure: no I/O, the clock is passed in)::

    inspect_certificate(cert_pem, key_pem=None, password=None, *, now) -> CertificateInfo
        Parse a PEM X.509 certificate (and optionally its PEM private key), check it is usable for
        recording encryption, and return what the certificate list and upload panel show.
        Raises CertificateInvalid(reason, message) for the first problem found.

    read_certificate(cert_pem, *, now) -> (cryptography.x509.Certificate, CertificateInfo)
        THE rule set for a certificate file cxbackup encrypts to, shared by `cxbackup cert inspect`,
        `cxbackup export run` and the RecordingCertificate: exactly one PEM X.509 certificate and no other
        PEM block (no chain, no private key, no parameters; DER is refused with the command converting it),
        then `validate_certificate`. Text outside the PEM block (as `openssl x509 -text` writes) is ignored.

    load_certificate(cert_pem) -> cryptography.x509.Certificate
        Only the parsing step of the first PEM certificate (NotPem / NotX509), no validity checks and no
        rule on other blocks; used to renew expired ones and to read certificates already in a keyring.

    fingerprint(cert) -> str
        The SHA-256 fingerprint as the status shows it ('AB:CD:..').

    validate_certificate(cert, *, now) -> CertificateInfo
        Only the certificate rules (NotRsa, KeyTooSmall, NotYetValid, Expired) for a parsed certificate:
        what inspect_certificate checks before the key, and what an export checks before it fetches
        anything (cxbackup.export.packaging.check_certificate).

    check_private_key(cert, key_pem, password=None, *, info=None) -> str
        Only the key step (KeyInvalid / PasswordRequired / WrongPassword / KeyMismatch); returns the
        Key Details text, e.g. 'Openssl format private key file' or 'PKCS#8 private key'.

    key_is_encrypted(key_pem) -> bool
        Whether the first PEM private key in key_pem is password-protected (legacy Proc-Type header or
        'BEGIN ENCRYPTED PRIVATE KEY'); False when there is none.

    format_dn(name) -> str
        A DN in the panel's format: certificate order, comma-separated, no spaces,
        e.g. 'CN=Genesys Recording,C=US,ST=California,O=Genesys'.

    CertificateInfo   frozen dataclass: issued_to, issued_by, serial_number (decimal str), subject_dn,
                      issuer_dn, not_before, not_after (aware UTC), key_size, fingerprint (SHA-256,
                      'AB:CD:..'), key_details (None without a key); to_dict() gives the camelCase
                      status fields.
    CertificateInvalid(reason, message)
                      ValueError subclass; reason is a Reason, a stable CamelCase code for Conditions
                      and Events. When the certificate itself parsed (Expired, NotYetValid, a key
                      problem ...), .info holds its CertificateInfo so the certificate can still be
                      listed - expired certificates are kept, their keys decrypt old recordings.
    Reason            NotPem, NotX509, NotRsa, KeyTooSmall, NotYetValid, Expired, KeyInvalid,
                      PasswordRequired, WrongPassword, KeyMismatch (checked in that order).

Accepted key files: 'BEGIN RSA PRIVATE KEY' (OpenSSL 1.x genrsa, the panel's "Openssl format private
key file", optionally encrypted with Proc-Type/DEK-Info headers), 'BEGIN PRIVATE KEY' (PKCS#8, OpenSSL
3 genrsa and the Azure `openssl pkcs8 -topk8 -nocrypt` private.pem) and 'BEGIN ENCRYPTED PRIVATE KEY'
(encrypted PKCS#8). A password given for an unencrypted key is ignored, as the panel's empty Private Key
Password field is. Messages never contain key material or the password.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

from cxbackup.core.times import iso_seconds

__all__ = [
    "MIN_KEY_SIZE",
    "CertificateInfo",
    "CertificateInvalid",
    "Reason",
    "check_private_key",
    "fingerprint",
    "format_dn",
    "inspect_certificate",
    "key_is_encrypted",
    "load_certificate",
    "read_certificate",
    "validate_certificate",
]

MIN_KEY_SIZE = 2048
"""The vendor's requirement: 2048-bit RSA or higher."""

_PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 #]+)-----\r?\n(.*?)-----END \1-----",
    re.DOTALL,
)
_CERT_LABELS = (b"CERTIFICATE", b"X509 CERTIFICATE", b"TRUSTED CERTIFICATE")
_KEY_LABELS = (b"RSA PRIVATE KEY", b"PRIVATE KEY", b"ENCRYPTED PRIVATE KEY")
_DN_NAMES = {NameOID.EMAIL_ADDRESS: "emailAddress"}


class Reason(StrEnum):
    """Why a certificate or key was rejected: stable codes for Condition reasons and Events."""

    NOT_PEM = "NotPem"
    NOT_X509 = "NotX509"
    NOT_RSA = "NotRsa"
    KEY_TOO_SMALL = "KeyTooSmall"
    NOT_YET_VALID = "NotYetValid"
    EXPIRED = "Expired"
    KEY_INVALID = "KeyInvalid"
    PASSWORD_REQUIRED = "PasswordRequired"  # noqa: S105 - a reason code, not a password
    WRONG_PASSWORD = "WrongPassword"  # noqa: S105 - a reason code, not a password
    KEY_MISMATCH = "KeyMismatch"


@dataclass(frozen=True)
class CertificateInfo:
    """What the certificate list (Issued To / Issued By / Expires) and the upload panel show."""

    issued_to: str
    issued_by: str
    serial_number: str
    subject_dn: str
    issuer_dn: str
    not_before: datetime
    not_after: datetime
    key_size: int
    fingerprint: str
    key_details: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The fields as RecordingCertificateStatus names them (camelCase, times ISO 8601 with Z)."""
        return {
            "issuedTo": self.issued_to,
            "issuedBy": self.issued_by,
            "serialNumber": self.serial_number,
            "subjectDn": self.subject_dn,
            "issuerDn": self.issuer_dn,
            "notBefore": iso_seconds(self.not_before),
            "notAfter": iso_seconds(self.not_after),
            "keySize": self.key_size,
            "fingerprint": self.fingerprint,
            "keyDetails": self.key_details,
        }


class CertificateInvalid(ValueError):
    """A certificate or key that cannot be used; `reason` is a stable code, `message` one line."""

    def __init__(self, reason: Reason, message: str, info: CertificateInfo | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.info = info

    def __str__(self) -> str:
        return self.message


def _utc_text(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else data


def _require_aware(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now.astimezone(UTC)


def _pem_blocks(data: bytes) -> list[tuple[bytes, bytes]]:
    """(label, whole block) for every PEM block in data, in order."""
    return [(m.group(1), m.group(0)) for m in _PEM_BLOCK.finditer(data)]


def _label(label: bytes) -> str:
    return label.decode("ascii", errors="replace")


def format_dn(name: x509.Name) -> str:
    """The DN as the upload panel shows it: RDNs in certificate order, ',' between, no spaces."""
    return ",".join(rdn.rfc4514_string(_DN_NAMES) for rdn in name.rdns)


def _common_name(name: x509.Name) -> str:
    for attribute in name.get_attributes_for_oid(NameOID.COMMON_NAME):
        value = attribute.value
        return value if isinstance(value, str) else value.decode("utf-8", errors="replace")
    return format_dn(name)


def _key_kind(key: object) -> str:
    if isinstance(key, rsa.RSAPublicKey | rsa.RSAPrivateKey):
        return "RSA"
    if isinstance(key, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey):
        return f"EC ({key.curve.name})"
    if isinstance(key, dsa.DSAPublicKey | dsa.DSAPrivateKey):
        return "DSA"
    if isinstance(key, ed25519.Ed25519PublicKey | ed25519.Ed25519PrivateKey):
        return "Ed25519"
    if isinstance(key, ed448.Ed448PublicKey | ed448.Ed448PrivateKey):
        return "Ed448"
    return type(key).__name__


def load_certificate(cert_pem: bytes | str) -> x509.Certificate:
    """Parse the first PEM certificate in cert_pem; raise CertificateInvalid NotPem or NotX509."""
    data = _as_bytes(cert_pem)
    blocks = _pem_blocks(data)
    if not blocks:
        raise CertificateInvalid(
            Reason.NOT_PEM,
            f"certificate is not PEM: no '-----BEGIN CERTIFICATE-----' block found{_der_hint(data)}",
        )
    for label, block in blocks:
        if label in _CERT_LABELS:
            try:
                return x509.load_pem_x509_certificate(block)
            except ValueError as exc:
                raise CertificateInvalid(
                    Reason.NOT_X509, f"the PEM CERTIFICATE block is not a valid X.509 certificate ({exc})"
                ) from None
    found = ", ".join(sorted({f"'{_label(label)}'" for label, _ in blocks}))
    raise CertificateInvalid(Reason.NOT_X509, f"certificate file holds PEM {found}, not an X.509 CERTIFICATE")


def _der_hint(data: bytes) -> str:
    return " (it looks like DER; convert it with `openssl x509 -inform DER`)" if data[:1] == b"\x30" else ""


def _single_certificate(cert_pem: bytes | str) -> x509.Certificate:
    """The one PEM certificate of a certificate file; CertificateInvalid NotPem / NotX509 otherwise (see
    `read_certificate`). A private key in the file is refused: the file is what export pods get mounted."""
    data = _as_bytes(cert_pem)
    blocks = _pem_blocks(data)
    if not blocks:
        raise CertificateInvalid(
            Reason.NOT_PEM, f"certificate is not PEM: no '-----BEGIN CERTIFICATE-----' block found{_der_hint(data)}"
        )
    certs = [block for label, block in blocks if label in _CERT_LABELS]
    others = sorted({f"'{_label(label)}'" for label, _ in blocks if label not in _CERT_LABELS})
    if not certs:
        raise CertificateInvalid(
            Reason.NOT_X509, f"certificate file holds PEM {', '.join(others)}, not an X.509 CERTIFICATE"
        )
    if any(b"PRIVATE KEY" in label for label, _ in blocks):
        raise CertificateInvalid(
            Reason.NOT_X509,
            "certificate file holds a private key as well: give the certificate alone (the file is handed to the "
            "pods that encrypt to it, which must never get a key; keep the key in its own file or Secret key)",
        )
    if others:
        raise CertificateInvalid(
            Reason.NOT_X509,
            f"certificate file holds PEM {', '.join(others)} besides the certificate: give the certificate alone",
        )
    if len(certs) > 1:
        raise CertificateInvalid(
            Reason.NOT_X509,
            f"certificate file holds {len(certs)} certificates (a chain?): give the one certificate the data is "
            "encrypted to, alone",
        )
    try:
        return x509.load_pem_x509_certificate(certs[0])
    except ValueError as exc:
        raise CertificateInvalid(
            Reason.NOT_X509, f"the PEM CERTIFICATE block is not a valid X.509 certificate ({exc})"
        ) from None


def read_certificate(cert_pem: bytes | str, *, now: datetime) -> tuple[x509.Certificate, CertificateInfo]:
    """A certificate file cxbackup encrypts to, parsed and checked by the one rule set (see the module
    docstring); CertificateInvalid names the first problem."""
    cert = _single_certificate(cert_pem)
    return cert, validate_certificate(cert, now=now)


def fingerprint(cert: x509.Certificate) -> str:
    """SHA-256 fingerprint, upper-case hex pairs joined by ':' (as status.fingerprint shows it)."""
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _describe(cert: x509.Certificate, key_size: int, key_details: str | None) -> CertificateInfo:
    return CertificateInfo(
        issued_to=_common_name(cert.subject),
        issued_by=_common_name(cert.issuer),
        serial_number=str(cert.serial_number),
        subject_dn=format_dn(cert.subject),
        issuer_dn=format_dn(cert.issuer),
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        key_size=key_size,
        fingerprint=fingerprint(cert),
        key_details=key_details,
    )


def _key_details(label: bytes, block: bytes) -> tuple[str, bool]:
    """(Key Details text, encrypted?) from the PEM label and headers."""
    if label == b"RSA PRIVATE KEY":
        if b"Proc-Type: 4,ENCRYPTED" in block:
            match = re.search(rb"DEK-Info: ([A-Za-z0-9-]+)", block)
            cipher = f" ({_label(match.group(1))})" if match else ""
            return f"Openssl format private key file, encrypted{cipher}", True
        return "Openssl format private key file", False
    if label == b"ENCRYPTED PRIVATE KEY":
        return "encrypted PKCS#8 private key", True
    return "PKCS#8 private key", False


def key_is_encrypted(key_pem: bytes | str) -> bool:
    """Whether the first PEM private key in key_pem is encrypted (see the module docstring)."""
    keys = [(label, block) for label, block in _pem_blocks(_as_bytes(key_pem)) if label in _KEY_LABELS]
    return bool(keys) and _key_details(*keys[0])[1]


def _load_key(key_pem: bytes | str, password: bytes | str | None, info: CertificateInfo | None) -> tuple[object, str]:
    data = _as_bytes(key_pem)
    blocks = _pem_blocks(data)
    keys = [(label, block) for label, block in blocks if label in _KEY_LABELS]
    if not keys:
        if not blocks:
            message = (
                "private key is not PEM: no '-----BEGIN RSA PRIVATE KEY-----' "
                "or '-----BEGIN PRIVATE KEY-----' block found"
            )
        else:
            found = ", ".join(sorted({f"'{_label(label)}'" for label, _ in blocks}))
            message = f"key file holds PEM {found}, not a private key"
        raise CertificateInvalid(Reason.KEY_INVALID, message, info)
    label, block = keys[0]
    details, encrypted = _key_details(label, block)
    if encrypted and not password:
        raise CertificateInvalid(
            Reason.PASSWORD_REQUIRED,
            "private key is encrypted and no password was given (the upload panel's Private Key Password)",
            info,
        )
    secret = _as_bytes(password) if encrypted and password else None
    try:
        key = serialization.load_pem_private_key(block, secret)
    except ValueError:
        if encrypted:
            raise CertificateInvalid(
                Reason.WRONG_PASSWORD, "wrong password for the encrypted private key", info
            ) from None
        raise CertificateInvalid(
            Reason.KEY_INVALID, f"the PEM '{_label(label)}' block is not a valid private key", info
        ) from None
    except TypeError:  # the PEM headers say unencrypted but the content is encrypted
        raise CertificateInvalid(
            Reason.KEY_INVALID, f"the PEM '{_label(label)}' block is not a readable private key", info
        ) from None
    return key, details


def inspect_certificate(
    cert_pem: bytes | str,
    key_pem: bytes | str | None = None,
    password: bytes | str | None = None,
    *,
    now: datetime,
) -> CertificateInfo:
    """Validate a recording certificate (by `read_certificate`'s rules) and its key at `now`; see the module
    docstring."""
    cert, info = read_certificate(cert_pem, now=now)
    if key_pem is None:
        return info
    details = check_private_key(cert, key_pem, password, info=info)
    return replace(info, key_details=details)


def validate_certificate(cert: x509.Certificate, *, now: datetime) -> CertificateInfo:
    """The certificate rules alone (NotRsa, KeyTooSmall, NotYetValid, Expired), for a parsed certificate:
    the one rule set for every certificate cxbackup encrypts to (recordings and exports)."""
    moment = _require_aware(now)
    public_key = cert.public_key()
    if not isinstance(public_key, rsa.RSAPublicKey):
        raise CertificateInvalid(
            Reason.NOT_RSA,
            f"certificate key is {_key_kind(public_key)}, not RSA; recording certificates must be RSA",
            _describe(cert, int(getattr(public_key, "key_size", 0)), None),
        )
    info = _describe(cert, public_key.key_size, None)
    if public_key.key_size < MIN_KEY_SIZE:
        raise CertificateInvalid(
            Reason.KEY_TOO_SMALL,
            f"certificate key is RSA {public_key.key_size} bits; at least {MIN_KEY_SIZE} bits are required",
            info,
        )
    if moment < info.not_before:
        raise CertificateInvalid(
            Reason.NOT_YET_VALID, f"certificate is not valid until {_utc_text(info.not_before)}", info
        )
    if moment > info.not_after:
        raise CertificateInvalid(Reason.EXPIRED, f"certificate expired on {_utc_text(info.not_after)}", info)
    return info


def check_private_key(
    cert: x509.Certificate,
    key_pem: bytes | str,
    password: bytes | str | None = None,
    *,
    info: CertificateInfo | None = None,
) -> str:
    """Check key_pem is the private half of cert's key and return its Key Details text.

    Raises CertificateInvalid KeyInvalid, PasswordRequired, WrongPassword or KeyMismatch (with `info`
    attached). The certificate's own validity is not looked at, so an expired one can be renewed.
    """
    key, details = _load_key(key_pem, password, info)
    if info is not None:
        info = replace(info, key_details=details)
    public_key = cert.public_key()
    if not isinstance(key, rsa.RSAPrivateKey) or not isinstance(public_key, rsa.RSAPublicKey):
        raise CertificateInvalid(
            Reason.KEY_MISMATCH,
            f"private key is {_key_kind(key)} but the certificate's key is {_key_kind(public_key)}; "
            "they do not belong together",
            info,
        )
    if key.public_key().public_numbers() != public_key.public_numbers():
        raise CertificateInvalid(
            Reason.KEY_MISMATCH, "private key does not match the certificate (different RSA modulus)", info
        )
    return details
