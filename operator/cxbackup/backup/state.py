"""The stored last recording end time (RCBS's last_recording_endtime.txt) and the lock name.

File, in the target root:
    last_recording_endtime.txt                 a single instance (totalRcbsInstances=1)
    last_recording_endtime-<i>-of-<N>.txt      shard i of N (shards may share one target, and each
                                               shard's progress is its own: one failed shard must not
                                               let the others' checkpoint skip its recordings)
Content: the window end in epoch milliseconds, decimal, one line (e.g. `1519306214000\\n`). Reading
also accepts an ISO 8601 time with a zone. It is written (temporary file + rename) only after a whole
window finished with zero failures, and never moves backwards.

Lock: `.rcbs-lock-<i>-of-<N>` in the target root (see targets.py / s3target.py).
"""

from __future__ import annotations

from datetime import datetime

from cxbackup.backup.errors import StateFileError
from cxbackup.backup.sharding import ShardAssignment
from cxbackup.backup.targets import BackupTarget
from cxbackup.core.times import to_ms

__all__ = ["advance_last_end_time", "lock_name", "read_last_end_time", "state_file_name"]


def state_file_name(shard: ShardAssignment) -> str:
    if shard.total == 1:
        return "last_recording_endtime.txt"
    return f"last_recording_endtime-{shard.label}.txt"


def lock_name(shard: ShardAssignment) -> str:
    return f".rcbs-lock-{shard.label}"


def _parse(text: str, name: str) -> int:
    value = text.strip()
    if value.isdigit():
        return int(value)
    try:
        when = datetime.fromisoformat(value)
        if when.tzinfo is not None:
            return to_ms(when)
    except ValueError:
        pass
    raise StateFileError(
        f"{name} holds {value[:60]!r}, not epoch milliseconds; fix it or delete it (then the window "
        "starts at maxAge/maxDate)"
    )


def read_last_end_time(target: BackupTarget, shard: ShardAssignment) -> int | None:
    name = state_file_name(shard)
    text = target.read_text(name)
    if text is None or not text.strip():
        return None
    return _parse(text, name)


def advance_last_end_time(target: BackupTarget, shard: ShardAssignment, end_ms: int) -> int:
    """Store `end_ms` unless the stored time is already later; returns the stored value."""
    current = read_last_end_time(target, shard)
    if current is not None and current >= end_ms:
        return current
    target.write_text_atomic(state_file_name(shard), f"{end_ms}\n")
    return end_ms
