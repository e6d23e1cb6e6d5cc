"""cxbackup.certs.cms and cxbackup.certs.keyring: CMS round trips, recipients, key selection, errors."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import pkcs7
from cryptography.x509.oid import NameOID

from cxbackup.certs import cms
from cxbackup.certs.keyring import Keyring, secret_additions

Pair = tuple[RSAPrivateKey, x509.Certificate]


def _pair(cn: str, serial: int, *, ski: bool = False) -> Pair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Genesys"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
    )
    if ski:
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    return key, builder.sign(key, hashes.SHA256())


@pytest.fixture(scope="module")
def pair_a() -> Pair:
    return _pair("Genesys Recording", 12092115751924922994)


@pytest.fixture(scope="module")
def pair_b() -> Pair:
    return _pair("Genesys Recording 2024", 5)


@pytest.fixture(scope="module")
def pair_c() -> Pair:
    return _pair("Someone Else", 77)


def _pem_key(key: RSAPrivateKey, fmt: serialization.PrivateFormat, password: bytes | None = None) -> bytes:
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, enc)


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


DATA = bytes(range(256)) * 40 + b"\r\n\n\x00 tail"  # binary, with line endings that text mode would mangle


@pytest.mark.parametrize(("algorithm", "name"), [("AES-128", "AES-128-CBC"), ("AES-256", "AES-256-CBC")])
def test_round_trip_keeps_bytes_exactly(pair_a: Pair, algorithm: cms.Algorithm, name: str) -> None:
    key, cert = pair_a
    der = cms.encrypt(DATA, cert, algorithm)
    assert cms.looks_like_cms(der)
    assert cms.inspect(der).content_algorithm == name
    assert cms.decrypt(der, key, cert) == DATA
    assert cms.decrypt_with_key(der, key) == DATA


def test_empty_and_large_payloads(pair_a: Pair) -> None:
    key, cert = pair_a
    for data in (b"", b"x", bytes(3_000_001)):
        assert cms.decrypt(cms.encrypt(data, cert), key, cert) == data


def test_unknown_algorithm_is_refused(pair_a: Pair) -> None:
    with pytest.raises(ValueError, match="AES-192"):
        cms.encrypt(b"x", pair_a[1], "AES-192")  # type: ignore[arg-type]


def test_recipients_name_issuer_and_serial(pair_a: Pair, pair_b: Pair) -> None:
    der = cms.encrypt(DATA, pair_a[1])
    (rid,) = cms.recipients(der)
    assert rid.serial_number == 12092115751924922994
    assert rid.issuer == pair_a[1].issuer
    assert rid.issuer_der == pair_a[1].issuer.public_bytes()
    assert rid.matches(pair_a[1])
    assert not rid.matches(pair_b[1])
    assert rid == cms.RecipientId.of_certificate(pair_a[1])
    assert "CN=Genesys Recording" in str(rid) and "12092115751924922994" in str(rid)


def test_recipients_of_a_file_with_two_recipients(pair_a: Pair, pair_b: Pair) -> None:
    der = (
        pkcs7.PKCS7EnvelopeBuilder()
        .set_data(DATA)
        .add_recipient(pair_a[1])
        .add_recipient(pair_b[1])
        .encrypt(serialization.Encoding.DER, [pkcs7.PKCS7Options.Binary])
    )
    assert sorted(r.serial_number or 0 for r in cms.recipients(der)) == [5, 12092115751924922994]  # a DER SET: sorted
    assert cms.decrypt(der, pair_b[0], pair_b[1]) == DATA
    assert cms.decrypt_with_key(der, pair_b[0]) == DATA


def test_wrong_certificate_raises_no_matching_key_listing_recipients(pair_a: Pair, pair_b: Pair) -> None:
    der = cms.encrypt(DATA, pair_a[1])
    with pytest.raises(cms.NoMatchingKeyError) as info:
        cms.decrypt(der, pair_b[0], pair_b[1], source="a/b.mp3.bin")
    assert info.value.recipients == cms.recipients(der)
    assert str(info.value).startswith("a/b.mp3.bin: ")
    assert "12092115751924922994" in str(info.value)


def test_wrong_key_alone_raises_no_matching_key(pair_a: Pair, pair_b: Pair) -> None:
    der = cms.encrypt(DATA, pair_a[1])
    with pytest.raises(cms.NoMatchingKeyError, match="opens none of the recipients"):
        cms.decrypt_with_key(der, pair_b[0])


def test_key_not_of_the_certificate_is_a_decrypt_error(pair_a: Pair, pair_b: Pair) -> None:
    der = cms.encrypt(DATA, pair_a[1])
    with pytest.raises(cms.DecryptError, match="does not belong"):
        cms.decrypt(der, pair_b[0], pair_a[1])


@pytest.mark.parametrize(
    "blob",
    [b"", b"ID3\x04 an mp3 file", b'{"id": "x"}', bytes(range(256)), b"\x30\x03\x02\x01\x00"],
)
def test_not_cms_raises_not_cms(pair_a: Pair, blob: bytes) -> None:
    with pytest.raises(cms.NotCmsError, match=r"^x\.bin: not CMS"):
        cms.decrypt(blob, pair_a[0], pair_a[1], source="x.bin")
    assert not cms.looks_like_cms(blob)


def test_signed_data_is_not_enveloped(pair_a: Pair) -> None:
    key, cert = pair_a
    signed = (
        pkcs7.PKCS7SignatureBuilder()
        .set_data(b"hello")
        .add_signer(cert, key, hashes.SHA256())
        .sign(serialization.Encoding.DER, [])
    )
    with pytest.raises(cms.NotCmsError, match="signed-data"):
        cms.recipients(signed)


def test_truncated_file_is_a_decrypt_error(pair_a: Pair) -> None:
    der = cms.encrypt(DATA, pair_a[1])
    for cut in (len(der) - 1, len(der) // 2, 40):
        with pytest.raises(cms.DecryptError, match="damaged"):
            cms.decrypt(der[:cut], pair_a[0], pair_a[1])


def test_corrupt_ciphertext_fails_the_padding_check(pair_a: Pair) -> None:
    key, cert = pair_a
    der = bytearray(cms.encrypt(bytes(64), cert, "AES-128"))  # 64 bytes: the last block is all padding 0x10
    der[-17] ^= 0x01  # last byte of the second-to-last block: the padding byte becomes 0x11
    with pytest.raises(cms.DecryptError, match="padding"):
        cms.decrypt(bytes(der), key, cert)
    with pytest.raises(cms.DecryptError):
        cms.decrypt_with_key(bytes(der), key)


def test_subject_key_identifier_recipient(pair_a: Pair) -> None:
    _key, cert = _pair("SKI holder", 9, ski=True)
    der = cms.encrypt(DATA, cert)
    rid = cms.recipients(der)[0]
    assert rid.matches(cert)
    ski_rid = cms.RecipientId(None, None, subject_key_identifier=b"\x01\x02")
    assert not ski_rid.matches(cert)
    assert "01:02" in str(ski_rid)


# ------------------------------------------------------------------------------- key files


def test_load_private_key_formats(tmp_path: Path, pair_a: Pair) -> None:
    key, cert = pair_a
    pkcs1 = tmp_path / "tenant.key"
    pkcs1.write_bytes(_pem_key(key, serialization.PrivateFormat.TraditionalOpenSSL))
    pkcs8 = tmp_path / "private.pem"
    pkcs8.write_bytes(_pem_key(key, serialization.PrivateFormat.PKCS8))
    encrypted = tmp_path / "enc.pem"
    encrypted.write_bytes(_pem_key(key, serialization.PrivateFormat.PKCS8, b"s3cret"))
    for path, password in ((pkcs1, None), (pkcs8, None), (encrypted, "s3cret"), (encrypted, b"s3cret")):
        assert cms.key_matches_certificate(cms.load_private_key(path, password), cert)
    with pytest.raises(cms.KeyFileError, match="password is needed"):
        cms.load_private_key(encrypted)
    with pytest.raises(cms.KeyFileError, match="wrong password"):
        cms.load_private_key(encrypted, "nope")
    with pytest.raises(cms.KeyFileError, match="cannot read"):
        cms.load_private_key(tmp_path / "missing.key")
    ec_path = tmp_path / "ec.key"
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ec_path.write_bytes(
        ec_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    with pytest.raises(cms.KeyFileError, match="not an RSA"):
        cms.load_private_key(ec_path)


def test_load_certificates(tmp_path: Path, pair_a: Pair, pair_b: Pair) -> None:
    both = tmp_path / "chain.pem"
    both.write_bytes(_pem_cert(pair_a[1]) + _pem_cert(pair_b[1]))
    assert cms.load_certificates(both) == [pair_a[1], pair_b[1]]
    der = tmp_path / "c.der"
    der.write_bytes(pair_a[1].public_bytes(serialization.Encoding.DER))
    assert cms.load_certificate(der) == pair_a[1]
    junk = tmp_path / "junk.crt"
    junk.write_bytes(b"not a certificate")
    with pytest.raises(cms.KeyFileError):
        cms.load_certificate(junk)


# ------------------------------------------------------------------------------- keyring


def _keyring_dir(root: Path, pair_a: Pair, pair_b: Pair) -> Path:
    """tenant.key + tenant.pem (the vendor's openssl layout) and a TLS-secret folder with tls.key/tls.crt."""
    ring = root / "keys"
    ring.mkdir()
    (ring / "tenant.key").write_bytes(_pem_key(pair_a[0], serialization.PrivateFormat.TraditionalOpenSSL))
    (ring / "tenant.pem").write_bytes(_pem_cert(pair_a[1]))
    secret = ring / "rotated-2024"
    secret.mkdir()
    (secret / "tls.key").write_bytes(_pem_key(pair_b[0], serialization.PrivateFormat.PKCS8))
    (secret / "tls.crt").write_bytes(_pem_cert(pair_b[1]))
    (ring / ".hidden.key").write_bytes(b"ignored: hidden files are skipped")
    (ring / "README.txt").write_text("ignored: not a key file suffix")
    return ring


def test_keyring_picks_the_key_the_file_names(tmp_path: Path, pair_a: Pair, pair_b: Pair) -> None:
    ring = Keyring.from_directory(_keyring_dir(tmp_path, pair_a, pair_b))
    assert len(ring) == 2
    old, new = cms.encrypt(b"old recording", pair_a[1]), cms.encrypt(b"new recording", pair_b[1], "AES-128")
    assert ring.decrypt(old) == b"old recording"
    assert ring.decrypt(new) == b"new recording"
    found = ring.find(cms.recipients(new)[0])
    assert found is not None and found[1] == pair_b[1]
    assert cms.key_matches_certificate(found[0].key, pair_b[1])


def test_keyring_without_the_key_lists_the_recipients(tmp_path: Path, pair_a: Pair, pair_b: Pair, pair_c: Pair) -> None:
    ring = Keyring.from_directory(_keyring_dir(tmp_path, pair_a, pair_b))
    foreign = cms.encrypt(b"x", pair_c[1])
    with pytest.raises(cms.NoMatchingKeyError) as info:
        ring.decrypt(foreign, source="2021/07/21/16/ID/x.mp3.bin")
    message = str(info.value)
    assert "CN=Someone Else" in message and "serial 77" in message and "2 keys" in message
    assert info.value.recipients[0].serial_number == 77


def test_keyring_combined_pem_and_key_without_certificate(tmp_path: Path, pair_a: Pair, pair_b: Pair) -> None:
    folder = tmp_path / "ring"
    folder.mkdir()
    (folder / "2023.pem").write_bytes(_pem_key(pair_a[0], serialization.PrivateFormat.PKCS8) + _pem_cert(pair_a[1]))
    (folder / "bare.key").write_bytes(_pem_key(pair_b[0], serialization.PrivateFormat.TraditionalOpenSSL))
    ring = Keyring.from_directory(folder)
    entries = sorted(ring.entries, key=lambda e: len(e.certificates))
    assert [len(e.certificates) for e in entries] == [0, 1]
    assert ring.decrypt(cms.encrypt(b"via bare key", pair_b[1])) == b"via bare key"
    assert ring.decrypt(cms.encrypt(b"via combined", pair_a[1])) == b"via combined"


def test_keyring_refuses_a_certificate_of_another_key(pair_a: Pair, pair_b: Pair) -> None:
    ring = Keyring()
    with pytest.raises(cms.KeyFileError, match="not for this key"):
        ring.add(pair_a[0], [pair_b[1]], source="tenant.key")
    assert not ring.add_certificate(pair_b[1])
    assert ring.orphan_certificates == [pair_b[1]]


def test_keyring_password_protected_keys(tmp_path: Path, pair_a: Pair) -> None:
    folder = tmp_path / "ring"
    folder.mkdir()
    (folder / "tenant.key").write_bytes(_pem_key(pair_a[0], serialization.PrivateFormat.PKCS8, b"pw"))
    (folder / "tenant.pem").write_bytes(_pem_cert(pair_a[1]))
    with pytest.raises(cms.KeyFileError, match="password"):
        Keyring.from_directory(folder)
    ring = Keyring.from_directory(folder, password="pw")
    assert ring.decrypt(cms.encrypt(b"ok", pair_a[1])) == b"ok"


def _legacy(key: RSAPrivateKey, password: bytes) -> bytes:
    """An encrypted 'BEGIN RSA PRIVATE KEY' (Proc-Type/DEK-Info), what `openssl genrsa -aes256` writes."""
    return _pem_key(key, serialization.PrivateFormat.TraditionalOpenSSL, password)


def test_secret_additions_keep_each_encrypted_keys_password(pair_a: Pair, pair_b: Pair) -> None:
    cert_a, key_a = _pem_cert(pair_a[1]), _legacy(pair_a[0], b"pw-A")
    cert_b, key_b = _pem_cert(pair_b[1]), _pem_key(pair_b[0], serialization.PrivateFormat.PKCS8, b"pw-B")
    ring = secret_additions({}, "10", cert_a, key_a, b"pw-A")
    assert ring == {"10.crt": cert_a, "10.key": key_a, "10.password": b"pw-A"}
    assert secret_additions(ring, "10", cert_a, key_a, b"pw-A") == {}
    # the upload is replaced by another password-protected pair: both keys keep their own password
    ring |= secret_additions(ring, "20", cert_b, key_b, b"pw-B")
    assert ring["20.password"] == b"pw-B" and ring["10.password"] == b"pw-A"
    # a keyring written before passwords were kept gets only the password added, nothing replaced
    old = {"10.crt": cert_a, "10.key": key_a}
    assert secret_additions(old, "10", cert_a, key_a, b"pw-A") == {"10.password": b"pw-A"}
    # the same key with another password never replaces the stored one: it goes under a new name
    assert secret_additions(ring, "10", cert_a, key_a, b"other").keys() == {"10-1.crt", "10-1.key", "10-1.password"}
    # an unencrypted key needs no password (one given anyway is not stored), an empty one is none
    plain = _pem_key(pair_a[0], serialization.PrivateFormat.PKCS8)
    assert secret_additions({}, "3", cert_a, plain, b"ignored") == {"3.crt": cert_a, "3.key": plain}
    assert secret_additions({}, "3", cert_a, key_a, b"") == {"3.crt": cert_a, "3.key": key_a}


def test_keyring_secret_saved_as_files_opens_each_key_with_its_own_password(
    tmp_path: Path, pair_a: Pair, pair_b: Pair, pair_c: Pair
) -> None:
    data = secret_additions({}, "10", _pem_cert(pair_a[1]), _legacy(pair_a[0], b"pw-A"), b"pw-A")
    data |= secret_additions(data, "20", _pem_cert(pair_b[1]), _legacy(pair_b[0], b"pw-B"), b"pw-B")
    data |= {"30.crt": _pem_cert(pair_c[1]), "30.key": _legacy(pair_c[0], b"common")}  # no password of its own
    folder = tmp_path / "ring"
    folder.mkdir()
    for name, value in data.items():
        (folder / name).write_bytes(value)
    ring = Keyring.from_directory(folder, password="common")
    assert (len(ring), ring.unusable) == (3, [])
    for n, (_, cert) in enumerate((pair_a, pair_b, pair_c)):
        assert ring.decrypt(cms.encrypt(b"recording %d" % n, cert)) == b"recording %d" % n
    # the common password is not tried on keys with their own, and a password typed with a line break works
    (folder / "10.password").write_bytes(b"pw-A\n")
    assert len(Keyring.from_directory(folder, password="pw-A")) == 2  # 30 does not open with pw-A
    assert len(Keyring.from_directory(folder, password="common")) == 3


def test_a_key_that_cannot_be_opened_is_named_and_the_others_still_work(
    tmp_path: Path, pair_a: Pair, pair_b: Pair
) -> None:
    folder = tmp_path / "ring"
    folder.mkdir()
    for serial, (key, cert), password in (("10", pair_a, b"pw-A"), ("5", pair_b, b"pw-B")):
        (folder / f"{serial}.crt").write_bytes(_pem_cert(cert))
        (folder / f"{serial}.key").write_bytes(_legacy(key, password))
        (folder / f"{serial}.password").write_bytes(password)
    (folder / "5.password").write_bytes(b"not the password")
    ring = Keyring.from_directory(folder)
    assert len(ring) == 1
    (unusable,) = ring.unusable
    assert unusable.serial == "5" and unusable.source == str(folder / "5.key")
    assert "wrong password" in unusable.reason and "5.password" in unusable.reason
    assert "not the password" not in str(unusable)
    assert ring.decrypt(cms.encrypt(b"still readable", pair_a[1])) == b"still readable"
    with pytest.raises(cms.NoMatchingKeyError) as info:
        ring.decrypt(cms.encrypt(b"x", pair_b[1]), source="b.mp3.bin")
    assert "serial 5" in str(info.value) and "the keyring has its key, but key" in str(info.value)
    # no key at all can be opened: that is an error naming each
    (folder / "10.password").unlink()
    with pytest.raises(cms.KeyFileError, match=r"none of the 2 keys can be opened: .*10\.key.*a password is needed"):
        Keyring.from_directory(folder)


class _Recorder(cms.MemoryOutput):
    """An Output that remembers the size of every write and how often it was rewound."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[int] = []
        self.rewinds = 0

    def write(self, data: bytes | memoryview, /) -> int:  # type: ignore[override]
        self.sizes.append(len(data))
        return super().write(data)

    def rewind(self) -> None:
        self.rewinds += 1
        super().rewind()


def test_large_content_is_streamed_in_bounded_pieces_from_a_mapped_file(pair_a: Pair, tmp_path: Path) -> None:
    import mmap
    import os

    key, cert = pair_a
    plain = os.urandom(9 * (1 << 20) + 5)  # three steps of 4 MiB at most, and a last partial block
    path = tmp_path / "big.p7m"
    path.write_bytes(cms.encrypt(plain, cert, "AES-256"))
    out = _Recorder()
    with path.open("rb") as fh:
        data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        assert cms.decrypt_with_key_into(data, key, out) == len(plain)
        assert cms.decrypt_into(data, key, cert, cms.MemoryOutput()) == len(plain)
    assert out.getvalue() == plain
    assert max(out.sizes) <= 4 << 20 and len(out.sizes) >= 3
    assert out.rewinds == 0


@pytest.mark.parametrize("sizes", [[3, 5, 10, 2], [1] * 9, [16], [4, 4, 4], [0, 7, 0, 9]])
def test_ciphertext_pieces_are_regrouped_without_loss(sizes: list[int]) -> None:
    data = bytes(range(sum(sizes)))
    pieces, at = [], 0
    for n in sizes:
        pieces.append(memoryview(data)[at : at + n])
        at += n
    chunks = list(cms._chunks(pieces, 4))
    assert b"".join(bytes(c) for c in chunks) == data
    assert all(0 < len(c) <= 4 for c in chunks)
