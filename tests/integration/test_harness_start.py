"""A control plane whose start fails half-way stops the processes it had started, then raises the error that
says why (no node, no Kubernetes binaries: stand-ins in a temporary bin folder, etcd answering its health check
on loopback, kube-apiserver failing at once)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from cxbackup_dev.localcluster.controlplane import ControlPlane, ControlPlaneError

pytestmark = pytest.mark.integration

FAKE_ETCD = f"""#!{sys.executable}
import http.server, sys
port = int(next(a for a in sys.argv if a.startswith("--listen-client-urls=")).rsplit(":", 1)[1])
class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b'{{"health":"true"}}')
    def log_message(self, *args):
        pass
http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
"""
FAKE_APISERVER = f"""#!{sys.executable}
import sys
print("E1207 run.go:72] error: injected failure", file=sys.stderr)
sys.exit(1)
"""


class RecordingControlPlane(ControlPlane):
    """Keeps every process it spawned, to look at them after the failed start."""

    spawned: dict[str, subprocess.Popen[bytes]]

    def _spawn(self, name: str, args: list[str]) -> None:
        super()._spawn(name, args)
        self.spawned = {**getattr(self, "spawned", {}), name: self._procs[name]}


def test_a_control_plane_whose_apiserver_fails_stops_the_etcd_it_started(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("etcd", FAKE_ETCD), ("kube-apiserver", FAKE_APISERVER)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    cp = RecordingControlPlane(workdir=tmp_path / "cp", bin_dir=bin_dir)
    with pytest.raises(ControlPlaneError, match=r"^kube-apiserver exited with code 1:\n.*injected failure"):
        cp.start()
    etcd = cp.spawned["etcd"]
    assert etcd.returncode == -signal.SIGTERM  # it was running (it answered) and was stopped, not left behind
    assert set(cp.spawned) == {"etcd", "kube-apiserver"}  # the controller manager was never started
    assert cp._procs == {}
