"""The HTTP plumbing the emulator's servers share: a loopback threading server and fault-aware replies.

`LoopbackServer` is a `ThreadingHTTPServer` bound to 127.0.0.1 that runs in a background thread,
tracks its open connections so `stop()` ends idle keep-alive connections at once, and can close a
connection with a TCP reset. `FaultAwareHandler.send_reply` writes a response under a `FaultPlan`:
it sleeps the planned delay and, for a broken body, sends the full Content-Length but only part of
the body before a reset or a close.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cxbackup_dev.emulator.faults import FaultPlan

__all__ = ["FaultAwareHandler", "LoopbackServer"]

log = logging.getLogger("cxbackup_dev.emulator")

_CHUNK = 64 * 1024


class LoopbackServer(ThreadingHTTPServer):
    """A threading HTTP server on 127.0.0.1 that runs in its own thread until `stop()`; HTTPS when given a
    server-side `tls` context (the handshake happens in the connection's own thread, at its first read)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self, port: int, handler: type[BaseHTTPRequestHandler], name: str, tls: ssl.SSLContext | None = None
    ) -> None:
        self._tls = tls
        self._open: set[socket.socket] = set()
        self._reset: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.name = name
        super().__init__(("127.0.0.1", port), handler)

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self._tls else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=f"emulator-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self.shutdown()
            self._thread.join()
            self._thread = None
        with self._conn_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self.server_close()

    def get_request(self) -> tuple[Any, Any]:
        conn, addr = super().get_request()
        if self._tls is not None:
            conn = self._tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        with self._conn_lock:
            self._open.add(conn)
        return conn, addr

    def mark_reset(self, conn: socket.socket) -> None:
        """Close `conn` with a TCP RST (SO_LINGER 0, no FIN first) when its handler returns."""
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        with self._conn_lock:
            self._reset.add(conn)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._open.discard(request)
            reset = request in self._reset
            self._reset.discard(request)
        if reset:
            self.close_request(request)
        else:
            super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("%s: error while handling a request from %s", self.name, client_address, exc_info=True)


class FaultAwareHandler(BaseHTTPRequestHandler):
    """Base handler: HTTP/1.1 keep-alive, quiet logging, replies that can carry injected faults."""

    protocol_version = "HTTP/1.1"
    server_version = "cxbackup-emulator/1"
    sys_version = ""
    server: LoopbackServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s: " + format, self.server.name, *args)

    def read_body(self) -> bytes:
        """The request body (Content-Length or chunked transfer encoding)."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def send_reply(
        self,
        status: int,
        headers: Iterable[tuple[str, str]],
        body: bytes | Iterator[bytes],
        length: int,
        plan: FaultPlan,
        *,
        head_only: bool = False,
    ) -> None:
        """Send a response of `length` bytes, applying the plan's delay and body faults."""
        if plan.delay_s:
            time.sleep(plan.delay_s)
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(length))
        if plan.breaks_body:
            self.send_header("Connection", "close")
        self.end_headers()
        if head_only:
            return
        chunks: Iterator[bytes] = iter([body]) if isinstance(body, bytes) else body
        stop_after = length
        frac = plan.reset_at if plan.reset_at is not None else plan.truncate_at
        if frac is not None:
            stop_after = int(length * frac)
        sent = 0
        try:
            for chunk in chunks:
                if sent >= stop_after:
                    break
                piece = chunk[: stop_after - sent]
                for i in range(0, len(piece), _CHUNK):
                    self.wfile.write(piece[i : i + _CHUNK])
                sent += len(piece)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        if frac is not None:
            self.close_connection = True
            if plan.reset_at is not None:
                self.server.mark_reset(self.connection)
