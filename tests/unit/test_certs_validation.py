"""inspect_certificate: what the upload panel shows, and every way a certificate or key is rejected."""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from cxbackup.api.certificate import RecordingCertificateStatus
from cxbackup.certs.validation import (
    CertificateInvalid,
    Reason,
    check_private_key,
    format_dn,
    inspect_certificate,
    load_certificate,
)

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
START = datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)
END = datetime(2036, 1, 1, 0, 0, 0, tzinfo=UTC)
SEED_DN = "CN=Genesys Recording,C=US,ST=California,O=Genesys"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def _name(*pairs: tuple[x509.ObjectIdentifier, str]) -> x509.Name:
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in pairs])


SEED_NAME = _name(
    (NameOID.COMMON_NAME, "Genesys Recording"),
    (NameOID.COUNTRY_NAME, "US"),
    (NameOID.STATE_OR_PROVINCE_NAME, "California"),
    (NameOID.ORGANIZATION_NAME, "Genesys"),
)


def _cert(
    key: PrivateKey,
    *,
    subject: x509.Name = SEED_NAME,
    not_before: datetime = START,
    not_after: datetime = END,
    serial: int = 12092115751924922994,
) -> bytes:
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(
    key: PrivateKey,
    fmt: serialization.PrivateFormat = serialization.PrivateFormat.TraditionalOpenSSL,
    password: bytes | None = None,
) -> bytes:
    encryption: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password) if password else serialization.NoEncryption()
    )
    return key.private_bytes(serialization.Encoding.PEM, fmt, encryption)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def cert_pem(key: rsa.RSAPrivateKey) -> bytes:
    return _cert(key)


def _invalid(cert: bytes | str, key: bytes | None = None, password: bytes | None = None) -> CertificateInvalid:
    with pytest.raises(CertificateInvalid) as caught:
        inspect_certificate(cert, key, password, now=NOW)
    return caught.value


# --- what is shown -------------------------------------------------------------------------------------


def test_a_good_pair_shows_the_upload_panel_fields(key: rsa.RSAPrivateKey, cert_pem: bytes) -> None:
    info = inspect_certificate(cert_pem, _key_pem(key), now=NOW)
    assert info.issued_to == "Genesys Recording"
    assert info.issued_by == "Genesys Recording"
    assert info.serial_number == "12092115751924922994"
    assert info.subject_dn == SEED_DN
    assert info.issuer_dn == SEED_DN
    assert info.not_before == START
    assert info.not_after == END
    assert info.key_size == 2048
    assert info.key_details == "Openssl format private key file"
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    assert info.fingerprint == ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", info.fingerprint)


def test_without_a_key_there_are_no_key_details(cert_pem: bytes) -> None:
    info = inspect_certificate(cert_pem.decode(), now=NOW)
    assert info.key_details is None
    assert info.subject_dn == SEED_DN


def test_to_dict_fills_the_recording_certificate_status(cert_pem: bytes) -> None:
    info = inspect_certificate(cert_pem, now=NOW)
    status = RecordingCertificateStatus.model_validate(info.to_dict())
    assert status.issued_to == info.issued_to
    assert status.issued_by == info.issued_by
    assert status.serial_number == info.serial_number
    assert status.subject_dn == info.subject_dn
    assert status.issuer_dn == info.issuer_dn
    assert status.not_before == info.not_before
    assert status.not_after == info.not_after
    assert status.key_size == 2048
    assert status.fingerprint == info.fingerprint
    assert info.to_dict()["notAfter"] == "2036-01-01T00:00:00Z"


def test_validity_bounds_are_inclusive(cert_pem: bytes) -> None:
    assert inspect_certificate(cert_pem, now=START).not_before == START
    assert inspect_certificate(cert_pem, now=END).not_after == END


def test_the_clock_may_be_in_any_timezone(cert_pem: bytes) -> None:
    just_before = (START - timedelta(seconds=1)).astimezone(timezone(timedelta(hours=-8)))
    assert _invalid_at(cert_pem, just_before).reason is Reason.NOT_YET_VALID
    with pytest.raises(ValueError, match="timezone-aware"):
        inspect_certificate(cert_pem, now=datetime(2026, 3, 1))


