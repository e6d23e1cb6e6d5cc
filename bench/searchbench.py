"""The search benchmark's child process: `python bench/searchbench.py build|query ROOT N SHARDS`.

build: an index of N synthetic recordings (the emulator's generator: its metadata format, eventHistory,
parameters, screen recordings, 500 agents, 1,000 recordings an hour) written the way a backup writes it:
the worker's own `entry_from_recording` and `ShardIndex.add` (batches of FLUSH_EVERY, synchronous=FULL),
SHARDS files by `shard_of`. Two producer processes build the entries; this process writes. Prints JSON.

query: `search_index` (what `cxbackup search` runs) for a set of queries, each repeated; prints JSON.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

PER_HOUR = 1000
AGENTS = 500
SEED = 17
HOURS_PER_TASK = 10
REPEATS = int(os.environ.get("BENCH_SEARCH_REPEATS", "5"))


def _spec(n: int) -> Any:
    from cxbackup_dev.emulator.dataset import DatasetSpec

    return DatasetSpec(hours=n // PER_HOUR, recordings_per_hour=PER_HOUR, seed=SEED, agents=AGENTS, screen_fraction=0.2)


def _entries(args: tuple[int, int, int]) -> tuple[list[Any], float]:
    """Entries of hours [first, last) of the data set, and the seconds spent in entry_from_recording."""
    from cxbackup.backup.index import entry_from_recording
    from cxbackup.backup.layout import FolderFormat, recording_paths
    from cxbackup.backup.records import Recording
    from cxbackup_dev.emulator.dataset import Dataset

    n, first, last = args
    ds = Dataset(_spec(n))
    fmt = FolderFormat.parse("yyyy/MM/dd/HH")
    out = []
    spent = 0.0
    hour = 3_600_000
    for rec in ds.iter_records(ds.start_ms + first * hour, ds.start_ms + last * hour):
        raw = json.dumps(rec)
        recording = Recording.from_json(rec, raw)
        paths = recording_paths(recording, fmt)
        stored = {m.media_id for m in recording.media if m.media_id}
        t0 = time.perf_counter()
        out.append(entry_from_recording(recording, paths, stored))
        spent += time.perf_counter() - t0
    return out, spent


def build(root: Path, n: int, shards: int) -> dict[str, Any]:
    from cxbackup.backup.index import FLUSH_EVERY, INDEX_DIR, ShardIndex
    from cxbackup.backup.sharding import ShardAssignment, shard_of

    index_dir = root / INDEX_DIR
    index_dir.mkdir(parents=True, exist_ok=True)
    files = [ShardIndex(index_dir / f"shard-{i}-of-{shards}.sqlite3") for i in range(shards)]
    assert [f.path.name for f in files] == [f"shard-{ShardAssignment(i, shards).label}.sqlite3" for i in range(shards)]
    batches: list[list[Any]] = [[] for _ in range(shards)]
    hours = n // PER_HOUR
    tasks = [(n, h, min(h + HOURS_PER_TASK, hours)) for h in range(0, hours, HOURS_PER_TASK)]
    insert_s = 0.0
    entry_s = 0.0
    done = 0
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2) as pool:
        for entries, spent in pool.map(_entries, tasks):
            entry_s += spent
            for e in entries:
                i = shard_of(e.id, shards)
                batches[i].append(e)
                if len(batches[i]) >= FLUSH_EVERY:
                    t1 = time.perf_counter()
                    files[i].add(batches[i])
                    insert_s += time.perf_counter() - t1
                    batches[i] = []
            done += len(entries)
            if done % 100_000 < len(entries):
                print(f"{done} recordings indexed", file=sys.stderr, flush=True)
    for i, batch in enumerate(batches):
        t1 = time.perf_counter()
        files[i].add(batch)
        insert_s += time.perf_counter() - t1
    counts = [f.count() for f in files]
    for f in files:
        f.close()
    wall = time.perf_counter() - t0
    sizes = {p.name: p.stat().st_size for p in sorted(index_dir.iterdir())}
    return {
        "recordings": sum(counts),
        "shards": shards,
        "build_seconds": wall,
        "insert_us_per_recording": insert_s / max(sum(counts), 1) * 1e6,
        "entry_us_per_recording": entry_s / max(sum(counts), 1) * 1e6,
        "sizes": sizes,
        "bytes": sum(sizes.values()),
    }


def _table_bytes(root: Path) -> dict[str, int]:
    """Bytes per table and index (dbstat), summed over the files."""
    import sqlite3

    from cxbackup.backup.index import INDEX_DIR, index_files

    out: dict[str, int] = {}
    for path in index_files(root / INDEX_DIR):
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            for name, size in db.execute("SELECT name, sum(pgsize) FROM dbstat GROUP BY name"):
                key = "recording_text (FTS5)" if name.startswith("recording_text") else name
                out[key] = out.get(key, 0) + int(size)
        except sqlite3.OperationalError:  # no dbstat in this sqlite3 library
            return {}
        finally:
            db.close()
    return out


def queries(n: int) -> list[tuple[str, dict[str, Any]]]:
    """(label, SearchQuery fields) with values taken from the data set."""
    from cxbackup.backup.search import parse_phone
    from cxbackup_dev.emulator.dataset import Dataset

    ds = Dataset(_spec(n))
    hour = 3_600_000
    mid = ds.start_ms + (n // PER_HOUR // 2) * hour
    rec = next(iter(ds.iter_records(mid, mid + hour)))
    voice = rec["mediaFiles"][0]
    caller = rec["callerPhoneNumber"]
    conn = voice["parameters"]["connId"]
    user = voice["parameters"]["username"]
    day: dict[str, Any] = {"start_from": mid, "start_to": mid + 24 * hour}
    return [
        ("--id (one recording)", {"ids": (rec["id"],)}),
        ("--phone, whole number", {"phones": (parse_phone(caller),)}),
        ("--phone, last 7 digits", {"phones": (parse_phone(caller[-7:]),)}),
        ("--agent (about 2,000 matches)", {"agents": (user,)}),
        ("--from/--to, 1 hour", {"start_from": mid, "start_to": mid + hour}),
        ("--from/--to, 1 day", day),
        ("--partition, 1 day", {**day, "partitions": (voice["partitions"][0],)}),
        ("--text, a rare word (connId)", {"text": conn}),
        ("--text callback (1 in 4 recordings)", {"text": "callback"}),
        ("--text callback --agent", {"text": "callback", "agents": (user,)}),
        ("--from only (every recording after)", {"start_from": mid}),
        ("no match (--agent nobody)", {"agents": ("nobody",)}),
    ]


def query(root: Path, n: int) -> dict[str, Any]:
    from cxbackup.backup.index import INDEX_DIR
    from cxbackup.backup.search import SearchQuery, search_index

    out = []
    for label, fields in queries(n):
        q = SearchQuery(limit=100, **fields)
        times = []
        result = None
        for _ in range(REPEATS):
            t0 = time.perf_counter()
            result = search_index(root / INDEX_DIR, q)
            times.append(time.perf_counter() - t0)
        assert result is not None
        times.sort()
        out.append(
            {
                "query": label,
                "total": result.total,
                "exact": result.total_exact,
                "shown": len(result.matches),
                "first_ms": times[0] * 1000 if REPEATS == 1 else None,
                "median_ms": times[len(times) // 2] * 1000,
                "max_ms": times[-1] * 1000,
            }
        )
        more = "" if result.total_exact else "+"
        print(f"{label}: {result.total}{more} matches, median {times[len(times) // 2] * 1000:.1f} ms", file=sys.stderr)
    return {"queries": out, "tables": _table_bytes(root)}


def main() -> int:
    what, root, n, shards = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    result = build(root, n, shards) if what == "build" else query(root, n)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
