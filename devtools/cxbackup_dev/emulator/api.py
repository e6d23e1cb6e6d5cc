"""The emulated recording API (docs/vendor-api.md): settings and paged recording metadata.

Routes live in one table, `ROUTES`: (method, path under the API prefix, fault endpoint name, handler
name). A path segment `{name}` matches one non-empty segment, handed to the handler as
`self.path_params[name]`.

- `GET {prefix}/me/settings/rcbs`: `{"tenant", "storage": [{region, awsRegion, bucket, prefix}]}`.
- `GET {prefix}/recordings?startTimeRange=FROM,TO&limit=N&offset=K`, also reachable as
  `{prefix}/recordings/download/` (the URL in RCBS's console output): the recordings with
  FROM <= startTime < TO sorted by (startTime, id), as `{"total", "offset", "recordings"}`. `limit`
  defaults to 100 and is capped at 1000 (larger values are served as 1000); a missing or malformed
  `startTimeRange`, or a negative `limit`/`offset`, is a 400.
- `GET {prefix}/contact-history?...` (emulator/contacts.py) and
  `GET {prefix}/chat/users/{userId}/messages?...` (emulator/chat.py) have their wire formats in those
  modules' docstrings; `{prefix}/chat/messages` and `{prefix}/chat/users` (no subject user) are a 400.
- Every request needs HTTP Basic credentials (401 otherwise). Faults are drawn before authentication,
  as a load balancer in front of the service would fail; the `lying_total` fault changes a paged
  answer after the route made it (`_lie_about_total`).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import ssl
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

from cxbackup_dev.emulator._http import FaultAwareHandler, LoopbackServer
from cxbackup_dev.emulator.chat import ORG_EXPORT_REFUSED, ChatHistory
from cxbackup_dev.emulator.contacts import ContactHistory
from cxbackup_dev.emulator.dataset import Dataset
from cxbackup_dev.emulator.faults import FaultInjector, FaultPlan

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "ROUTES", "RecordingApiServer", "RequestLog", "RequestRecord"]

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

# (method, path under the API prefix, fault endpoint, handler method of _ApiHandler)
ROUTES: list[tuple[str, str, str, str]] = [
    ("GET", "/me/settings/rcbs", "settings", "settings"),
    ("GET", "/recordings", "recordings", "recordings"),
    ("GET", "/recordings/download", "recordings", "recordings"),
    ("GET", "/contact-history", "contacts", "contacts"),
    ("GET", "/chat/users/{userId}/messages", "chat", "chat_messages"),
    ("GET", "/chat/messages", "chat", "chat_without_user"),
    ("GET", "/chat/users", "chat", "chat_without_user"),
]


@dataclass(frozen=True)
class RequestRecord:
    """One request an emulator server answered (for tests: what did the client ask?)."""

    endpoint: str
    method: str
    path: str
    status: int


class RequestLog:
    """The last `maxlen` requests, thread-safe."""

    def __init__(self, maxlen: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._items: deque[RequestRecord] = deque(maxlen=maxlen)

    def add(self, record: RequestRecord) -> None:
        with self._lock:
            self._items.append(record)

    def snapshot(self, endpoint: str | None = None) -> list[RequestRecord]:
        with self._lock:
            return [r for r in self._items if endpoint is None or r.endpoint == endpoint]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


class _BadRequest(Exception):
    status = 400


class _NotFound(_BadRequest):
    status = 404


def _match(template: str, path: str) -> dict[str, str] | None:
    """The `{name}` segments of `template` matched against `path`, or None when it does not match."""
    if "{" not in template:
        return {} if template == path else None
    want, got = template.split("/"), path.split("/")
    if len(want) != len(got):
        return None
    params: dict[str, str] = {}
    for w, g in zip(want, got, strict=True):
        if w.startswith("{") and w.endswith("}"):
            if not g:
                return None
            params[w[1:-1]] = unquote(g)
        elif w != g:
            return None
    return params


class _ApiHandler(FaultAwareHandler):
    api: ClassVar[RecordingApiServer]
    path_params: dict[str, str] = {}  # replaced per request in _dispatch

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self.read_body()
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self.read_body()
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        api = self.api
        url = urlsplit(self.path)
        path = url.path.rstrip("/") or "/"
        route = None
        allowed = []
        if path.startswith(api.api_path + "/"):
            sub = path[len(api.api_path) :]
            for r_method, r_path, endpoint, handler in ROUTES:
                params = _match(r_path, sub)
                if params is not None:
                    allowed.append(r_method)
                    if r_method == method or (method == "HEAD" and r_method == "GET"):
                        route = (endpoint, handler)
                        self.path_params = params
        if route is None:
            status = 405 if allowed else 404
            self._json(status, {"statusCode": status, "message": "Method Not Allowed" if allowed else "Not Found"},
                       FaultPlan(), "-", method)  # fmt: skip
            return
        endpoint, handler = route
        plan = api.injector.plan(endpoint, self.path)
        if plan.status is not None:
            extra = [("Retry-After", str(plan.retry_after))] if plan.retry_after is not None else []
            message = "Too Many Requests" if plan.throttled else "Service Unavailable"
            body = {"statusCode": plan.status, "message": message}
            self._json(plan.status, body, FaultPlan(delay_s=plan.delay_s), endpoint, method, extra)
            return
        if not self._authorized():
            self._json(
                401,
                {"statusCode": 401, "message": "Unauthorized"},
                FaultPlan(delay_s=plan.delay_s),
                endpoint,
                method,
                [("WWW-Authenticate", 'Basic realm="gws"')],
            )
            return
        fn: Callable[[dict[str, list[str]]], Any] = getattr(self, f"_route_{handler}")
        try:
            query = parse_qs(url.query, keep_blank_values=True)
            payload = fn(query)
            if plan.lying_total:
                payload = _lie_about_total(fn, query, payload)
        except _BadRequest as exc:
            body = {"statusCode": exc.status, "message": str(exc)}
            self._json(exc.status, body, FaultPlan(delay_s=plan.delay_s), endpoint, method)
            return
        self._json(200, payload, plan, endpoint, method)

    def _authorized(self) -> bool:
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        ok_user = hmac.compare_digest(user.encode(), self.api.username.encode())
        ok_password = hmac.compare_digest(password.encode(), self.api.password.encode())
        return bool(sep) and ok_user and ok_password

    def _json(
        self,
        status: int,
        payload: Any,
        plan: FaultPlan,
        endpoint: str,
        method: str,
        extra_headers: list[tuple[str, str]] | None = None,
    ) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = [("Content-Type", "application/json;charset=UTF-8"), *(extra_headers or [])]
        self.api.requests.add(RequestRecord(endpoint, method, self.path, status))
        self.send_reply(status, headers, body, len(body), plan, head_only=method == "HEAD")

    # ------------------------------------------------------------------------------------ routes

    def _route_settings(self, _query: dict[str, list[str]]) -> Any:
        return {"tenant": self.api.dataset.spec.tenant, "storage": [e.to_json() for e in self.api.dataset.storage]}

    def _route_recordings(self, query: dict[str, list[str]]) -> Any:
        lo, hi = _time_range(query)
        limit = _int_param(query, "limit", DEFAULT_LIMIT)
        offset = _int_param(query, "offset", 0)
        total, records = self.api.dataset.page(lo, hi, offset, min(limit, MAX_LIMIT))
        return {"total": total, "offset": offset, "recordings": records}

    def _route_contacts(self, query: dict[str, list[str]]) -> Any:
        lo, hi = _time_range(query)
        limit = _int_param(query, "limit", DEFAULT_LIMIT)
        offset = _int_param(query, "offset", 0)
        total, items = self.api.contacts.page(lo, hi, offset, min(limit, MAX_LIMIT))
        return {"total": total, "offset": offset, "items": items}

    def _route_chat_messages(self, query: dict[str, list[str]]) -> Any:
        user_id = self.path_params.get("userId", "")
        lo, hi = _time_range(query)
        limit = _int_param(query, "limit", DEFAULT_LIMIT)
        offset = _int_param(query, "offset", 0)
        try:
            return self.api.chat.page(user_id, lo, hi, offset, min(limit, MAX_LIMIT))
        except KeyError:
            raise _NotFound(f"chat user {user_id!r} not found") from None

    def _route_chat_without_user(self, _query: dict[str, list[str]]) -> Any:
        raise _BadRequest(ORG_EXPORT_REFUSED)


def _lie_about_total(route: Callable[[dict[str, list[str]]], Any], query: dict[str, list[str]], payload: Any) -> Any:
    """A paged answer with a `total` ten times too large (plus a page); an offset past the real end gets
    the last real page again (the offset it names stays the one asked for)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("total"), int):
        return payload
    items_key = "recordings" if "recordings" in payload else "items"
    total = payload["total"]
    limit = min(_int_param(query, "limit", DEFAULT_LIMIT), MAX_LIMIT)
    if not payload.get(items_key) and total > 0:
        payload = route({**query, "offset": [str(max(0, total - limit))]})
    return {**payload, "total": total * 10 + limit, "offset": _int_param(query, "offset", 0)}


