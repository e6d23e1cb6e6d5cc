"""Readiness (`/readyz` on the metrics port) differs from liveness: started, and the API server answered a
read of the peering object recently. Served over real HTTP beside /metrics."""

from __future__ import annotations

import urllib.error
import urllib.request
from typing import Any

import pytest

from cxbackup.controller.probes import Readiness, serve_metrics_and_readiness
from cxbackup_dev.localcluster.controlplane import free_port
from tests.unit.controller.fakes import FakeClock


def _get(url: str, timeout: float) -> Any:
    return urllib.request.urlopen(url, timeout=timeout)  # noqa: S310 - http on loopback


def test_not_ready_before_start_then_ready_and_the_answer_is_kept_for_ttl() -> None:
    calls: list[float] = []
    clock = FakeClock()
    readiness = Readiness(lambda: calls.append(clock.now), ttl=10, clock=clock)
    assert readiness.ready() == (False, "the operator is starting")
    assert calls == []
    readiness.mark_started()
    assert readiness.ready() == (True, "ok")
    clock.now = 9.9
    assert readiness.ready() == (True, "ok")
    assert calls == [0.0]  # cached within ttl: probes do not load the API server
    clock.now = 10.0
    readiness.ready()
    assert calls == [0.0, 10.0]


def test_an_api_server_that_does_not_answer_makes_the_replica_unready_until_it_does() -> None:
    clock = FakeClock()
    failing = [True]

    def check() -> None:
        if failing[0]:
            raise ConnectionRefusedError("connection refused")

    readiness = Readiness(check, ttl=5, clock=clock)
    readiness.mark_started()
    ok, message = readiness.ready()
    assert not ok and "the API server did not answer: connection refused" in message
    failing[0] = False
    clock.now = 5
    assert readiness.ready() == (True, "ok")


def test_readyz_and_metrics_over_http() -> None:
    state = {"fail": False}

    def check() -> None:
        if state["fail"]:
            raise RuntimeError("HTTP 403 Forbidden")

    readiness = Readiness(check, ttl=0)
    port = free_port()
    server = serve_metrics_and_readiness(port, "127.0.0.1", readiness)
    try:
        base = f"http://127.0.0.1:{port}"
        with pytest.raises(urllib.error.HTTPError) as starting:
            _get(f"{base}/readyz", timeout=5)
        assert starting.value.code == 503
        starting.value.close()
        readiness.mark_started()
        with _get(f"{base}/readyz", timeout=5) as response:
            assert response.status == 200 and response.read() == b"ok\n"
        state["fail"] = True
        with pytest.raises(urllib.error.HTTPError) as lost:
            _get(f"{base}/readyz", timeout=5)
        assert lost.value.code == 503 and b"403 Forbidden" in lost.value.read()
        lost.value.close()
        with _get(f"{base}/metrics", timeout=5) as response:
            assert b"# HELP" in response.read()
    finally:
        server.shutdown()
        server.server_close()
