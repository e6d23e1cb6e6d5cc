"""Key passwords on the command line: from a file or an environment variable; the old --password warns;
and a known password appears in no output of decrypt, cert inspect or export download (separate processes,
so every log handler and every print is what a user sees)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from cxbackup.certs import cms
from cxbackup.certs.generate import generate_pair
from cxbackup.export.store import ArtifactInfo, DirectoryStore
from tests.unit.test_export_download import FILES, NAME, NOW, make_zip

PASSWORD = "Kn0wn-pa55word-7f3a"  # the password every output is searched for
OTHER = "0ther-pa55word-c41e"
WRONG = "Wr0ng-pa55word-9d2b"
ENV = "CXBACKUP_TEST_KEY_PASSWORD"
REPO = Path(__file__).resolve().parents[2]


def _encrypted(key_pem: bytes, password: str) -> bytes:
    key = serialization.load_pem_private_key(key_pem, None)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password.encode()),
    )


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two pairs whose keys have different passwords; A's certificate is valid at NOW (for the export)."""
    d = tmp_path_factory.mktemp("pairs")
    for name, password, start in (("a", PASSWORD, NOW), ("b", OTHER, datetime.now(UTC))):
        key_pem, cert_pem = generate_pair("Genesys Recording", "US", "California", "Genesys", 3650, now=start)
        (d / f"{name}.key").write_bytes(_encrypted(key_pem, password))
        (d / f"{name}.pem").write_bytes(cert_pem)
    return d


def cxbackup(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cxbackup", *(str(a) for a in args)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), **(env or {})},
        cwd=REPO,
        check=False,
        timeout=60,
    )


def assert_not_shown(*procs: subprocess.CompletedProcess[str]) -> None:
    for proc in procs:
        for secret in (PASSWORD, OTHER, WRONG):
            assert secret not in proc.stdout + proc.stderr, proc.args


def test_cert_inspect_takes_the_password_from_the_environment_and_warns_on_the_old_flag(pairs: Path) -> None:
    cert, key = pairs / "b.pem", pairs / "b.key"
    by_env = cxbackup("cert", "inspect", cert, "--key", key, "--password-env", ENV, env={ENV: OTHER})
    assert (by_env.returncode, by_env.stderr) == (0, "")
    assert "encrypted PKCS#8 private key" in by_env.stdout
    wrong = cxbackup("cert", "inspect", cert, "--key", key, "--password-env", ENV, env={ENV: WRONG})
    assert wrong.returncode == 1 and "[WrongPassword]" in wrong.stderr
    unset = cxbackup("cert", "inspect", cert, "--key", key, "--password-env", "CXBACKUP_TEST_UNSET")
    assert unset.returncode == 2 and "CXBACKUP_TEST_UNSET is not set" in unset.stderr
    legacy = cxbackup("cert", "inspect", cert, "--key", key, "--password", OTHER)
    assert legacy.returncode == 0
    assert legacy.stderr.startswith("warning: --password puts the password on the command line")
    assert "--password-file FILE or --password-env VAR" in legacy.stderr
    assert_not_shown(by_env, wrong, unset, legacy)


def test_decrypt_with_a_keyring_shows_no_password(pairs: Path, tmp_path: Path) -> None:
    ring, src = tmp_path / "keyring", tmp_path / "backup"
    ring.mkdir()
    src.mkdir()
    for name, stem in (("a", "1"), ("b", "2")):
        (ring / f"{stem}.crt").write_bytes((pairs / f"{name}.pem").read_bytes())
        (ring / f"{stem}.key").write_bytes((pairs / f"{name}.key").read_bytes())
        (src / f"{name}.mp3.bin").write_bytes(cms.encrypt(name.encode(), cms.load_certificate(pairs / f"{name}.pem")))
    (ring / "1.password").write_text(PASSWORD)
    (tmp_path / "common").write_text(OTHER + "\n")  # for 2.key, which has no password of its own
    common = ["--password-file", tmp_path / "common"]
    ok = cxbackup("decrypt", "--keyring", ring, src, "--out", tmp_path / "plain", *common)
    assert ok.returncode == 0, ok.stderr
    assert "decrypted 2" in ok.stdout and ok.stderr == ""
    (ring / "2.password").write_text(WRONG)
    one_fails = cxbackup("decrypt", "--keyring", ring, src, "--out", tmp_path / "plain2", "--password-env", ENV,
                         env={ENV: PASSWORD})  # fmt: skip
    assert one_fails.returncode == 1
    assert "2.key (certificate serial" in one_fails.stderr and "wrong password" in one_fails.stderr
    assert_not_shown(ok, one_fails)


def test_export_download_takes_the_password_from_the_environment_and_warns_on_the_old_flag(
    pairs: Path, tmp_path: Path
) -> None:
    store = DirectoryStore(tmp_path / "store")
    store.write(cms.encrypt(make_zip(FILES), cms.load_certificate(pairs / "a.pem")), ArtifactInfo.new(NAME, NOW, 30))
    args = ["export", "download", NAME, "--store", tmp_path / "store", "--key", pairs / "a.key", "--verbose"]
    by_env = cxbackup(*args, "--out", tmp_path / "out", "--password-env", ENV, env={ENV: PASSWORD})
    assert by_env.returncode == 0, by_env.stderr
    assert "sha256 verified, decrypted" in by_env.stdout and "warning" not in by_env.stderr
    wrong = cxbackup(*args, "--out", tmp_path / "out2", "--password-env", ENV, env={ENV: WRONG})
    assert wrong.returncode == 2 and "wrong password" in wrong.stderr
    legacy = cxbackup(*args, "--out", tmp_path / "out3", "--password", PASSWORD)
    assert legacy.returncode == 0 and "warning: --password puts the password on the command line" in legacy.stderr
    assert_not_shown(by_env, wrong, legacy)
