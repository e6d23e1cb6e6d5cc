"""The `helm` fixture (imported by tests/integration/conftest.py): the chart tests' helm binary.

helm is built from the Go module proxy by hack/build-helm.sh (cached) and run with its cache, config
and data dirs in a temp dir, not the user's.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from cxbackup_dev.localcluster.stack import build_helm, helm_env

__all__ = ["Helm", "helm"]

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Helm:
    """The helm binary, run with its cache/config/data dirs in a temp dir (not the user's)."""

    binary: str
    env: dict[str, str]

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [self.binary, *args], capture_output=True, text=True, check=False, timeout=120, env=self.env
        )
        if check:
            assert proc.returncode == 0, f"helm {' '.join(args)} failed:\n{proc.stderr}"
        return proc


@pytest.fixture(scope="module")
def helm(tmp_path_factory: pytest.TempPathFactory) -> Helm:
    """helm, built once by hack/build-helm.sh (a no-op when cached)."""
    return Helm(build_helm(), helm_env(tmp_path_factory.mktemp("helm-home")))
