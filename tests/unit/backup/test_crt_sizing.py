"""How the CRT S3 client is sized from `concurrency` (crtsource.crt_sizing): every download the worker
runs at once gets its GETs admitted by the CRT, within one stated memory budget."""

from __future__ import annotations

import pytest

from cxbackup.backup.config import Credentials, RcbsConfig
from cxbackup.backup.connections import make_media_source
from cxbackup.backup.crtsource import (
    BUFFER_BUDGET_BYTES,
    CRT_MIN_MEMORY_LIMIT,
    CRT_RESERVED_BYTES,
    MIN_PART_BYTES,
    REQUESTS_PER_DOWNLOAD,
    CrtS3MediaSource,
    crt_sizing,
)
from cxbackup.backup.s3source import S3Options
from cxbackup.backup.vendor_client import StorageEntry, VendorSettings

MiB = 1 << 20
ALL_CONCURRENCIES = range(1, 257)  # what the configuration accepts


def test_every_request_of_every_download_fits_in_the_memory_limit() -> None:
    for downloads in ALL_CONCURRENCIES:
        s = crt_sizing(downloads)
        assert s.requests == downloads * REQUESTS_PER_DOWNLOAD
        # the CRT admits a GET only when a part buffer is free: all requests at once must fit
        assert s.requests * s.part_bytes <= s.memory_limit - CRT_RESERVED_BYTES, downloads
        # and it opens throughput_target / 0.4 connections: at least one per request
        assert s.throughput_target_gbps / 0.4 >= s.requests - 1e-9, downloads


def test_memory_stays_bounded_at_every_concurrency() -> None:
    for downloads in ALL_CONCURRENCIES:
        s = crt_sizing(downloads)
        assert s.memory_limit == CRT_MIN_MEMORY_LIMIT == 256 * MiB, downloads
        assert s.buffer_bytes == BUFFER_BUDGET_BYTES == 128 * MiB, downloads
        assert MIN_PART_BYTES <= s.part_bytes <= 8 * MiB, downloads
        assert s.part_bytes % (64 << 10) == 0, downloads


def test_the_default_concurrency_is_no_longer_held_to_sixteen_gets() -> None:
    # before: 256 MiB, 8 MiB parts -> (256 - 128) / 8 = 16 GETs at most, whatever concurrency said
    assert crt_sizing(16).part_bytes == 4 * MiB
    assert crt_sizing(64).part_bytes == 1 * MiB
    assert (crt_sizing(64).buffer_bytes // crt_sizing(64).part_bytes) == 128


def test_make_media_source_sizes_the_crt_client_from_concurrency() -> None:
    config = RcbsConfig.from_values({"gwsUriPrefix": "https://x/api", "targetDir": "/b", "concurrency": 48})
    creds = Credentials(aws_access_key_id="AKID", aws_secret_access_key="secret")
    settings = VendorSettings("t", (StorageEntry("usw1", "us-east-1", "bucket", ""),))
    source = make_media_source(config, creds, settings)
    assert isinstance(source, CrtS3MediaSource)
    assert source.sizing == crt_sizing(48)


@pytest.mark.parametrize("downloads", [1, 16, 64, 256])
def test_the_crt_accepts_the_sizing(downloads: int) -> None:
    """The CRT refuses some combinations (a memory limit under 256 MiB, a part larger than it)."""
    settings = VendorSettings("t", (StorageEntry("usw1", "us-east-1", "bucket", ""),))
    options = S3Options(access_key_id="a", secret_access_key="b", endpoint_url="http://127.0.0.1:9", region="us-east-1")
    source = CrtS3MediaSource(settings, options, downloads=downloads)
    assert source._crt_client("us-east-1") is not None
