"""The container images hack/build-image.sh builds, read from their OCI archives with tarfile.

build_image() runs the script (cached: a second call only prints the archive; the first one on a machine
debootstraps the base, about two minutes). The checks need no container runtime: the archive's index
names the image, its config says what the chart and the Dockerfile say (user 10001:10001, entrypoint
`cxbackup`, cmd `operator`), and its layers hold the venv with every package of requirements.lock at its
pinned version. As root, the layers are also unpacked and `cxbackup --help` is run in them with
`chroot --userspec=10001:10001`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from cxbackup_dev.localcluster.images import ImageBuildError, build_image

pytestmark = [pytest.mark.integration, pytest.mark.node]

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "requirements.lock"
VENV = "opt/cxbackup"
PYTHON = "3.11"  # Debian bookworm's; tests/unit/test_dockerfile.py ties it to the suite
SITE_PACKAGES = f"{VENV}/lib/python{PYTHON}/site-packages"


@dataclass
class OciArchive:
    """An OCI image layout in a tar: its index, manifest and config, and its layers' entries merged
    (a later layer's entry replaces an earlier one's; the images have no whiteouts)."""

    path: Path
    index: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    entries: dict[str, tarfile.TarInfo] = field(default_factory=dict)
    contents: dict[str, bytes] = field(default_factory=dict)

    @classmethod
    def read(cls, path: Path, wanted: set[str]) -> OciArchive:
        """Read `path`, keeping the contents of the regular files named in `wanted`."""
        image = cls(path)
        with tarfile.open(path) as outer:

            def blob(digest: str) -> tarfile.ExFileObject:
                algorithm, _, hexdigest = digest.partition(":")
                member = outer.extractfile(f"blobs/{algorithm}/{hexdigest}")
                assert member is not None, digest
                return member

            image.index = json.load(outer.extractfile("index.json"))  # type: ignore[arg-type]
            assert len(image.index["manifests"]) == 1, image.index
            image.manifest = json.load(blob(image.index["manifests"][0]["digest"]))
            image.config = json.load(blob(image.manifest["config"]["digest"]))
            for layer in image.manifest["layers"]:
                assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip", layer
                with tarfile.open(fileobj=blob(layer["digest"]), mode="r|gz") as tar:
                    for info in tar:
                        name = info.name.removeprefix("./").rstrip("/")
                        assert not Path(name).name.startswith(".wh."), f"unexpected whiteout {name}"
                        image.entries[name] = info
                        if name in wanted and info.isfile():
                            data = tar.extractfile(info)
                            assert data is not None
                            image.contents[name] = data.read()
        return image


def _built(kind: str) -> tuple[Path, str]:
    if os.geteuid() != 0:
        pytest.fail("building the image needs root (debootstrap, chroot): run the tests as root")
    try:
        return build_image(kind)
    except ImageBuildError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="module")
def cxbackup_image() -> OciArchive:
    archive, ref = _built("cxbackup")
    tag = ref.rpartition(":")[2]
    assert re.fullmatch(r"localhost/cxbackup:[0-9a-f]{12}", ref), ref
    assert archive.name == f"cxbackup-{tag}.oci.tar"
    return OciArchive.read(archive, {"etc/passwd", "etc/group", f"{VENV}/pyvenv.cfg"})


def _locked() -> dict[str, str]:
    """requirements.lock's pins, as normalised project name -> version."""
    pins = re.findall(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+) \\$", LOCK.read_text(), re.M)
    return {_normalise(name): version for name, version in pins}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


def test_the_index_names_the_image_for_ctr_import(cxbackup_image: OciArchive) -> None:
    tag = cxbackup_image.path.name.removeprefix("cxbackup-").removesuffix(".oci.tar")
    annotations = cxbackup_image.index["manifests"][0]["annotations"]
    assert annotations["io.containerd.image.name"] == f"localhost/cxbackup:{tag}"
    assert annotations["org.opencontainers.image.ref.name"] == f"localhost/cxbackup:{tag}"


def test_config_runs_cxbackup_operator_as_10001(cxbackup_image: OciArchive) -> None:
    config = cxbackup_image.config
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert config["config"]["User"] == "10001:10001"
    assert config["config"]["Entrypoint"] == ["cxbackup"]
    assert config["config"]["Cmd"] == ["operator"]
    assert config["config"]["WorkingDir"] == "/"
    path = dict(e.split("=", 1) for e in config["config"]["Env"])["PATH"]
    assert path.split(":")[0] == f"/{VENV}/bin"
    assert len(config["rootfs"]["diff_ids"]) == len(cxbackup_image.manifest["layers"]) == 2


