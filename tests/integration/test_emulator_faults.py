"""Injected faults seen by raw HTTP clients: 5xx, throttling, SlowDown, latency, truncated bodies, resets."""

from __future__ import annotations

import base64
import http.client
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

import boto3
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from cxbackup.certs import cms
from cxbackup_dev.emulator import Emulator, EndpointFaults, FaultConfig

pytestmark = pytest.mark.integration


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    error: str | None  # "reset" when the connection was reset

    @property
    def declared_length(self) -> int:
        return int(self.headers["content-length"])


def raw_request(netloc: str, method: str, target: str, headers: dict[str, str]) -> RawResponse:
    """One request on a fresh socket; read until EOF or reset, parse nothing but the head."""
    host, port = netloc.split(":")
    lines = [f"{method} {target} HTTP/1.1", f"Host: {netloc}", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() != "host"]
    data = b""
    error = None
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                error = "reset"
                break
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    return RawResponse(int(status_line.split()[1]), parsed, body, error)


def raw_api(emu: Emulator, path: str) -> RawResponse:
    url = urlsplit(emu.gws_uri_prefix + path)
    token = base64.b64encode(f"{emu.gws_username}:{emu.gws_password}".encode()).decode()
    target = url.path + ("?" + url.query if url.query else "")
    return raw_request(url.netloc, "GET", target, {"Authorization": f"Basic {token}"})


