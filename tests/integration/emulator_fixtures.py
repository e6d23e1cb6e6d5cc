"""pytest fixtures for the vendor-cloud emulator (imported by tests/integration/conftest.py).

- `emulator`: one started `Emulator` per test module, small data set (6 hours x 5 recordings/hour,
  30 % with screen recordings), no faults. Tests that change it (faults, extend, delete) should
  restore it or use `make_emulator`.
- `make_emulator(spec=None, faults=None, **kwargs)`: a factory for a fresh emulator in the test's
  tmp_path; everything it started is stopped after the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from cxbackup_dev.emulator import DatasetSpec, Emulator, FaultConfig

__all__ = ["SMALL_SPEC", "emulator", "make_emulator"]

SMALL_SPEC = DatasetSpec(seed=11, hours=6, recordings_per_hour=5, screen_fraction=0.3)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """A started emulator shared by a test module (small data set, no faults)."""
    with Emulator(SMALL_SPEC, tmp_path_factory.mktemp("emulator")) as emu:
        yield emu


@pytest.fixture
def make_emulator(tmp_path: Path) -> Iterator[Callable[..., Emulator]]:
    """Start emulators for one test: make_emulator(spec=None, faults=None, **Emulator kwargs)."""
    started: list[Emulator] = []

    def make(spec: DatasetSpec | None = None, faults: FaultConfig | None = None, **kwargs: Any) -> Emulator:
        emu = Emulator(spec or SMALL_SPEC, tmp_path / f"emulator-{len(started)}", faults, **kwargs)
        started.append(emu)
        emu.start()
        return emu

    yield make
    for emu in started:
        emu.stop()
