"""Running the tests on two xdist workers (tests/parallel.py): which tests go together, and that the reliability
table and the time per tier still see every worker's tests."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.parallel import NODE_GROUP, group_of, misplaced

pytest_plugins = ["pytester"]


@pytest.mark.parametrize(
    ("nodeid", "group"),
    [
        ("tests/e2e/test_backup_operator.py::test_a", NODE_GROUP),
        ("tests/reliability/test_tenant_attacks.py::test_b[x]", NODE_GROUP),
        ("tests/reliability/test_worker_faults.py::test_b[x]", "tests/reliability/test_worker_faults.py"),
        ("tests/demo/test_demo.py::test_c", NODE_GROUP),
        ("tests/integration/test_node.py::test_d", NODE_GROUP),
        ("tests/integration/test_image.py::test_e", NODE_GROUP),
        ("tests/integration/test_helm.py::test_g", "tests/integration/test_helm.py"),
        ("tests/security/test_paths.py::T::test_h[a/b]", "tests/security/test_paths.py"),
        ("tests/unit/test_cli.py::test_i", "tests/unit/test_cli.py"),
        ("tests/e2ealike/test_j.py::test_j", "tests/e2ealike/test_j.py"),
        ("tests/integration/test_node_extra.py::test_k", "tests/integration/test_node_extra.py"),
    ],
)
def test_tests_that_start_the_node_share_one_group_the_others_their_module(nodeid: str, group: str) -> None:
    assert group_of(nodeid) == group


def test_a_test_marked_for_the_node_outside_the_node_paths_is_refused_with_the_fix() -> None:
    assert misplaced("tests/e2e/test_a.py::t", {"e2e", "node"}) is None
    assert misplaced("tests/unit/test_a.py::t", {"parametrize"}) is None
    why = misplaced("tests/security/test_a.py::t", {"e2e", "integration"})
    assert why is not None and why.startswith("tests/security/test_a.py::t is marked e2e but")
    assert "NODE_PATHS" in why
    why = misplaced("tests/reliability/test_worker_faults.py::t", set(), {"tmp_path", "stack"})
    assert why is not None and "uses the fixture stack" in why
    assert misplaced("tests/reliability/test_operator_faults.py::t", {"e2e"}, {"stack"}) is None


def test_on_two_workers_node_tests_share_one_worker_and_rows_and_times_reach_the_summary(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest('pytest_plugins = ["tests.parallel", "tests.rows", "tests.timing"]\n')
    pytester.makeini("[pytest]\nmarkers =\n    node: starts the node\n    e2e: end to end\n    reliability_quick: q\n")
    record = textwrap.dedent(
        """
        import os, pathlib, pytest
        from tests.reliability.table import Row

        def mark(name):
            out = pathlib.Path(os.environ["WHERE"]) / name
            out.write_text(os.environ.get("PYTEST_XDIST_WORKER", "none"))
        """
    )
    tests = pytester.mkdir("tests")
    for sub in ("e2e", "integration", "unit"):
        (tests / sub).mkdir()
    (tests / "e2e" / "test_a.py").write_text(
        record
        + textwrap.dedent(
            """
            def test_e2e_one(row):
                mark("e2e_one")
                row(Row(scenario="scenario that passes", expected=1, ok=True))

            def test_e2e_two(row):
                mark("e2e_two")
                raise AssertionError("the scenario broke")
            """
        )
    )
    (tests / "integration" / "test_node.py").write_text(
        record + "\n".join(f"\n@pytest.mark.node\ndef test_node_{i}():\n    mark('node_{i}')\n" for i in range(6))
    )
    (tests / "integration" / "test_b.py").write_text(
        record + "\n".join(f"\ndef test_plain_{i}():\n    mark('plain_{i}')\n" for i in range(6))
    )
    (tests / "unit" / "test_c.py").write_text(
        record + "\n".join(f"\ndef test_unit_{i}():\n    mark('unit_{i}')\n" for i in range(20))
    )
    where = pytester.mkdir("where")
    env = {
        "WHERE": str(where),
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "devtools"), str(REPO / "operator")]),
    }
    for key, value in env.items():
        pytester._monkeypatch.setenv(key, value)
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "tests")
    result.assert_outcomes(passed=33, failed=1)
    seen = {p.name: p.read_text() for p in Path(where).iterdir()}
    assert len(seen) == 34
    node_workers = {seen[n] for n in ("e2e_one", "e2e_two", *(f"node_{i}" for i in range(6)))}
    assert len(node_workers) == 1 and node_workers <= {"gw0", "gw1"}
    assert len({seen[f"plain_{i}"] for i in range(6)}) == 1  # a module's tests on one worker
    assert len(set(seen.values())) == 2  # both workers ran tests
    out = result.stdout.str()
    # the table is printed by the controller, with the rows of the worker that ran them
    table = out.split("reliability table", 1)[1]
    assert "scenario that passes" in table and "PASS" in table
    assert "test_e2e_two" in table and "FAIL" in table and "the scenario broke" in table
    assert "1/2 scenarios pass." in table  # each row once
    timing = out.split("time per tier", 1)[1].splitlines()
    assert [line.split()[:2] for line in timing if line.split()[:1] in (["unit"], ["integration"], ["e2e"])] == [
        ["unit", "20"],
        ["integration", "12"],
        ["e2e", "2"],
    ]
    assert any(line.startswith("wall") and "on 2 workers" in line for line in timing)
    assert "@" not in "\n".join(line for line in timing if "tests/" in line)  # no group suffixes in the names