def raw_s3_get(emu: Emulator, media_id: str) -> RawResponse:
    bucket, key = emu.media_location(media_id)
    url = f"{emu.s3_endpoint}/{bucket}/{quote(key, safe='/~')}"
    request = AWSRequest(method="GET", url=url, headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    S3SigV4Auth(Credentials(emu.aws_access_key_id, emu.aws_secret_access_key), "s3", "us-west-1").add_auth(request)
    parts = urlsplit(url)
    return raw_request(parts.netloc, "GET", parts.path, {k: str(v) for k, v in request.headers.items()})


@pytest.fixture(autouse=True)
def no_faults_after(emulator: Emulator) -> Iterator[None]:
    yield
    emulator.set_faults(None)


@pytest.fixture(scope="module")
def media_id(emulator: Emulator) -> str:
    return str(next(emulator.records())["mediaFiles"][0]["mediaId"])


def recordings_path(emu: Emulator) -> str:
    return f"/recordings?startTimeRange={emu.start_ms},{emu.end_ms}&limit=5"


def test_api_error_rate_is_seeded_and_reproducible(emulator: Emulator) -> None:
    config = FaultConfig({"recordings": EndpointFaults(error_rate=0.5, error_status=500)}, seed=42)
    emulator.set_faults(config)
    before = emulator.counters.get("recordings.errors", 0)
    first = [raw_api(emulator, recordings_path(emulator)).status for _ in range(30)]
    assert set(first) == {200, 500} and 5 < first.count(500) < 25
    assert emulator.counters["recordings.errors"] - before == first.count(500)
    emulator.set_faults(config)  # same seed: the same sequence again
    assert [raw_api(emulator, recordings_path(emulator)).status for _ in range(30)] == first
    assert raw_api(emulator, "/me/settings/rcbs").status == 200  # other endpoints untouched


def test_api_fail_first_and_throttle(emulator: Emulator) -> None:
    emulator.set_faults(FaultConfig({"settings": EndpointFaults(fail_first=2)}))
    assert [raw_api(emulator, "/me/settings/rcbs").status for _ in range(3)] == [503, 503, 200]
    emulator.set_faults(FaultConfig({"recordings": EndpointFaults(throttle_rate=1.0, retry_after=3)}))
    resp = raw_api(emulator, recordings_path(emulator))
    assert resp.status == 429 and resp.headers["retry-after"] == "3"


def test_api_lying_total(emulator: Emulator) -> None:
    """Totals ten times too large (plus a page); past the real end, the last page again."""
    import json

    real = len(list(emulator.records()))
    emulator.set_faults(FaultConfig({"recordings": EndpointFaults(lying_total=True)}))
    first = json.loads(raw_api(emulator, recordings_path(emulator)).body)
    assert first["total"] == 10 * real + 5 and len(first["recordings"]) == 5
    past = f"/recordings?startTimeRange={emulator.start_ms},{emulator.end_ms}&limit=5&offset={real + 40}"
    page = json.loads(raw_api(emulator, past).body)
    assert page["offset"] == real + 40 and page["total"] == 10 * real + 5
    assert [r["id"] for r in page["recordings"]] == [r["id"] for r in list(emulator.records())[-5:]]
    assert emulator.counters["recordings.lying_total"] >= 2


def test_api_truncated_body(emulator: Emulator) -> None:
    emulator.set_faults(FaultConfig({"recordings": EndpointFaults(truncate_rate=1.0)}))
    resp = raw_api(emulator, recordings_path(emulator))
    assert resp.status == 200 and resp.error is None
    assert 0 < len(resp.body) < resp.declared_length
    url = urlsplit(emulator.gws_uri_prefix)
    conn = http.client.HTTPConnection(url.netloc, timeout=10)
    token = base64.b64encode(f"{emulator.gws_username}:{emulator.gws_password}".encode()).decode()
    conn.request("GET", url.path + recordings_path(emulator), headers={"Authorization": f"Basic {token}"})
    with pytest.raises(http.client.IncompleteRead):
        conn.getresponse().read()
    conn.close()


def test_api_latency(emulator: Emulator) -> None:
    emulator.set_faults(FaultConfig({"settings": EndpointFaults(latency_s=0.3)}))
    began = time.perf_counter()
    assert raw_api(emulator, "/me/settings/rcbs").status == 200
    assert time.perf_counter() - began >= 0.3


def test_s3_slowdown_and_internal_error(emulator: Emulator, media_id: str) -> None:
    emulator.set_faults(FaultConfig({"s3": EndpointFaults(error_rate=1.0, error_status=503)}))
    resp = raw_s3_get(emulator, media_id)
    assert resp.status == 503 and b"<Code>SlowDown</Code>" in resp.body
    emulator.set_faults(FaultConfig({"s3": EndpointFaults(error_rate=1.0, error_status=500)}))
    resp = raw_s3_get(emulator, media_id)
    assert resp.status == 500 and b"<Code>InternalError</Code>" in resp.body
    emulator.set_faults(FaultConfig({"s3": EndpointFaults(throttle_rate=1.0)}))
    assert b"<Code>SlowDown</Code>" in raw_s3_get(emulator, media_id).body


def test_s3_truncated_body_and_reset(emulator: Emulator, media_id: str) -> None:
    expected = len(cms.encrypt(emulator.media_plaintext(media_id), cms.load_certificate(emulator.tenant_cert_path)))
    emulator.set_faults(FaultConfig({"s3": EndpointFaults(truncate_rate=1.0)}))
    resp = raw_s3_get(emulator, media_id)
    assert resp.status == 200 and resp.declared_length == expected
    assert resp.error is None and 0 < len(resp.body) < expected
    emulator.set_faults(FaultConfig({"s3": EndpointFaults(reset_rate=1.0)}))
    resp = raw_s3_get(emulator, media_id)
    assert resp.error == "reset" and len(resp.body) < expected
    emulator.set_faults(None)
    whole = raw_s3_get(emulator, media_id)
    assert whole.status == 200 and len(whole.body) == whole.declared_length == expected


def test_s3_faults_only_where_matched(emulator: Emulator, media_id: str) -> None:
    other = str(list(emulator.records())[1]["mediaFiles"][0]["mediaId"])
    emulator.set_faults(FaultConfig({"s3": EndpointFaults(error_rate=1.0, match=quote(media_id, safe="/~"))}))
    assert raw_s3_get(emulator, media_id).status == 503
    assert raw_s3_get(emulator, other).status == 200


def test_a_retrying_client_gets_through_5xx(emulator: Emulator) -> None:
    emulator.set_faults(FaultConfig({"s3": EndpointFaults(error_rate=0.3)}, seed=5))
    client = boto3.session.Session().client(
        "s3",
        endpoint_url=emulator.s3_endpoint,
        aws_access_key_id=emulator.aws_access_key_id,
        aws_secret_access_key=emulator.aws_secret_access_key,
        region_name="us-west-1",
        config=Config(retries={"max_attempts": 10, "mode": "standard"}),
    )
    try:
        for rec in list(emulator.records())[:8]:
            media_id = rec["mediaFiles"][0]["mediaId"]
            bucket, key = emulator.media_location(media_id)
            data = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            assert cms.decrypt_with_key(data, cms.load_private_key(emulator.tenant_key_path)) == (
                emulator.media_plaintext(media_id)
            )
    finally:
        client.close()
    assert emulator.counters["s3.errors"] > 0
