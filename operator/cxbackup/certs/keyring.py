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

Passwords: every encrypted key opens with its own password, from the file next to it with the same
name and the suffix `.password` (`1234.key` + `1234.password`, `tls.key` + `tls.password`), exactly as
stored (when those bytes fail and end with a line break, once more without it). Only keys without a
`.password` file take the one `password` given to `from_directory`; a password for a key that is not
encrypted is ignored. A key that cannot be opened (wrong or missing password, damaged file) does not
stop the others: it is listed in `Keyring.unusable` with the serial of the certificate next to it and
the reason, and a file encrypted to it fails with a message saying so. Only when no key at all can be
opened does `from_directory` raise.

The keyring Secret the operator keeps (`secret_additions`) has this layout as flat data keys:
`<serial>.crt` (the certificate, PEM), `<serial>.key` (the key exactly as it was uploaded or generated:
an encrypted key stays encrypted) and, for an encrypted key, `<serial>.password` (its password, exactly
as the source Secret held it). Saved as files, it is a keyring folder as described above.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from cxbackup.certs.cms import (
    CmsData,
    DecryptError,
    KeyFileError,
    MemoryOutput,
    NoMatchingKeyError,
    Output,
    RecipientId,
    decrypt_into,
    decrypt_with_key_into,
    key_matches_certificate,
    load_certificates,
    load_private_key,
    recipients,
)
from cxbackup.certs.validation import key_is_encrypted

__all__ = [
    "CERT_SUFFIX",
    "KEY_FILE_SUFFIXES",
    "KEY_SUFFIX",
    "PASSWORD_SUFFIX",
    "Keyring",
    "KeyringEntry",
    "UnusableKey",
    "secret_additions",
]

KEY_FILE_SUFFIXES = (".key", ".pem", ".crt", ".cer", ".der")
CERT_SUFFIX = ".crt"
KEY_SUFFIX = ".key"
PASSWORD_SUFFIX = ".password"  # noqa: S105 - a file name suffix, not a password


@dataclass
class KeyringEntry:
    """One private key, the certificates issued for it (possibly none), and where it came from."""

    key: RSAPrivateKey
    certificates: list[x509.Certificate] = field(default_factory=list)
    source: str = ""

    def matching_certificate(self, rid: RecipientId) -> x509.Certificate | None:
        return next((c for c in self.certificates if rid.matches(c)), None)


@dataclass(frozen=True)
class UnusableKey:
    """A key file of the keyring that could not be opened, the certificates next to it, and why."""

    source: str
    reason: str
    certificates: tuple[x509.Certificate, ...] = ()

    @property
    def serial(self) -> str | None:
        """The (decimal) serial number of the certificate stored with the key, if there is one."""
        return str(self.certificates[0].serial_number) if self.certificates else None

    def __str__(self) -> str:
        serial = f" (certificate serial {self.serial})" if self.serial else ""
        return f"key {self.source}{serial} cannot be opened: {self.reason}"


def secret_additions(
    data: Mapping[str, bytes], serial: str, cert_pem: bytes, key_pem: bytes, password: bytes | None = None
) -> dict[str, bytes]:
    """The data keys to add to a keyring Secret holding `data` so it holds this pair: {} when it does.

    The pair is stored as `<serial>.crt` + `<serial>.key` (the key exactly as given: an encrypted key
    stays encrypted) and, when the key is encrypted, `<serial>.password` with its password, so every
    key in the keyring can be opened. Nothing is ever overwritten: a pair already stored without its
    password gets only the `.password` added; a name taken by something else (another certificate
    with the same serial, or the same key stored with another password) makes the pair go under
    `<serial>-1`, `<serial>-2` ... instead.
    """
    secret = password if password and key_is_encrypted(key_pem) else None
    stems = [name.removesuffix(CERT_SUFFIX) for name in data if name.endswith(CERT_SUFFIX)]
    held = [s for s in sorted(stems) if data[s + CERT_SUFFIX] == cert_pem and data.get(s + KEY_SUFFIX) == key_pem]
    if secret is None and held:
        return {}
    for stem in held:
        stored = data.get(stem + PASSWORD_SUFFIX)
        if stored == secret:
            return {}
        if stored is None:
            return {stem + PASSWORD_SUFFIX: secret} if secret is not None else {}
    stem, n = serial, 0
    while any(stem + suffix in data for suffix in (CERT_SUFFIX, KEY_SUFFIX, PASSWORD_SUFFIX)):
        n += 1
        stem = f"{serial}-{n}"
    additions = {stem + CERT_SUFFIX: cert_pem, stem + KEY_SUFFIX: key_pem}
    if secret is not None:
        additions[stem + PASSWORD_SUFFIX] = secret
    return additions


