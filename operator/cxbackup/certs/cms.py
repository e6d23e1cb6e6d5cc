"""CMS (S/MIME) enveloped-data: encrypt to a recording certificate, list recipients, decrypt.

Recording media are stored as CMS enveloped-data (RFC 5652) encrypted to the tenant's recording
certificate, and `openssl cms -decrypt -inform DER -binary -inkey KEY` must read every file we write.

- `encrypt` uses cryptography's `PKCS7EnvelopeBuilder` in binary mode (no MIME canonicalisation), so the
  decrypted bytes are exactly the input.
- `decrypt` uses cryptography's `pkcs7_decrypt_der` when it can (DER, AES-128/256-CBC, a certificate to
  name the recipient). Files it cannot read but openssl can - BER with indefinite lengths (what
  `openssl cms -stream` and streaming BouncyCastle generators write), AES-192-CBC, DES-EDE3-CBC, or a
  bare private key without its certificate - go through a small decryptor here built on cryptography's
  RSA and cipher primitives.
- `recipients` reads the recipient identifiers (issuer + serial number, or subject key identifier)
  with a minimal BER reader, so a key can be chosen before anything is decrypted.

Exceptions:

```
CmsError                  base class of everything raised here
├── NotCmsError           the bytes are not CMS enveloped-data (another file type, or another CMS type)
├── UnsupportedCmsError   enveloped-data using an algorithm or recipient type we cannot decrypt
├── NoMatchingKeyError    no key given opens any recipient; .recipients lists who the file is for
├── DecryptError          the recipient matched but decryption failed (wrong key, truncated, corrupt)
└── KeyFileError          a key or certificate file cannot be read (missing, password, not RSA)
```

Messages name the file (the `source` argument) and the recipients; they never contain key material.
"""

from __future__ import annotations

import dataclasses
import io
import mmap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, TypeAlias

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding as asympadding
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, CipherAlgorithm, algorithms, modes
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import ObjectIdentifier

__all__ = [
    "Algorithm",
    "CmsData",
    "CmsError",
    "DecryptError",
    "EnvelopeInfo",
    "KeyFileError",
    "MemoryOutput",
    "NoMatchingKeyError",
    "NotCmsError",
    "Output",
    "RecipientId",
    "UnsupportedCmsError",
    "decrypt",
    "decrypt_into",
    "decrypt_with_key",
    "decrypt_with_key_into",
    "encrypt",
    "inspect",
    "key_matches_certificate",
    "load_certificate",
    "load_certificates",
    "load_private_key",
    "looks_like_cms",
    "plaintext_size_range",
    "recipients",
]

Algorithm = Literal["AES-128", "AES-256"]
CmsData: TypeAlias = bytes | mmap.mmap
"""A CMS file's bytes: in memory, or mapped (`mmap`, read-only) so a large file is never copied."""

_Bytes: TypeAlias = bytes | mmap.mmap | memoryview

_STREAM_CHUNK = 4 << 20
"""Bytes of ciphertext decrypted per step when streaming: memory stays at about twice this."""


class Output(Protocol):
    """Where decrypted bytes go: `write` them in order; `rewind` drops what was written (to try another key)."""

    def write(self, data: bytes | memoryview, /) -> object: ...

    def rewind(self) -> None: ...


class MemoryOutput(io.BytesIO):
    """An `Output` in memory (`getvalue()` is the plaintext)."""

    def rewind(self) -> None:
        self.seek(0)
        self.truncate()


