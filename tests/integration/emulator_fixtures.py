"""pytest fixtures for the vendor-cloud emulator (imported by tests/integration/conftest.py).

- `emulator`: one started `Emulator` per test module, small data set (6 hours x 5 recordings/hour,
  30 % with screen recordings), no faults. Tests that change it (faults, extend, delete) should
  restore it or use `make_emulator`.
- `make_emulator(spec=None, faults=None, **kwargs)`: a factory for a fresh emulator in the test's
  tmp_path; everything it started is stopped after the test.
- `target_bucket(emulator)`: a boto3 client and the environment for backing up into a bucket of the
  emulator's S3 server, and config.properties for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cxbackup_dev.emulator import DatasetSpec, Emulator, FaultConfig

__all__ = ["SMALL_SPEC", "TargetBucket", "emulator", "make_emulator", "target_bucket"]

SMALL_SPEC = DatasetSpec(seed=11, hours=6, recordings_per_hour=5, screen_fraction=0.3)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    """A started emulator shared by a test module (small data set, no faults)."""
    with Emulator(SMALL_SPEC, tmp_path_factory.mktemp("emulator")) as emu:
        yield emu


@pytest.fixture
def make_emulator(tmp_path: Path) -> Iterator[Callable[..., Emulator]]:
    """Start emulators for one test: make_emulator(spec=None, faults=None, **Emulator kwargs)."""
    started: list[Emulator] = []

    def make(spec: DatasetSpec | None = None, faults: FaultConfig | None = None, **kwargs: Any) -> Emulator:
        emu = Emulator(spec or SMALL_SPEC, tmp_path / f"emulator-{len(started)}", faults, **kwargs)
        started.append(emu)
        emu.start()
        return emu

    yield make
    for emu in started:
        emu.stop()


@dataclass(frozen=True)
class TargetBucket:
    """A backup target bucket on the emulator's S3 server (the customer's own storage in these tests)."""

    client: Any
    """boto3 S3 client of the emulator's S3, to create buckets and check what a run wrote."""
    env: dict[str, str]
    """The emulator's environment plus TARGET_AWS_* credentials, for commands writing to the bucket."""
    emulator: Emulator

    def config(self, path: Path, bucket: str, **properties: object) -> Path:
        """A config.properties of the emulator backing up into `bucket` (created here unless it exists)."""
        existing = {b["Name"] for b in self.client.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            self.client.create_bucket(Bucket=bucket)
        props: dict[str, object] = {"targetS3Bucket": bucket, "targetS3EndpointUrl": self.emulator.s3_endpoint}
        return self.emulator.write_config(path, None, **(props | properties))


def target_bucket(emulator: Emulator) -> TargetBucket:
    import boto3

    env = emulator.env()
    client = boto3.client(
        "s3",
        endpoint_url=emulator.s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    target_env = {
        **env,
        "TARGET_AWS_ACCESS_KEY_ID": env["AWS_ACCESS_KEY_ID"],
        "TARGET_AWS_SECRET_ACCESS_KEY": env["AWS_SECRET_ACCESS_KEY"],
    }
    return TargetBucket(client, target_env, emulator)


def put_media(emulator: Emulator, name: str, body: bytes) -> None:
    """Store `body` as media `name` in the emulator's first storage entry (through its S3 endpoint)."""
    import boto3

    entry = emulator.storage[0]
    client = boto3.client(
        "s3",
        endpoint_url=emulator.s3_endpoint,
        aws_access_key_id=emulator.aws_access_key_id,
        aws_secret_access_key=emulator.aws_secret_access_key,
        region_name="us-east-1",
    )
    client.put_object(Bucket=entry.bucket, Key=entry.prefix + name, Body=body)
