"""`cxbackup export`: what a failing command reports (result file, stderr) never holds a secret."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cxbackup.certs.generate import generate_pair
from cxbackup.cli import main

PASSWORD = "pa/ss#w0rd?@:x"


def test_a_run_that_fails_before_it_starts_reports_no_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _, cert_pem = generate_pair("Rec", "US", "California", "Org", 30, now=datetime.now(UTC))  # valid now
    cert_path = tmp_path / "tls.crt"
    cert_path.write_bytes(cert_pem)
    monkeypatch.setenv("GWS_USERNAME", "gws")
    monkeypatch.setenv("GWS_PASSWORD", PASSWORD)
    result_file = tmp_path / "result.json"
    code = main(
        ["export", "run", "--type", "contactHistory", "--last", "P1D", "--cert", str(cert_path),
         "--api-uri-prefix", "https://vendor.example/api/v2",
         "--store", f"https://gws:{PASSWORD}@store.example/exports", "--result-file", str(result_file)]
    )  # fmt: skip
    assert code == 2
    reported = json.loads(result_file.read_text())["error"] + capsys.readouterr().err
    assert "store must be a directory" in reported
    assert PASSWORD not in reported and "pa/ss" not in reported
