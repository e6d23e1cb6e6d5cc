"""Recording certificates against the real openssl: what cxbackup generates passes openssl's checks, and
what the vendor's openssl commands generate, cxbackup reads (and rejects what it should)."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cxbackup.cli import main

pytestmark = pytest.mark.integration

OPENSSL = "/usr/bin/openssl"
SUBJ = "/CN=Genesys Recording/C=US/ST=California/O=Genesys"
DN = "CN=Genesys Recording,C=US,ST=California,O=Genesys"


def openssl(*args: str, cwd: Path) -> str:
    proc = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, f"openssl {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}"
    return proc.stdout + proc.stderr


def inspect(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, dict[str, str], str]:
    code = main(["cert", "inspect", *(str(a) for a in args)])
    captured = capsys.readouterr()
    fields = dict(
        (label, value.strip())
        for label, value in (line.split(":", 1) for line in captured.out.splitlines() if ":" in line)
    )
    return code, fields, captured.err


# --- what cxbackup generates, checked by openssl -------------------------------------------------------


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`cxbackup cert generate` run as a user runs it: the console entry point, a separate process."""
    out = tmp_path_factory.mktemp("generated")
    subprocess.run(
        [
            sys.executable, "-m", "cxbackup", "cert", "generate",
            "--cn", "Genesys Recording", "--country", "US", "--state", "California", "--org", "Genesys",
            "--days", "3650", "--out-key", "tenant.key", "--out-cert", "tenant.pem", "--pkcs8", "private.pem",
        ],
        cwd=out, check=True, capture_output=True,
    )  # fmt: skip
    return out


def test_openssl_reads_the_generated_certificate(generated: Path) -> None:
    text = openssl("x509", "-in", "tenant.pem", "-noout", "-text", cwd=generated)
    assert "Version: 3 (0x2)" in text
    assert "Subject: CN = Genesys Recording, C = US, ST = California, O = Genesys" in text
    assert "Issuer: CN = Genesys Recording, C = US, ST = California, O = Genesys" in text
    assert "Public-Key: (2048 bit)" in text
    assert "Signature Algorithm: sha256WithRSAEncryption" in text
    assert "X509v3 Subject Key Identifier" in text
    assert "X509v3 Authority Key Identifier" in text
    assert "X509v3 Basic Constraints: critical\n                CA:TRUE" in text
    dates = openssl("x509", "-in", "tenant.pem", "-noout", "-startdate", "-enddate", cwd=generated)
    start = datetime.strptime(dates.split("notBefore=")[1].splitlines()[0], "%b %d %H:%M:%S %Y GMT")
    end = datetime.strptime(dates.split("notAfter=")[1].splitlines()[0], "%b %d %H:%M:%S %Y GMT")
    assert end - start == timedelta(days=3650)
    assert "tenant.pem: OK" in openssl("verify", "-CAfile", "tenant.pem", "tenant.pem", cwd=generated)


def test_openssl_checks_the_generated_keys(generated: Path) -> None:
    assert (generated / "tenant.key").read_text().startswith("-----BEGIN RSA PRIVATE KEY-----")
    assert "RSA key ok" in openssl("rsa", "-in", "tenant.key", "-check", "-noout", cwd=generated)
    assert openssl("pkey", "-in", "private.pem", cwd=generated).startswith("-----BEGIN PRIVATE KEY-----")
    cert_modulus = openssl("x509", "-in", "tenant.pem", "-noout", "-modulus", cwd=generated)
    key_modulus = openssl("rsa", "-in", "tenant.key", "-noout", "-modulus", cwd=generated)
    pkcs8_modulus = openssl("rsa", "-in", "private.pem", "-noout", "-modulus", cwd=generated)
    assert cert_modulus.startswith("Modulus=")
    assert cert_modulus == key_modulus == pkcs8_modulus