_OID_DATA = "1.2.840.113549.1.7.1"
_OID_ENVELOPED_DATA = "1.2.840.113549.1.7.3"
_OID_RSA_ENCRYPTION = "1.2.840.113549.1.1.1"
_OID_RSAES_OAEP = "1.2.840.113549.1.1.7"
_CONTENT_TYPE_NAMES = {
    _OID_DATA: "data",
    "1.2.840.113549.1.7.2": "signed-data",
    _OID_ENVELOPED_DATA: "enveloped-data",
    "1.2.840.113549.1.7.5": "digested-data",
    "1.2.840.113549.1.7.6": "encrypted-data",
    "1.2.840.113549.1.9.16.1.2": "authenticated-data",
    "1.2.840.113549.1.9.16.1.23": "auth-enveloped-data (AES-GCM)",
}
# content-encryption algorithm OID -> (name, key size in bytes, cipher factory)
_CONTENT_CIPHERS: dict[str, tuple[str, int]] = {
    "2.16.840.1.101.3.4.1.2": ("AES-128-CBC", 16),
    "2.16.840.1.101.3.4.1.22": ("AES-192-CBC", 24),
    "2.16.840.1.101.3.4.1.42": ("AES-256-CBC", 32),
    "1.2.840.113549.3.7": ("DES-EDE3-CBC", 24),
}
_RECIPIENT_INFO_KINDS = {1: "KeyAgreeRecipientInfo", 2: "KEKRecipientInfo", 3: "PasswordRecipientInfo"}
_MAX_DEPTH = 64


# --------------------------------------------------------------------------------------------- errors


class CmsError(Exception):
    """Base class of every error raised by this module."""


class NotCmsError(CmsError):
    """The input is not CMS enveloped-data."""


class UnsupportedCmsError(CmsError):
    """CMS enveloped-data that uses an algorithm or recipient type this module cannot decrypt."""


class DecryptError(CmsError):
    """A recipient matched, but decryption failed (wrong key for that recipient, truncated or corrupt)."""


class KeyFileError(CmsError):
    """A private key or certificate file cannot be loaded."""


class NoMatchingKeyError(CmsError):
    """None of the keys given can open the file; `recipients` says which certificates it was encrypted to."""

    def __init__(self, message: str, recipients: Sequence[RecipientId] = ()) -> None:
        super().__init__(message)
        self.recipients: list[RecipientId] = list(recipients)


# ----------------------------------------------------------------------------------- recipient ids


@dataclass(frozen=True)
class RecipientId:
    """Who a CMS file is encrypted to: issuer + serial number, or a subject key identifier.

    `issuer_der` is the issuer Name exactly as encoded in the file; `issuer` is that Name decoded.
    """

    issuer: x509.Name | None
    serial_number: int | None
    subject_key_identifier: bytes | None = None
    issuer_der: bytes = dataclasses.field(default=b"", repr=False, compare=False)

    @classmethod
    def of_certificate(cls, certificate: x509.Certificate) -> RecipientId:
        """The issuer-and-serial identifier a CMS encryptor writes for this certificate."""
        return cls(
            issuer=certificate.issuer,
            serial_number=certificate.serial_number,
            issuer_der=certificate.issuer.public_bytes(),
        )

    def matches(self, certificate: x509.Certificate) -> bool:
        """Whether this recipient designates `certificate`."""
        if self.subject_key_identifier is not None:
            try:
                ski = certificate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
            except x509.ExtensionNotFound:
                return False
            return ski.value.digest == self.subject_key_identifier
        if self.serial_number != certificate.serial_number:
            return False
        cert_issuer_der = certificate.issuer.public_bytes()
        if self.issuer_der and self.issuer_der == cert_issuer_der:
            return True
        return self.issuer is not None and self.issuer == certificate.issuer

    def __str__(self) -> str:
        if self.subject_key_identifier is not None:
            return f"subjectKeyIdentifier {self.subject_key_identifier.hex(':')}"
        issuer = self.issuer.rfc4514_string() if self.issuer is not None else "<undecodable issuer>"
        return f"issuer {issuer!r} serial {self.serial_number}"


def _describe(recips: Sequence[RecipientId]) -> str:
    return "; ".join(str(r) for r in recips) or "none"


def _named(source: str | None) -> str:
    return f"{source}: " if source else ""


# ------------------------------------------------------------------------------------- BER reader


