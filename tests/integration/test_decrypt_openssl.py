"""CMS interop with the real openssl, and `cxbackup decrypt` on files and backup trees.

The vendor documents `openssl cms -decrypt -inform DER -binary -inkey KEY` (Linux) and
`openssl smime -decrypt -binary -inform DER` (Windows); what we encrypt must decrypt with both, and
what `cxbackup decrypt` writes must equal openssl's output byte for byte.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from cxbackup.certs import cms
from cxbackup.cli import main
from cxbackup_dev.emulator import Dataset, DatasetSpec

pytestmark = pytest.mark.integration

OPENSSL = "/usr/bin/openssl"
DATA = bytes(range(256)) * 300 + b"line\nbreaks\r\nand a NUL\x00"


def openssl(*args: str, cwd: Path, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run([OPENSSL, *args], cwd=cwd, input=stdin, capture_output=True, check=False)
    assert proc.returncode == 0, f"openssl {' '.join(args)}: {proc.stderr.decode(errors='replace')}"
    return proc.stdout


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tenant.key / tenant.pem made with the vendor's own openssl commands, plus a second pair (a keyring
    folder), and the tenant key password-protected next to the folder."""
    d = tmp_path_factory.mktemp("keys") / "ring"
    d.mkdir()
    openssl("genrsa", "-out", "tenant.key", "2048", cwd=d)
    subj = "/CN=Genesys Recording/C=US/ST=California/O=Genesys"
    openssl("req", "-new", "-x509", "-key", "tenant.key", "-out", "tenant.pem", "-days", "3650", "-subj", subj, cwd=d)
    openssl("genrsa", "-out", "other.key", "2048", cwd=d)
    openssl(
        "req", "-new", "-x509", "-key", "other.key", "-out", "other.pem", "-days", "30", "-subj", "/CN=Other", cwd=d
    )
    openssl("pkcs8", "-topk8", "-in", "tenant.key", "-out", "../protected.key", "-passout", "pass:s3cret", cwd=d)
    return d


@pytest.mark.parametrize(("algorithm", "name"), [("AES-128", "aes-128-cbc"), ("AES-256", "aes-256-cbc")])
def test_openssl_decrypts_what_we_encrypt(keys: Path, tmp_path: Path, algorithm: cms.Algorithm, name: str) -> None:
    der = cms.encrypt(DATA, cms.load_certificate(keys / "tenant.pem"), algorithm)
    (tmp_path / "media.mp3.bin").write_bytes(der)
    printed = openssl("cms", "-cmsout", "-print", "-inform", "DER", "-in", "media.mp3.bin", cwd=tmp_path)
    assert name.encode() in printed
    openssl(
        "cms",
        "-decrypt",
        "-inform",
        "DER",
        "-in",
        "media.mp3.bin",
        "-binary",
        "-inkey",
        str(keys / "tenant.key"),
        "-out",
        "by-cms.mp3",
        cwd=tmp_path,
    )
    openssl(
        "smime",
        "-decrypt",
        "-binary",
        "-inform",
        "DER",
        "-in",
        "media.mp3.bin",
        "-inkey",
        str(keys / "tenant.key"),
        "-out",
        "by-smime.mp3",
        cwd=tmp_path,
    )
    assert (tmp_path / "by-cms.mp3").read_bytes() == DATA
    assert (tmp_path / "by-smime.mp3").read_bytes() == DATA
    rc = main(
        ["decrypt", "--key", str(keys / "tenant.key"), str(tmp_path / "media.mp3.bin"), "--out", str(tmp_path / "ours")]
    )
    assert rc == 0
    assert (tmp_path / "ours").read_bytes() == (tmp_path / "by-cms.mp3").read_bytes()


@pytest.mark.parametrize("flags", [["-aes128"], ["-aes256"], ["-aes192"], ["-des3"], ["-aes256", "-stream"]])
def test_we_decrypt_what_openssl_encrypts(keys: Path, tmp_path: Path, flags: list[str]) -> None:
    (tmp_path / "plain").write_bytes(DATA)
    openssl(
        "cms",
        "-encrypt",
        "-binary",
        "-outform",
        "DER",
        *flags,
        "-in",
        "plain",
        "-out",
        "enc.bin",
        str(keys / "tenant.pem"),
        cwd=tmp_path,
    )
    der = (tmp_path / "enc.bin").read_bytes()
    key, cert = cms.load_private_key(keys / "tenant.key"), cms.load_certificate(keys / "tenant.pem")
    assert cms.recipients(der)[0].matches(cert)
    assert cms.decrypt(der, key, cert) == DATA
    assert cms.decrypt_with_key(der, key) == DATA
    assert main(["decrypt", "--keyring", str(keys), str(tmp_path / "enc.bin"), "--out", str(tmp_path / "dec")]) == 0
    assert (tmp_path / "dec").read_bytes() == DATA


