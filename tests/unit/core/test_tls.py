"""Extra certificate authorities (cxbackup.core.tls): checked, added to the trust store in use, private."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import pytest

from cxbackup.core.errors import ConfigurationError
from cxbackup.core.tls import CA_CERTIFICATES, trust_extra_cas
from cxbackup_dev.emulator import TestCA


def test_nothing_changes_without_the_variable() -> None:
    env: dict[str, str] = {"SSL_CERT_FILE": "/x"}
    assert trust_extra_cas(env) is None
    assert env == {"SSL_CERT_FILE": "/x"}
    assert trust_extra_cas({CA_CERTIFICATES: "  \n"}) is None


def test_bundle_keeps_the_current_trust_and_adds_the_ca(tmp_path: Path) -> None:
    ca = TestCA.create(tmp_path / "ca")
    base = tmp_path / "base.pem"
    base.write_text("BASE BUNDLE\n")
    env = {CA_CERTIFICATES: ca.pem, "AWS_CA_BUNDLE": str(base)}
    bundle = trust_extra_cas(env)
    assert bundle is not None
    assert env["AWS_CA_BUNDLE"] == env["SSL_CERT_FILE"] == str(bundle)
    text = bundle.read_text()
    assert text.startswith("BASE BUNDLE\n") and ca.pem.strip() in text
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o600
    # the bundle is one an OpenSSL client loads
    ssl.create_default_context(cafile=None).load_verify_locations(cadata=text.split("BASE BUNDLE\n", 1)[1])


def test_system_store_is_the_base_when_none_is_named(tmp_path: Path) -> None:
    ca = TestCA.create(tmp_path / "ca")
    bundle = trust_extra_cas({CA_CERTIFICATES: ca.pem})
    assert bundle is not None
    system = Path(ssl.get_default_verify_paths().cafile or "")
    if system.is_file():
        assert bundle.read_text().startswith(system.read_text().rstrip("\n"))


@pytest.mark.parametrize("value", ["hello", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"])
def test_not_pem_is_a_configuration_error(value: str) -> None:
    with pytest.raises(ConfigurationError, match=f"{CA_CERTIFICATES}: not PEM certificates"):
        trust_extra_cas({CA_CERTIFICATES: value})


def test_a_server_certificate_is_not_a_ca(tmp_path: Path) -> None:
    ca = TestCA.create(tmp_path / "ca")
    leaf = ca.issue_server("leaf")[0].read_text().split("-----END CERTIFICATE-----")[0] + "-----END CERTIFICATE-----\n"
    with pytest.raises(ConfigurationError, match="is not a CA certificate"):
        trust_extra_cas({CA_CERTIFICATES: leaf})
