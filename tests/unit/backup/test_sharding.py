"""The shard hash: stable, documented, balanced, and N shards cover every id exactly once."""

from __future__ import annotations

import hashlib

import pytest

from cxbackup.backup.sharding import ShardAssignment, shard_of


def test_hash_is_the_documented_one() -> None:
    rid = "021L6BI58K8FH7R5USI402LAES00000A"
    expected = int.from_bytes(hashlib.sha256(rid.encode()).digest()[:8], "big") % 7
    assert shard_of(rid, 7) == expected
    # pinned values: changing the hash would re-shard every existing deployment
    assert [shard_of(rid, n) for n in (2, 3, 4, 8, 64)] == [1, 1, 1, 5, 13]
    assert [shard_of(f"REC{i}", 4) for i in range(8)] == [3, 3, 3, 1, 1, 1, 3, 2]
    assert shard_of("A", 4) == int.from_bytes(hashlib.sha256(b"A").digest()[:8], "big") % 4


def test_balance_over_2_to_64_shards() -> None:
    ids = [f"{i:010d}LAES{(i * 7919) % 100000:05d}X" for i in range(100_000)]
    hashes = [int.from_bytes(hashlib.sha256(i.encode()).digest()[:8], "big") for i in ids]
    assert shard_of(ids[123], 13) == hashes[123] % 13
    for n in range(2, 65):
        counts = [0] * n
        for h in hashes:
            counts[h % n] += 1
        mean = len(ids) / n
        assert max(counts) / mean < 1.1, (n, max(counts), mean)
        assert min(counts) / mean > 0.9, (n, min(counts), mean)


def test_shards_partition_the_ids() -> None:
    ids = [f"REC{i}" for i in range(2000)]
    owners = {rid: [i for i in range(5) if ShardAssignment(i, 5).owns(rid)] for rid in ids}
    assert all(len(o) == 1 for o in owners.values())
    assert all(ShardAssignment(0, 1).owns(rid) for rid in ids)


def test_invalid_assignment() -> None:
    with pytest.raises(ValueError, match=r"rcbsInstanceId 4 is not in 0\.\.3"):
        ShardAssignment(4, 4)
    with pytest.raises(ValueError):
        shard_of("x", 0)
