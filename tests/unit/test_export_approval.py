"""A decrypting export pod runs only on what the operator approved: `--verify-subject` and
`--verify-certificate` make `cxbackup export run` refuse (exit 2, before the backup is opened or anything read)
a subject file or a certificate that changed after the operator checked them against the key owner's consent,
e.g. a Secret deleted and created again between the operator's check and the kubelet's mount."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cxbackup.certs.generate import generate_pair
from cxbackup.certs.validation import inspect_certificate
from cxbackup.cli import main
from cxbackup.export.approval import subject_digest, subject_matches

UID = "0b1f7c1e-4f5a-4c8e-9a51-2f2d6b6f0a11"
SUBJECT = b"phone:+1 647 838 9001\n"
NOW = datetime.now(UTC)
CERT = generate_pair("Requester", "US", "California", "Org", 30, now=NOW - timedelta(days=1))[1]
OTHER = generate_pair("Attacker", "US", "California", "Org", 30, now=NOW - timedelta(days=1))[1]


def _run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], subject: bytes, cert: bytes, *verify: str
) -> tuple[int, str]:
    (tmp_path / "subject").write_bytes(subject)
    (tmp_path / "tls.crt").write_bytes(cert)
    (tmp_path / "target").mkdir(exist_ok=True)  # never opened when a check fails
    result = tmp_path / "result.json"
    code = main(
        ["export", "run", "--type", "subjectAccess", "--subject-file", str(tmp_path / "subject"),
         "--backup-target", str(tmp_path / "target"), "--cert", str(tmp_path / "tls.crt"),
         "--store", str(tmp_path), "--result-file", str(result), *verify]
    )  # fmt: skip
    said = json.loads(result.read_text())["error"] + capsys.readouterr().err
    return code, said


def _fingerprint(pem: bytes) -> str:
    return inspect_certificate(pem, now=NOW).fingerprint


def test_a_subject_file_that_is_not_the_approved_one_stops_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    approved = subject_digest(SUBJECT, UID)
    code, said = _run(tmp_path, capsys, b"phone:+1 555 0100\n", CERT, "--verify-subject", approved,
                      "--verify-certificate", _fingerprint(CERT))  # fmt: skip
    assert code == 2
    assert "its content is not the subject the run was approved for (--verify-subject)" in said
    assert "555" not in said and "647" not in said  # neither subject is told


def test_a_certificate_that_is_not_the_approved_one_stops_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, said = _run(tmp_path, capsys, SUBJECT, OTHER, "--verify-subject", subject_digest(SUBJECT, UID),
                      "--verify-certificate", _fingerprint(CERT))  # fmt: skip
    assert code == 2
    assert f"fingerprint is {_fingerprint(OTHER)}, not {_fingerprint(CERT)} (--verify-certificate)" in said


def test_the_approved_subject_and_certificate_pass_the_checks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Past both checks, the run goes on to the backup (an empty folder here: no search index, exit 2)."""
    code, said = _run(tmp_path, capsys, SUBJECT, CERT, "--verify-subject", subject_digest(SUBJECT, UID),
                      "--verify-certificate", _fingerprint(CERT).lower())  # fmt: skip
    assert code == 2 and "index" in said, said
    assert "--verify" not in said


def test_verify_subject_needs_a_subject_file_and_applies_to_subject_access_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tls.crt").write_bytes(CERT)
    code = main(["export", "run", "--type", "contactHistory", "--last", "P1D", "--cert", str(tmp_path / "tls.crt"),
                 "--store", str(tmp_path), "--verify-subject", subject_digest(SUBJECT, UID)])  # fmt: skip
    assert code == 2 and "--verify-subject applies only to --type subjectAccess" in capsys.readouterr().err


@settings(max_examples=25, deadline=None)
@given(st.binary(max_size=64), st.binary(max_size=64))
def test_a_subject_digest_matches_exactly_its_own_bytes(approved: bytes, mounted: bytes) -> None:
    digest = subject_digest(approved, UID)
    assert subject_matches(mounted, digest) == (mounted == approved)
    assert not subject_matches(approved, digest.replace("scrypt:", "sha256:"))
