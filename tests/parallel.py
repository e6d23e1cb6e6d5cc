"""How `make test` and `make check` share the machine's cores: pytest-xdist runs the tests on two workers
(`-n 2`), and this plugin (loaded by tests/conftest.py) says which tests go together.

- Every test that starts the test node (containerd + kubelet) is in one group, `node`: one worker runs them
  one after the other, since a machine holds one node at a time (its cgroups, iptables chains and ports are
  fixed). They are the folders and modules of NODE_PATHS; a test marked `node` or `e2e`, or using the `stack`
  fixture, anywhere else is a collection error (it would run beside the node).
- Every other test goes with the tests of its module, so that a module's fixtures (an emulator, the security
  suite's installed chart) are set up once, on one worker.

The groups are xdist's "scopes" (its loadscope scheduler, largest first, so the node's long group starts at
once), chosen from the node id alone: the controller that schedules sees node ids, not markers.
Without xdist (`pytest` alone, `-n 0`) nothing here changes the run.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

import pytest

NODE_GROUP = "node"
NODE_PATHS = (
    "tests/e2e/",
    "tests/demo/",
    "tests/integration/test_node.py",
    "tests/integration/test_image.py",
    "tests/reliability/test_tenant_attacks.py",
    "tests/reliability/test_operator_faults.py",
    "tests/reliability/test_secrets.py",
    "tests/reliability/test_load.py",
)
"""Where the tests that start the node (or use a package's node, the `stack` fixture) live."""
NODE_MARKERS = ("node", "e2e")
NODE_FIXTURES = ("stack",)
"""The fixtures that start the node: the e2e and reliability packages' installed product."""


def group_of(nodeid: str) -> str:
    """The group of a test from its node id (`tests/<tier>/<module>.py::name`): `node` or its module."""
    path = nodeid.split("::", 1)[0].replace("\\", "/")
    return NODE_GROUP if path.startswith(NODE_PATHS) else path


def misplaced(nodeid: str, markers: Collection[str], fixtures: Collection[str] = ()) -> str | None:
    """Why a test that needs the node (a marker of NODE_MARKERS, a fixture of NODE_FIXTURES) cannot run where it
    is, or None."""
    needs = [f"marked {m}" for m in sorted(set(markers) & set(NODE_MARKERS))]
    needs += [f"uses the fixture {f}" for f in sorted(set(fixtures) & set(NODE_FIXTURES))]
    if needs and group_of(nodeid) != NODE_GROUP:
        return (
            f"{nodeid} is {' and '.join(needs)} but is not under {', '.join(NODE_PATHS)}: on two xdist workers it "
            "would start a second node beside the first; move it there or add its module to tests/parallel.py's "
            "NODE_PATHS"
        )
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problems = [
        p
        for item in items
        if (p := misplaced(item.nodeid, {m.name for m in item.iter_markers()}, set(getattr(item, "fixturenames", ()))))
    ]
    if problems:
        raise pytest.UsageError("\n".join(problems))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    from xdist.scheduler import LoadScopeScheduling

    class ByGroup(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return ByGroup(config, log)
