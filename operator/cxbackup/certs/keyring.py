"""A keyring: every recording key a tenant ever had, addressable by the certificate each file names.

Recording certificates are rotated, and every key ever used must stay available so old recordings
remain readable. A CMS file names its recipient by the certificate's issuer and serial number (or its
subject key identifier); `Keyring.decrypt` picks the key whose certificate matches.

Accepted directory layout (`Keyring.from_directory`), searched recursively, names do not matter:

- PEM (or DER) files ending in `.key`, `.pem`, `.crt`, `.cer` or `.der`, holding private keys,
  certificates, or both (a combined PEM). Keys are paired with certificates by public key, not by
  file name, so all of these work:
  - `tenant.key` + `tenant.pem` (what the vendor's openssl instructions produce),
  - one sub-directory per Kubernetes TLS Secret, each with `tls.key` + `tls.crt`,
  - `2023.pem` holding both the key and the certificate.
- A certificate may be re-issued for the same key: every certificate found for a key is usable.
- A key without any certificate is still used, tried against every recipient like
  `openssl cms -decrypt -inkey KEY` does (slower, and it cannot say which recipient it is).
- Certificates without a key are ignored (listed in `Keyring.orphan_certificates`).
- Hidden files and directories (names starting with ".") are skipped.

Encrypted keys take the one `password` given to `from_directory`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from cxbackup.certs.cms import (
    DecryptError,
    KeyFileError,
    NoMatchingKeyError,
    RecipientId,
    decrypt,
    decrypt_with_key,
    key_matches_certificate,
    load_certificates,
    load_private_key,
    recipients,
)

__all__ = ["KEY_FILE_SUFFIXES", "Keyring", "KeyringEntry"]

KEY_FILE_SUFFIXES = (".key", ".pem", ".crt", ".cer", ".der")


@dataclass
class KeyringEntry:
    """One private key, the certificates issued for it (possibly none), and where it came from."""

    key: RSAPrivateKey
    certificates: list[x509.Certificate] = field(default_factory=list)
    source: str = ""

    def matching_certificate(self, rid: RecipientId) -> x509.Certificate | None:
        return next((c for c in self.certificates if rid.matches(c)), None)


def _spki(key: RSAPrivateKey | x509.Certificate) -> bytes:
    pub = key.public_key()
    return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class Keyring:
    """Private keys with their certificates; picks the right one for each CMS file."""

    def __init__(self, entries: Iterable[KeyringEntry] = ()) -> None:
        self._entries: list[KeyringEntry] = []
        self.orphan_certificates: list[x509.Certificate] = []
        for entry in entries:
            self.add(entry.key, entry.certificates, source=entry.source)

    @classmethod
    def from_directory(cls, path: Path, password: bytes | str | None = None) -> Keyring:
        """Load every key and certificate under `path` (see the module docstring for the layout)."""
        if not path.is_dir():
            raise KeyFileError(f"{path}: not a directory")
        keys: list[tuple[RSAPrivateKey, str]] = []
        certs: list[x509.Certificate] = []
        for file in sorted(path.rglob("*")):
            rel = file.relative_to(path)
            if any(part.startswith(".") for part in rel.parts) or not file.is_file():
                continue
            if file.suffix.lower() not in KEY_FILE_SUFFIXES:
                continue
            data = file.read_bytes()
            is_pem = b"-----BEGIN" in data
            if (is_pem and b"PRIVATE KEY-----" in data) or (not is_pem and file.suffix.lower() == ".key"):
                keys.append((load_private_key(file, password), str(file)))
            if (is_pem and b"CERTIFICATE-----" in data) or (not is_pem and file.suffix.lower() != ".key"):
                try:
                    certs.extend(load_certificates(file))
                except KeyFileError:
                    if is_pem:
                        raise
        ring = cls()
        for key, source in keys:
            ring.add(key, source=source)
        for cert in certs:
            ring.add_certificate(cert)
        return ring

    def add(
        self,
        key: RSAPrivateKey,
        certificates: Iterable[x509.Certificate] = (),
        *,
        source: str = "",
    ) -> KeyringEntry:
        """Add a key (merged with an existing entry for the same key) and certificates for it."""
        spki = _spki(key)
        entry = next((e for e in self._entries if _spki(e.key) == spki), None)
        if entry is None:
            entry = KeyringEntry(key, [], source)
            self._entries.append(entry)
        for cert in certificates:
            if not key_matches_certificate(key, cert):
                raise KeyFileError(
                    f"{source or 'key'}: the certificate {RecipientId.of_certificate(cert)} is not for this key"
                )
            if cert not in entry.certificates:
                entry.certificates.append(cert)
        return entry

    def add_certificate(self, certificate: x509.Certificate) -> bool:
        """Attach a certificate to the key it belongs to; False (kept as orphan) when no key matches."""
        spki = _spki(certificate)
        for entry in self._entries:
            if _spki(entry.key) == spki:
                if certificate not in entry.certificates:
                    entry.certificates.append(certificate)
                return True
        if certificate not in self.orphan_certificates:
            self.orphan_certificates.append(certificate)
        return False

    @property
    def entries(self) -> list[KeyringEntry]:
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __iter__(self) -> Iterator[KeyringEntry]:
        return iter(list(self._entries))

    def find(self, rid: RecipientId) -> tuple[KeyringEntry, x509.Certificate] | None:
        """The entry and certificate designated by a recipient identifier, if the keyring has it."""
        for entry in self._entries:
            cert = entry.matching_certificate(rid)
            if cert is not None:
                return entry, cert
        return None

    def decrypt(self, der: bytes, *, source: str | None = None) -> bytes:
        """Decrypt a CMS file with whichever key its recipients name.

        Keys with a certificate are chosen by recipient; keys without one are then tried in turn.
        Raises NoMatchingKeyError listing the recipients (issuer DN + serial) when no key opens it.
        """
        recips = recipients(der, source=source)
        failure: DecryptError | None = None
        for rid in recips:
            found = self.find(rid)
            if found is None:
                continue
            entry, cert = found
            try:
                return decrypt(der, entry.key, cert, source=source)
            except DecryptError as exc:
                failure = exc
        for entry in self._entries:
            if entry.certificates:
                continue
            try:
                return decrypt_with_key(der, entry.key, source=source)
            except NoMatchingKeyError:
                continue
            except DecryptError as exc:
                failure = exc
        if failure is not None:
            raise failure
        where = f"{source}: " if source else ""
        listed = "; ".join(str(r) for r in recips) or "none"
        raise NoMatchingKeyError(
            f"{where}no key in the keyring ({len(self._entries)} keys) for recipients: {listed}",
            recips,
        )
