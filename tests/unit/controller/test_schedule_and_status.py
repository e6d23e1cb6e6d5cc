"""Cron schedules with time zones, and the shard progress reporter (with a fake patcher)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from cxbackup.api.recordingbackup import ShardProgress
from cxbackup.backup.progress import RecordingResult, RecordingStatus, RunSummary
from cxbackup.backup.removal import SweepSummary
from cxbackup.backup.sharding import ShardAssignment
from cxbackup.backup.window import RecordingWindow
from cxbackup.controller.schedule import ScheduleError, expected_interval, next_after, validate_schedule
from cxbackup.worker.status import ShardStatusReporter, reporter_from_env
from tests.unit.controller.fakes import FakeClock

NOW = dt.datetime(2026, 11, 23, 5, 0, tzinfo=dt.UTC)


def test_next_after_follows_the_seed_example() -> None:
    assert next_after("30 4,10,16,22 * * *", None, NOW) == dt.datetime(2026, 11, 23, 10, 30, tzinfo=dt.UTC)
    assert expected_interval("30 4,10,16,22 * * *", None, NOW) == 6 * 3600


def test_time_zone_shifts_the_slot() -> None:
    berlin = next_after("0 6 * * *", "Europe/Berlin", NOW)
    assert berlin == dt.datetime(2026, 11, 24, 5, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("schedule", "zone", "field"),
    [
        ("61 * * * *", None, "spec.schedule"),
        ("* * *", None, "spec.schedule"),
        ("0 6 * * *", "Mars/Base", "spec.timeZone"),
    ],
)
def test_bad_schedules_name_the_field(schedule: str, zone: str | None, field: str) -> None:
    with pytest.raises(ScheduleError, match=field):
        validate_schedule(schedule, zone)


def test_reporter_throttles_and_always_writes_start_and_finish() -> None:
    writes: list[dict[str, Any]] = []
    clock = FakeClock()
    rep = ShardStatusReporter("2", "run-1", writes.append, interval=5, clock=clock)
    rep.on_start(10)
    for _ in range(3):
        rep.on_recording(RecordingResult("id", RecordingStatus.DOWNLOADED, files=1, bytes=100))
    assert len(writes) == 1
    clock.now = 6
    rep.on_recording(RecordingResult("id2", RecordingStatus.SKIPPED))
    assert len(writes) == 2
    entry = writes[-1]["status"]["shards"]["2"]
    assert entry["downloaded"] == 3 and entry["skipped"] == 1 and entry["bytes"] == 300
    assert entry["runId"] == "run-1" and entry["phase"] == "Running"
    summary = RunSummary(shard=ShardAssignment(index=2, total=4), window=RecordingWindow(0, 1), started_at=NOW)
    summary.downloaded, summary.failed = 3, 1
    summary.erased, summary.index_recordings, summary.index_bytes = 2, 40, 8192
    summary.retention = SweepSummary("P7Y", 0, dry_run=True, expired=5, held=1)
    rep.on_finish(summary)
    final = writes[-1]["status"]["shards"]["2"]
    assert final["phase"] == "Failed" and final["erased"] == 2
    assert (final["indexRecordings"], final["indexBytes"]) == (40, 8192)
    assert final["retention"] == {"dryRun": True, "expired": 5, "held": 1, "deleted": 0, "deletedBytes": 0, "failed": 0}
    ShardProgress.model_validate(final)  # what the worker writes fits the status schema


def test_reporter_survives_a_failing_api() -> None:
    def broken(_: dict[str, Any]) -> None:
        raise ConnectionError("down")

    rep = ShardStatusReporter("0", "r", broken)
    rep.on_start(1)
    assert rep.write_failures == 1


def test_no_reporter_outside_operator_pods() -> None:
    assert reporter_from_env({}, 0) is None
    assert reporter_from_env({"CXBACKUP_STATUS_RESOURCE": "bad"}, 0) is None