class _Malformed(Exception):
    """Internal: the BER structure is broken (truncated or invalid)."""


@dataclass(frozen=True)
class _Tlv:
    cls: int  # 0 universal, 1 application, 2 context, 3 private
    constructed: bool
    number: int
    offset: int  # the tag byte
    start: int  # first content byte
    end: int  # one past the last content byte
    next: int  # first byte after this element (after the end-of-contents octets when indefinite)


def _read_tlv(data: _Bytes, pos: int, limit: int, depth: int = 0) -> _Tlv:
    if depth > _MAX_DEPTH:
        raise _Malformed("nesting too deep")
    if pos >= limit:
        raise _Malformed(f"truncated: expected an element at offset {pos}")
    offset = pos
    first = data[pos]
    pos += 1
    cls, constructed, number = first >> 6, bool(first & 0x20), first & 0x1F
    if number == 0x1F:
        number = 0
        while True:
            if pos >= limit:
                raise _Malformed("truncated tag")
            b = data[pos]
            pos += 1
            number = (number << 7) | (b & 0x7F)
            if not b & 0x80:
                break
    if pos >= limit:
        raise _Malformed("truncated length")
    lb = data[pos]
    pos += 1
    if lb == 0x80:  # indefinite length (BER): children until end-of-contents 00 00
        if not constructed:
            raise _Malformed("indefinite length on a primitive element")
        cur = pos
        while True:
            if cur + 2 <= limit and data[cur] == 0 and data[cur + 1] == 0:
                return _Tlv(cls, constructed, number, offset, pos, cur, cur + 2)
            child = _read_tlv(data, cur, limit, depth + 1)
            cur = child.next
    if lb & 0x80:
        n = lb & 0x7F
        if n > 8 or pos + n > limit:
            raise _Malformed("truncated or oversized length")
        length = int.from_bytes(data[pos : pos + n], "big")
        pos += n
    else:
        length = lb
    end = pos + length
    if end > limit:
        raise _Malformed(f"truncated: element at offset {pos} needs {length} bytes, {limit - pos} left")
    return _Tlv(cls, constructed, number, offset, pos, end, end)


def _children(data: _Bytes, tlv: _Tlv) -> list[_Tlv]:
    out: list[_Tlv] = []
    cur = tlv.start
    while cur < tlv.end:
        child = _read_tlv(data, cur, tlv.end)
        out.append(child)
        cur = child.next
    return out


def _expect(tlv: _Tlv, cls: int, number: int, what: str) -> None:
    if tlv.cls != cls or tlv.number != number:
        raise _Malformed(f"expected {what}")


