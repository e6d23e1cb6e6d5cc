"""Targets: atomic writers, stale temp cleanup, the lock, escape refusal, the state file; S3 via moto."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from cxbackup.backup import targets
from cxbackup.backup.errors import LockHeldError, StateFileError, UnsafePathError
from cxbackup.backup.s3target import S3BucketTarget
from cxbackup.backup.sharding import ShardAssignment
from cxbackup.backup.state import advance_last_end_time, lock_name, read_last_end_time, state_file_name
from cxbackup.backup.targets import LocalDirectoryTarget, LocalFileWriter, LockHolder

HOLDER = LockHolder(pid=4242, host="worker-a", started_at="2024-05-10T12:00:00+00:00", shard="1-of-4")


def test_writer_is_invisible_until_commit(tmp_path: Path) -> None:
    target = LocalDirectoryTarget(tmp_path / "t")
    w = target.open_writer("2024/05/x/file.bin")
    w.write(b"abc")
    assert not target.exists("2024/05/x/file.bin")
    hidden = [p.name for p in (tmp_path / "t/2024/05/x").iterdir()]
    assert len(hidden) == 1 and hidden[0].startswith(".file.bin.part-")
    w.commit()
    assert target.exists("2024/05/x/file.bin", 3)
    assert not target.exists("2024/05/x/file.bin", 4)
    assert [p.name for p in (tmp_path / "t/2024/05/x").iterdir()] == ["file.bin"]


def test_abort_leaves_nothing(tmp_path: Path) -> None:
    target = LocalDirectoryTarget(tmp_path)
    w = target.open_writer("d/f")
    w.write(b"x")
    w.abort()
    assert list((tmp_path / "d").iterdir()) == []


def test_stale_temp_files_are_removed(tmp_path: Path) -> None:
    target = LocalDirectoryTarget(tmp_path)
    d = tmp_path / "2024/01/01/00/REC"
    d.mkdir(parents=True)
    (d / ".a.mp3.bin.part-0123abcd").write_bytes(b"partial")
    (d / "a.mp3.bin").write_bytes(b"done")
    (d / ".keep").write_bytes(b"")
    assert target.remove_stale_temp("2024/01/01/00/REC") == 1
    assert sorted(p.name for p in d.iterdir()) == [".keep", "a.mp3.bin"]
    assert target.remove_stale_temp("no/such/dir") == 0


def test_paths_cannot_escape(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside)
    target = LocalDirectoryTarget(root)
    with pytest.raises(UnsafePathError):
        target.open_writer("link/evil")
    with pytest.raises(UnsafePathError):
        target.resolve("../x")


def test_a_file_symlink_out_of_the_target_is_refused_even_in_a_known_folder(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "2024/05").mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("s")
    target = LocalDirectoryTarget(root)
    assert target.size_of("2024/05/a.bin") is None  # the folder is now resolved and remembered
    (root / "2024/05/a.bin").symlink_to(secret)
    with pytest.raises(UnsafePathError, match="outside the target"):
        target.size_of("2024/05/a.bin")
    inside = root / "2024/05/real.bin"
    inside.write_bytes(b"12345")
    (root / "2024/05/b.bin").symlink_to(inside)
    assert target.size_of("2024/05/b.bin") == 5


def test_handed_over_writer_commits_what_another_writer_put_there(tmp_path: Path) -> None:
    target = LocalDirectoryTarget(tmp_path)
    w = target.open_writer("r/f.bin")
    assert isinstance(w, LocalFileWriter)
    temp = Path(w.hand_over())
    assert temp.parent == tmp_path / "r" and temp.name.startswith(".f.bin.part-")
    temp.write_bytes(b"written by the CRT")  # the native client writes the file by its path
    assert not target.exists("r/f.bin")
    w.commit()
    assert (tmp_path / "r/f.bin").read_bytes() == b"written by the CRT" and w.bytes_written == 18
    w2 = target.open_writer("r/g.bin")
    assert isinstance(w2, LocalFileWriter)
    Path(w2.hand_over()).write_bytes(b"half")
    w2.abort()
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["f.bin"]


def test_folder_fsync_only_when_asked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[Path] = []
    monkeypatch.setattr(targets, "_fsync_dir", synced.append)
    target = LocalDirectoryTarget(tmp_path)
    for name, sync in (("d/a", False), ("d/b", False), ("d/c.json", True)):
        w = target.open_writer(name, sync_dir=sync)
        w.write(b"x")
        w.commit()
    assert synced == [tmp_path / "d"]


def test_scan_folder_lists_sizes_and_removes_leftovers(tmp_path: Path) -> None:
    root = tmp_path / "root"
    d = root / "2024/01/01/00/REC"
    d.mkdir(parents=True)
    (d / ".a.mp3.bin.part-0123abcd").write_bytes(b"partial")
    (d / "a.mp3.bin").write_bytes(b"done")
    (d / "REC.json").write_bytes(b"{}")
    (d / "sub").mkdir()
    target = LocalDirectoryTarget(root)
    assert target.scan_folder("2024/01/01/00/REC") == {"a.mp3.bin": 4, "REC.json": 2}
    assert sorted(p.name for p in d.iterdir()) == ["REC.json", "a.mp3.bin", "sub"]
    assert target.scan_folder("2024/01/01/00/NEW") == {}
    (tmp_path / "secret").write_bytes(b"s")
    (d / "b.bin").symlink_to(tmp_path / "secret")
    with pytest.raises(UnsafePathError):
        target.scan_folder("2024/01/01/00/REC")


def test_a_folder_removed_during_the_run_is_made_again(tmp_path: Path) -> None:
    target = LocalDirectoryTarget(tmp_path)
    w = target.open_writer("x/a")
    w.write(b"1")
    w.commit()
    (tmp_path / "x/a").unlink()
    (tmp_path / "x").rmdir()
    w = target.open_writer("x/b")
    w.write(b"2")
    w.commit()
    assert (tmp_path / "x/b").read_bytes() == b"2"


def test_a_writer_that_wrote_nothing_commits_an_empty_file(tmp_path: Path) -> None:
    target = LocalDirectoryTarget(tmp_path)
    w = target.open_writer("e/empty.bin")
    assert list((tmp_path / "e").iterdir()) == []  # the temporary file appears with the first byte
    w.commit()
    assert (tmp_path / "e/empty.bin").read_bytes() == b"" and target.size_of("e/empty.bin") == 0


def test_unc_style_target_dir_is_a_path(tmp_path: Path) -> None:
    target = LocalDirectoryTarget("/" + str(tmp_path / "unc"))  # //tmp/...: a UNC-looking path
    assert target.root.is_dir()


def test_local_lock_refuses_a_second_holder_and_names_the_first(tmp_path: Path) -> None:
    target = LocalDirectoryTarget(tmp_path)
    other = LocalDirectoryTarget(tmp_path)
    with target.lock(".rcbs-lock-1-of-4", HOLDER):
        with pytest.raises(LockHeldError) as info, other.lock(".rcbs-lock-1-of-4", HOLDER):
            pass
        assert "pid 4242 on worker-a (shard 1-of-4" in str(info.value)
        with other.lock(".rcbs-lock-2-of-4", HOLDER):  # another shard is fine
            pass
    with other.lock(".rcbs-lock-1-of-4", HOLDER):  # released
        pass
    assert lock_name(ShardAssignment(1, 4)) == ".rcbs-lock-1-of-4"


def test_state_file_never_moves_backwards(tmp_path: Path) -> None:
    target = LocalDirectoryTarget(tmp_path)
    single, shard = ShardAssignment(0, 1), ShardAssignment(2, 4)
    assert state_file_name(single) == "last_recording_endtime.txt"
    assert state_file_name(shard) == "last_recording_endtime-2-of-4.txt"
    assert read_last_end_time(target, single) is None
    assert advance_last_end_time(target, single, 1000) == 1000
    assert (tmp_path / "last_recording_endtime.txt").read_text() == "1000\n"
    assert advance_last_end_time(target, single, 500) == 1000
    assert read_last_end_time(target, single) == 1000
    assert read_last_end_time(target, shard) is None
    (tmp_path / "last_recording_endtime.txt").write_text("2018-02-22T16:24:58Z\n")
    assert read_last_end_time(target, single) == 1519316698000
    (tmp_path / "last_recording_endtime.txt").write_text("garbage")
    with pytest.raises(StateFileError, match=r"last_recording_endtime\.txt holds 'garbage'"):
        read_last_end_time(target, single)


@pytest.fixture
def s3() -> Iterator[Any]:
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        with mock_aws():
            client = boto3.client("s3", region_name="us-east-1")
            client.create_bucket(Bucket="backup")
            yield client
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_s3_target_writes_on_commit_only(s3: Any) -> None:
    target = S3BucketTarget(s3, "backup", "rcbs")
    assert target.description == "s3://backup/rcbs/"
    w = target.open_writer("2024/05/10/12/REC/a.bin")
    w.write(b"hello")
    assert target.size_of("2024/05/10/12/REC/a.bin") is None
    w.commit()
    assert target.exists("2024/05/10/12/REC/a.bin", 5)
    assert s3.get_object(Bucket="backup", Key="rcbs/2024/05/10/12/REC/a.bin")["Body"].read() == b"hello"
    w2 = target.open_writer("x/b.bin")
    w2.write(b"x")
    w2.abort()
    assert target.size_of("x/b.bin") is None
    assert target.read_text("last_recording_endtime.txt") is None
    target.write_text_atomic("last_recording_endtime.txt", "123\n")
    assert target.read_text("last_recording_endtime.txt") == "123\n"
    with pytest.raises(UnsafePathError):
        target.key("../escape")


def test_s3_lock_conditional_put_and_expiry(s3: Any) -> None:
    clock = [1000.0]
    a = S3BucketTarget(s3, "backup", "p/", clock=lambda: clock[0], lock_ttl=60)
    b = S3BucketTarget(s3, "backup", "p/", clock=lambda: clock[0], lock_ttl=60)
    with a.lock(".rcbs-lock-0-of-1", HOLDER):
        with pytest.raises(LockHeldError) as info, b.lock(".rcbs-lock-0-of-1", HOLDER):
            pass
        assert "pid 4242 on worker-a" in str(info.value)
    # released: the object is gone and b can take it
    with b.lock(".rcbs-lock-0-of-1", HOLDER):
        pass
    # a holder that died leaves an expired lock, which is taken over
    s3.put_object(Bucket="backup", Key="p/.rcbs-lock-0-of-1", Body=b'{"pid": 1, "expires": 10}')
    with a.lock(".rcbs-lock-0-of-1", HOLDER):
        pass


def test_target_client_ignores_the_vendor_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from cxbackup.backup.s3source import S3Options, make_s3_client

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://vendor.invalid:9000")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAVENDORKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "vendor-secret")
    vendor = make_s3_client(S3Options(region="us-east-1"))
    assert vendor.meta.endpoint_url == "http://vendor.invalid:9000"
    target = make_s3_client(S3Options(region="us-east-1", isolate_from_env=True))
    assert target.meta.endpoint_url == "https://s3.amazonaws.com"
    creds = target._request_signer._credentials
    assert creds is None or creds.access_key != "AKIAVENDORKEY"
    explicit = make_s3_client(
        S3Options(access_key_id="AKIATARGET", secret_access_key="t", endpoint_url="http://t:1", isolate_from_env=True)
    )
    assert explicit._request_signer._credentials.access_key == "AKIATARGET"
    assert explicit.meta.endpoint_url == "http://t:1"
