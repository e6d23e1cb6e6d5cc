"""`cxbackup cert inspect` and `cxbackup export run` apply one rule set to a certificate file
(cxbackup.certs.validation.read_certificate): every form one accepts the other accepts, every form one refuses
the other refuses, with the same reason code. Before, `export run` read its --cert with its own loader and took
DER, a chain's first certificate, a certificate next to its private key, or next to other PEM blocks, which
`cert inspect` (and a RecordingCertificate) would not all take."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from cxbackup.certs.generate import generate_pair
from cxbackup.certs.validation import CertificateInvalid, Reason, read_certificate
from cxbackup.cli import main
from tests.unit.test_certs_validation import _cert

NOW = datetime.now(UTC)


def _pair(cn: str, days: int = 30, key_size: int = 2048) -> tuple[bytes, bytes]:
    return generate_pair(cn, "US", "California", "Org", days, key_size, now=NOW - timedelta(days=1))


KEY, CERT = _pair("Requester")
_, OTHER = _pair("Intermediate")


def _der(pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)


def _expired() -> bytes:
    return generate_pair("Old", "US", "California", "Org", 1, now=NOW - timedelta(days=3))[1]


def _small() -> bytes:
    return _cert(rsa.generate_private_key(public_exponent=65537, key_size=1024))  # noqa: S505 - refused, as meant


FORMS: dict[str, tuple[Callable[[], bytes], Reason | None, str]] = {
    "one PEM certificate": (lambda: CERT, None, ""),
    "text around the block (openssl x509 -text)": (lambda: b"Certificate:\n    Data: ...\n" + CERT + b"\n", None, ""),
    "DER": (lambda: _der(CERT), Reason.NOT_PEM, "it looks like DER"),
    "a chain": (lambda: CERT + OTHER, Reason.NOT_X509, "holds 2 certificates"),
    "the private key first": (lambda: KEY + CERT, Reason.NOT_X509, "holds a private key as well"),
    "the private key after": (lambda: CERT + KEY, Reason.NOT_X509, "holds a private key as well"),
    "another PEM block": (
        lambda: CERT + b"-----BEGIN DH PARAMETERS-----\nMAA=\n-----END DH PARAMETERS-----\n",
        Reason.NOT_X509,
        "'DH PARAMETERS' besides the certificate",
    ),
    "a key only": (lambda: KEY, Reason.NOT_X509, "not an X.509 CERTIFICATE"),
    "garbage": (lambda: b"not a certificate\n", Reason.NOT_PEM, "not PEM"),
    "a broken block": (
        lambda: b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        Reason.NOT_X509,
        "not a valid X.509",
    ),
    "expired": (_expired, Reason.EXPIRED, "certificate expired on"),
    "RSA under 2048 bits": (_small, Reason.KEY_TOO_SMALL, "at least 2048 bits"),
}


def _inspect(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(["cert", "inspect", str(path), "--json"])
    out = capsys.readouterr()
    reason = json.loads(out.out).get("reason") if out.out.strip().startswith("{") else None
    return code, str(reason) if reason else out.err


def _export(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """`export run` up to its store, which is not usable (so nothing is fetched): a refused certificate stops
    it before, naming the certificate; an accepted one gets as far as the store."""
    result = tmp_path / "result.json"
    code = main(
        ["export", "run", "--type", "contactHistory", "--last", "P1D", "--cert", str(path),
         "--api-uri-prefix", "https://127.0.0.1:9/api/v2", "--store", "https://store.example/x",
         "--result-file", str(result)]
    )  # fmt: skip
    err = capsys.readouterr().err
    return code, (json.loads(result.read_text()).get("error", "") if result.exists() else "") + err


@pytest.mark.parametrize("form", list(FORMS))
def test_cert_inspect_and_export_run_accept_and_refuse_the_same_certificate_files(
    form: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    make, reason, says = FORMS[form]
    path = tmp_path / "cert.pem"
    path.write_bytes(make())
    monkeypatch.setenv("GWS_USERNAME", "u")
    monkeypatch.setenv("GWS_PASSWORD", "p")
    inspect_code, inspect_said = _inspect(path, capsys)
    export_code, export_said = _export(path, tmp_path, capsys)
    if reason is None:
        assert inspect_code == 0, inspect_said
        assert "store must be a directory" in export_said, export_said  # past the certificate
        assert "encryption certificate" not in export_said, export_said
        cert, info = read_certificate(path.read_bytes(), now=NOW)
        assert info.fingerprint and cert.serial_number
    else:
        assert inspect_code == 1 and reason in inspect_said, inspect_said
        assert export_code == 2, export_said
        assert f"[{reason}]" in export_said and says in export_said, export_said
        with pytest.raises(CertificateInvalid) as caught:
            read_certificate(path.read_bytes(), now=NOW)
        assert caught.value.reason is reason and says in caught.value.message