def _time_range(query: dict[str, list[str]]) -> tuple[int, int]:
    rng = query.get("startTimeRange", [""])[-1]
    lo_text, sep, hi_text = rng.partition(",")
    try:
        lo, hi = int(lo_text), int(hi_text)
    except ValueError:
        raise _BadRequest("startTimeRange must be FROM,TO in epoch milliseconds") from None
    if not sep:
        raise _BadRequest("startTimeRange must be FROM,TO in epoch milliseconds")
    return lo, hi


def _int_param(query: dict[str, list[str]], name: str, default: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        value = int(values[-1])
    except ValueError:
        raise _BadRequest(f"{name} must be an integer") from None
    if value < 0:
        raise _BadRequest(f"{name} must be >= 0")
    return value


class RecordingApiServer:
    """The recording API on 127.0.0.1, serving a `Dataset` behind Basic auth and injected faults."""

    def __init__(
        self,
        dataset: Dataset,
        injector: FaultInjector,
        *,
        username: str,
        password: str,
        port: int = 0,
        api_path: str = "/api/v2",
        requests: RequestLog | None = None,
        tls: ssl.SSLContext | None = None,
        contacts: ContactHistory | None = None,
        chat: ChatHistory | None = None,
    ) -> None:
        self.dataset = dataset
        self.contacts = contacts or ContactHistory(dataset)
        self.chat = chat or ChatHistory(dataset)
        self.injector = injector
        self.username = username
        self.password = password
        self.api_path = "/" + api_path.strip("/")
        self.requests = requests or RequestLog()
        handler = type("ApiHandler", (_ApiHandler,), {"api": self})
        self._server = LoopbackServer(port, handler, "recording-api", tls)

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def uri_prefix(self) -> str:
        return f"{self._server.url}{self.api_path}"

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()