def _invalid_at(cert: bytes, now: datetime) -> CertificateInvalid:
    with pytest.raises(CertificateInvalid) as caught:
        inspect_certificate(cert, now=now)
    return caught.value


def test_dn_keeps_certificate_order_and_escapes_specials(key: rsa.RSAPrivateKey) -> None:
    subject = x509.Name(
        [
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.COMMON_NAME, "Smith, Jones + Co")]),
            x509.RelativeDistinguishedName(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Rec"),
                ]
            ),
            x509.RelativeDistinguishedName([x509.NameAttribute(NameOID.EMAIL_ADDRESS, "rec@example.com")]),
        ]
    )
    dn = format_dn(subject)
    assert dn.startswith("CN=Smith\\, Jones \\+ Co,")
    assert dn.endswith(",emailAddress=rec@example.com")
    assert "O=Acme" in dn and "OU=Rec" in dn
    info = inspect_certificate(_cert(key, subject=subject), now=NOW)
    assert info.issued_to == "Smith, Jones + Co"


def test_without_a_cn_the_dn_is_shown(key: rsa.RSAPrivateKey) -> None:
    subject = _name((NameOID.ORGANIZATION_NAME, "Genesys"), (NameOID.COUNTRY_NAME, "US"))
    info = inspect_certificate(_cert(key, subject=subject), now=NOW)
    assert info.issued_to == "O=Genesys,C=US"
    assert info.issued_by == "O=Genesys,C=US"


# --- key formats ---------------------------------------------------------------------------------------


def test_pkcs8_key(key: rsa.RSAPrivateKey, cert_pem: bytes) -> None:
    info = inspect_certificate(cert_pem, _key_pem(key, serialization.PrivateFormat.PKCS8), now=NOW)
    assert info.key_details == "PKCS#8 private key"


def test_encrypted_pkcs8_key(key: rsa.RSAPrivateKey, cert_pem: bytes) -> None:
    pem = _key_pem(key, serialization.PrivateFormat.PKCS8, b"s3cret")
    assert pem.startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert inspect_certificate(cert_pem, pem, "s3cret", now=NOW).key_details == "encrypted PKCS#8 private key"

    missing = _invalid(cert_pem, pem)
    assert missing.reason is Reason.PASSWORD_REQUIRED
    assert "Private Key Password" in missing.message
    assert missing.info is not None and missing.info.subject_dn == SEED_DN

    wrong = _invalid(cert_pem, pem, b"guess")
    assert wrong.reason is Reason.WRONG_PASSWORD
    assert "guess" not in wrong.message


def test_encrypted_traditional_key(key: rsa.RSAPrivateKey, cert_pem: bytes) -> None:
    pem = _key_pem(key, serialization.PrivateFormat.TraditionalOpenSSL, b"s3cret")
    assert b"Proc-Type: 4,ENCRYPTED" in pem
    info = inspect_certificate(cert_pem, pem, b"s3cret", now=NOW)
    assert info.key_details == "Openssl format private key file, encrypted (AES-256-CBC)"
    assert _invalid(cert_pem, pem).reason is Reason.PASSWORD_REQUIRED
    assert _invalid(cert_pem, pem, b"nope").reason is Reason.WRONG_PASSWORD


def test_a_password_for_an_unencrypted_key_is_ignored(key: rsa.RSAPrivateKey, cert_pem: bytes) -> None:
    info = inspect_certificate(cert_pem, _key_pem(key), "unused", now=NOW)
    assert info.key_details == "Openssl format private key file"


def test_a_certificate_file_holding_its_key_too_is_refused(key: rsa.RSAPrivateKey, cert_pem: bytes) -> None:
    """The certificate file is what export pods get mounted: a key in it would reach them."""
    bundle = _key_pem(key) + cert_pem
    error = _invalid(bundle, bundle)
    assert error.reason is Reason.NOT_X509 and "holds a private key as well" in error.message
    assert inspect_certificate(cert_pem, bundle, now=NOW).subject_dn == SEED_DN  # the key file may hold both


# --- rejections ----------------------------------------------------------------------------------------


def test_garbage_is_not_pem() -> None:
    error = _invalid(b"this is not a certificate\n")
    assert error.reason is Reason.NOT_PEM
    code: str = error.reason  # a StrEnum: usable wherever a plain reason string is
    assert code == "NotPem"
    assert "not PEM" in error.message
    assert error.info is None
    assert str(error) == error.message