def _oid(data: CmsData, tlv: _Tlv) -> str:
    _expect(tlv, 0, 6, "an OBJECT IDENTIFIER")
    raw = data[tlv.start : tlv.end]
    if not raw:
        raise _Malformed("empty OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    for b in raw:
        value = (value << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(value)
            value = 0
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def _integer(data: CmsData, tlv: _Tlv) -> int:
    _expect(tlv, 0, 2, "an INTEGER")
    return int.from_bytes(data[tlv.start : tlv.end], "big", signed=True)


def _octets(data: CmsData, tlv: _Tlv, depth: int = 0) -> bytes:
    """The content of an OCTET STRING (or an implicitly tagged one), primitive or constructed (BER)."""
    if not tlv.constructed:
        return data[tlv.start : tlv.end]
    if depth > _MAX_DEPTH:
        raise _Malformed("nesting too deep")
    return b"".join(_octets(data, c, depth + 1) for c in _children(data, tlv))


_STRING_TYPES = {12, 18, 19, 20, 22, 26, 28, 30}


def _decode_string(tag: int, raw: bytes) -> str:
    if tag == 30:
        return raw.decode("utf-16-be")
    if tag == 28:
        return raw.decode("utf-32-be")
    if tag == 20:
        return raw.decode("latin-1")
    return raw.decode("utf-8")


def _name(data: CmsData, tlv: _Tlv) -> x509.Name | None:
    """Decode a Name for display and comparison; None when it holds attribute types we cannot rebuild."""
    try:
        from cryptography.x509.name import _ASN1Type

        rdns: list[x509.RelativeDistinguishedName] = []
        for rdn in _children(data, tlv):
            attrs: list[x509.NameAttribute[str]] = []
            for atv in _children(data, rdn):
                oid_tlv, value_tlv = _children(data, atv)[:2]
                if value_tlv.cls != 0 or value_tlv.number not in _STRING_TYPES:
                    return None
                value = _decode_string(value_tlv.number, data[value_tlv.start : value_tlv.end])
                attrs.append(
                    x509.NameAttribute(
                        ObjectIdentifier(_oid(data, oid_tlv)),
                        value,
                        _ASN1Type(value_tlv.number),
                        _validate=False,
                    )
                )
            rdns.append(x509.RelativeDistinguishedName(attrs))
        return x509.Name(rdns)
    except (ValueError, UnicodeDecodeError, _Malformed, ImportError):
        return None


@dataclass(frozen=True)
class _KeyTrans:
    rid: RecipientId
    key_algorithm: str
    encrypted_key: bytes


@dataclass(frozen=True)
class EnvelopeInfo:
    """What `inspect` learns from a CMS enveloped-data file without decrypting it."""

    recipients: list[RecipientId]
    content_algorithm: str  # e.g. "AES-256-CBC", or the OID when unknown
    content_algorithm_oid: str
    definite_length: bool  # DER-style lengths throughout the outer structure
    other_recipient_kinds: list[str]  # recipient types other than key transport (not decryptable here)


@dataclass(frozen=True)
class _Envelope:
    info: EnvelopeInfo
    key_trans: list[_KeyTrans]
    iv: bytes | None
    ciphertext: list[memoryview]
    """The encrypted content as views into the file's bytes (several when BER splits it), never copied."""


def _octet_pieces(data: memoryview, tlv: _Tlv, depth: int = 0) -> list[memoryview]:
    """The content of an OCTET STRING as views into `data`: one, or one per piece of a constructed one."""
    if not tlv.constructed:
        return [data[tlv.start : tlv.end]]
    if depth > _MAX_DEPTH:
        raise _Malformed("nesting too deep")
    return [piece for c in _children(data, tlv) for piece in _octet_pieces(data, c, depth + 1)]


def _parse(data: CmsData, source: str | None, *, need_content: bool) -> _Envelope:
    where = _named(source)
    view = memoryview(data)
    try:
        outer = _read_tlv(data, 0, len(data))
    except _Malformed as exc:
        if looks_like_cms(data):
            raise DecryptError(f"{where}damaged CMS enveloped-data ({exc})") from None
        raise NotCmsError(f"{where}not CMS enveloped-data (not a DER/BER structure: {exc})") from None
    if outer.cls != 0 or outer.number != 16 or not outer.constructed:
        raise NotCmsError(f"{where}not CMS enveloped-data (does not start with an ASN.1 SEQUENCE)")
    try:
        first = _read_tlv(data, outer.start, outer.end)
        content_type = _oid(data, first)
    except _Malformed:
        raise NotCmsError(f"{where}not CMS enveloped-data (no content type)") from None
    if content_type != _OID_ENVELOPED_DATA:
        name = _CONTENT_TYPE_NAMES.get(content_type)
        if name is None:
            raise NotCmsError(f"{where}not CMS enveloped-data (ASN.1 with type {content_type})")
        if content_type.endswith(".23"):
            raise UnsupportedCmsError(f"{where}CMS {name} is not supported")
        raise NotCmsError(f"{where}CMS {name}, not enveloped-data")
    try:
        explicit = _read_tlv(data, first.next, outer.end)
        _expect(explicit, 2, 0, "[0] content")
        env = _read_tlv(data, explicit.start, explicit.end)
        _expect(env, 0, 16, "EnvelopedData SEQUENCE")
        parts = _children(data, env)
        idx = 1  # parts[0] is the version
        if parts[idx].cls == 2 and parts[idx].number == 0:  # originatorInfo
            idx += 1
        rinfos = parts[idx]
        _expect(rinfos, 0, 17, "recipientInfos SET")
        eci = parts[idx + 1]
        _expect(eci, 0, 16, "EncryptedContentInfo")
        recips: list[RecipientId] = []
        key_trans: list[_KeyTrans] = []
        others: list[str] = []
        for ri in _children(data, rinfos):
            if ri.cls != 0:
                others.append(_RECIPIENT_INFO_KINDS.get(ri.number, f"OtherRecipientInfo [{ri.number}]"))
                continue
            fields = _children(data, ri)
            rid_tlv = fields[1]
            if rid_tlv.cls == 2 and rid_tlv.number == 0:
                rid = RecipientId(None, None, subject_key_identifier=_octets(data, rid_tlv))
            else:
                issuer_tlv, serial_tlv = _children(data, rid_tlv)[:2]
                rid = RecipientId(
                    issuer=_name(data, issuer_tlv),
                    serial_number=_integer(data, serial_tlv),
                    issuer_der=data[issuer_tlv.offset : issuer_tlv.next],
                )
            alg = _oid(data, _children(data, fields[2])[0])
            recips.append(rid)
            key_trans.append(_KeyTrans(rid, alg, _octets(data, fields[3])))
        eci_parts = _children(data, eci)
        alg_parts = _children(data, eci_parts[1])
        content_oid = _oid(data, alg_parts[0])
        iv: bytes | None = None
        if len(alg_parts) > 1 and alg_parts[1].cls == 0 and alg_parts[1].number == 4:
            iv = _octets(data, alg_parts[1])
        ciphertext: list[memoryview] = []
        if need_content and len(eci_parts) > 2:
            ciphertext = _octet_pieces(view, eci_parts[2])
    except (_Malformed, IndexError) as exc:
        detail = str(exc) if isinstance(exc, _Malformed) else "missing fields"
        raise DecryptError(f"{where}damaged CMS enveloped-data ({detail})") from None
    name = _CONTENT_CIPHERS.get(content_oid, (content_oid, 0))[0]
    definite = data[1] != 0x80
    info = EnvelopeInfo(recips, name, content_oid, definite, others)
    return _Envelope(info, key_trans, iv, ciphertext)


# ------------------------------------------------------------------------------------- public API


def looks_like_cms(data: CmsData) -> bool:
    """Cheap check: does `data` start like CMS enveloped-data? (Reads only the first few bytes.)"""
    head = data[:32]
    marker = bytes.fromhex("06092a864886f70d010703")  # OID 1.2.840.113549.1.7.3
    return len(head) > 2 and head[0] == 0x30 and marker in head


def inspect(data: CmsData, *, source: str | None = None) -> EnvelopeInfo:
    """Recipients and algorithms of a CMS enveloped-data file, without decrypting it."""
    return _parse(data, source, need_content=False).info


_BLOCK_BYTES = {"DES-EDE3-CBC": 8}  # the other known content ciphers are AES: 16-byte blocks


def plaintext_size_range(data: CmsData, *, source: str | None = None) -> tuple[int, int] | None:
    """The fewest and most plaintext bytes a CMS enveloped-data file can hold, known without its key: CBC
    with PKCS#7 padding adds 1 to one block of bytes, so n ciphertext bytes hold n - block to n - 1. None
    when the cipher is not one of ours (unknown block size). Raises what `inspect` raises; DecryptError
    when the ciphertext is not whole blocks (a truncated file)."""
    env = _parse(data, source, need_content=True)
    name = env.info.content_algorithm
    if env.info.content_algorithm_oid not in _CONTENT_CIPHERS:
        return None
    block = _BLOCK_BYTES.get(name, 16)
    size = sum(len(piece) for piece in env.ciphertext)
    if size == 0 or size % block:
        raise DecryptError(f"{_named(source)}damaged CMS enveloped-data ({size} ciphertext bytes, not whole blocks)")
    return size - block, size - 1


def recipients(der: CmsData, *, source: str | None = None) -> list[RecipientId]:
    """The key-transport recipients of a CMS enveloped-data file (DER or BER)."""
    return inspect(der, source=source).recipients


def encrypt(data: bytes, certificate: x509.Certificate, algorithm: Algorithm = "AES-256") -> bytes:
    """Encrypt `data` to `certificate` as CMS enveloped-data, DER, binary mode (bytes kept exactly)."""
    alg: pkcs7.ContentEncryptionAlgorithm
    if algorithm == "AES-128":
        alg = algorithms.AES128
    elif algorithm == "AES-256":
        alg = algorithms.AES256
    else:
        raise ValueError(f"unsupported content encryption algorithm {algorithm!r} (AES-128 or AES-256)")
    builder = (
        pkcs7.PKCS7EnvelopeBuilder().set_data(data).add_recipient(certificate).set_content_encryption_algorithm(alg)
    )
    return builder.encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])


