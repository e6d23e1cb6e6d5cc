"""HTTPS endpoints signed by a private certificate authority: trusted only when the CA is given.

The emulator serves its recording API and S3 over HTTPS with certificates of a test CA that nothing on
the machine trusts. `cxbackup download` refuses them at once (no retries, a message naming the fix), and
backs up every recording when the CA is given in CXBACKUP_CA_CERTIFICATES.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from cxbackup.core.errors import EXIT_CONFIG
from cxbackup_dev.emulator import DatasetSpec, Emulator, TestCA
from tests.integration.cli import run_cli_process as run_cli
from tests.integration.test_backup_download import check_target

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCA:
    return TestCA.create(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def https_emulator(tmp_path_factory: pytest.TempPathFactory, test_ca: TestCA) -> Iterator[Emulator]:
    spec = DatasetSpec(start=dt.datetime(2026, 11, 1, tzinfo=dt.UTC), hours=2, recordings_per_hour=3, seed=5)
    with Emulator(spec, tmp_path_factory.mktemp("emulator"), tls=test_ca) as emu:
        yield emu


def test_endpoints_are_https(https_emulator: Emulator) -> None:
    assert https_emulator.gws_uri_prefix.startswith("https://")
    assert https_emulator.s3_endpoint.startswith("https://")


def test_untrusted_certificate_is_refused_at_once(https_emulator: Emulator, tmp_path: Path) -> None:
    config = https_emulator.write_config(tmp_path / "config.properties", target_dir=tmp_path / "target")
    answered = len(https_emulator.request_log("settings"))
    proc = run_cli(["download", "-config", str(config)], https_emulator.env(), timeout=60)
    assert proc.returncode != 0
    assert "is not trusted" in proc.stderr and "CXBACKUP_CA_CERTIFICATES" in proc.stderr, proc.stderr[-2000:]
    assert len(https_emulator.request_log("settings")) == answered  # no request got through the handshake
    assert not [p for p in (tmp_path / "target").rglob("*.json")]


def test_download_over_https_with_the_ca(https_emulator: Emulator, test_ca: TestCA, tmp_path: Path) -> None:
    config = https_emulator.write_config(tmp_path / "config.properties", target_dir=tmp_path / "target")
    env = {**https_emulator.env(), "CXBACKUP_CA_CERTIFICATES": test_ca.pem}
    proc = run_cli(["download", "-config", str(config)], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert check_target(https_emulator, tmp_path / "target", https_emulator.records()) > 0
    assert list((tmp_path / "target").glob("last_recording_endtime*"))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("not a certificate", "not PEM certificates"),
        ("server", "is not a CA certificate"),
    ],
)
def test_bad_ca_certificates_exit_2(test_ca: TestCA, tmp_path: Path, value: str, message: str) -> None:
    if value == "server":
        cert_path, _ = test_ca.issue_server("not-a-ca")
        value = cert_path.read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    proc = run_cli(["audit", "--help"], {"CXBACKUP_CA_CERTIFICATES": value}, timeout=60)
    assert proc.returncode == EXIT_CONFIG
    assert "CXBACKUP_CA_CERTIFICATES" in proc.stderr and message in proc.stderr, proc.stderr


@pytest.mark.slow
def test_untrusted_s3_fails_each_recording_once_naming_the_fix(
    https_emulator: Emulator, test_ca: TestCA, tmp_path: Path
) -> None:
    """The recording API trusted (OpenSSL's SSL_CERT_FILE, which urllib3 reads) and the S3 endpoint not (the
    AWS CRT does not read it): media transfers fail without the retries a transient error gets. (The native
    transfer reads SSL_CERT_FILE as well, so it would trust both; its untrusted endpoint is tested in
    test_native_fetch.py.) Slow: the CRT closes a refused negotiation only after s2n's blinding delay (10 to
    30 s, no setting turns it off); the message and the retry decision are also checked without a handshake
    in tests/unit/backup/test_crt_errors.py."""
    config = https_emulator.write_config(
        tmp_path / "config.properties", target_dir=tmp_path / "target", mediaTransfer="crt"
    )
    gets = len(https_emulator.request_log("s3"))
    proc = run_cli(
        ["download", "-config", str(config)], {**https_emulator.env(), "SSL_CERT_FILE": str(test_ca.cert_path)}
    )
    assert proc.returncode != 0
    assert "TLS (SSL) negotiation failed" in proc.stderr and "CXBACKUP_CA_CERTIFICATES" in proc.stderr, proc.stderr[
        -2000:
    ]
    assert len(https_emulator.request_log("s3")) == gets
    assert not list((tmp_path / "target").glob("last_recording_endtime*"))  # the checkpoint did not advance
    assert not [p for p in (tmp_path / "target").rglob("*.bin")]
