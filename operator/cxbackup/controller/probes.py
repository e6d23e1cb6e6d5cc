"""Readiness, distinct from liveness, served with /metrics.

Liveness is kopf's `/healthz` (the event loop answers). Readiness (`/readyz` on the metrics port) means this
replica can serve: its startup handlers ran and the API server answered a read of its peering object
recently, so it is connected and its peering is settled (active or standing by). A replica that lost the
API server turns unready within `ttl` seconds and is taken out of the metrics Service, without a restart.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

__all__ = ["Readiness", "serve_metrics_and_readiness", "wsgi_app"]


class Readiness:
    """`check` raises when the API server cannot be read; its result is kept for `ttl` seconds."""

    def __init__(
        self, check: Callable[[], None], *, ttl: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._check = check
        self._ttl = ttl
        self._clock = clock
        self._started = False
        self._checked_at: float | None = None
        self._result: tuple[bool, str] = (False, "starting")
        self._lock = threading.Lock()

    def mark_started(self) -> None:
        self._started = True

    def ready(self) -> tuple[bool, str]:
        if not self._started:
            return False, "the operator is starting"
        with self._lock:
            now = self._clock()
            if self._checked_at is None or now - self._checked_at >= self._ttl:
                try:
                    self._check()
                    self._result = (True, "ok")
                except Exception as exc:  # any failure to read means not ready; the message says why
                    self._result = (False, f"the API server did not answer: {exc}"[:300])
                self._checked_at = now
            return self._result


def wsgi_app(readiness: Readiness) -> Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]:
    """/readyz from `readiness`; every other path is the Prometheus exposition."""
    metrics_app = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/readyz":
            ok, message = readiness.ready()
            start_response("200 OK" if ok else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [message.encode() + b"\n"]
        result: Iterable[bytes] = metrics_app(environ, start_response)
        return result

    return app


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Probes every few seconds would flood the log."""


def serve_metrics_and_readiness(port: int, addr: str, readiness: Readiness) -> ThreadingWSGIServer:
    """Serve /metrics and /readyz on `addr:port` from a daemon thread; returns the server."""
    server = make_server(addr, port, wsgi_app(readiness), ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
