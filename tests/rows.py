"""The reliability table: scenarios of the reliability and security suites record rows through the `row`
fixture; the table is printed at the end of the session (and written as markdown to $RELIABILITY_TABLE).
Loaded for every test by tests/conftest.py (`pytest_plugins`).

Each scenario is a test that fills a `Row` (tests/reliability/table.py) through the `row` fixture and then
asserts the row passed, so a failing scenario is both a failed test and a FAIL line in the table. A test that
fails before it recorded its row still gets a FAIL row (from its report).

A test's rows travel on its report (`user_properties`), so that under pytest-xdist they reach the process that
prints the table (the workers run the tests, the controller prints).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pluggy
import pytest

from tests.reliability.table import Row, render_markdown

_SECURITY = Path(__file__).resolve().parent / "security"
"""The security suite's folder: its tests are rows of the table even without the `row` fixture."""
_TEST_ROWS = pytest.StashKey[list[Row]]()
_PROPERTY = "cxbackup-reliability-row"
"""The name under which a row travels in a report's `user_properties`."""
_TEST_PROPERTY = "cxbackup-reliability-row"
"""The name under which a row travels in a report's `user_properties`."""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "reliability_quick: a fast reliability scenario (run by make test)")
    config.addinivalue_line("markers", "reliability_full: a slow reliability scenario (make reliability only)")
    collector = _Collector()
    config.stash[_COLLECTOR] = collector
    config.pluginmanager.register(collector, "cxbackup-reliability-rows")


@pytest.fixture
def row(request: pytest.FixtureRequest) -> Iterator[Callable[[Row], Row]]:
    """`row(Row(...))` records a scenario's row (a test may record several)."""
    recorded: list[Row] = []
    request.node.stash[_TEST_ROWS] = recorded

    def record(r: Row) -> Row:
        recorded.append(r)
        return r

    yield record


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pluggy.Result[pytest.TestReport], None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call":
        return
    for row in _rows_of(item, call, report):
        report.user_properties.append((_PROPERTY, dataclasses.asdict(row)))


def _rows_of(item: pytest.Item, call: pytest.CallInfo[None], report: pytest.TestReport) -> list[Row]:
    recorded = item.stash.get(_TEST_ROWS, [])
    if _SECURITY in Path(str(item.path)).parents and not recorded:
        # every attack of the security suite is a row, also the ones that record none themselves
        doc = (getattr(getattr(item, "function", None), "__doc__", None) or item.name).strip().splitlines()[0]
        if (callspec := getattr(item, "callspec", None)) is not None and callspec.id not in doc:
            doc = f"{doc} [{callspec.id}]"
        notes = "" if report.passed else str(call.excinfo.value).splitlines()[0][:160] if call.excinfo else "failed"
        return [Row(scenario=f"attack: {doc[:150]}", expected="refused", ok=report.passed, notes=notes, level="attack")]
    if recorded or not report.failed or "row" not in getattr(item, "fixturenames", ()):
        return list(recorded)
    message = str(call.excinfo.value).splitlines()[0][:160] if call.excinfo else "failed"
    return [Row(scenario=item.name, expected="?", ok=False, notes=f"error: {message}")]


class _Collector:
    """The rows of the reports this process sees, in the order they arrive (under xdist the controller gets
    every worker's reports)."""

    def __init__(self) -> None:
        self.rows: list[Row] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when != "call":
            return  # the later reports of a test carry its properties again (they are the item's)
        for name, value in report.user_properties:
            if name == _PROPERTY and isinstance(value, dict):
                self.rows.append(Row(**value))


_COLLECTOR = pytest.StashKey[_Collector]()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    collector = config.stash.get(_COLLECTOR, None)
    rows = list(collector.rows) if collector is not None else []
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
