"""e2e fixtures: the operator and the pod runner on the session's control plane (per module, so no pod runner
outlives its tests), an emulator per test."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from cxbackup.emulator import DatasetSpec, Emulator
from cxbackup.localcluster.controlplane import ControlPlane
from cxbackup.localcluster.stack import LocalStack


@pytest.fixture(scope="module")
def stack(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(tmp_path_factory.mktemp("stack"), control_plane=control_plane) as s:
        yield s


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Emulator]:
    """Six hours of recordings up to the start of this hour, plus the hour in progress (future ones appear
    in windows as time passes)."""
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    spec = DatasetSpec(start=now - dt.timedelta(hours=6), hours=7, recordings_per_hour=4, seed=11, screen_fraction=0.25)
    with Emulator(spec, tmp_path / "emulator") as emu:
        yield emu