def test_layers_hold_the_venv_with_the_locked_packages(cxbackup_image: OciArchive) -> None:
    entries = cxbackup_image.entries
    assert entries[f"{VENV}/bin/cxbackup"].isfile() and entries[f"{VENV}/bin/cxbackup"].mode & 0o111
    fetch = entries[f"{VENV}/bin/cxbackup-fetch"]  # the native media transfer, where the worker looks first
    assert fetch.isfile() and fetch.mode & 0o111 and fetch.uid == 0
    link = entries["usr/local/bin/cxbackup"]
    assert link.issym() and link.linkname == f"/{VENV}/bin/cxbackup"
    assert entries[f"usr/bin/python{PYTHON}"].isfile(), "the venv's python is the image's own"
    assert "home = /usr/bin" in cxbackup_image.contents[f"{VENV}/pyvenv.cfg"].decode()
    installed = {
        _normalise(m.group(1)): m.group(2)
        for name in entries
        if (m := re.fullmatch(rf"{SITE_PACKAGES}/([^/-]+)-([^/-]+)\.dist-info", name))
    }
    locked = _locked()
    assert {"kopf", "kubernetes", "boto3", "awscrt", "cryptography", "pydantic"} <= locked.keys()
    assert {name: installed.get(name) for name in locked} == locked
    # besides the lock: the project itself, and the venv's own pip and setuptools
    assert set(installed) - set(locked) == {"cxbackup", "pip", "setuptools"}
    # the product only: no development tools, no vendor-cloud emulator, no test cluster harness
    packages = {
        name.split("/")[len(SITE_PACKAGES.split("/"))] for name in entries if name.startswith(f"{SITE_PACKAGES}/")
    }
    assert "cxbackup_dev" not in packages and "moto" not in packages
    product = {
        name.split("/")[len(SITE_PACKAGES.split("/")) + 1]
        for name in entries
        if name.startswith(f"{SITE_PACKAGES}/cxbackup/") and name.count("/") > len(SITE_PACKAGES.split("/")) + 1
    }
    assert not product & {"emulator", "localcluster", "crdgen.py"}, product


def test_user_and_no_host_leftovers(cxbackup_image: OciArchive) -> None:
    passwd = cxbackup_image.contents["etc/passwd"].decode()
    assert re.search(r"^cxbackup:x:10001:10001:[^:]*:[^:]*:/usr/sbin/nologin$", passwd, re.M), passwd
    assert re.search(r"^cxbackup:x:10001:", cxbackup_image.contents["etc/group"].decode(), re.M)
    entries = cxbackup_image.entries
    assert not [n for n, i in entries.items() if i.ischr() or i.isblk()], "device nodes in the image"
    for leftover in ("etc/resolv.conf", "etc/hostname", "tmp/cxbackup-build", "root/.cache"):
        assert leftover not in entries
    assert not [n for n in entries if n.startswith("var/cache/apt/archives/") and n.endswith(".deb")]
    # the layers carry SOURCE_DATE_EPOCH, not the build's time, as the project's files' time
    assert {entries[n].mtime for n in entries if n.startswith(f"{VENV}/")} == {315532800}


def test_a_cached_build_only_prints_the_archive(cxbackup_image: OciArchive) -> None:
    before = cxbackup_image.path.stat()
    archive, ref = build_image("cxbackup")
    assert archive == cxbackup_image.path and ref.endswith(archive.name.removeprefix("cxbackup-")[:12])
    after = archive.stat()
    assert (after.st_ino, after.st_size) == (before.st_ino, before.st_size), "the cached archive was rewritten"


def test_cxbackup_runs_in_the_unpacked_image_as_10001(cxbackup_image: OciArchive, tmp_path: Path) -> None:
    assert shutil.which("chroot"), "chroot (coreutils) is missing"
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir()
    layout = tmp_path / "layout"
    layout.mkdir()
    subprocess.run(["tar", "-C", str(layout), "-xf", str(cxbackup_image.path)], check=True)
    for layer in cxbackup_image.manifest["layers"]:
        blob = layout / "blobs" / "sha256" / layer["digest"].partition(":")[2]
        subprocess.run(["tar", "-C", str(rootfs), "--numeric-owner", "-xzf", str(blob)], check=True)
    env = {"PATH": dict(e.split("=", 1) for e in cxbackup_image.config["config"]["Env"])["PATH"], "HOME": "/"}
    run = ["chroot", "--userspec=10001:10001", str(rootfs)]
    proc = subprocess.run([*run, "cxbackup", "--help"], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "operator" in proc.stdout
    imports = "import awscrt, boto3, cryptography, kopf, kubernetes, pydantic, yaml, cxbackup.cli"
    proc = subprocess.run([*run, "python", "-c", imports], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # the worker finds the native media transfer and speaks its protocol
    check = "from cxbackup.backup.nativefetch import find_fetcher, check_protocol; check_protocol(find_fetcher())"
    proc = subprocess.run([*run, "python", "-c", check], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # the search index's text search needs SQLite with FTS5
    fts5 = "import sqlite3; sqlite3.connect(':memory:').execute('CREATE VIRTUAL TABLE t USING fts5(x)')"
    proc = subprocess.run([*run, "python", "-c", fts5], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_pause_image_is_one_static_binary() -> None:
    archive, ref = _built("pause")
    assert re.fullmatch(r"localhost/pause:[0-9a-f]{12}", ref), ref
    image = OciArchive.read(archive, {"pause"})
    assert image.index["manifests"][0]["annotations"]["io.containerd.image.name"] == ref
    assert image.config["config"]["Entrypoint"] == ["/pause"]
    assert image.config["config"]["User"] == "65535:65535"
    assert set(image.entries) == {"pause"}
    binary = image.contents["pause"]
    assert binary[:4] == b"\x7fELF" and image.entries["pause"].mode & 0o111
    assert not {"PT_INTERP", "PT_DYNAMIC"} & _segments(binary), "the pause binary must be static: the image has no libc"


def _segments(elf: bytes) -> set[str]:
    """The kinds of program header an ELF64 little-endian file has, of those that make it dynamic."""
    assert elf[4] == 2 and elf[5] == 1, "ELF64, little-endian"
    phoff = int.from_bytes(elf[0x20:0x28], "little")
    phentsize = int.from_bytes(elf[0x36:0x38], "little")
    phnum = int.from_bytes(elf[0x38:0x3A], "little")
    names = {2: "PT_DYNAMIC", 3: "PT_INTERP"}
    kinds = (int.from_bytes(elf[phoff + i * phentsize : phoff + i * phentsize + 4], "little") for i in range(phnum))
    return {names[k] for k in kinds if k in names}