def key_matches_certificate(key: RSAPrivateKey, certificate: x509.Certificate) -> bool:
    """Whether `key` is the private half of `certificate`'s public key."""
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    return key.public_key().public_bytes(enc, fmt) == certificate.public_key().public_bytes(enc, fmt)


def decrypt(der: CmsData, key: RSAPrivateKey, certificate: x509.Certificate, *, source: str | None = None) -> bytes:
    """Decrypt CMS enveloped-data addressed to `certificate` with its private `key` (see `decrypt_into`)."""
    out = MemoryOutput()
    decrypt_into(der, key, certificate, out, source=source)
    return out.getvalue()


def decrypt_into(
    der: CmsData, key: RSAPrivateKey, certificate: x509.Certificate, out: Output, *, source: str | None = None
) -> int:
    """Decrypt CMS enveloped-data addressed to `certificate` with its private `key`, streaming the plaintext
    to `out` in pieces of about 4 MiB; the number of bytes written.

    Raises NotCmsError, NoMatchingKeyError (the file is not for this certificate), UnsupportedCmsError,
    DecryptError (truncated, corrupt, or `key` is not the certificate's key). The padding is checked only at
    the end: after an error, what `out` received is not the plaintext, so write to a temporary file.
    """
    env = _parse(der, source, need_content=True)
    where = _named(source)
    mine = [kt for kt in env.key_trans if kt.rid.matches(certificate)]
    if not mine:
        raise NoMatchingKeyError(
            f"{where}encrypted to {_describe(env.info.recipients)}; not to the certificate "
            f"{RecipientId.of_certificate(certificate)}",
            env.info.recipients,
        )
    if not key_matches_certificate(key, certificate):
        raise DecryptError(
            f"{where}the private key does not belong to the certificate {RecipientId.of_certificate(certificate)}"
        )
    cek = _unwrap(mine[0], key, where)
    if cek is None:
        raise DecryptError(f"{where}the content key for {mine[0].rid} does not decrypt (wrong key or damaged file)")
    return _decrypt_content(env, cek, where, out.write)


