"""The reliability suite: fault, bad-input, secret and load scenarios whose outcomes form one table.

How to run:

    .venv/bin/pytest tests/reliability                          # every scenario, prints the table
    .venv/bin/pytest tests/reliability -m reliability_quick     # the fast subset (also part of `make test`)
    RELIABILITY_TABLE=reliability.md .venv/bin/pytest tests/reliability   # also write the table (markdown)

Each scenario is a test that fills a `Row` (tests/reliability/table.py) through the `row` fixture and then
asserts the row passed (the fixture, the markers and the table printer are in tests/rows.py, shared with the
security suite in tests/security).

Markers: `reliability_quick` (fast, worker-level, run by `make test`), `reliability_full` (operator-level,
secrets, load: deselect with `-m "not reliability_full"`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from cxbackup_dev.emulator import DatasetSpec, Emulator, FaultConfig
from cxbackup_dev.localcluster.stack import LocalStack
from tests.conftest import installed_stack

SMALL = DatasetSpec(seed=23, hours=5, recordings_per_hour=8, screen_fraction=0.3)


@pytest.fixture(scope="module")
def shared_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """One emulator per module (5 hours x 8 recordings, 30 % with screen recordings); tests reset its faults."""
    with Emulator(SMALL, tmp_path_factory.mktemp("emulator")) as emu:
        yield emu


@pytest.fixture
def emu(shared_emulator: Emulator) -> Iterator[Emulator]:
    """The module's emulator with no faults before and after the test."""
    shared_emulator.set_faults(FaultConfig())
    yield shared_emulator
    shared_emulator.set_faults(FaultConfig())


@pytest.fixture
def op_emu(tmp_path: Path) -> Iterator[Emulator]:
    """Six hours of recordings up to this hour plus the hour in progress (24 in a maxAge=1 window)."""
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    spec = DatasetSpec(start=now - dt.timedelta(hours=6), hours=7, recordings_per_hour=4, seed=17, screen_fraction=0.25)
    with Emulator(spec, tmp_path / "emulator") as emu:
        yield emu


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The product on a real node for the reliability tests (stopped, and the machine checked, after the last one)."""
    yield from installed_stack(tmp_path_factory)
