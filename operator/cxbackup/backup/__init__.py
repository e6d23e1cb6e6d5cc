"""RCBS engine: back up call recordings from the vendor cloud to a directory or an S3 bucket.

An RCBS-compatible worker (`cxbackup download -config config.properties`) and what the operator calls:

    config = parse_properties(text, "config.properties")   # or RcbsConfig(...) from Python values
    text = config.to_properties()                           # render config.properties
    window = compute_window(config, now, last_end_time)     # one window for all shards
    summary = run_backup(config, Credentials.from_env(os.environ), sink=my_sink)

Modules: config (RcbsConfig, properties), properties (Java .properties syntax), window, sharding,
records (metadata pages), selection (media types, access filters), layout (paths and names),
vendor_client (recording API), s3source (vendor S3), targets / s3target (directory, S3 bucket, locks),
state (last recording end time), worker (the run), progress (sinks, summary), verify, audit,
estimate, connections (clients from config), console (CLI helpers), errors. Retries, HTTP and redaction
are cxbackup.core's.

No Kubernetes here: an import-linter contract keeps kopf/kubernetes/cxbackup.controller out.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cxbackup.backup.config import Credentials, RcbsConfig, load_properties, parse_properties
    from cxbackup.backup.errors import ConfigError, LockHeldError, RcbsError
    from cxbackup.backup.progress import ProgressSink, RecordingResult, RecordingStatus, RunSummary
    from cxbackup.backup.sharding import ShardAssignment, shard_of
    from cxbackup.backup.window import RecordingWindow, compute_window
    from cxbackup.backup.worker import run_backup

# The names above, imported when first used: importing one module of the package (a command that needs
# only `layout` or `errors`) must not import the whole engine (about 0.5 s of CPU at start-up).
_WHERE = {
    "Credentials": "config",
    "RcbsConfig": "config",
    "load_properties": "config",
    "parse_properties": "config",
    "ConfigError": "errors",
    "LockHeldError": "errors",
    "RcbsError": "errors",
    "ProgressSink": "progress",
    "RecordingResult": "progress",
    "RecordingStatus": "progress",
    "RunSummary": "progress",
    "ShardAssignment": "sharding",
    "shard_of": "sharding",
    "RecordingWindow": "window",
    "compute_window": "window",
    "run_backup": "worker",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


__all__ = [
    "ConfigError",
    "Credentials",
    "LockHeldError",
    "ProgressSink",
    "RcbsConfig",
    "RcbsError",
    "RecordingResult",
    "RecordingStatus",
    "RecordingWindow",
    "RunSummary",
    "ShardAssignment",
    "compute_window",
    "load_properties",
    "parse_properties",
    "run_backup",
    "shard_of",
]
