"""Paths a tenant, another user or an archive can plant, on real folders, the real worker and the real API
server: nothing is ever written through a symbolic link out of where it belongs, a subPath is a plain
relative folder, and every file of a backup holding personal data is owner-only whatever the umask."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from cxbackup.backup.errors import UnsafePathError
from cxbackup.backup.targets import LocalDirectoryTarget
from cxbackup.certs import cms
from cxbackup.export.names import artifact_name
from cxbackup.export.store import ArtifactInfo, DirectoryStore
from cxbackup_dev.emulator import DatasetSpec, Emulator
from cxbackup_dev.localcluster.controlplane import ControlPlane
from tests.resources import example, kubectl_apply
from tests.unit.test_export_download import FILES, key_and_cert, make_zip

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SPEC = DatasetSpec(seed=31, hours=3, recordings_per_hour=4, screen_fraction=0.5)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    with Emulator(SPEC, tmp_path_factory.mktemp("emulator")) as emu:
        yield emu


def download(cfg: Path, env: Mapping[str, str], *, umask: int = 0o022) -> subprocess.CompletedProcess[str]:
    """`cxbackup download` as the worker pod runs it, in its own process with the given umask."""
    return subprocess.run(
        [sys.executable, "-m", "cxbackup", "download", "-config", str(cfg), "--progress", "none"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        preexec_fn=lambda: os.umask(umask),
    )


def everything_under(path: Path) -> list[Path]:
    return sorted(path.rglob("*")) if path.exists() else []


# ---------------------------------------------------------------------------------------- backup target


def test_a_target_folder_that_is_a_symbolic_link_is_refused(emulator: Emulator, tmp_path: Path) -> None:
    """targetDir (the PVC's subPath in a pod) replaced by a link to somewhere else: the run writes nothing
    anywhere and names the link."""
    elsewhere = tmp_path / "other-tenant"
    elsewhere.mkdir()
    (tmp_path / "volume").mkdir()
    target = tmp_path / "volume" / "contact-center"
    target.symlink_to(elsewhere)
    cfg = emulator.write_config(tmp_path / "config.properties", target_dir=target, mediaTransfer="boto3")
    proc = download(cfg, emulator.env())
    assert proc.returncode != 0
    assert "is a symbolic link" in proc.stderr and str(target) in proc.stderr, proc.stderr[-2000:]
    assert everything_under(elsewhere) == []


def test_a_folder_on_the_target_path_linked_by_another_process_is_refused(emulator: Emulator, tmp_path: Path) -> None:
    """Another pod of the same user on the volume replaced a folder of the subPath (volume/a of
    volume/a/recordings) by a link to another tenant's folder: refused before anything is created."""
    volume = tmp_path / "volume"
    (volume / "b").mkdir(parents=True)
    subprocess.run(["ln", "-s", str(volume / "b"), str(volume / "a")], check=True)  # planted by another process
    cfg = emulator.write_config(tmp_path / "config.properties", target_dir=volume / "a" / "recordings")
    proc = download(cfg, emulator.env())
    assert proc.returncode != 0
    assert f"passes through {volume / 'a'}, a symbolic link" in proc.stderr, proc.stderr[-2000:]
    assert everything_under(volume / "b") == []


def test_a_folder_of_the_tree_replaced_by_a_link_while_a_run_goes_on_is_never_written_through(
    tmp_path: Path,
) -> None:
    """The target already resolved a recording's folder; another process then moves that folder away and
    puts a link to somewhere outside the target in its place: the next file of that folder is not written
    outside (the write fails), and what the first writer wrote stays where it was written."""
    root, outside = tmp_path / "target", tmp_path / "outside"
    outside.mkdir()
    target = LocalDirectoryTarget(root)
    first = target.open_writer("2024/05/10/12/REC/a.json")
    first.write(b"{}")
    first.commit()
    (root / "2024").rename(tmp_path / "moved")
    subprocess.run(["ln", "-s", str(outside), str(root / "2024")], check=True)
    with pytest.raises(UnsafePathError, match="outside the target"):
        writer = target.open_writer("2024/05/10/12/REC/b.json")
        writer.write(b"{}")
        writer.commit()
    assert everything_under(outside) == []
    assert (tmp_path / "moved/05/10/12/REC/a.json").read_bytes() == b"{}"


@pytest.mark.parametrize("transfer", ["native", "crt", "boto3"])
def test_every_file_and_folder_of_a_backup_is_owner_only_whatever_the_umask(
    emulator: Emulator, tmp_path: Path, transfer: str
) -> None:
    """A real run against the emulator with a permissive umask (0000): media, metadata, the holds (a phone
    number), the state file, the lock and the search index are 0600, every folder 0700 (os.stat)."""
    target = tmp_path / "target"
    cfg = emulator.write_config(
        tmp_path / "config.properties", target_dir=target, mediaTransfer=transfer, legalHolds="phone:+1 416 555 0101"
    )
    proc = download(cfg, emulator.env(), umask=0)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = [p for p in everything_under(target) if p.is_file()]
    folders = [p for p in everything_under(target) if p.is_dir()]
    kinds = {p.suffix for p in files}
    assert {".json", ".bin"} <= kinds, kinds  # metadata and media
    assert any(p.name == "holds.json" for p in files) and any(
        p.name.startswith("last_recording_endtime") for p in files
    )
    assert any(p.parent.name == ".cxbackup-index" for p in files)
    wrong = [f"{p.relative_to(target)} {stat.filemode(p.stat().st_mode)}" for p in files
             if stat.S_IMODE(p.stat().st_mode) != 0o600]  # fmt: skip
    wrong += [f"{p.relative_to(target)}/ {stat.filemode(p.stat().st_mode)}" for p in folders
              if stat.S_IMODE(p.stat().st_mode) != 0o700]  # fmt: skip
    assert wrong == []


# ---------------------------------------------------------------------------------------- export download


def test_export_download_never_writes_through_a_folder_planted_as_a_link(tmp_path: Path) -> None:
    """`cxbackup export download --out OUT`, where another user replaced OUT/chat-messages (a folder the
    archive writes into) by a link to their own folder: refused naming it, nothing written there; the
    same download into a clean folder works."""
    key, cert = key_and_cert()
    key_path = tmp_path / "key.pem"
    from cryptography.hazmat.primitives import serialization

    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)
    now = datetime.now(UTC)
    name = artifact_name("n", "gdprChat", now - timedelta(days=1), now, now.strftime("%Y%m%dT%H%M%SZ"), 1)
    store = tmp_path / "store"
    DirectoryStore(store).write(cms.encrypt(make_zip(FILES), cert), ArtifactInfo.new(name, now, 30))
    out, theirs = tmp_path / "out", tmp_path / "theirs"
    out.mkdir()
    theirs.mkdir()
    subprocess.run(["ln", "-s", str(theirs), str(out / "chat-messages")], check=True)

    def run(to: Path) -> subprocess.CompletedProcess[str]:
        args = ["export", "download", name, "--store", str(store), "--key", str(key_path), "--out", str(to)]
        return subprocess.run(
            [sys.executable, "-m", "cxbackup", *args], capture_output=True, text=True, timeout=120, check=False
        )

    proc = run(out)
    assert proc.returncode != 0
    assert f"{out / 'chat-messages'} is a symbolic link" in proc.stdout + proc.stderr, proc.stdout + proc.stderr
    assert everything_under(theirs) == []
    assert sorted(p.name for p in out.iterdir()) == ["chat-messages"]  # nothing else was placed either
    clean = tmp_path / "clean"
    proc = run(clean)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    extracted = clean / "chat-messages" / "u1.ndjson"
    assert extracted.read_bytes() == FILES["chat-messages/u1.ndjson"]
    assert stat.S_IMODE(extracted.stat().st_mode) == 0o600
    assert stat.S_IMODE(extracted.parent.stat().st_mode) == 0o700