def decrypt_with_key(der: CmsData, key: RSAPrivateKey, *, source: str | None = None) -> bytes:
    """Decrypt with a private key alone, trying every recipient (see `decrypt_with_key_into`)."""
    out = MemoryOutput()
    decrypt_with_key_into(der, key, out, source=source)
    return out.getvalue()


def decrypt_with_key_into(der: CmsData, key: RSAPrivateKey, out: Output, *, source: str | None = None) -> int:
    """Decrypt with a private key alone, trying every recipient (what `openssl cms -inkey KEY` does),
    streaming to `out` as `decrypt_into` does; `out` is rewound before each further recipient.

    Raises NoMatchingKeyError when the key opens no recipient's content key.
    """
    env = _parse(der, source, need_content=True)
    where = _named(source)
    failure: DecryptError | None = None
    for kt in env.key_trans:
        _check_key_transport(kt, where)
        cek = _pkcs1_unwrap(key, kt.encrypted_key)
        if cek is None:
            continue
        if failure is not None:
            out.rewind()
        try:
            return _decrypt_content(env, cek, where, out.write)
        except DecryptError as exc:
            failure = exc
    if failure is not None:
        raise failure
    if not env.key_trans and env.info.other_recipient_kinds:
        kinds = ", ".join(env.info.other_recipient_kinds)
        raise UnsupportedCmsError(f"{where}only {kinds} recipients, which are not supported")
    raise NoMatchingKeyError(
        f"{where}the key opens none of the recipients ({_describe(env.info.recipients)})",
        env.info.recipients,
    )


