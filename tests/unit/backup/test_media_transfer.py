"""Which media transfer a run gets (connections.make_fetcher / make_media_source): native for a folder target
when `cxbackup-fetch` is installed, else the CRT client or boto3; an explicit `native` that cannot be honoured
is a configuration error naming the field and the fix."""

from __future__ import annotations

import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from cxbackup.backup.config import Credentials, RcbsConfig
from cxbackup.backup.connections import make_fetcher, make_media_source
from cxbackup.backup.crtsource import CrtS3MediaSource
from cxbackup.backup.errors import ConfigError
from cxbackup.backup.nativefetch import BINARY_ENV, PROTOCOL, NativeFetcher, find_fetcher
from cxbackup.backup.s3source import S3MediaSource
from cxbackup.backup.targets import LocalDirectoryTarget
from cxbackup.backup.vendor_client import StorageEntry, VendorSettings

CREDS = Credentials(aws_access_key_id="AKID", aws_secret_access_key="secret")
SETTINGS = VendorSettings("t", (StorageEntry("usw1", "us-east-1", "bucket", ""),))


def config(**values: Any) -> RcbsConfig:
    return RcbsConfig.from_values({"gwsUriPrefix": "https://x/api", "targetDir": "/b", **values})


@pytest.fixture
def program(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A stand-in `cxbackup-fetch` that speaks the protocol's version check, named by CXBACKUP_FETCH."""
    path = tmp_path / "cxbackup-fetch"
    path.write_text(f"#!/bin/sh\necho '{{\"protocol\":{PROTOCOL}}}'\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv(BINARY_ENV, str(path))
    return path


def test_auto_is_native_for_a_folder_target(program: Path, tmp_path: Path) -> None:
    fetcher = make_fetcher(config(concurrency=48), CREDS, LocalDirectoryTarget(tmp_path / "t"))
    assert isinstance(fetcher, NativeFetcher)
    assert fetcher._argv[0] == str(program) and "-in-flight=48" in fetcher._argv
    # the source then only locates objects: no CRT client is made
    assert type(make_media_source(config(), CREDS, SETTINGS, native=True)) is S3MediaSource


def test_auto_without_the_program_is_the_crt_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BINARY_ENV, str(tmp_path / "missing"))
    assert find_fetcher() is None
    assert make_fetcher(config(), CREDS, LocalDirectoryTarget(tmp_path / "t")) is None
    assert isinstance(make_media_source(config(), CREDS, SETTINGS), CrtS3MediaSource)


def test_native_without_the_program_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BINARY_ENV, str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"mediaTransfer=native cannot be used: the program cxbackup-fetch is not"):
        make_fetcher(config(mediaTransfer="native"), CREDS, LocalDirectoryTarget(tmp_path / "t"))


def test_native_on_an_s3_target_is_refused(program: Path) -> None:
    class Bucket:  # any target that is not a folder
        description = "s3://archive/"

    with pytest.raises(ConfigError, match="mediaTransfer=native writes into a folder"):
        make_fetcher(config(mediaTransfer="native"), CREDS, Bucket())  # type: ignore[arg-type]
    assert make_fetcher(config(), CREDS, Bucket()) is None  # type: ignore[arg-type]


@pytest.mark.parametrize("transfer", ["crt", "boto3"])
def test_other_transfers_and_metadata_only_use_no_program(program: Path, tmp_path: Path, transfer: str) -> None:
    target = LocalDirectoryTarget(tmp_path / "t")
    assert make_fetcher(config(mediaTransfer=transfer), CREDS, target) is None
    assert make_fetcher(config(metadataOnly=True), CREDS, target) is None


def test_a_program_of_another_protocol_is_refused(program: Path, tmp_path: Path) -> None:
    program.write_text("#!/bin/sh\necho '{\"protocol\":2}'\n")
    with pytest.raises(ConfigError, match="speaks protocol 2; this cxbackup needs 1"):
        make_fetcher(config(), CREDS, LocalDirectoryTarget(tmp_path / "t"))


def test_the_program_is_found_next_to_the_interpreter_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(BINARY_ENV, raising=False)
    found = find_fetcher()
    assert found is not None, "`make venv` installs cxbackup-fetch into the venv's bin folder"
    assert Path(found).parent == Path(sys.executable).parent
