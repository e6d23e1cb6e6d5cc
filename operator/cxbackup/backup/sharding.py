"""Splitting a window's recordings over N instances (RCBS totalRcbsInstances / rcbsInstanceId).

The hash is stable across processes, machines, Python versions and releases of this tool:

    shard_of(recording_id, total) = int.from_bytes(sha256(recording_id.encode("utf-8")).digest()[:8],
                                                   "big") % total

`recording_id` is the metadata record's `id` (the CallUUID). Every recording has exactly one owner, so
N instances run with the same window and ids 0..N-1 together cover each recording exactly once.
(Python's built-in `hash()` is salted per process and would not do.)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

__all__ = ["ShardAssignment", "shard_of"]


def shard_of(recording_id: str, total: int) -> int:
    """The shard (0..total-1) that owns `recording_id`."""
    if total < 1:
        raise ValueError("total must be >= 1")
    digest = hashlib.sha256(recording_id.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % total


@dataclass(frozen=True)
class ShardAssignment:
    """This instance's share: shard `index` of `total`."""

    index: int = 0
    total: int = 1

    def __post_init__(self) -> None:
        if self.total < 1 or not 0 <= self.index < self.total:
            raise ValueError(f"rcbsInstanceId {self.index} is not in 0..{self.total - 1}")

    def owns(self, recording_id: str) -> bool:
        return self.total == 1 or shard_of(recording_id, self.total) == self.index

    @property
    def label(self) -> str:
        """`<index>-of-<total>`, used in lock and state file names."""
        return f"{self.index}-of-{self.total}"
