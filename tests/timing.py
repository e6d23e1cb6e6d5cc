"""Where a test run's time went: at the end of every run, the time per tier (setup + call + teardown of its
tests, summed by the folder under tests/) and the ten slowest tests. Loaded for every test by tests/conftest.py
(`pytest_plugins`).

A fixture shared by several tests (the session's control plane, a package's node) is set up in the setup of
the first test that uses it and torn down in the teardown of the last one: its time counts there. Time outside
tests (collection, the lint steps of make) is not counted; the sum of the tiers is the tests' share of the
wall time.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

TIERS = ("unit", "integration", "security", "e2e", "demo", "reliability")
"""The tiers, each a folder under tests/, in the order `make test` runs them."""
OTHER = "other"
"""Tests outside those folders."""
SLOWEST = 10


def tier_of(nodeid: str) -> str:
    """The tier of a test from its node id (`tests/<tier>/...::test`), `other` when it is in none."""
    parts = nodeid.split("::", 1)[0].replace("\\", "/").split("/")
    if len(parts) >= 3 and parts[0] == "tests" and parts[1] in TIERS:
        return parts[1]
    return OTHER


@dataclass(frozen=True)
class TestTime:
    nodeid: str
    tier: str
    seconds: float


@dataclass(frozen=True)
class Timing:
    tiers: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Tier -> (tests, seconds), in the order of TIERS (then `other`), only the tiers that ran."""
    slowest: list[TestTime] = field(default_factory=list)
    """The slowest tests, slowest first."""

    @property
    def total(self) -> float:
        return sum(seconds for _, seconds in self.tiers.values())


def aggregate(phases: Iterable[tuple[str, str, float]], top: int = SLOWEST) -> Timing:
    """Sums `(nodeid, phase, seconds)` per test (its setup, call and teardown) and per tier."""
    per_test: dict[str, float] = {}
    for nodeid, phase, seconds in phases:
        if phase in ("setup", "call", "teardown"):
            per_test[nodeid] = per_test.get(nodeid, 0.0) + seconds
    tiers: dict[str, list[float]] = {}
    for nodeid, seconds in per_test.items():
        counts = tiers.setdefault(tier_of(nodeid), [0, 0.0])
        counts[0] += 1
        counts[1] += seconds
    order = [*TIERS, OTHER]
    ordered = {t: (int(tiers[t][0]), tiers[t][1]) for t in order if t in tiers}
    tests = [TestTime(nodeid, tier_of(nodeid), seconds) for nodeid, seconds in per_test.items()]
    tests.sort(key=lambda t: (-t.seconds, t.nodeid))
    return Timing(tiers=ordered, slowest=tests[:top])


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    if minutes:
        return f"{minutes} min {rest:02d} s"
    return f"{seconds:.2f} s" if seconds < 10 else f"{seconds:.1f} s"


def render(timing: Timing, wall: float | None = None, workers: int = 0) -> list[str]:
    """The table's lines: one per tier and the total, the wall time when given (with `workers` xdist workers
    the tiers overlap, so their sum exceeds it), then the slowest tests with their tier."""
    if not timing.tiers:
        return []
    lines = [f"{'tier':<13} {'tests':>6} {'time':>12}"]
    for tier, (count, seconds) in timing.tiers.items():
        lines.append(f"{tier:<13} {count:>6} {_duration(seconds):>12}")
    lines.append(f"{'total':<13} {sum(c for c, _ in timing.tiers.values()):>6} {_duration(timing.total):>12}")
    if wall is not None:
        on = f" on {workers} workers" if workers > 1 else ""
        lines.append(f"{'wall':<13} {'':>6} {_duration(wall):>12}  (collection included{on})")
    lines.append("")
    lines.append(f"{len(timing.slowest)} slowest (setup + call + teardown):")
    lines += [f"{_duration(t.seconds):>12}  {t.tier:<12} {t.nodeid}" for t in timing.slowest]
    return lines


class _Recorder:
    """Collects the duration of every phase of every test (its `pytest_runtest_logreport` hook)."""

    def __init__(self) -> None:
        self.phases: list[tuple[str, str, float]] = []
        self.started = time.monotonic()

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.phases.append((report.nodeid, report.when or "", report.duration))


_RECORDER = pytest.StashKey[_Recorder]()


def pytest_configure(config: pytest.Config) -> None:
    recorder = _Recorder()
    config.stash[_RECORDER] = recorder
    config.pluginmanager.register(recorder, "cxbackup-timing-recorder")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int, config: pytest.Config) -> None:
    recorder = config.stash.get(_RECORDER, None)
    if recorder is None:
        return
    workers = getattr(config.option, "numprocesses", 0)
    workers = workers if isinstance(workers, int) else 0
    lines = render(aggregate(recorder.phases), wall=time.monotonic() - recorder.started, workers=workers)
    if not lines:
        return
    terminalreporter.write_sep("=", "time per tier")
    for line in lines:
        terminalreporter.write_line(line)
