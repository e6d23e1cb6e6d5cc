"""Results of a run and where progress goes: `ProgressSink` and the built-in sinks.

A sink gets `on_start(total_estimate)` once (recordings this instance expects, or None), then
`on_recording(result)` for each recording handled (serialised: never called from two threads at once),
then `on_finish(summary)`. The operator plugs in a sink that patches the custom resource's status;
the CLI uses `RichProgressSink` on a terminal and `LogProgressSink` (periodic log lines) otherwise.

The summary JSON (`RunSummary.to_json`, written by `--summary-file`/`summaryFile`, e.g. to
/dev/termination-log; kept under 4096 bytes by trimming the failure list):

    {"kind": "RcbsRunSummary", "version": 1, "result": "Succeeded" | "Failed",
     "shard": {"index": 0, "total": 1},
     "window": {"start": <ms>, "end": <ms>, "startTime": "<ISO UTC>", "endTime": "<ISO UTC>"},
     "total": T, "downloaded": X, "skipped": Y, "failed": Z, "filtered": F,
     "files": <media+metadata files written>, "bytes": <bytes written>,
     "lastRecordingEndTime": <ms stored after the run, or null>, "checkpointAdvanced": true|false,
     "encryptionFormat": "AES-128", "metadataOnly": false,
     "startedAt": "<ISO>", "finishedAt": "<ISO>", "durationSeconds": 12.3,
     "error": null | "<why the run stopped>",
     "erased": <listed recordings not downloaded because an erasure named them>,
     "retention": null | {"keepFor": "P7Y", "expiredBefore": "<ISO>", "dryRun": false, "expired": E,
                          "held": H, "deleted": D, "deletedBytes": B, "failed": F},
     "retentionError": null | "<why the sweep did not run>",
     "indexRecordings": <recordings in the shard's search index> | null, "indexBytes": <its size> | null,
     "failures": [{"id": "<callUUID>", "reason": "<redacted reason>"}], "failuresTruncated": false}

Counts are recordings (RCBS's summary line says "files"; one recording is one folder).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from cxbackup.backup.sharding import ShardAssignment

if TYPE_CHECKING:
    from cxbackup.backup.removal import SweepSummary
from cxbackup.backup.window import RecordingWindow
from cxbackup.core.errors import EXIT_FAILED, EXIT_OK, EXIT_UNAVAILABLE
from cxbackup.core.times import from_ms, iso

__all__ = [
    "MAX_SUMMARY_BYTES",
    "LogProgressSink",
    "MultiSink",
    "ProgressSink",
    "RecordingResult",
    "RecordingStatus",
    "RichProgressSink",
    "RunSummary",
]

log = logging.getLogger("cxbackup.backup.progress")

MAX_SUMMARY_BYTES = 4096  # Kubernetes' limit for a container's termination message
_FAILURES_KEPT = 1000


class RecordingStatus(StrEnum):
    DOWNLOADED = "downloaded"
    SKIPPED = "skipped"
    FAILED = "failed"


class _Counts(Protocol):
    downloaded: int
    skipped: int
    failed: int


def _tally(counts: _Counts, result: RecordingResult) -> None:
    """Count one recording's outcome as downloaded, skipped or failed."""
    if result.status is RecordingStatus.DOWNLOADED:
        counts.downloaded += 1
    elif result.status is RecordingStatus.SKIPPED:
        counts.skipped += 1
    else:
        counts.failed += 1


@dataclass(frozen=True)
class RecordingResult:
    """What happened to one recording."""

    recording_id: str
    status: RecordingStatus
    files: int = 0
    bytes: int = 0
    reason: str | None = None


