"""The docs hold together: every relative link resolves inside the repository, and nothing points outside it.

Checked: README.md, docs/**/*.md, helm/cxbackup/README.md, bench/*.md and tests/reliability/README.md.
A link to a local file must name a file or folder of this repository (not a path outside it); a link
with a `#fragment` to a markdown file (or to a heading of the same page) must name a heading there.
Links inside code blocks and code spans are not links. Separately, no markdown or source file may
reference the design notes kept outside the repository or a machine's working folder.

The checker is tested on bad samples too, so that a passing run means something.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Built from parts so that this file does not contain what it looks for.
FORBIDDEN = ("../" + "shared", "/" + "work" + "/")
SOURCE_SUFFIXES = {
    ".md", ".py", ".sh", ".c", ".yaml", ".yml", ".toml", ".json", ".txt", ".tpl", ".cfg", ".ini", ".lock",
}  # fmt: skip
SOURCE_NAMES = {"Makefile", "Dockerfile", ".gitignore", "run"}
SKIP_DIRS = {".git", ".venv", "node_modules", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache",
             ".hypothesis", "build", "dist", "demo-work"}  # fmt: skip

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def markdown_files(repo: Path = REPO) -> list[Path]:
    files = [repo / "README.md", repo / "helm" / "cxbackup" / "README.md", repo / "tests" / "reliability" / "README.md"]
    files += sorted((repo / "docs").rglob("*.md")) + sorted((repo / "bench").glob("*.md"))
    return [f for f in files if f.is_file()]


def _prose_lines(text: str, *, blank_code: bool = True) -> Iterator[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with code spans blanked unless told otherwise."""
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line) if blank_code else line


def links(text: str) -> list[tuple[int, str]]:
    """(line number, target) of every inline link, image and reference definition in the prose."""
    found = []
    for number, line in _prose_lines(text):
        found += [(number, m.group(1)) for m in INLINE_LINK.finditer(line)]
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            found.append((number, definition.group(1)))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = text.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    out = set()
    for _, line in _prose_lines(path.read_text(encoding="utf-8"), blank_code=False):
        heading = HEADING.match(line)
        if not heading:
            continue
        base = slug(heading.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return frozenset(out)


def broken_links(path: Path, repo: Path = REPO) -> list[str]:
    """What is wrong with the local links of one markdown file (empty: nothing)."""
    problems = []
    for number, target in links(path.read_text(encoding="utf-8")):
        where = f"{path.relative_to(repo)}:{number}: {target}"
        if EXTERNAL.match(target):
            continue
        file_part, _, fragment = target.partition("#")
        if file_part.startswith("/"):
            problems.append(f"{where}: an absolute path; link relative to the file")
            continue
        resolved = (path.parent / file_part).resolve() if file_part else path.resolve()
        if resolved != repo.resolve() and repo.resolve() not in resolved.parents:
            problems.append(f"{where}: points outside the repository")
        elif not resolved.exists():
            problems.append(f"{where}: no such file")
        elif fragment and resolved.suffix == ".md" and fragment not in anchors(resolved):
            problems.append(f"{where}: no heading #{fragment} in {resolved.name}")
    return problems


def _repository_files(repo: Path) -> list[Path]:
    """Tracked and untracked-but-not-ignored files (git), or a walk without caches and virtualenvs."""
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout.decode()
        return [repo / name for name in out.split("\0") if name]
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired):
        return [
            p for p in repo.rglob("*") if p.is_file() and not SKIP_DIRS & set(p.relative_to(repo).parts[:-1])
        ]  # fmt: skip


def forbidden_references(repo: Path = REPO) -> list[str]:
    """`file:line: text` for every markdown or source line that points outside the repository."""
    problems = []
    for path in _repository_files(repo):
        if not path.is_file() or (path.suffix not in SOURCE_SUFFIXES and path.name not in SOURCE_NAMES):
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if any(bad in line for bad in FORBIDDEN):
                problems.append(f"{path.relative_to(repo)}:{number}: {line.strip()[:120]}")
    return problems


# ---- the repository ------------------------------------------------------------------------------


def test_the_checked_markdown_files_exist() -> None:
    names = {str(p.relative_to(REPO)) for p in markdown_files()}
    for expected in ("README.md", "docs/index.md", "helm/cxbackup/README.md", "tests/reliability/README.md"):
        assert expected in names


@pytest.mark.parametrize("path", markdown_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_local_link_resolves(path: Path) -> None:
    assert broken_links(path) == []


def test_nothing_points_outside_the_repository() -> None:
    assert forbidden_references() == []


def test_every_docs_page_is_reachable_from_the_readme() -> None:
    """Following links from README.md reaches every page under docs/."""
    seen: set[Path] = set()
    todo = [REPO / "README.md"]
    while todo:
        page = todo.pop()
        if page in seen:
            continue
        seen.add(page)
        for _, target in links(page.read_text(encoding="utf-8")):
            file_part = target.partition("#")[0]
            if file_part.endswith(".md") and not EXTERNAL.match(target):
                linked = (page.parent / file_part).resolve()
                if linked.is_file() and (REPO / "docs") in linked.parents:
                    todo.append(linked)
    unreachable = sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").rglob("*.md") if p.resolve() not in seen)
    assert unreachable == []


# ---- the checker can fail --------------------------------------------------------------------------


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "page.md").write_text("# A page\n\n## Some `code` here: yes\n\ntext\n", encoding="utf-8")
    return tmp_path


def test_good_links_pass(sample: Path) -> None:
    readme = sample / "README.md"
    readme.write_text(
        "# Top\n\n[page](docs/page.md), [section](docs/page.md#some-code-here-yes), [self](#top), "
        "[folder](docs/), [web](https://example.com/x), [ref][r]\n\n"
        "```\n[not a link](nowhere.md)\n```\n\nand `[code](nowhere.md)` too\n\n[r]: docs/page.md\n",
        encoding="utf-8",
    )
    assert broken_links(readme, sample) == []


@pytest.mark.parametrize(
    ("markdown", "problem"),
    [
        ("[gone](docs/missing.md)", "no such file"),
        ("[up](../outside.md)", "points outside the repository"),
        ("[abs](/etc/hosts)", "an absolute path"),
        ("[anchor](docs/page.md#no-such-heading)", "no heading #no-such-heading"),
        ("[self](#nowhere)", "no heading #nowhere"),
        ("[ref][r]\n\n[r]: docs/missing.md", "no such file"),
        ("![image](docs/missing.png)", "no such file"),
    ],
)
def test_bad_links_are_reported(sample: Path, markdown: str, problem: str) -> None:
    readme = sample / "README.md"
    readme.write_text(f"# Top\n\n{markdown}\n", encoding="utf-8")
    problems = broken_links(readme, sample)
    assert len(problems) == 1
    assert problem in problems[0]


def test_forbidden_references_are_reported(sample: Path) -> None:
    (sample / "docs" / "notes.md").write_text(f"see {FORBIDDEN[0]}/NOTES.md\n", encoding="utf-8")
    (sample / "tool.py").write_text(f'PATH = "{FORBIDDEN[1]}main"\n', encoding="utf-8")
    (sample / "picture.png").write_bytes(FORBIDDEN[1].encode())  # not a source file: not read
    found = forbidden_references(sample)
    assert sorted(p.split(":")[0] for p in found) == ["docs/notes.md", "tool.py"]
