"""`cxbackup-dev emulator` as a user runs it: foreground process, ready file, printed facts, clean SIGTERM."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from cxbackup_dev.commands.emulator import parse_start

pytestmark = pytest.mark.integration


def test_emulator_command_serves_until_sigterm(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    config = tmp_path / "config.properties"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cxbackup_dev",
            "emulator",
            "--hours",
            "2",
            "--recordings-per-hour",
            "3",
            "--start",
            "2021-07-21",
            "--workdir",
            str(tmp_path / "work"),
            "--ready-file",
            str(ready),
            "--write-config",
            str(config),
            "--target-dir",
            str(tmp_path / "target"),
            "--key-out",
            str(tmp_path / "out" / "tenant.key"),
            "--cert-out",
            str(tmp_path / "out" / "tenant.pem"),
            "--error-rate",
            "0.0",
            "--latency-ms",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no ready file after 60 s"
            time.sleep(0.1)
        facts = json.loads(ready.read_text())
        assert ready.stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "out" / "tenant.key").stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "out" / "tenant.pem").read_bytes() == Path(facts["tenantCertPath"]).read_bytes()
        assert facts["recordings"] == 6 and facts["startMs"] == 1626825600000
        assert f"gwsUriPrefix={facts['gwsUriPrefix']}" in config.read_text()
        env = facts["env"]
        token = base64.b64encode(f"{env['GWS_USERNAME']}:{env['GWS_PASSWORD']}".encode()).decode()
        url = urlsplit(facts["gwsUriPrefix"])
        conn = http.client.HTTPConnection(url.netloc, timeout=10)
        conn.request(
            "GET",
            f"{url.path}/recordings?startTimeRange={facts['startMs']},{facts['endMs']}",
            headers={"Authorization": f"Basic {token}"},
        )
        assert json.load(conn.getresponse())["total"] == 6
        conn.close()
        assert facts["gwsUriPrefix"].startswith("http://127.0.0.1:")
        assert facts["s3Endpoint"].startswith("http://127.0.0.1:")
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert f"gwsUriPrefix  {facts['gwsUriPrefix']}" in out
    assert f"export AWS_SECRET_ACCESS_KEY={env['AWS_SECRET_ACCESS_KEY']}" in out
    assert f"export AWS_ENDPOINT_URL={facts['s3Endpoint']}" in out
    assert "stopping" in out
    with pytest.raises(OSError):  # nothing listens any more
        socket.create_connection((url.hostname or "", url.port or 0), timeout=5).close()


def test_emulator_command_takes_credentials_from_env_without_printing_them(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    env = {
        **os.environ,
        "GWS_USERNAME": "demo@tenant",
        "GWS_PASSWORD": "pw-from-env",
        "AWS_ACCESS_KEY_ID": "AKIADEMO000000000001",
        "AWS_SECRET_ACCESS_KEY": "secret-from-env",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cxbackup_dev",
            "emulator",
            "--hours",
            "1",
            "--recordings-per-hour",
            "1",
            "--media",
            "none",
            "--workdir",
            str(tmp_path / "w"),
            "--ready-file",
            str(ready),
            "--credentials-from-env",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert json.loads(ready.read_text())["env"]["AWS_ACCESS_KEY_ID"] == "AKIADEMO000000000001"
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "pw-from-env" not in out and "secret-from-env" not in out


def test_parse_start_forms() -> None:
    now = datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC)
    assert parse_start("now", now=now) == datetime(2024, 5, 6, 7, tzinfo=UTC)
    assert parse_start("now-36h", now=now) == datetime(2024, 5, 4, 19, tzinfo=UTC)
    assert parse_start("now-2d", now=now) == datetime(2024, 5, 4, 7, tzinfo=UTC)
    assert parse_start("2021-07-21") == datetime(2021, 7, 21, tzinfo=UTC)
    assert parse_start("2021-07-21T16:49Z") == datetime(2021, 7, 21, 16, 49, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_start("yesterday")
