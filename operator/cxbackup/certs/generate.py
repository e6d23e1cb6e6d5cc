"""Generate and renew self-signed recording key pairs, as the vendor's openssl commands do.

Public API (pure: no I/O, the clock is passed in)::

    generate_pair(cn, country, state, org, days, key_size=2048, *, now) -> (key_pem, cert_pem)
        The equivalent of
            openssl genrsa -out tenant.key 2048
            openssl req -new -x509 -key tenant.key -out tenant.pem -days N -subj "/CN=../C=../ST=../O=.."
        An RSA key (2048, 3072 or 4096 bits) and a self-signed X.509 v3 certificate: subject = issuer =
        CN, C, ST, O in that order; a random positive serial; valid from `now` (whole seconds) for
        `days` days; subjectKeyIdentifier, authorityKeyIdentifier (keyid) and critical
        basicConstraints CA:TRUE, as `openssl req -x509` adds with the default openssl.cnf; signed
        sha256WithRSAEncryption.

    renew(cert_pem, days, key_size=None, *, now, key_pem=None, password=None) -> (key_pem, cert_pem)
        A new key and certificate with the old certificate's subject DN (byte for byte). key_size
        defaults to the old key's size (at least 2048). The old certificate may be expired. When
        key_pem is given it must belong to cert_pem, so the key being retired is the right one
        (CertificateInvalid KeyMismatch, KeyInvalid, PasswordRequired or WrongPassword otherwise).

    to_pkcs8(key_pem, password=None) -> bytes
        The key as unencrypted PKCS#8 PEM ('BEGIN PRIVATE KEY'), the Azure step's
        `openssl pkcs8 -topk8 -inform pem -in tenant.key -outform pem -nocrypt -out private.pem`.

    ParameterInvalid(parameter, message)
        ValueError for a bad argument; `parameter` is the argument's name (cn, country, state, org,
        days, key_size) so a caller can name its own flag or field.

Key format: the key is written as 'BEGIN RSA PRIVATE KEY' (PKCS#1, "traditional"), what OpenSSL 1.x
genrsa writes and what the vendor's upload panel calls an "Openssl format private key file". OpenSSL
3's genrsa writes PKCS#8 instead; both are read everywhere (openssl, cryptography, the vendor's panel),
and to_pkcs8 gives the PKCS#8 form when it is wanted.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from cxbackup.certs.validation import MIN_KEY_SIZE, check_private_key, load_certificate

__all__ = [
    "KEY_SIZES",
    "MAX_VALIDITY_DAYS",
    "ParameterInvalid",
    "generate_pair",
    "renew",
    "to_pkcs8",
]

KEY_SIZES = (2048, 3072, 4096)
"""RSA key sizes this tool generates (the vendor asks for 2048 or higher)."""

MAX_VALIDITY_DAYS = 36500
"""Upper bound on validity, as the RecordingCertificate API allows."""

_COUNTRY = re.compile(r"[A-Za-z]{2}")
# Upper bounds from RFC 5280 (ub-common-name, ub-state-name, ub-organization-name).
_MAX_LENGTH = {"cn": 64, "state": 128, "org": 64}


class ParameterInvalid(ValueError):
    """An argument that cannot produce a certificate; `parameter` names it."""

    def __init__(self, parameter: str, message: str) -> None:
        super().__init__(message)
        self.parameter = parameter
        self.message = message


def _check_text(parameter: str, label: str, value: str) -> str:
    if not value or not value.strip():
        raise ParameterInvalid(parameter, f"{label} must not be empty")
    if len(value) > _MAX_LENGTH[parameter]:
        raise ParameterInvalid(
            parameter, f"{label} must be at most {_MAX_LENGTH[parameter]} characters (got {len(value)})"
        )
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ParameterInvalid(parameter, f"{label} must not contain control characters")
    return value


def _check_key_size(key_size: int) -> int:
    if key_size not in KEY_SIZES:
        sizes = ", ".join(str(s) for s in KEY_SIZES[:-1]) + f" or {KEY_SIZES[-1]}"
        raise ParameterInvalid("key_size", f"key size must be {sizes} bits (got {key_size})")
    return key_size


def _check_days(days: int) -> int:
    if not 1 <= days <= MAX_VALIDITY_DAYS:
        raise ParameterInvalid("days", f"days must be between 1 and {MAX_VALIDITY_DAYS} (got {days})")
    return days


def _start(now: datetime) -> datetime:
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be a timezone-aware datetime")
    return now.astimezone(UTC).replace(microsecond=0)


def _self_signed(subject: x509.Name, key: rsa.RSAPrivateKey, start: datetime, days: int) -> x509.Certificate:
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )


def _new_pair(subject: x509.Name, days: int, key_size: int, start: datetime) -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=key_size)
    cert = _self_signed(subject, key, start, days)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def generate_pair(
    cn: str,
    country: str,
    state: str,
    org: str,
    days: int,
    key_size: int = 2048,
    *,
    now: datetime,
) -> tuple[bytes, bytes]:
    """A new RSA key (PEM) and self-signed certificate (PEM); see the module docstring.

    `country` is two letters (ISO 3166, upper-cased). Raises ParameterInvalid naming the argument.
    """
    _check_text("cn", "common name (CN)", cn)
    if not _COUNTRY.fullmatch(country):
        raise ParameterInvalid("country", f"country (C) must be a two-letter code such as US (got {country!r})")
    _check_text("state", "state or province (ST)", state)
    _check_text("org", "organization (O)", org)
    _check_days(days)
    _check_key_size(key_size)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.COUNTRY_NAME, country.upper()),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, state),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
        ]
    )
    return _new_pair(subject, days, key_size, _start(now))


def renew(
    cert_pem: bytes | str,
    days: int,
    key_size: int | None = None,
    *,
    now: datetime,
    key_pem: bytes | str | None = None,
    password: bytes | str | None = None,
) -> tuple[bytes, bytes]:
    """A new key and self-signed certificate with the same subject DN; see the module docstring."""
    start = _start(now)
    cert = load_certificate(cert_pem)
    if key_pem is not None:
        check_private_key(cert, key_pem, password)
    if key_size is None:
        old = cert.public_key()
        key_size = max(old.key_size, MIN_KEY_SIZE) if isinstance(old, rsa.RSAPublicKey) else MIN_KEY_SIZE
        key_size = min((s for s in KEY_SIZES if s >= key_size), default=KEY_SIZES[-1])
    _check_key_size(key_size)
    _check_days(days)
    return _new_pair(cert.subject, days, key_size, start)


def to_pkcs8(key_pem: bytes | str, password: bytes | str | None = None) -> bytes:
    """The private key as unencrypted PKCS#8 PEM ('BEGIN PRIVATE KEY'): the Azure private.pem."""
    data = key_pem.encode("utf-8") if isinstance(key_pem, str) else key_pem
    secret = password.encode("utf-8") if isinstance(password, str) else password
    key = serialization.load_pem_private_key(data, secret)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
