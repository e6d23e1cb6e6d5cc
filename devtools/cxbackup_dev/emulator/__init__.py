"""A local stand-in for the vendor cloud: recording API, S3 with CMS-encrypted media, fault injection.

It follows docs/vendor-api.md and the vendor's metadata format; it is a test double for the tests and
the demo, not the vendor's service. Start one with `Emulator` (in-process) or `cxbackup-dev emulator`.

Modules: `dataset` (reproducible, lazy recordings), `contacts` and `chat` (contact history and
per-user chat messages with retention, for exports), `faults` (per-endpoint fault injection), `api`
(the API server and its route table), `s3` (moto in a child process behind an
authenticating, fault-injecting proxy), `sigv4` (request signature checks), `tenant` (the tenant
key pair), `core` (the `Emulator` that ties them together).
"""

from __future__ import annotations

from cxbackup_dev.emulator.core import Emulator, MediaMode, write_properties
from cxbackup_dev.emulator.dataset import HOUR_MS, Dataset, DatasetSpec, Record, StorageEntry, format_time, parse_time
from cxbackup_dev.emulator.faults import EndpointFaults, FaultConfig, FaultInjector, FaultPlan
from cxbackup_dev.emulator.tls import TestCA

__all__ = [
    "HOUR_MS",
    "Dataset",
    "DatasetSpec",
    "Emulator",
    "EndpointFaults",
    "FaultConfig",
    "FaultInjector",
    "FaultPlan",
    "MediaMode",
    "Record",
    "StorageEntry",
    "TestCA",
    "format_time",
    "parse_time",
    "write_properties",
]
