"""The reliability table: scenarios of the reliability and security suites record rows through the `row`
fixture; the table is printed at the end of the session (and written as markdown to $RELIABILITY_TABLE).
Loaded for every test by tests/conftest.py (`pytest_plugins`).

Each scenario is a test that fills a `Row` (tests/reliability/table.py) through the `row` fixture and then
asserts the row passed, so a failing scenario is both a failed test and a FAIL line in the table. A test that
fails before it recorded its row still gets a FAIL row (from its report).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pluggy
import pytest

from tests.reliability.table import Row, render_markdown

_SECURITY = Path(__file__).resolve().parent / "security"
"""The security suite's folder: its tests are rows of the table even without the `row` fixture."""
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
    if report.when != "call":
        return
    recorded = item.stash.get(_TEST_ROWS, [])
    if _SECURITY in Path(str(item.path)).parents and not recorded:
        # every attack of the security suite is a row, also the ones that record none themselves
        doc = (getattr(getattr(item, "function", None), "__doc__", None) or item.name).strip().splitlines()[0]
        if (callspec := getattr(item, "callspec", None)) is not None and callspec.id not in doc:
            doc = f"{doc} [{callspec.id}]"
        notes = "" if report.passed else str(call.excinfo.value).splitlines()[0][:160] if call.excinfo else "failed"
        row = Row(scenario=f"attack: {doc[:150]}", expected="refused", ok=report.passed, notes=notes, level="attack")
        item.config.stash[_ROWS].append(row)
        return
    if not report.failed or "row" not in getattr(item, "fixturenames", ()):
        return
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
