"""The emulator's fault draws (reproducible, thread-safe config) and its SigV4 request checks."""

from __future__ import annotations

from email.message import Message
from urllib.parse import urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from cxbackup_dev.emulator.faults import EndpointFaults, FaultConfig, FaultInjector
from cxbackup_dev.emulator.sigv4 import check_request

KEYS = {"AKIAEMULATOR00000001": "the-secret"}


def _statuses(config: FaultConfig, n: int = 200) -> list[object]:
    injector = FaultInjector(config)
    return [
        (p.status, p.throttled, p.reset_at, p.truncate_at)
        for p in (injector.plan("recordings", "/api/v2/recordings") for _ in range(n))
    ]


def test_same_seed_same_faults() -> None:
    config = FaultConfig.uniform(EndpointFaults(error_rate=0.2, throttle_rate=0.1, reset_rate=0.1), seed=3)
    assert _statuses(config) == _statuses(config)
    assert _statuses(config) != _statuses(FaultConfig(config.endpoints, seed=4))


def test_rates_are_roughly_honoured_and_counted() -> None:
    injector = FaultInjector(FaultConfig({"s3": EndpointFaults(error_rate=0.3, truncate_rate=0.5)}, seed=1))
    plans = [injector.plan("s3", "/bucket/key") for _ in range(2000)]
    errors = sum(p.status == 503 for p in plans)
    truncated = sum(p.truncate_at is not None for p in plans)
    assert 500 < errors < 700  # 30 %
    assert 600 < truncated < 800  # 50 % of the remaining 70 %
    counters = injector.snapshot()
    assert counters["s3.requests"] == 2000 and counters["s3.errors"] == errors
    assert counters["s3.truncated"] == truncated
    assert injector.plan("recordings", "/x").status is None  # other endpoints untouched


def test_fail_first_match_and_runtime_swap() -> None:
    injector = FaultInjector(FaultConfig({"s3": EndpointFaults(fail_first=2, error_status=500, match="KEY1")}))
    assert injector.plan("s3", "/b/KEY2").status is None
    assert [injector.plan("s3", "/b/KEY1").status for _ in range(4)] == [500, 500, None, None]
    injector.set_config(FaultConfig({"s3": EndpointFaults(throttle_rate=1.0, retry_after=2)}))
    plan = injector.plan("s3", "/b/KEY1")
    assert (plan.status, plan.throttled, plan.retry_after) == (503, True, 2)
    api = FaultInjector(FaultConfig.uniform(EndpointFaults(throttle_rate=1.0)))
    assert api.plan("recordings", "/r").status == 429
    injector.set_config(FaultConfig())
    assert injector.plan("s3", "/b/KEY1").status is None


def test_latency_and_spikes() -> None:
    injector = FaultInjector(FaultConfig({"settings": EndpointFaults(latency_s=0.01, spike_rate=1.0, spike_s=0.5)}))
    assert injector.plan("settings", "/s").delay_s == pytest.approx(0.51)


def test_invalid_faults_are_refused() -> None:
    with pytest.raises(ValueError):
        EndpointFaults(error_rate=2.0)
    with pytest.raises(ValueError):
        EndpointFaults(error_status=200)


# --------------------------------------------------------------------------------- SigV4


def _signed(method: str, url: str, key_id: str, secret: str, *, presign: bool = False) -> tuple[str, Message]:
    request = AWSRequest(method=method, url=url, headers={"X-Amz-Content-SHA256": "UNSIGNED-PAYLOAD"})
    creds = Credentials(key_id, secret)
    if presign:
        S3SigV4QueryAuth(creds, "s3", "us-west-1", expires=60).add_auth(request)
    else:
        S3SigV4Auth(creds, "s3", "us-west-1").add_auth(request)
    parts = urlsplit(request.url)
    headers = Message()
    headers["Host"] = parts.netloc
    for name, value in request.headers.items():
        headers[name] = value if isinstance(value, str) else value.decode()
    return parts.path + ("?" + parts.query if parts.query else ""), headers


URL = "http://127.0.0.1:9000/stage-recordings-us-west-1/PoD_tenant_2034/W6x%2BVq8f_ID_2021.mp4?versionId=3&a=b%20c"


def test_a_correct_signature_passes() -> None:
    target, headers = _signed("GET", URL, "AKIAEMULATOR00000001", "the-secret")
    assert check_request("GET", target, headers, KEYS) is None
    target, headers = _signed("GET", URL, "AKIAEMULATOR00000001", "the-secret", presign=True)
    assert "X-Amz-Signature=" in target
    assert check_request("GET", target, headers, KEYS) is None


def test_wrong_secret_unknown_key_and_anonymous_are_refused() -> None:
    target, headers = _signed("GET", URL, "AKIAEMULATOR00000001", "wrong")
    failure = check_request("GET", target, headers, KEYS)
    assert failure is not None and failure.code == "SignatureDoesNotMatch"
    target, headers = _signed("GET", URL, "AKIAUNKNOWN000000000", "the-secret")
    failure = check_request("GET", target, headers, KEYS)
    assert failure is not None and failure.code == "InvalidAccessKeyId"
    assert failure.access_key_id == "AKIAUNKNOWN000000000"
    failure = check_request("GET", "/b/k", Message(), KEYS)
    assert failure is not None and failure.code == "AccessDenied"


def test_a_tampered_request_is_refused() -> None:
    target, headers = _signed("GET", URL, "AKIAEMULATOR00000001", "the-secret")
    failure = check_request("GET", target.replace("2021", "2022"), headers, KEYS)
    assert failure is not None and failure.code == "SignatureDoesNotMatch"
    failure = check_request("DELETE", target, headers, KEYS)
    assert failure is not None and failure.code == "SignatureDoesNotMatch"