def _open_key(file: Path, common: bytes | str | None) -> RSAPrivateKey:
    """The key in `file`, with its own `.password` file if there is one, else the common password."""
    own_file = file.with_suffix(PASSWORD_SUFFIX)
    try:
        own = own_file.read_bytes() if own_file.is_file() else None
    except OSError as exc:
        raise KeyFileError(f"{own_file}: cannot read ({exc.strerror})") from None
    if not own:
        try:
            return load_private_key(file, common)
        except KeyFileError as exc:
            if "password is needed" in str(exc):
                raise KeyFileError(f"{exc}: put it into {own_file.name} next to the key") from None
            if common is not None and "wrong password" in str(exc):
                raise KeyFileError(f"{exc} (the common password, for keys without a .password file)") from None
            raise
    try:
        return load_private_key(file, own)
    except KeyFileError as exc:
        stripped = own.rstrip(b"\r\n")  # a password typed into an editor ends with a line break
        if stripped and stripped != own:
            with contextlib.suppress(KeyFileError):
                return load_private_key(file, stripped)
        raise KeyFileError(f"{exc} (password from {own_file.name})") from None


def _spki(key: RSAPrivateKey | x509.Certificate) -> bytes:
    pub = key.public_key()
    return pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


class Keyring:
    """Private keys with their certificates; picks the right one for each CMS file."""

    def __init__(self, entries: Iterable[KeyringEntry] = ()) -> None:
        self._entries: list[KeyringEntry] = []
        self.orphan_certificates: list[x509.Certificate] = []
        self.unusable: list[UnusableKey] = []
        for entry in entries:
            self.add(entry.key, entry.certificates, source=entry.source)

    @classmethod
    def from_directory(cls, path: Path, password: bytes | str | None = None) -> Keyring:
        """Load every key and certificate under `path` (see the module docstring for the layout and the
        passwords). Keys that cannot be opened go to `unusable`; KeyFileError when none can be opened."""
        if not path.is_dir():
            raise KeyFileError(f"{path}: not a directory")
        key_files: list[Path] = []
        certs: list[x509.Certificate] = []
        certs_by_stem: dict[Path, list[x509.Certificate]] = {}
        for file in sorted(path.rglob("*")):
            rel = file.relative_to(path)
            if any(part.startswith(".") for part in rel.parts) or not file.is_file():
                continue
            if file.suffix.lower() not in KEY_FILE_SUFFIXES:
                continue
            data = file.read_bytes()
            is_pem = b"-----BEGIN" in data
            if (is_pem and b"PRIVATE KEY-----" in data) or (not is_pem and file.suffix.lower() == ".key"):
                key_files.append(file)
            if (is_pem and b"CERTIFICATE-----" in data) or (not is_pem and file.suffix.lower() != ".key"):
                try:
                    found = load_certificates(file)
                except KeyFileError:
                    if is_pem:
                        raise
                    continue
                certs.extend(found)
                certs_by_stem.setdefault(file.with_suffix(""), []).extend(found)
        ring = cls()
        for file in key_files:
            try:
                key = _open_key(file, password)
            except KeyFileError as exc:
                beside = tuple(certs_by_stem.get(file.with_suffix(""), ()))
                ring.unusable.append(UnusableKey(str(file), str(exc).removeprefix(f"{file}: "), beside))
                continue
            ring.add(key, source=str(file))
        for cert in certs:
            ring.add_certificate(cert)
        # a key stored twice (under another name, with another password) that opened once is not missing
        ring.unusable = [u for u in ring.unusable if not (u.certificates and all(map(ring._has_key, u.certificates)))]
        if key_files and not ring:
            problems = "; ".join(str(u) for u in ring.unusable)
            raise KeyFileError(f"{path}: none of the {len(key_files)} keys can be opened: {problems}")
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

    def _has_key(self, certificate: x509.Certificate) -> bool:
        spki = _spki(certificate)
        return any(_spki(e.key) == spki for e in self._entries)

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

    def decrypt(self, der: CmsData, *, source: str | None = None) -> bytes:
        """Decrypt a CMS file with whichever key its recipients name (see `decrypt_into`)."""
        out = MemoryOutput()
        self.decrypt_into(der, out, source=source)
        return out.getvalue()

    def decrypt_into(self, der: CmsData, out: Output, *, source: str | None = None) -> int:
        """Decrypt a CMS file with whichever key its recipients name, streaming to `out`; the bytes written.

        Keys with a certificate are chosen by recipient; keys without one are then tried in turn (`out` is
        rewound before each further try). Raises NoMatchingKeyError listing the recipients (issuer DN +
        serial) when no key opens it; after any error `out` holds no usable plaintext.
        """
        recips = recipients(der, source=source)
        failure: DecryptError | None = None
        tried = False
        for rid in recips:
            found = self.find(rid)
            if found is None:
                continue
            entry, cert = found
            if tried:
                out.rewind()
            tried = True
            try:
                return decrypt_into(der, entry.key, cert, out, source=source)
            except DecryptError as exc:
                failure = exc
        for entry in self._entries:
            if entry.certificates:
                continue
            if tried:
                out.rewind()
            tried = True
            try:
                return decrypt_with_key_into(der, entry.key, out, source=source)
            except NoMatchingKeyError:
                continue
            except DecryptError as exc:
                failure = exc
        if failure is not None:
            raise failure
        where = f"{source}: " if source else ""
        listed = "; ".join(str(r) for r in recips) or "none"
        unopened = [u for u in self.unusable if any(r.matches(c) for r in recips for c in u.certificates)]
        hint = "".join(f"; the keyring has its key, but {u}" for u in unopened)
        raise NoMatchingKeyError(
            f"{where}no key in the keyring ({len(self._entries)} keys) for recipients: {listed}{hint}",
            recips,
        )
