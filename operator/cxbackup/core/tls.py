"""Extra certificate authorities: trust a private CA (an in-house S3, a TLS-inspecting proxy) besides the
system's, for every HTTPS client of a command.

`CXBACKUP_CA_CERTIFICATES` holds PEM certificates (the chart sets it on worker pods from
`security.caCertificates`; on a workstation: `CXBACKUP_CA_CERTIFICATES="$(cat ca.pem)" cxbackup ...`).
`trust_extra_cas` checks them, writes one bundle (the trust store in use, then the extra certificates)
to a private file, and points `AWS_CA_BUNDLE` (boto3 and the AWS CRT) and `SSL_CERT_FILE` (OpenSSL's
default, which urllib3 uses) at it. A certificate is never turned off: there is no way to skip
verification.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import ssl
import tempfile
from collections.abc import MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING

from cxbackup.core.errors import ConfigurationError
from cxbackup.core.files import PRIVATE_MODE

if TYPE_CHECKING:
    from cryptography import x509

__all__ = ["CA_CERTIFICATES", "check_ca_certificates", "trust_extra_cas"]

CA_CERTIFICATES = "CXBACKUP_CA_CERTIFICATES"
"""PEM certificates of extra certificate authorities to trust (the environment variable)."""

MAX_PEM_BYTES = 256 * 1024


def check_ca_certificates(pem: str, where: str = CA_CERTIFICATES) -> list[x509.Certificate]:
    """The CA certificates in `pem`; ConfigurationError naming `where` when there are none or one is
    not a CA certificate."""
    from cryptography import x509  # only when extra CAs are given: `cxbackup --help` stays quick

    if len(pem.encode()) > MAX_PEM_BYTES:
        raise ConfigurationError(f"{where}: more than {MAX_PEM_BYTES // 1024} KiB; give only the CA certificates")
    try:
        certificates = x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        raise ConfigurationError(
            f"{where}: not PEM certificates; give the CA's certificate, '-----BEGIN CERTIFICATE-----' ..."
        ) from None
    for cert in certificates:
        try:
            is_ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        except x509.ExtensionNotFound:
            is_ca = False
        if not is_ca:
            raise ConfigurationError(
                f"{where}: {cert.subject.rfc4514_string()} is not a CA certificate (basicConstraints CA:TRUE); "
                "give the certificate authority that signed the server's certificate, not the server's own"
            )
    return certificates


def _current_bundle(env: MutableMapping[str, str]) -> Path | None:
    """The CA bundle HTTPS clients use now: the one the environment names, else the system's."""
    for var in ("AWS_CA_BUNDLE", "SSL_CERT_FILE"):
        if env.get(var):
            return Path(env[var])
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _remove(name: str) -> None:
    with contextlib.suppress(OSError):
        Path(name).unlink()


def trust_extra_cas(env: MutableMapping[str, str] | None = None) -> Path | None:
    """Add the CAs of CXBACKUP_CA_CERTIFICATES to the trust store of this process (see the module's text);
    the bundle's path, or None when the variable is unset or empty."""
    env = os.environ if env is None else env
    pem = env.get(CA_CERTIFICATES, "").strip()
    if not pem:
        return None
    check_ca_certificates(pem)
    base = _current_bundle(env)
    try:
        system = base.read_text() if base is not None else ""
    except OSError as exc:
        raise ConfigurationError(f"cannot read the CA bundle {base}: {exc.strerror}") from None
    fd, name = tempfile.mkstemp(prefix="cxbackup-ca-", suffix=".pem")
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), PRIVATE_MODE)
        out.write(system.rstrip("\n") + "\n" + pem + "\n")
    atexit.register(_remove, name)
    env["AWS_CA_BUNDLE"] = name
    env["SSL_CERT_FILE"] = name
    return Path(name)
