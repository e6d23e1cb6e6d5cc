"""The chart's Prometheus alerts, unit-tested with `promtool test rules` against the rendered PrometheusRule.

helm renders templates/prometheusrule.yaml (files/alerts.yaml with the default `alerts` values;
cxbackup_dev.localcluster.prometheus.chart_rule_groups, which the Prometheus harness uses too); its
`spec` is written as a rules file next to copies of the promtool test files in data/alert-tests/,
which feed input series and expect exact alert labels and annotations at given times. promtool is
built from the Go module proxy by hack/build-promtool.sh (cached). Every alert of the chart must have
a case where it fires and one where it stays silent, so a new rule without tests fails here.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from cxbackup_dev.localcluster.prometheus import chart_rule_groups
from tests.integration.helm_fixtures import Helm

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "helm" / "cxbackup"
ALERT_TESTS = Path(__file__).resolve().parent / "data" / "alert-tests"
TEST_FILES = sorted(ALERT_TESTS.glob("*.yaml"))
RULES_NAME = "rules.yaml"  # what every test file's rule_files names


@pytest.fixture(scope="module")
def promtool() -> str:
    """promtool, built once by hack/build-promtool.sh (a no-op when cached)."""
    proc = subprocess.run(
        [str(REPO / "hack" / "build-promtool.sh")], stdout=subprocess.PIPE, text=True, check=False, timeout=1800
    )
    assert proc.returncode == 0, "hack/build-promtool.sh failed; see its output above"
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def rules(helm: Helm) -> dict[str, Any]:
    """The chart's PrometheusRule rendered with the default values, as a rules file (`groups`)."""
    return {"groups": chart_rule_groups(helm.run, CHART)}


@pytest.fixture(scope="module")
def rules_dir(rules: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the rendered rules file; test files are copied next to it."""
    path = tmp_path_factory.mktemp("alert-rules")
    (path / RULES_NAME).write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def alert_names(rules: dict[str, Any]) -> list[str]:
    return [rule["alert"] for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def load_tests(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(path.read_text())
    return doc


def promtool_test(
    promtool: str, rules_dir: Path, test_file: Path, text: str | None = None
) -> subprocess.CompletedProcess[str]:
    """`promtool test rules` of a test file (or of `text` under its name), copied next to the rules file."""
    target = rules_dir / test_file.name
    if text is None:
        shutil.copyfile(test_file, target)
    else:
        target.write_text(text)
    return subprocess.run(
        [promtool, "test", "rules", target.name],
        cwd=rules_dir,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


# ---- tests --------------------------------------------------------------------------------------
def test_promtool_checks_the_rendered_rules(promtool: str, rules: dict[str, Any], rules_dir: Path) -> None:
    proc = subprocess.run(
        [promtool, "check", "rules", "--lint=all", "--lint-fatal", RULES_NAME],
        cwd=rules_dir,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert proc.returncode == 0, f"promtool check rules failed:\n{proc.stdout}{proc.stderr}"
    assert f"SUCCESS: {len(alert_names(rules))} rules found" in proc.stdout, proc.stdout


def test_test_files_use_the_rendered_rules() -> None:
    assert TEST_FILES, f"no promtool test files in {ALERT_TESTS}"
    for path in TEST_FILES:
        doc = load_tests(path)
        assert doc["rule_files"] == [RULES_NAME], f"{path.name}: rule_files must be [{RULES_NAME}]"
        assert doc["tests"], f"{path.name} has no tests"


@pytest.mark.parametrize("test_file", TEST_FILES, ids=[p.stem for p in TEST_FILES])
def test_promtool_unit_tests(promtool: str, rules_dir: Path, test_file: Path) -> None:
    proc = promtool_test(promtool, rules_dir, test_file)
    assert proc.returncode == 0, f"promtool test rules {test_file.name} failed:\n{proc.stdout}{proc.stderr}"
    assert "SUCCESS" in proc.stdout, proc.stdout


def test_every_alert_fires_and_stays_silent_in_some_test(rules: dict[str, Any]) -> None:
    """Each alert has a case where it fires and one where it does not: a new rule without tests fails."""
    firing: set[str] = set()
    silent: set[str] = set()
    for path in TEST_FILES:
        for group in load_tests(path)["tests"]:
            for case in group.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else silent).add(case["alertname"])
    names = alert_names(rules)
    assert len(names) == len(set(names)), f"duplicate alert names: {names}"
    assert sorted(set(names) - firing) == [], "alerts without a test case where they fire"
    assert sorted(set(names) - silent) == [], "alerts without a test case where they stay silent"
    assert sorted((firing | silent) - set(names)) == [], "test cases of alerts the chart does not define"


def test_a_wrong_expectation_fails(promtool: str, rules_dir: Path) -> None:
    """The harness can fail: the same tests with one expected label changed make promtool exit non-zero."""
    source = ALERT_TESTS / "backups.yaml"
    doc = load_tests(source)
    expected = next(
        alert
        for group in doc["tests"]
        for case in group["alert_rule_test"]
        for alert in case.get("exp_alerts", [])
        if alert["exp_labels"].get("severity") == "warning"
    )
    expected["exp_labels"]["severity"] = "critical"
    wrong = source.with_name("wrong-severity.yaml")
    proc = promtool_test(promtool, rules_dir, wrong, text=yaml.safe_dump(doc, sort_keys=False))
    assert proc.returncode != 0, f"promtool accepted a wrong expected label:\n{proc.stdout}"
    assert 'severity="critical"' in proc.stdout + proc.stderr, proc.stdout + proc.stderr