@dataclass
class RunSummary:
    """Totals of a run; `total = downloaded + skipped + failed` (recordings of this shard kept by filters)."""

    shard: ShardAssignment
    window: RecordingWindow
    started_at: datetime
    encryption_format: str = "AES-128"
    metadata_only: bool = False
    downloaded: int = 0
    skipped: int = 0
    failed: int = 0
    filtered: int = 0
    files: int = 0
    bytes: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)
    finished_at: datetime | None = None
    last_recording_end_time: int | None = None
    checkpoint_advanced: bool = False
    error: str | None = None
    error_exit_code: int = EXIT_UNAVAILABLE
    erased: int = 0  # listed, but erased from the backup earlier: not downloaded
    retention: SweepSummary | None = None
    retention_error: str | None = None
    index_recordings: int | None = None  # in this shard's search index after the run
    index_bytes: int | None = None

    @property
    def total(self) -> int:
        return self.downloaded + self.skipped + self.failed

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.error is None

    @property
    def exit_code(self) -> int:
        """0 when everything worked, 1 when recordings failed, the error's code when the run stopped."""
        if self.error is not None:
            return self.error_exit_code
        return EXIT_FAILED if self.failed else EXIT_OK

    def add(self, result: RecordingResult) -> None:
        _tally(self, result)
        if result.status is RecordingStatus.FAILED and len(self.failures) < _FAILURES_KEPT:
            self.failures.append((result.recording_id, result.reason or "unknown error"))
        self.files += result.files
        self.bytes += result.bytes

    def closing_line(self) -> str:
        """The line RCBS logs when a run ends: the counts of downloaded, skipped and failed recordings."""
        return (
            f"Finished handling current batch: (number downloaded files: {self.downloaded} + number of "
            f"skipped files: {self.skipped} + number of failed download: {self.failed}) out of total: {self.total}"
        )

    def to_dict(self) -> dict[str, Any]:
        finished = self.finished_at or datetime.now(UTC)
        return {
            "kind": "RcbsRunSummary",
            "version": 1,
            "result": "Succeeded" if self.ok else "Failed",
            "shard": {"index": self.shard.index, "total": self.shard.total},
            "window": {
                "start": self.window.start_ms,
                "end": self.window.end_ms,
                "startTime": iso(from_ms(self.window.start_ms)),
                "endTime": iso(from_ms(self.window.end_ms)),
            },
            "total": self.total,
            "downloaded": self.downloaded,
            "skipped": self.skipped,
            "failed": self.failed,
            "filtered": self.filtered,
            "files": self.files,
            "bytes": self.bytes,
            "lastRecordingEndTime": self.last_recording_end_time,
            "checkpointAdvanced": self.checkpoint_advanced,
            "encryptionFormat": self.encryption_format,
            "metadataOnly": self.metadata_only,
            "startedAt": iso(self.started_at),
            "finishedAt": iso(finished),
            "durationSeconds": round((finished - self.started_at).total_seconds(), 3),
            "error": self.error,
            "erased": self.erased,
            "retention": None if self.retention is None else self.retention.to_json(),
            "retentionError": self.retention_error,
            "indexRecordings": self.index_recordings,
            "indexBytes": self.index_bytes,
            "failures": [{"id": i, "reason": r} for i, r in self.failures],
            "failuresTruncated": len(self.failures) < self.failed,
        }

    def to_json(self, max_bytes: int = MAX_SUMMARY_BYTES) -> str:
        """Compact JSON, at most `max_bytes` (UTF-8): the failure list is cut to fit."""
        data = self.to_dict()
        text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        failures: list[dict[str, str]] = data["failures"]
        while len(text.encode()) > max_bytes and failures:
            del failures[len(failures) // 2 :]
            data["failuresTruncated"] = True
            text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        if len(text.encode()) > max_bytes and data["error"]:
            data["error"] = str(data["error"])[:500]
            text = json.dumps(data, separators=(",", ":"), ensure_ascii=False)
        return text


class ProgressSink(Protocol):
    """Receives a run's progress (see the module docstring)."""

    def on_start(self, total_estimate: int | None) -> None: ...

    def on_recording(self, result: RecordingResult) -> None: ...

    def on_finish(self, summary: RunSummary) -> None: ...


class MultiSink:
    """Forwards to several sinks."""

    def __init__(self, sinks: Sequence[ProgressSink]) -> None:
        self._sinks = list(sinks)

    def on_start(self, total_estimate: int | None) -> None:
        for s in self._sinks:
            s.on_start(total_estimate)

    def on_recording(self, result: RecordingResult) -> None:
        for s in self._sinks:
            s.on_recording(result)

    def on_finish(self, summary: RunSummary) -> None:
        for s in self._sinks:
            s.on_finish(summary)


class _Rates:
    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self.started = clock()
        self.done = 0
        self.downloaded = 0
        self.skipped = 0
        self.failed = 0
        self.bytes = 0
        self.total: int | None = None

    def add(self, result: RecordingResult) -> None:
        self.done += 1
        self.bytes += result.bytes
        _tally(self, result)

    def line(self) -> str:
        elapsed = max(self.clock() - self.started, 1e-6)
        of = f"/~{self.total}" if self.total else ""
        pct = f" ({min(100, 100 * self.done // self.total)}%)" if self.total else ""
        return (
            f"Progress: {self.done}{of} recordings{pct} - {self.downloaded} downloaded, {self.skipped} skipped, "
            f"{self.failed} failed - {self.done / elapsed:.1f} recordings/s, {self.bytes / elapsed / 1e6:.2f} MB/s"
        )


class LogProgressSink:
    """Plain log lines, at most one per `interval` seconds, plus RCBS's summary line at the end."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval
        self._rates = _Rates(clock)
        self._last = clock()

    def on_start(self, total_estimate: int | None) -> None:
        self._rates.total = total_estimate
        if total_estimate is not None:
            log.info("About %d recordings to handle", total_estimate)

    def on_recording(self, result: RecordingResult) -> None:
        self._rates.add(result)
        now = self._rates.clock()
        if now - self._last >= self._interval:
            self._last = now
            log.info("%s", self._rates.line())

    def on_finish(self, summary: RunSummary) -> None:
        log.info("%s", self._rates.line())


class RichProgressSink:
    """A progress bar on a terminal (overall percent, recordings/s, MB/s)."""

    def __init__(self, console: Any = None) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

        self._console = console or Console(stderr=True)
        self._progress = Progress(
            TextColumn("[bold]RCBS[/bold]"),
            BarColumn(),
            TaskProgressColumn(),
            TextColumn("{task.completed:.0f}/{task.fields[of]} recordings"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            console=self._console,
            transient=False,
        )
        self._rates = _Rates(time.monotonic)
        self._task: Any = None
        self._lock = threading.Lock()

    def on_start(self, total_estimate: int | None) -> None:
        self._rates.total = total_estimate
        self._progress.start()
        self._task = self._progress.add_task(
            "backup", total=total_estimate or None, of=f"~{total_estimate}" if total_estimate else "?", rate=""
        )

    def on_recording(self, result: RecordingResult) -> None:
        with self._lock:
            self._rates.add(result)
            elapsed = max(self._rates.clock() - self._rates.started, 1e-6)
            total = self._rates.total
            if total is not None and self._rates.done > total:
                total = self._rates.done
            self._progress.update(
                self._task,
                completed=self._rates.done,
                total=total or None,
                rate=f"{self._rates.done / elapsed:.1f} rec/s  {self._rates.bytes / elapsed / 1e6:.2f} MB/s",
            )

    def on_finish(self, summary: RunSummary) -> None:
        if self._task is not None:
            self._progress.update(self._task, total=max(summary.total, 1), completed=max(summary.total, 1))
        self._progress.stop()