# ---------------------------------------------------------------------------------------- subPath on the API server


BAD_SUB_PATHS = {
    "../other-tenant": "must not have an empty, '.' or '..' segment",
    "a/../../b": "must not have an empty, '.' or '..' segment",
    "/etc": "must be relative to the volume",
    "a\\..\\b": "must not contain a backslash",
    "a//b": "must not have an empty, '.' or '..' segment",
    "a/./b": "must not have an empty, '.' or '..' segment",
    "a/": "must not have an empty, '.' or '..' segment",
}


@pytest.mark.parametrize(("sub_path", "message"), list(BAD_SUB_PATHS.items()))
def test_the_api_server_refuses_a_sub_path_that_is_not_a_plain_folder(
    control_plane: ControlPlane, namespace: str, sub_path: str, message: str
) -> None:
    backup = example("recordingbackup.yaml")
    backup["spec"]["target"] = {"pvc": {"claimName": "recordings-backup", "subPath": sub_path}}
    code, out = kubectl_apply(control_plane, namespace, backup)
    assert code != 0 and "spec.target.pvc.subPath" in out and message in out, out
    export = example("exportjob.yaml")
    export["spec"]["store"] = {"pvc": "exports", "subPath": sub_path}
    code, out = kubectl_apply(control_plane, namespace, export)
    assert code != 0 and "spec.store.subPath" in out and message in out, out


def test_the_api_server_accepts_a_plain_sub_path(control_plane: ControlPlane, namespace: str) -> None:
    backup = example("recordingbackup.yaml")
    backup["spec"]["target"] = {"pvc": {"claimName": "recordings-backup", "subPath": "contact-center/..2024/.b"}}
    code, out = kubectl_apply(control_plane, namespace, backup)
    assert code == 0, out
    export = example("exportjob.yaml")
    export["spec"]["store"] = {"pvc": "exports", "subPath": "gdpr/2026"}
    code, out = kubectl_apply(control_plane, namespace, export)
    assert code == 0, out
