"""e2e fixtures: an emulator per test, serving HTTPS with the stack's test CA, and the stack: the product on
a real node, installed in the hardened mode of docs/security.md (per namespace, https only, a private CA)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from cxbackup_dev.emulator import DatasetSpec, Emulator
from cxbackup_dev.localcluster.stack import LocalStack
from tests.conftest import installed_stack


@pytest.fixture
def emulator(tmp_path: Path, stack: LocalStack) -> Iterator[Emulator]:
    """Six hours of recordings up to the start of this hour, plus the hour in progress (future ones appear
    in windows as time passes)."""
    now = dt.datetime.now(dt.UTC).replace(minute=0, second=0, microsecond=0)
    spec = DatasetSpec(start=now - dt.timedelta(hours=6), hours=7, recordings_per_hour=4, seed=11, screen_fraction=0.25)
    with Emulator(spec, tmp_path / "emulator", tls=stack.test_ca) as emu:
        yield emu


@pytest.fixture(scope="package")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The product on a real node for the e2e tests (stopped, and the machine checked, after the last one)."""
    yield from installed_stack(tmp_path_factory, hardened=True)
