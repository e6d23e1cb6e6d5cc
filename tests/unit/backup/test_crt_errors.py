"""What the CRT media source makes of the CRT's errors (crtsource._classify through `download_to`), with a
stand-in for the CRT's S3 client that fails the way the real one does, with the CRT's own error objects.

The refused TLS handshake itself is tested against real servers in tests/integration/test_crt_source.py and
test_private_ca.py (marked `slow`: the CRT waits s2n's blinding delay, 10 to 30 s, after a refused
negotiation); here, in no time, the message and the retry decision the worker gets for it."""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from awscrt.exceptions import AwsCrtError, from_code

from cxbackup.backup.crtsource import CrtS3MediaSource
from cxbackup.backup.errors import MediaSourceError, TargetError
from cxbackup.backup.s3source import S3Options
from cxbackup.backup.vendor_client import StorageEntry, VendorSettings
from cxbackup.core.tls import CA_CERTIFICATES

TLS_NEGOTIATION_FAILURE = 1029  # aws-c-io's AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE


class _Meta:
    def __init__(self, future: Future[None]) -> None:
        self.finished_future = future

    def cancel(self) -> None:  # pragma: no cover - only a stall cancels
        pass


class _FailingClient:
    """An S3 client whose GET fails with `error`: raised by make_request, or (`late`) by the request's future."""

    def __init__(self, error: AwsCrtError, *, late: bool) -> None:
        self.error, self.late = error, late

    def make_request(self, **_: Any) -> _Meta:
        if not self.late:
            raise self.error
        future: Future[None] = Future()
        future.set_exception(self.error)
        return _Meta(future)


def _source(client: _FailingClient) -> CrtS3MediaSource:
    settings = VendorSettings("t", (StorageEntry("usw1", "us-east-1", "media", ""),))
    options = S3Options(access_key_id="a", secret_access_key="b", endpoint_url="https://s3.example.com")
    source = CrtS3MediaSource(settings, options)
    source._crt_client = lambda region: client  # type: ignore[method-assign]
    return source


def test_the_crt_error_is_the_one_a_refused_handshake_gives() -> None:
    error = from_code(TLS_NEGOTIATION_FAILURE)
    assert (error.name, error.message) == ("AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE", "TLS (SSL) negotiation failed")


@pytest.mark.parametrize("late", [True, False], ids=["from-the-request", "at-the-start"])
def test_a_refused_tls_negotiation_is_not_retried_and_names_the_fix(tmp_path: Path, late: bool) -> None:
    source = _source(_FailingClient(from_code(TLS_NEGOTIATION_FAILURE), late=late))
    with pytest.raises(MediaSourceError) as info:
        source.download_to(source.locate("usw1", "k.bin"), str(tmp_path / "f"))
    assert type(info.value) is MediaSourceError
    assert info.value.retryable is False  # the same certificate on every attempt: each recording fails once
    assert str(info.value) == (
        "S3 transfer of s3://media/k.bin failed: AWS_IO_TLS_ERROR_NEGOTIATION_FAILURE: TLS (SSL) negotiation "
        f"failed; if the endpoint's certificate is signed by a private certificate authority, give that CA's "
        f"certificate in {CA_CERTIFICATES} (the chart's security.caCertificates)"
    )
    assert CA_CERTIFICATES == "CXBACKUP_CA_CERTIFICATES"


def test_other_transfer_errors_stay_retryable_and_say_no_more(tmp_path: Path) -> None:
    other = next(
        e
        for e in map(from_code, range(1024, 1200))
        if isinstance(e, AwsCrtError) and e.name.startswith("AWS_IO_SOCKET")
    )
    source = _source(_FailingClient(other, late=True))
    with pytest.raises(MediaSourceError) as info:
        source.download_to(source.locate("usw1", "k.bin"), str(tmp_path / "f"))
    assert info.value.retryable is True
    assert str(info.value) == f"S3 transfer of s3://media/k.bin failed: {other.name}: {other.message}"
    assert CA_CERTIFICATES not in str(info.value)
    assert not isinstance(info.value, TargetError)
