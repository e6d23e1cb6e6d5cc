"""generate_pair, renew and to_pkcs8: the certificate `openssl genrsa` + `openssl req -x509` would make."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtensionOID, NameOID

from cxbackup.certs.generate import ParameterInvalid, generate_pair, renew, to_pkcs8
from cxbackup.certs.validation import CertificateInvalid, Reason, inspect_certificate

NOW = datetime(2026, 5, 17, 9, 30, 15, 123456, tzinfo=UTC)
SEED = ("Genesys Recording", "US", "California", "Genesys")


@pytest.fixture(scope="module")
def pair() -> tuple[bytes, bytes]:
    return generate_pair(*SEED, 3650, now=NOW)


def _load(pair: tuple[bytes, bytes]) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key = serialization.load_pem_private_key(pair[0], None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key, x509.load_pem_x509_certificate(pair[1])


def test_key_is_traditional_rsa_pem_of_2048_bits(pair: tuple[bytes, bytes]) -> None:
    key_pem, _ = pair
    assert key_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----\n")
    assert b"ENCRYPTED" not in key_pem
    key, _ = _load(pair)
    assert key.key_size == 2048
    assert key.private_numbers().public_numbers.e == 65537


def test_certificate_is_self_signed_with_the_seed_subject(pair: tuple[bytes, bytes]) -> None:
    key, cert = _load(pair)
    assert [a.oid for a in cert.subject] == [
        NameOID.COMMON_NAME,
        NameOID.COUNTRY_NAME,
        NameOID.STATE_OR_PROVINCE_NAME,
        NameOID.ORGANIZATION_NAME,
    ]
    assert [a.value for a in cert.subject] == list(SEED)
    assert cert.issuer == cert.subject
    assert cert.version is x509.Version.v3
    public_key = cert.public_key()
    assert isinstance(public_key, rsa.RSAPublicKey)
    assert public_key.public_numbers() == key.public_key().public_numbers()
    cert.verify_directly_issued_by(cert)
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    info = inspect_certificate(pair[1], pair[0], now=NOW)
    assert info.subject_dn == "CN=Genesys Recording,C=US,ST=California,O=Genesys"
    assert info.key_details == "Openssl format private key file"


def test_validity_starts_now_in_whole_seconds(pair: tuple[bytes, bytes]) -> None:
    _, cert = _load(pair)
    assert cert.not_valid_before_utc == NOW.replace(microsecond=0)
    assert cert.not_valid_after_utc == NOW.replace(microsecond=0) + timedelta(days=3650)


def test_extensions_are_those_openssl_req_x509_adds(pair: tuple[bytes, bytes]) -> None:
    key, cert = _load(pair)
    assert [e.oid for e in cert.extensions] == [
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
        ExtensionOID.BASIC_CONSTRAINTS,
    ]
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length is None
    ski = cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    aki = cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert ski.digest == x509.SubjectKeyIdentifier.from_public_key(key.public_key()).digest
    assert aki.key_identifier == ski.digest


def test_serials_are_random_and_positive(pair: tuple[bytes, bytes]) -> None:
    _, first = _load(pair)
    second = x509.load_pem_x509_certificate(generate_pair(*SEED, 1, now=NOW)[1])
    assert first.serial_number > 0 and second.serial_number > 0
    assert first.serial_number != second.serial_number
    assert first.serial_number.bit_length() > 64


def test_a_3072_bit_key_when_asked() -> None:
    key_pem, cert_pem = generate_pair(*SEED, 30, 3072, now=NOW)
    assert inspect_certificate(cert_pem, key_pem, now=NOW).key_size == 3072


def test_country_is_upper_cased() -> None:
    _, cert_pem = generate_pair("Rec", "fr", "Ile-de-France", "Acme", 1, now=NOW)
    assert inspect_certificate(cert_pem, now=NOW).subject_dn == "CN=Rec,C=FR,ST=Ile-de-France,O=Acme"


@pytest.mark.parametrize(
    ("args", "parameter", "text"),
    [
        (("Rec", "USA", "CA", "Acme", 10, 2048), "country", "two-letter"),
        (("Rec", "U1", "CA", "Acme", 10, 2048), "country", "two-letter"),
        (("Rec", "", "CA", "Acme", 10, 2048), "country", "two-letter"),
        (("Rec", "US", "CA", "Acme", 10, 1024), "key_size", "2048, 3072 or 4096"),
        (("Rec", "US", "CA", "Acme", 10, 2049), "key_size", "(got 2049)"),
        (("Rec", "US", "CA", "Acme", 0, 2048), "days", "between 1 and"),
        (("Rec", "US", "CA", "Acme", 36501, 2048), "days", "between 1 and"),
        (("", "US", "CA", "Acme", 10, 2048), "cn", "must not be empty"),
        (("x" * 65, "US", "CA", "Acme", 10, 2048), "cn", "at most 64"),
        (("Rec", "US", " ", "Acme", 10, 2048), "state", "must not be empty"),
        (("Rec", "US", "CA", "A\nB", 10, 2048), "org", "control characters"),
    ],
)
def test_bad_parameters_are_named(args: tuple[str, str, str, str, int, int], parameter: str, text: str) -> None:
    with pytest.raises(ParameterInvalid) as caught:
        generate_pair(*args, now=NOW)
    assert caught.value.parameter == parameter
    assert text in caught.value.message


def test_the_clock_must_be_aware() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        generate_pair(*SEED, 1, now=datetime(2026, 1, 1))


def test_to_pkcs8_is_the_same_key_unencrypted(pair: tuple[bytes, bytes]) -> None:
    key, _ = _load(pair)
    pkcs8 = to_pkcs8(pair[0].decode())
    assert pkcs8.startswith(b"-----BEGIN PRIVATE KEY-----\n")
    again = serialization.load_pem_private_key(pkcs8, None)
    assert isinstance(again, rsa.RSAPrivateKey)
    assert again.private_numbers() == key.private_numbers()
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"),
    )
    assert to_pkcs8(encrypted, "pw") == pkcs8


def test_renew_keeps_the_subject_and_makes_a_new_key(pair: tuple[bytes, bytes]) -> None:
    later = NOW + timedelta(days=4000)  # the old certificate has expired by then
    new_key_pem, new_cert_pem = renew(pair[1], 365, now=later, key_pem=pair[0])
    old_key, old_cert = _load(pair)
    new_cert = x509.load_pem_x509_certificate(new_cert_pem)
    assert new_cert.subject.public_bytes() == old_cert.subject.public_bytes()
    assert new_cert.issuer == new_cert.subject
    assert new_cert.serial_number != old_cert.serial_number
    assert new_cert.not_valid_before_utc == later.replace(microsecond=0)
    assert new_cert.not_valid_after_utc == later.replace(microsecond=0) + timedelta(days=365)
    info = inspect_certificate(new_cert_pem, new_key_pem, now=later)
    assert info.key_size == 2048
    new_key = serialization.load_pem_private_key(new_key_pem, None)
    assert isinstance(new_key, rsa.RSAPrivateKey)
    assert new_key.private_numbers() != old_key.private_numbers()


def test_renew_keeps_an_unusual_subject_exactly() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Recording"),
            x509.NameAttribute(NameOID.COMMON_NAME, "rec, primary"),
        ]
    )
    old = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(NOW - timedelta(days=10))
        .not_valid_after(NOW + timedelta(days=10))
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    _, new_cert_pem = renew(old, 30, 3072, now=NOW)
    info = inspect_certificate(new_cert_pem, now=NOW)
    assert info.subject_dn == "O=Acme,OU=Recording,CN=rec\\, primary"
    assert info.key_size == 3072


def test_renew_refuses_a_key_of_another_pair(pair: tuple[bytes, bytes]) -> None:
    other_key_pem, _ = generate_pair(*SEED, 1, now=NOW)
    with pytest.raises(CertificateInvalid) as caught:
        renew(pair[1], 365, now=NOW, key_pem=other_key_pem)
    assert caught.value.reason is Reason.KEY_MISMATCH


def test_renew_rejects_bad_parameters(pair: tuple[bytes, bytes]) -> None:
    with pytest.raises(ParameterInvalid) as caught:
        renew(pair[1], 365, 1024, now=NOW)
    assert caught.value.parameter == "key_size"
    with pytest.raises(CertificateInvalid) as not_pem:
        renew(b"garbage", 365, now=NOW)
    assert not_pem.value.reason is Reason.NOT_PEM
