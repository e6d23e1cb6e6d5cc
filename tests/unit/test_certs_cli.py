"""`cxbackup cert generate` and `cxbackup cert inspect`, run in-process."""

from __future__ import annotations

import json
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from cxbackup.certs.generate import generate_pair
from cxbackup.cli import main

SUBJECT = ["--cn", "Genesys Recording", "--country", "US", "--state", "California", "--org", "Genesys"]
DN = "CN=Genesys Recording,C=US,ST=California,O=Genesys"


def _generate(tmp_path: Path, *extra: str) -> int:
    return main(
        [
            "cert",
            "generate",
            *SUBJECT,
            "--days",
            "3650",
            "--out-key",
            str(tmp_path / "tenant.key"),
            "--out-cert",
            str(tmp_path / "tenant.pem"),
            *extra,
        ]
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A good pair, an expiring one, an expired one, and an encrypted copy of the good key."""
    out = tmp_path_factory.mktemp("certs")
    now = datetime.now(UTC)
    made = {
        "good": generate_pair("Genesys Recording", "US", "California", "Genesys", 3650, now=now),
        "expiring": generate_pair("Soon", "US", "California", "Genesys", 3650, now=now - timedelta(days=3640)),
        "expired": generate_pair("Old", "US", "California", "Genesys", 30, now=now - timedelta(days=60)),
    }
    paths: dict[str, Path] = {}
    for name, (key_pem, cert_pem) in made.items():
        (out / f"{name}.key").write_bytes(key_pem)
        (out / f"{name}.pem").write_bytes(cert_pem)
        paths[f"{name}.key"] = out / f"{name}.key"
        paths[f"{name}.pem"] = out / f"{name}.pem"
    key = serialization.load_pem_private_key(made["good"][0], None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"Tr0ub4dor&3"),
    )
    paths["encrypted.key"] = out / "encrypted.key"
    paths["encrypted.key"].write_bytes(encrypted)
    paths["password"] = out / "password.txt"
    paths["password"].write_text("Tr0ub4dor&3\n")
    paths["garbage"] = out / "garbage.pem"
    paths["garbage"].write_text("hello\n")
    return paths


# --- generate ------------------------------------------------------------------------------------------


def test_generate_writes_key_certificate_and_pkcs8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _generate(tmp_path, "--pkcs8", str(tmp_path / "private.pem")) == 0
    key_pem = (tmp_path / "tenant.key").read_bytes()
    pkcs8 = (tmp_path / "private.pem").read_bytes()
    assert key_pem.startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert pkcs8.startswith(b"-----BEGIN PRIVATE KEY-----")
    assert (tmp_path / "tenant.pem").read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert _mode(tmp_path / "tenant.key") == 0o600
    assert _mode(tmp_path / "private.pem") == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["private.pem", "tenant.key", "tenant.pem"]
    out = capsys.readouterr().out
    assert f"Subject DN:          {DN}" in out
    assert "Key Details:         Openssl format private key file" in out
    assert "PRIVATE KEY-----" not in out
    for line in key_pem.decode().splitlines()[1:-1]:
        assert line not in out


def test_generate_never_replaces_a_key_without_force(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tenant.key").write_text("precious")
    assert _generate(tmp_path) == 2
    err = capsys.readouterr().err
    assert "tenant.key (--out-key) already exists" in err and "--force" in err
    assert (tmp_path / "tenant.key").read_text() == "precious"
    assert not (tmp_path / "tenant.pem").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["tenant.key"]

    assert _generate(tmp_path, "--force") == 0
    assert (tmp_path / "tenant.key").read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    assert _mode(tmp_path / "tenant.key") == 0o600


def test_generate_never_replaces_a_certificate_without_force(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tenant.pem").write_text("old certificate")
    assert _generate(tmp_path) == 2
    assert "tenant.pem (--out-cert) already exists" in capsys.readouterr().err
    assert not (tmp_path / "tenant.key").exists()


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--country", "USA"], "--country: country (C) must be a two-letter code"),
        (["--key-size", "1024"], "--key-size: key size must be 2048, 3072 or 4096 bits (got 1024)"),
        (["--days", "0"], "--days: days must be between 1 and"),
    ],
)
def test_generate_names_the_bad_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], flag: str
) -> None:
    assert _generate(tmp_path, *args) == 2
    assert f"cxbackup cert generate: {flag}" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_generate_refuses_one_file_for_two_outputs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _generate(tmp_path, "--pkcs8", str(tmp_path / "tenant.key")) == 2
    assert "--out-key and --pkcs8 name the same file" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_generate_into_a_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _generate(tmp_path / "nowhere") == 2
    assert "does not exist" in capsys.readouterr().err


# --- inspect -------------------------------------------------------------------------------------------


def test_inspect_prints_the_panel_fields(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cert", "inspect", str(files["good.pem"]), "--key", str(files["good.key"])]) == 0
    captured = capsys.readouterr()
    lines = dict(line.split(": ", 1) for line in captured.out.splitlines())
    assert lines["Issued To"].strip() == "Genesys Recording"
    assert lines["Issued By"].strip() == "Genesys Recording"
    assert lines["Subject DN"].strip() == DN
    assert lines["Issuer DN"].strip() == DN
    assert lines["Serial Number"].strip().isdigit()
    assert lines["Key Size"].strip() == "2048 bits"
    assert lines["Key Details"].strip() == "Openssl format private key file"
    assert lines["Expires"].strip().endswith(" UTC)")
    assert captured.err == ""


def test_inspect_json(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cert", "inspect", str(files["good.pem"]), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["subjectDn"] == DN
    assert doc["valid"] is True and doc["reason"] is None and doc["warnings"] == []
    assert doc["keyDetails"] is None
    assert doc["notAfter"].endswith("Z")


def test_inspect_warns_within_30_days(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cert", "inspect", str(files["expiring.pem"])]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: certificate expires in 9 days, on ")
    assert main(["cert", "inspect", str(files["expiring.pem"]), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["valid"] is True
    assert doc["warnings"][0].startswith("certificate expires in 9 days")


def test_inspect_rejects_an_expired_certificate(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cert", "inspect", str(files["expired.pem"])]) == 1
    captured = capsys.readouterr()
    assert "Issued To:           Old" in captured.out  # still shown: its key is still needed
    assert captured.err.count("\n") == 1
    assert "certificate expired on " in captured.err and captured.err.rstrip().endswith("[Expired]")

    assert main(["cert", "inspect", str(files["expired.pem"]), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert (doc["valid"], doc["reason"], doc["issuedTo"]) == (False, "Expired", "Old")


def test_inspect_garbage(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cert", "inspect", str(files["garbage"])]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"cxbackup cert inspect: {files['garbage']}: certificate is not PEM")
    assert captured.err.rstrip().endswith("[NotPem]")


def test_inspect_mismatched_key(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cert", "inspect", str(files["good.pem"]), "--key", str(files["expiring.key"])]) == 1
    assert (
        capsys.readouterr()
        .err.rstrip()
        .endswith("does not match the certificate (different RSA modulus) [KeyMismatch]")
    )


def test_inspect_encrypted_key(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    cert, key = str(files["good.pem"]), str(files["encrypted.key"])
    assert main(["cert", "inspect", cert, "--key", key]) == 1
    err = capsys.readouterr().err
    assert f"cxbackup cert inspect: {key}: private key is encrypted" in err
    assert "--password" in err and "Private Key Password" in err and "[PasswordRequired]" in err

    assert main(["cert", "inspect", cert, "--key", key, "--password", "wrong-one"]) == 1
    captured = capsys.readouterr()
    assert "[WrongPassword]" in captured.err
    assert "wrong-one" not in captured.out + captured.err

    assert main(["cert", "inspect", cert, "--key", key, "--password-file", str(files["password"])]) == 0
    captured = capsys.readouterr()
    assert "Key Details:         encrypted PKCS#8 private key" in captured.out
    assert "Tr0ub4dor" not in captured.out + captured.err

    assert main(["cert", "inspect", cert, "--key", key, "--password", "Tr0ub4dor&3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["keyDetails"] == "encrypted PKCS#8 private key"


def test_inspect_usage_errors(files: dict[str, Path], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["cert", "inspect", str(files["good.pem"]), "--password", "x"]) == 2
    assert "need --key" in capsys.readouterr().err
    assert main(["cert", "inspect", str(tmp_path / "missing.pem")]) == 2
    assert "cannot read certificate" in capsys.readouterr().err
    with pytest.raises(SystemExit) as both:
        main(["cert", "inspect", "x.pem", "--key", "k", "--password", "a", "--password-file", "f"])
    assert both.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err