def test_openssl_error_and_ours_agree_on_a_foreign_file(
    keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "f.bin").write_bytes(cms.encrypt(b"secret", cms.load_certificate(keys / "other.pem")))
    proc = subprocess.run(
        [
            OPENSSL,
            "cms",
            "-decrypt",
            "-inform",
            "DER",
            "-binary",
            "-in",
            "f.bin",
            "-inkey",
            str(keys / "tenant.key"),
            "-recip",
            str(keys / "tenant.pem"),
        ],
        cwd=tmp_path,
        capture_output=True,
        check=False,
    )
    assert proc.returncode != 0
    rc = main(
        [
            "decrypt",
            "--key",
            str(keys / "tenant.key"),
            "--cert",
            str(keys / "tenant.pem"),
            str(tmp_path / "f.bin"),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 1 and "CN=Other" in err and "failed: f.bin" in err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------- backup trees


def build_backup(root: Path, cert_path: Path) -> Dataset:
    """A target tree like the backup engine writes: yyyy/MM/dd/HH/<callUUID>/ media + <callUUID>.json."""
    ds = Dataset(DatasetSpec(seed=3, hours=2, recordings_per_hour=3, screen_fraction=0.5))
    cert = cms.load_certificate(cert_path)
    for rec in ds.iter_records():
        folder = root / rec["startTime"][:13].replace("-", "/").replace("T", "/") / rec["id"]
        folder.mkdir(parents=True)
        for media in rec["mediaFiles"]:
            (folder / media["mediaId"]).write_bytes(cms.encrypt(ds.media_plaintext(media["mediaId"]), cert))
        (folder / f"{rec['id']}.json").write_text(json.dumps(rec, indent=2))
    (root / "last_recording_endtime.txt").write_text("1626886140000\n")
    (root / "2021" / ".in-progress.mp3.bin.part").write_bytes(b"half a file")
    return ds


def test_decrypt_a_backup_tree(keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, dest = tmp_path / "backup", tmp_path / "plain"
    ds = build_backup(src, keys / "tenant.pem")
    media = [(rec, m) for rec in ds.iter_records() for m in rec["mediaFiles"]]
    assert any(m["type"] == "video/mp4" for _, m in media)

    assert main(["decrypt", "--keyring", str(keys), str(src), "--out", str(dest)]) == 0
    out = capsys.readouterr().out
    assert f"decrypted {len(media)}, copied 7, skipped 1, failed 0" in out
    for rec, m in media:
        folder = next(p.parent for p in src.rglob(f"{rec['id']}.json"))
        rel = folder.relative_to(src)
        expected_name = m["mediaId"][:-4] if m["mediaId"].endswith(".bin") else m["mediaId"] + ".mp4"
        written = dest / rel / expected_name
        assert written.read_bytes() == ds.media_plaintext(m["mediaId"])
        assert (dest / rel / f"{rec['id']}.json").read_bytes() == (folder / f"{rec['id']}.json").read_bytes()
    assert (dest / "last_recording_endtime.txt").read_text() == "1626886140000\n"
    assert not list(dest.rglob("*.part")) and not list(dest.rglob("*.bin"))

    # byte for byte what openssl writes
    rec, m = media[0]
    enc = next(src.rglob(m["mediaId"]))
    openssl(
        "cms",
        "-decrypt",
        "-inform",
        "DER",
        "-in",
        str(enc),
        "-binary",
        "-inkey",
        str(keys / "tenant.key"),
        "-out",
        str(tmp_path / "openssl.out"),
        cwd=tmp_path,
    )
    ours = next(dest.rglob(m["mediaId"].removesuffix(".bin")))
    assert ours.read_bytes() == (tmp_path / "openssl.out").read_bytes()

    # again: nothing overwritten, existing files reported; then --overwrite rewrites
    stamp = ours.stat().st_mtime_ns
    ours.write_bytes(b"edited by the user")
    assert main(["decrypt", "--keyring", str(keys), str(src), "--out", str(dest)]) == 0
    assert "decrypted 0, copied 0" in capsys.readouterr().out
    assert ours.read_bytes() == b"edited by the user"
    assert main(["decrypt", "--keyring", str(keys), "--overwrite", str(src), "--out", str(dest)]) == 0
    assert f"decrypted {len(media)}, copied 7" in capsys.readouterr().out
    assert ours.read_bytes() == (tmp_path / "openssl.out").read_bytes() and ours.stat().st_mtime_ns != stamp


@pytest.mark.parametrize("where", ["same", "inside", "parent"])
def test_never_in_place(keys: Path, tmp_path: Path, where: str, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "backup"
    build_backup(src, keys / "tenant.pem")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    out, source = {"same": (src, src), "inside": (src / "2021" / "plain", src), "parent": (tmp_path, src)}[where]
    assert main(["decrypt", "--keyring", str(keys), str(source), "--out", str(out)]) == 2
    assert "in place" in capsys.readouterr().err
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_failures_are_listed_and_exit_1(keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, dest = tmp_path / "backup", tmp_path / "plain"
    ds = build_backup(src, keys / "tenant.pem")
    records = list(ds.iter_records())
    damaged = next(src.rglob(records[0]["mediaFiles"][0]["mediaId"]))
    damaged.write_bytes(damaged.read_bytes()[:-40])
    foreign = next(src.rglob(records[1]["mediaFiles"][0]["mediaId"]))
    foreign.write_bytes(cms.encrypt(b"x", cms.load_certificate(keys / "other.pem")))
    (damaged.parent / "notes.mp3").write_bytes(b"ID3 not encrypted at all")
    rc = main(["decrypt", "--key", str(keys / "tenant.key"), str(src), "--out", str(dest)])
    captured = capsys.readouterr()
    assert rc == 1
    assert "failed 3" in captured.out
    assert "damaged CMS enveloped-data" in captured.err
    assert "no key in the keyring (1 keys) for recipients: issuer 'CN=Other'" in captured.err
    assert "notes.mp3: not CMS enveloped-data" in captured.err
    assert not (dest / damaged.relative_to(src).with_suffix("")).exists()
    assert (
        len([p for p in dest.rglob("*") if p.is_file() and not p.name.endswith((".json", ".txt"))])
        == sum(len(r["mediaFiles"]) for r in records) - 2
    )


def test_password_protected_key_and_usage_errors(
    keys: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "m.mp3.bin").write_bytes(cms.encrypt(DATA, cms.load_certificate(keys / "tenant.pem")))
    args = [
        "decrypt",
        "--key",
        str(keys.parent / "protected.key"),
        str(tmp_path / "m.mp3.bin"),
        "--out",
        str(tmp_path / "o"),
    ]
    assert main(args) == 2
    assert "password is needed" in capsys.readouterr().err
    os.environ["CXBACKUP_TEST_KEY_PW"] = "s3cret"
    try:
        assert main([*args[:3], "--password-env", "CXBACKUP_TEST_KEY_PW", *args[3:]]) == 0
    finally:
        del os.environ["CXBACKUP_TEST_KEY_PW"]
    assert (tmp_path / "o").read_bytes() == DATA
    (tmp_path / "outdir").mkdir()
    assert (
        main(
            [
                "decrypt",
                "--key",
                str(keys / "tenant.key"),
                str(tmp_path / "m.mp3.bin"),
                "--out",
                str(tmp_path / "outdir"),
            ]
        )
        == 0
    )
    assert (tmp_path / "outdir" / "m.mp3").read_bytes() == DATA
    assert (
        main(
            [
                "decrypt",
                "--key",
                str(keys / "tenant.key"),
                "--cert",
                str(keys / "other.pem"),
                str(tmp_path / "m.mp3.bin"),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )
    assert "not for the key" in capsys.readouterr().err
    assert (
        main(
            [
                "decrypt",
                "--keyring",
                str(tmp_path / "outdir"),
                str(tmp_path / "m.mp3.bin"),
                "--out",
                str(tmp_path / "y"),
            ]
        )
        == 2
    )


def test_the_console_script(keys: Path, tmp_path: Path) -> None:
    (tmp_path / "m.mp3.bin").write_bytes(cms.encrypt(DATA, cms.load_certificate(keys / "tenant.pem"), "AES-128"))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "cxbackup",
            "decrypt",
            "--key",
            str(keys / "tenant.key"),
            str(tmp_path / "m.mp3.bin"),
            "--out",
            str(tmp_path / "m.mp3"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "decrypted 1, copied 0, skipped 0, failed 0" in proc.stdout
    assert (tmp_path / "m.mp3").read_bytes() == DATA


def test_every_file_decrypt_writes_is_private_whatever_the_umask(keys: Path, tmp_path: Path) -> None:
    src = tmp_path / "backup"
    build_backup(src, keys / "tenant.pem")
    (tmp_path / "one.mp3.bin").write_bytes(cms.encrypt(DATA, cms.load_certificate(keys / "tenant.pem")))
    old = os.umask(0o002)  # a umask that lets the group and others read new files
    try:
        assert main(["decrypt", "--keyring", str(keys), str(src), "--out", str(tmp_path / "plain")]) == 0
        assert main(["decrypt", "--key", str(keys / "tenant.key"), str(tmp_path / "one.mp3.bin"),
                     "--out", str(tmp_path / "one.mp3")]) == 0  # fmt: skip
    finally:
        os.umask(old)
    written = [p for p in (tmp_path / "plain").rglob("*") if p.is_file()] + [tmp_path / "one.mp3"]
    assert len(written) > 10 and any(p.suffix == ".json" for p in written)  # decrypted media and copies
    assert {p.relative_to(tmp_path).as_posix(): stat.S_IMODE(p.stat().st_mode) for p in written} == {
        p.relative_to(tmp_path).as_posix(): 0o600 for p in written
    }


# ----------------------------------------------------------------- keyrings of password-protected keys

OLD_PASSWORD, NEW_PASSWORD = "0ld-upload-Pa55", "n3w-upload-Pa55"


@pytest.fixture(scope="module")
def uploads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two password-protected uploads made with openssl, each with its own password: the first as OpenSSL 3's
    `genrsa -aes256` writes it (encrypted PKCS#8), its replacement in the legacy format (Proc-Type header)."""
    d = tmp_path_factory.mktemp("uploads")
    subj = "/CN=Genesys Recording/C=US/ST=California/O=Genesys"
    openssl("genrsa", "-aes256", "-passout", f"pass:{OLD_PASSWORD}", "-out", "old.key", "2048", cwd=d)
    openssl("req", "-new", "-x509", "-key", "old.key", "-passin", f"pass:{OLD_PASSWORD}", "-out", "old.pem",
            "-days", "30", "-subj", subj, cwd=d)  # fmt: skip
    openssl("genrsa", "-out", "plain.key", "2048", cwd=d)
    openssl("rsa", "-aes256", "-traditional", "-in", "plain.key", "-passout", f"pass:{NEW_PASSWORD}",
            "-out", "new.key", cwd=d)  # fmt: skip
    openssl("req", "-new", "-x509", "-key", "plain.key", "-out", "new.pem", "-days", "3650", "-subj", subj, cwd=d)
    return d


def save_keyring(uploads: Path, folder: Path, passwords: dict[str, str | None]) -> dict[str, str]:
    """The keyring Secret's layout, saved as files: `<serial>.crt`, `<serial>.key`, `<serial>.password`;
    returns {upload name: serial}."""
    folder.mkdir()
    serials: dict[str, str] = {}
    for name, password in passwords.items():
        serial = str(cms.load_certificate(uploads / f"{name}.pem").serial_number)
        (folder / f"{serial}.crt").write_bytes((uploads / f"{name}.pem").read_bytes())
        (folder / f"{serial}.key").write_bytes((uploads / f"{name}.key").read_bytes())
        if password is not None:
            (folder / f"{serial}.password").write_text(password)
        serials[name] = serial
    return serials


def two_recordings(uploads: Path, folder: Path) -> Path:
    """One recording encrypted to the old upload, one to the new."""
    folder.mkdir()
    for name in ("old", "new"):
        cert = cms.load_certificate(uploads / f"{name}.pem")
        (folder / f"{name}.mp3.bin").write_bytes(cms.encrypt(DATA + name.encode(), cert))
    return folder


def test_a_keyring_of_replaced_uploads_opens_each_key_with_its_own_password(
    uploads: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ring = tmp_path / "keyring"
    save_keyring(uploads, ring, {"old": OLD_PASSWORD, "new": NEW_PASSWORD})
    src = two_recordings(uploads, tmp_path / "backup")
    assert main(["decrypt", "--keyring", str(ring), str(src), "--out", str(tmp_path / "plain")]) == 0
    captured = capsys.readouterr()
    assert "decrypted 2, copied 0, skipped 0, failed 0" in captured.out and captured.err == ""
    for name, password in (("old", OLD_PASSWORD), ("new", NEW_PASSWORD)):
        assert (tmp_path / "plain" / f"{name}.mp3").read_bytes() == DATA + name.encode()
        openssl("cms", "-decrypt", "-inform", "DER", "-binary", "-in", str(src / f"{name}.mp3.bin"),
                "-inkey", str(uploads / f"{name}.key"), "-passin", f"pass:{password}",
                "-out", str(tmp_path / f"{name}.openssl"), cwd=tmp_path)  # fmt: skip
        assert (tmp_path / f"{name}.openssl").read_bytes() == (tmp_path / "plain" / f"{name}.mp3").read_bytes()


def test_a_key_whose_password_is_wrong_is_named_and_the_other_still_decrypts(
    uploads: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ring = tmp_path / "keyring"
    serials = save_keyring(uploads, ring, {"old": "not-the-password", "new": NEW_PASSWORD})
    src = two_recordings(uploads, tmp_path / "backup")
    assert main(["decrypt", "--keyring", str(ring), str(src), "--out", str(tmp_path / "plain")]) == 1
    captured = capsys.readouterr()
    old = serials["old"]
    assert (
        f"warning: key {ring / old}.key (certificate serial {old}) cannot be opened: wrong password for the "
        f"private key (password from {old}.password)" in captured.err
    )
    assert "decrypted 1, copied 0, skipped 0, failed 1" in captured.out
    assert (tmp_path / "plain" / "new.mp3").read_bytes() == DATA + b"new"
    assert "failed: old.mp3.bin: no key in the keyring (1 keys) for recipients: issuer" in captured.err
    assert f"serial {old}; the keyring has its key, but key {ring / old}.key" in captured.err
    assert not (tmp_path / "plain" / "old.mp3").exists()
    assert "not-the-password" not in captured.out + captured.err


def test_the_common_password_only_opens_keys_without_their_own(
    uploads: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ring = tmp_path / "keyring"
    save_keyring(uploads, ring, {"old": None, "new": NEW_PASSWORD})
    (tmp_path / "common").write_text(OLD_PASSWORD + "\n")
    src = two_recordings(uploads, tmp_path / "backup")
    args = ["decrypt", "--keyring", str(ring), str(src), "--out", str(tmp_path / "plain")]
    assert main([*args, "--password-file", str(tmp_path / "common")]) == 0
    assert "decrypted 2" in capsys.readouterr().out
    # without it, the old key is named with what to do, and the new one still works
    assert main([*args, "--overwrite"]) == 1
    err = capsys.readouterr().err
    assert "the private key is encrypted; a password is needed: put it into" in err and ".password next to" in err


def test_a_damaged_large_file_leaves_no_output_and_the_others_are_decrypted(keys: Path, tmp_path: Path) -> None:
    """Decryption streams into a temporary file (the padding is checked last): a file damaged at its end
    leaves neither an output file nor a temporary one, and does not stop the rest of the tree."""
    src, dest = tmp_path / "src", tmp_path / "dest"
    src.mkdir()
    plain = os.urandom(9 << 20)
    (tmp_path / "plain").write_bytes(plain)
    openssl("cms", "-encrypt", "-binary", "-outform", "DER", "-aes256", "-in", "plain", "-out", "src/good.mp3.bin",
            str(keys / "tenant.pem"), cwd=tmp_path)  # fmt: skip
    damaged = bytearray((src / "good.mp3.bin").read_bytes())
    damaged[-17] ^= 0x01  # the last block's padding no longer checks
    (src / "bad.mp3.bin").write_bytes(bytes(damaged))
    assert main(["decrypt", "--keyring", str(keys), str(src), "--out", str(dest)]) == 1
    assert (dest / "good.mp3").read_bytes() == plain
    assert sorted(p.name for p in dest.iterdir()) == ["good.mp3"]  # no bad.mp3, no .bad.mp3.*.part