def test_serial_and_fingerprint_agree_with_openssl(generated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, fields, _ = inspect(capsys, generated / "tenant.pem", "--key", generated / "private.pem")
    assert code == 0
    serial_hex = openssl("x509", "-in", "tenant.pem", "-noout", "-serial", cwd=generated).strip()
    assert int(serial_hex.removeprefix("serial="), 16) == int(fields["Serial Number"])
    fingerprint = openssl("x509", "-in", "tenant.pem", "-noout", "-fingerprint", "-sha256", cwd=generated)
    assert fingerprint.strip() == f"sha256 Fingerprint={fields['SHA-256 Fingerprint']}"
    assert fields["Key Details"] == "PKCS#8 private key"


# --- what the vendor's openssl commands generate, read by cxbackup -------------------------------------


@pytest.fixture(scope="module")
def vendor_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The vendor's documented commands, plus the Azure PKCS#8 step and an encrypted copy of the key."""
    out = tmp_path_factory.mktemp("vendor-certs")
    openssl("genrsa", "-out", "tenant.key", "2048", cwd=out)
    openssl("req", "-new", "-x509", "-key", "tenant.key", "-out", "tenant.pem", "-days", "3650", "-subj", SUBJ,
            cwd=out)  # fmt: skip
    openssl("pkcs8", "-topk8", "-inform", "pem", "-in", "tenant.key", "-outform", "pem", "-nocrypt",
            "-out", "private.pem", cwd=out)  # fmt: skip
    openssl("rsa", "-in", "tenant.key", "-traditional", "-out", "traditional.key", cwd=out)
    openssl("rsa", "-in", "tenant.key", "-aes256", "-passout", "pass:Rec0rding!", "-out", "encrypted.key", cwd=out)
    openssl("rsa", "-in", "tenant.key", "-aes256", "-traditional", "-passout", "pass:Rec0rding!",
            "-out", "encrypted-traditional.key", cwd=out)  # fmt: skip
    openssl("genrsa", "-out", "other.key", "2048", cwd=out)
    return out


def test_the_vendor_certificate_is_read_as_the_panel_shows_it(
    vendor_certs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, fields, err = inspect(capsys, vendor_certs / "tenant.pem", "--key", vendor_certs / "tenant.key")
    assert (code, err) == (0, "")
    assert fields["Subject DN"] == DN
    assert fields["Issuer DN"] == DN
    assert fields["Issued To"] == "Genesys Recording"
    assert fields["Issued By"] == "Genesys Recording"
    assert fields["Key Size"] == "2048 bits"
    assert fields["Key Details"] == "PKCS#8 private key"  # OpenSSL 3's genrsa writes PKCS#8
    enddate = openssl("x509", "-in", "tenant.pem", "-noout", "-enddate", cwd=vendor_certs).strip()
    expires = datetime.strptime(enddate.removeprefix("notAfter="), "%b %d %H:%M:%S %Y GMT")
    assert fields["Expires"] == f"{expires:%Y-%m-%d} ({expires:%Y-%m-%d %H:%M:%S} UTC)"


@pytest.mark.parametrize(
    ("key", "password", "details"),
    [
        ("private.pem", None, "PKCS#8 private key"),
        ("traditional.key", None, "Openssl format private key file"),
        ("encrypted.key", "Rec0rding!", "encrypted PKCS#8 private key"),
        ("encrypted-traditional.key", "Rec0rding!", "Openssl format private key file, encrypted (AES-256-CBC)"),
    ],
)
def test_every_openssl_key_format_is_read(
    vendor_certs: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    key: str,
    password: str | None,
    details: str,
) -> None:
    monkeypatch.setenv("CXBACKUP_TEST_KEY_PASSWORD", password or "")
    extra = ["--password-env", "CXBACKUP_TEST_KEY_PASSWORD"] if password else []
    code, fields, err = inspect(capsys, vendor_certs / "tenant.pem", "--key", vendor_certs / key, *extra)
    assert (code, err) == (0, "")
    assert fields["Key Details"] == details


# --- rejections, with inputs made by openssl (or cryptography where openssl cannot backdate) -----------


def _backdated(vendor_certs: Path, name: str, not_before: datetime, not_after: datetime) -> Path:
    """A certificate for the documented openssl key with the given dates (openssl req cannot set them)."""
    key = serialization.load_pem_private_key((vendor_certs / "tenant.key").read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    subject = x509.load_pem_x509_certificate((vendor_certs / "tenant.pem").read_bytes()).subject
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    path = vendor_certs / name
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _rejected(capsys: pytest.CaptureFixture[str], reason: str, *args: str | Path) -> str:
    code, _, err = inspect(capsys, *args)
    assert code == 1, err
    assert err.count("\n") == 1, err
    assert err.rstrip().endswith(f"[{reason}]"), err
    return err


def test_a_1024_bit_certificate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    openssl("genrsa", "-out", "small.key", "1024", cwd=tmp_path)
    openssl("req", "-new", "-x509", "-key", "small.key", "-out", "small.pem", "-days", "30", "-subj", SUBJ,
            cwd=tmp_path)  # fmt: skip
    err = _rejected(capsys, "KeyTooSmall", tmp_path / "small.pem", "--key", tmp_path / "small.key")
    assert "RSA 1024 bits; at least 2048 bits are required" in err


def test_an_ec_certificate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    openssl("req", "-new", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", "ec.key", "-out", "ec.pem", "-days", "30", "-subj", SUBJ, cwd=tmp_path)  # fmt: skip
    assert "not RSA" in _rejected(capsys, "NotRsa", tmp_path / "ec.pem")


def test_an_expired_certificate(vendor_certs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _backdated(vendor_certs, "expired.pem", datetime(2015, 1, 1, tzinfo=UTC), datetime(2020, 6, 30, tzinfo=UTC))
    assert (
        "Certificate will expire"
        in subprocess.run(
            [OPENSSL, "x509", "-in", path, "-noout", "-checkend", "0"], capture_output=True, text=True, check=False
        ).stdout
    )
    err = _rejected(capsys, "Expired", path, "--key", vendor_certs / "tenant.key")
    assert "certificate expired on 2020-06-30 00:00:00 UTC" in err


def test_a_certificate_not_yet_valid(vendor_certs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    start = (datetime.now(UTC) + timedelta(days=7)).replace(microsecond=0)
    path = _backdated(vendor_certs, "future.pem", start, start + timedelta(days=365))
    verify = subprocess.run([OPENSSL, "verify", "-CAfile", path, path], capture_output=True, text=True, check=False)
    assert "certificate is not yet valid" in verify.stdout + verify.stderr
    err = _rejected(capsys, "NotYetValid", path)
    assert f"certificate is not valid until {start:%Y-%m-%d %H:%M:%S} UTC" in err


def test_a_key_of_another_pair(vendor_certs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    err = _rejected(capsys, "KeyMismatch", vendor_certs / "tenant.pem", "--key", vendor_certs / "other.key")
    assert "does not match the certificate" in err


def test_an_encrypted_key_without_or_with_a_wrong_password(
    vendor_certs: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    err = _rejected(capsys, "PasswordRequired", vendor_certs / "tenant.pem", "--key", vendor_certs / "encrypted.key")
    assert "--password-file or --password-env" in err and "Private Key Password" in err
    monkeypatch.setenv("CXBACKUP_TEST_KEY_PASSWORD", "guess")
    err = _rejected(
        capsys, "WrongPassword", vendor_certs / "tenant.pem", "--key", vendor_certs / "encrypted-traditional.key",
        "--password-env", "CXBACKUP_TEST_KEY_PASSWORD",
    )  # fmt: skip
    assert "wrong password" in err and "guess" not in err


def test_garbage_and_a_pem_that_is_not_a_certificate(
    vendor_certs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "garbage.pem").write_text("Genesys Recording certificate, honest\n")
    assert "not PEM" in _rejected(capsys, "NotPem", tmp_path / "garbage.pem")
    err = _rejected(capsys, "NotX509", vendor_certs / "tenant.key")
    assert "'PRIVATE KEY', not an X.509 CERTIFICATE" in err
    openssl("x509", "-in", "tenant.pem", "-outform", "DER", "-out", "tenant.der", cwd=vendor_certs)
    assert "DER" in _rejected(capsys, "NotPem", vendor_certs / "tenant.der")