def _check_key_transport(kt: _KeyTrans, where: str) -> None:
    if kt.key_algorithm == _OID_RSAES_OAEP:
        raise UnsupportedCmsError(f"{where}RSAES-OAEP key transport ({kt.rid}) is not supported")
    if kt.key_algorithm != _OID_RSA_ENCRYPTION:
        raise UnsupportedCmsError(f"{where}key transport algorithm {kt.key_algorithm} is not supported")


def _unwrap(kt: _KeyTrans, key: RSAPrivateKey, where: str) -> bytes | None:
    """The content-encryption key for a recipient whose certificate matched `key`."""
    _check_key_transport(kt, where)
    if len(kt.encrypted_key) != (key.key_size + 7) // 8:
        return None
    try:
        # With OpenSSL's implicit rejection a damaged key block yields random bytes, not an error; the
        # content key's length and the CBC padding check catch those.
        return key.decrypt(kt.encrypted_key, asympadding.PKCS1v15())
    except ValueError:
        return None


def _pkcs1_unwrap(key: RSAPrivateKey, block: bytes) -> bytes | None:
    """RSA PKCS#1 v1.5 decryption that says whether the padding is valid, or None when it is not.

    cryptography's decrypt uses implicit rejection (random output instead of an error), which cannot
    tell "this is not my recipient" from "this is my key"; trying a bare key against every recipient
    needs the padding verdict. Offline decryption of local files: no padding-oracle exposure.
    """
    numbers = key.private_numbers()
    n = numbers.public_numbers.n
    k = (n.bit_length() + 7) // 8
    if len(block) != k:
        return None
    c = int.from_bytes(block, "big")
    if c >= n:
        return None
    p, q = numbers.p, numbers.q
    m1, m2 = pow(c, numbers.dmp1, p), pow(c, numbers.dmq1, q)
    m = m2 + (numbers.iqmp * (m1 - m2) % p) * q
    em = m.to_bytes(k, "big")
    if em[0] != 0 or em[1] != 2:
        return None
    sep = em.find(b"\x00", 2)
    if sep < 10:  # at least 8 non-zero padding bytes
        return None
    return em[sep + 1 :]


def _chunks(pieces: list[memoryview], size: int) -> Iterator[memoryview]:
    """The pieces regrouped into views of at most `size` bytes (large pieces sliced, small ones gathered)."""
    staged = bytearray()
    for piece in pieces:
        while len(piece):
            if not staged and len(piece) >= size:
                yield piece[:size]
                piece = piece[size:]
                continue
            take = size - len(staged)
            staged += piece[:take]
            piece = piece[take:]
            if len(staged) == size:
                yield memoryview(bytes(staged))
                staged.clear()
    if staged:
        yield memoryview(bytes(staged))