def test_der_is_not_pem_and_says_so(cert_pem: bytes) -> None:
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    error = _invalid(der)
    assert error.reason is Reason.NOT_PEM
    assert "DER" in error.message


def test_a_pem_that_is_not_a_certificate(key: rsa.RSAPrivateKey) -> None:
    error = _invalid(_key_pem(key))
    assert error.reason is Reason.NOT_X509
    assert "'RSA PRIVATE KEY'" in error.message


def test_a_certificate_block_that_does_not_decode() -> None:
    bad = b"-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    error = _invalid(bad)
    assert error.reason is Reason.NOT_X509
    assert "not a valid X.509" in error.message


def test_an_ec_certificate_is_not_rsa() -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    error = _invalid(_cert(ec_key))
    assert error.reason is Reason.NOT_RSA
    assert "EC (secp256r1)" in error.message
    assert error.info is not None and error.info.issued_to == "Genesys Recording"


def test_a_1024_bit_key_is_too_small() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 - must be refused
    error = _invalid(_cert(small))
    assert error.reason is Reason.KEY_TOO_SMALL
    assert "1024 bits" in error.message and "2048" in error.message


def test_expired_says_when(cert_pem: bytes) -> None:
    error = _invalid_at(cert_pem, END + timedelta(seconds=1))
    assert error.reason is Reason.EXPIRED
    assert error.message == "certificate expired on 2036-01-01 00:00:00 UTC"
    assert error.info is not None and error.info.not_after == END  # still listed: its key stays needed


def test_not_yet_valid_says_when(cert_pem: bytes) -> None:
    error = _invalid_at(cert_pem, START - timedelta(days=1))
    assert error.reason is Reason.NOT_YET_VALID
    assert error.message == "certificate is not valid until 2026-01-01 00:00:00 UTC"


def test_a_key_of_another_pair_does_not_match(cert_pem: bytes, other_key: rsa.RSAPrivateKey) -> None:
    error = _invalid(cert_pem, _key_pem(other_key))
    assert error.reason is Reason.KEY_MISMATCH
    assert "does not match" in error.message
    assert error.info is not None and error.info.key_details == "Openssl format private key file"


def test_an_ec_key_does_not_match_an_rsa_certificate(cert_pem: bytes) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    error = _invalid(cert_pem, _key_pem(ec_key, serialization.PrivateFormat.PKCS8))
    assert error.reason is Reason.KEY_MISMATCH
    assert "EC" in error.message


@pytest.mark.parametrize(
    ("key_text", "expected"),
    [
        (b"not a key at all", "not PEM"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "'PUBLIC KEY', not a private key"),
        (b"-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n", "not a valid private key"),
    ],
)
def test_unreadable_keys(cert_pem: bytes, key_text: bytes, expected: str) -> None:
    error = _invalid(cert_pem, key_text)
    assert error.reason is Reason.KEY_INVALID
    assert expected in error.message


def test_certificate_problems_are_reported_before_key_problems(other_key: rsa.RSAPrivateKey) -> None:
    expired = _cert(other_key, not_before=START - timedelta(days=20), not_after=START)
    assert _invalid(expired, b"garbage").reason is Reason.EXPIRED


def test_check_private_key_ignores_the_certificates_dates(key: rsa.RSAPrivateKey) -> None:
    expired = load_certificate(_cert(key, not_before=START - timedelta(days=20), not_after=START))
    assert check_private_key(expired, _key_pem(key)) == "Openssl format private key file"
    encrypted = _key_pem(key, serialization.PrivateFormat.PKCS8, b"pw")
    with pytest.raises(CertificateInvalid) as caught:
        check_private_key(expired, encrypted)
    assert caught.value.reason is Reason.PASSWORD_REQUIRED
    assert caught.value.info is None


def test_reason_codes_are_stable() -> None:
    assert [r.value for r in Reason] == [
        "NotPem",
        "NotX509",
        "NotRsa",
        "KeyTooSmall",
        "NotYetValid",
        "Expired",
        "KeyInvalid",
        "PasswordRequired",
        "WrongPassword",
        "KeyMismatch",
    ]
