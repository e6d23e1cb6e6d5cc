"""The emulated tenant's recording key pair: generated (throwaway) or loaded from PEM files.

A generated pair looks like the vendor's instructions produce (`openssl genrsa 2048` and
`openssl req -new -x509 -subj "/CN=Genesys Recording/C=US/ST=California/O=Genesys"`): an RSA-2048 key
written as PKCS#1 PEM with mode 0600 and a self-signed certificate. The certificate alias written
into metadata `certAlias` mimics the documented `rcs_Environment:1:CN=...:5` shape.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.x509.oid import NameOID

from cxbackup.certs.cms import KeyFileError, key_matches_certificate, load_certificate, load_private_key

__all__ = ["TenantKey", "generate_tenant_key", "load_tenant_key"]


@dataclass(frozen=True)
class TenantKey:
    """A recording key pair on disk and in memory."""

    key_path: Path
    cert_path: Path
    key: RSAPrivateKey
    certificate: x509.Certificate

    @property
    def alias(self) -> str:
        """The `certAlias` metadata value naming this certificate."""
        return f"rcs_Environment:1:{self.certificate.issuer.rfc4514_string()}:{self.certificate.serial_number}"


def generate_tenant_key(
    key_path: Path,
    cert_path: Path,
    *,
    common_name: str = "Genesys Recording",
    days: int = 3650,
    now: datetime | None = None,
) -> TenantKey:
    """Generate an RSA-2048 key and a self-signed certificate, and write both as PEM."""
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "California"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Genesys"),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    key_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(key_pem)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return TenantKey(key_path, cert_path, key, cert)


def load_tenant_key(key_path: Path, cert_path: Path, password: bytes | str | None = None) -> TenantKey:
    """Load a given key pair; the key must belong to the certificate."""
    key = load_private_key(key_path, password)
    cert = load_certificate(cert_path)
    if not key_matches_certificate(key, cert):
        raise KeyFileError(f"{key_path}: not the private key of the certificate in {cert_path}")
    return TenantKey(key_path, cert_path, key, cert)