def _decrypt_content(env: _Envelope, cek: bytes, where: str, write: Callable[[memoryview], object]) -> int:
    """Decrypt the content with `cek` and write the plaintext in order; the last block is held back until
    its padding is checked. The bytes written."""
    oid = env.info.content_algorithm_oid
    known = _CONTENT_CIPHERS.get(oid)
    if known is None:
        raise UnsupportedCmsError(f"{where}content encryption algorithm {oid} is not supported")
    name, key_len = known
    if len(cek) != key_len:
        raise DecryptError(f"{where}wrong key: the content key is not a {name} key")
    cipher_alg: CipherAlgorithm
    if name.startswith("AES"):
        cipher_alg = algorithms.AES(cek)
    else:
        from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES

        cipher_alg = TripleDES(cek)
    block = cipher_alg.block_size // 8
    if env.iv is None or len(env.iv) != block:
        raise DecryptError(f"{where}damaged CMS enveloped-data (missing or bad IV)")
    total = sum(len(piece) for piece in env.ciphertext)
    if not total or total % block:
        raise DecryptError(f"{where}damaged CMS enveloped-data (ciphertext is not whole {name} blocks)")
    decryptor = Cipher(cipher_alg, modes.CBC(env.iv)).decryptor()
    buffer = bytearray(_STREAM_CHUNK + block)
    view = memoryview(buffer)
    held = b""  # the last plaintext block so far: it carries the padding
    written = 0
    for chunk in _chunks(env.ciphertext, _STREAM_CHUNK):
        n = decryptor.update_into(chunk, buffer)
        if not n:
            continue
        if held:
            write(memoryview(held))
            written += len(held)
        if n > block:
            write(view[: n - block])
            written += n - block
        held = bytes(view[n - block : n])
    decryptor.finalize()
    pad = held[-1] if held else 0
    if not 1 <= pad <= block or held[-pad:] != bytes([pad]) * pad:
        raise DecryptError(f"{where}bad padding after {name} decryption (wrong key or damaged file)")
    write(memoryview(held)[: block - pad])
    return written + block - pad


# -------------------------------------------------------------------------------------- key files


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file (or the one in a DER file)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read ({exc.strerror})") from None
    if b"-----BEGIN" in data:
        if b"CERTIFICATE-----" not in data:
            return []
        try:
            return x509.load_pem_x509_certificates(data)
        except ValueError as exc:
            raise KeyFileError(f"{path}: not a valid PEM certificate ({exc})") from None
    try:
        return [x509.load_der_x509_certificate(data)]
    except ValueError:
        raise KeyFileError(f"{path}: not a PEM or DER certificate") from None


def load_certificate(path: Path) -> x509.Certificate:
    """The first certificate in a PEM or DER file."""
    certs = load_certificates(path)
    if not certs:
        raise KeyFileError(f"{path}: no certificate in the file")
    return certs[0]


def load_private_key(path: Path, password: bytes | str | None = None) -> RSAPrivateKey:
    """An RSA private key from a PEM (PKCS#1, PKCS#8, encrypted PKCS#8, legacy encrypted) or DER file.

    A password given for a key that is not encrypted is ignored (as certs.validation does)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read ({exc.strerror})") from None
    pw = password.encode() if isinstance(password, str) else password

    def parse(secret: bytes | None) -> object:
        if b"-----BEGIN" in data:
            return serialization.load_pem_private_key(data, secret)
        return serialization.load_der_private_key(data, secret)

    try:
        try:
            key = parse(pw)
        except TypeError:
            if pw is None:
                raise
            key = parse(None)  # "password was given but the key is not encrypted"
    except TypeError:
        raise KeyFileError(f"{path}: the private key is encrypted; a password is needed") from None
    except ValueError as exc:
        msg = str(exc)
        if pw is not None and ("password" in msg.lower() or "decrypt" in msg.lower()):
            raise KeyFileError(f"{path}: wrong password for the private key") from None
        raise KeyFileError(f"{path}: not a readable private key") from None
    except UnsupportedAlgorithm:
        raise KeyFileError(f"{path}: the key uses an unsupported algorithm or encryption") from None
    if not isinstance(key, RSAPrivateKey):
        raise KeyFileError(f"{path}: not an RSA private key (recording keys are RSA)")
    return key
