"""The time-per-tier table printed at the end of a run (tests/timing.py): what it sums and how it ranks."""

from __future__ import annotations

import pytest

from tests.timing import OTHER, aggregate, render, tier_of


@pytest.mark.parametrize(
    ("nodeid", "tier"),
    [
        ("tests/unit/test_cli.py::test_help", "unit"),
        ("tests/unit/controller/test_pod_limits.py::test_x[a/b]", "unit"),
        ("tests/integration/test_helm.py::test_lint", "integration"),
        ("tests/security/test_admission.py::test_forged", "security"),
        ("tests/e2e/test_pod_failures.py::test_kubelet", "e2e"),
        ("tests/reliability/test_faults.py::test_throttle", "reliability"),
        ("tests/test_top_level.py::test_x", OTHER),
        ("bench/test_x.py::test_y", OTHER),
        ("tests/unitary/test_x.py::test_y", OTHER),
    ],
)
def test_the_tier_is_the_folder_under_tests(nodeid: str, tier: str) -> None:
    assert tier_of(nodeid) == tier


def test_setup_call_and_teardown_are_summed_per_test_and_per_tier() -> None:
    phases = [
        ("tests/integration/test_helm.py::test_a", "setup", 30.0),  # the session's control plane starts here
        ("tests/integration/test_helm.py::test_a", "call", 2.0),
        ("tests/integration/test_helm.py::test_a", "teardown", 0.5),
        ("tests/integration/test_helm.py::test_b", "setup", 0.25),
        ("tests/integration/test_helm.py::test_b", "call", 4.0),
        ("tests/integration/test_helm.py::test_b", "teardown", 10.0),  # and stops here
        ("tests/unit/test_cli.py::test_c", "setup", 0.01),
        ("tests/unit/test_cli.py::test_c", "call", 0.2),
        ("tests/unit/test_cli.py::test_c", "teardown", 0.01),
        ("tests/e2e/test_pod_failures.py::test_d", "setup", 100.0),  # skipped in its setup: only setup ran
    ]
    timing = aggregate(phases)
    assert list(timing.tiers) == ["unit", "integration", "e2e"]  # the order of the tiers, not of the run
    assert timing.tiers["integration"] == (2, pytest.approx(46.75))
    assert timing.tiers["unit"] == (1, pytest.approx(0.22))
    assert timing.tiers["e2e"] == (1, pytest.approx(100.0))
    assert timing.total == pytest.approx(146.97)
    assert [(t.nodeid.rsplit("::", 1)[1], t.tier, round(t.seconds, 2)) for t in timing.slowest] == [
        ("test_d", "e2e", 100.0),
        ("test_a", "integration", 32.5),
        ("test_b", "integration", 14.25),
        ("test_c", "unit", 0.22),
    ]


def test_only_the_ten_slowest_are_listed_and_ties_keep_a_stable_order() -> None:
    phases = [(f"tests/unit/test_m.py::test_{i:02d}", "call", float(i % 12)) for i in range(30)]
    timing = aggregate(phases)
    assert timing.tiers == {"unit": (30, pytest.approx(sum(i % 12 for i in range(30))))}
    assert len(timing.slowest) == 10
    assert [t.seconds for t in timing.slowest] == [11, 11, 10, 10, 9, 9, 8, 8, 7, 7]
    assert [t.nodeid[-2:] for t in timing.slowest[:2]] == ["11", "23"]  # equal times: by node id
    assert len(aggregate(phases, top=3).slowest) == 3


def test_phases_other_than_setup_call_and_teardown_are_not_counted() -> None:
    timing = aggregate([("tests/unit/t.py::a", "call", 1.0), ("tests/unit/t.py::a", "collect", 50.0)])
    assert timing.tiers == {"unit": (1, 1.0)}


def test_the_table_names_every_tier_that_ran_the_total_and_the_slowest_with_their_tier() -> None:
    timing = aggregate(
        [
            ("tests/unit/test_cli.py::test_c", "call", 0.4),
            ("tests/e2e/test_pod_failures.py::test_kubelet", "setup", 75.0),
            ("tests/e2e/test_pod_failures.py::test_kubelet", "call", 61.0),
        ]
    )
    lines = render(timing)
    assert lines[0].split() == ["tier", "tests", "time"]
    assert lines[1].split() == ["unit", "1", "0.40", "s"]
    assert lines[2].split() == ["e2e", "1", "2", "min", "16", "s"]
    assert lines[3].split() == ["total", "2", "2", "min", "16", "s"]  # 136.4 s
    assert lines[5] == "2 slowest (setup + call + teardown):"
    assert lines[6].split() == ["2", "min", "16", "s", "e2e", "tests/e2e/test_pod_failures.py::test_kubelet"]
    assert lines[7].split() == ["0.40", "s", "unit", "tests/unit/test_cli.py::test_c"]


def test_a_run_without_tests_prints_no_table() -> None:
    assert render(aggregate([])) == []
