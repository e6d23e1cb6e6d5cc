"""The reliability suite: fault, bad-input, secret and load scenarios whose outcomes form one table.

How to run:

    .venv/bin/pytest tests/reliability                          # every scenario, prints the table
    .venv/bin/pytest tests/reliability -m reliability_quick     # the fast subset (also part of `make test`)
    RELIABILITY_TABLE=reliability.md .venv/bin/pytest tests/reliability   # also write the table (markdown)

Each scenario is a test that fills a `Row` (tests/reliability/table.py) through the `row` fixture and then
asserts the row passed, so a failing scenario is both a failed test and a FAIL line in the table. A test that
fails before it recorded its row still gets a FAIL row (from its report). The table is printed by
`pytest_terminal_summary` at the end of the session.

Markers: `reliability_quick` (fast, worker-level, run by `make test`), `reliability_full` (operator-level,
secrets, load: deselect with `-m "not reliability_full"`).
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pluggy
import pytest

from cxbackup_dev.emulator import DatasetSpec, Emulator, FaultConfig
from cxbackup_dev.localcluster.stack import LocalStack
from tests.conftest import installed_stack
from tests.reliability.table import Row, render_markdown

_ROWS = pytest.StashKey[list[Row]]()
_TEST_ROWS = pytest.StashKey[list[Row]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability_quick: a fast reliability scenario (run by make test)")
    config.addinivalue_line("markers", "reliability_full: a slow reliability scenario (make reliability only)")
    config.stash[_ROWS] = []


@pytest.fixture
def row(request: pytest.FixtureRequest) -> Iterator[Callable[[Row], Row]]:
    """`row(Row(...))` records a scenario's row (a test may record several)."""
    recorded: list[Row] = []
    request.node.stash[_TEST_ROWS] = recorded

    def record(r: Row) -> Row:
        recorded.append(r)
        request.config.stash[_ROWS].append(r)
        return r

    yield record


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or not report.failed or "row" not in getattr(item, "fixturenames", ()):
        return
    recorded = item.stash.get(_TEST_ROWS, [])
    if not recorded:
        message = str(call.excinfo.value).splitlines()[0][:160] if call.excinfo else "failed"
        item.config.stash[_ROWS].append(Row(scenario=item.name, expected="?", ok=False, notes=f"error: {message}"))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    rows = config.stash.get(_ROWS, [])
    if not rows:
        return
    order = {"worker": 0, "operator": 1, "bad-input": 2, "secrets": 3, "attack": 4, "load": 5}
    rows = sorted(rows, key=lambda r: order.get(r.level, 9))  # stable: scenarios keep their order in a group
    table = render_markdown(rows, title="Reliability")
    terminalreporter.write_sep("=", "reliability table")
    terminalreporter.write(table)
    out = os.environ.get("RELIABILITY_TABLE")
    if out:
        Path(out).write_text(table, encoding="utf-8")
        terminalreporter.write_line(f"reliability table written to {out}")


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
