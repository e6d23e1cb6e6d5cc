"""Fault injection for the emulator's HTTP endpoints: errors, throttling, latency, broken bodies.

A `FaultConfig` holds one `EndpointFaults` per endpoint name (`recordings`, `settings`, `s3`; later
endpoints such as contact history add their own names). For every request the `FaultInjector` draws
one `FaultPlan` from a seeded `random.Random` under a lock, so a run with the same seed and the same
request order sees the same faults, and the config can be swapped at runtime from any thread.

Per endpoint:

- `error_rate` / `error_status`: answer with that status (S3: 503 is a `SlowDown` XML error, 500 an
  `InternalError`; the API: a small JSON error body).
- `throttle_rate`: the API answers 429 (with `Retry-After` when `retry_after` is set); S3 answers
  503 SlowDown, which is how S3 throttles.
- `latency_s`, plus `spike_rate` / `spike_s`: a fixed delay on every request, and occasional spikes.
- `reset_rate`: send the headers and part of the body, then reset the connection (TCP RST).
- `truncate_rate`: send a Content-Length larger than what follows, then close.
- `fail_first`: the first N matching requests get `error_status`, whatever the rates (deterministic
  retry tests without probabilities).
- `match`: apply only to requests whose path contains this text (e.g. one media id).
- `lying_total`: paged API endpoints (recordings, contacts, chat) report a `total` ten times too large
  (plus a page) and answer an offset past the real end with the last page again, as a server that
  clamps offsets would: a client that trusts `total` pages on and on through repeated pages.

`counters` says how many requests each endpoint saw and how many of each fault it injected.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass, field, replace

__all__ = ["ENDPOINTS", "EndpointFaults", "FaultConfig", "FaultInjector", "FaultPlan"]

ENDPOINTS = ("recordings", "settings", "s3")


@dataclass(frozen=True)
class EndpointFaults:
    """The faults of one endpoint; all rates are probabilities per request in [0, 1]."""

    error_rate: float = 0.0
    error_status: int = 503
    throttle_rate: float = 0.0
    retry_after: int | None = None
    latency_s: float = 0.0
    spike_rate: float = 0.0
    spike_s: float = 0.0
    reset_rate: float = 0.0
    truncate_rate: float = 0.0
    fail_first: int = 0
    match: str | None = None
    lying_total: bool = False

    def __post_init__(self) -> None:
        for name in ("error_rate", "throttle_rate", "spike_rate", "reset_rate", "truncate_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if not 400 <= self.error_status <= 599:
            raise ValueError("error_status must be a 4xx or 5xx status")
        if self.latency_s < 0 or self.spike_s < 0 or self.fail_first < 0:
            raise ValueError("latency_s, spike_s and fail_first must be >= 0")

    @property
    def active(self) -> bool:
        return any(
            (
                self.error_rate,
                self.throttle_rate,
                self.latency_s,
                self.spike_rate,
                self.reset_rate,
                self.truncate_rate,
                self.fail_first,
                self.lying_total,
            )
        )


_NONE = EndpointFaults()


@dataclass(frozen=True)
class FaultConfig:
    """Faults per endpoint name, and the seed of the random draws."""

    endpoints: dict[str, EndpointFaults] = field(default_factory=dict)
    seed: int = 0

    @classmethod
    def uniform(cls, faults: EndpointFaults, *, endpoints: tuple[str, ...] = ENDPOINTS, seed: int = 0) -> FaultConfig:
        """The same faults on every listed endpoint."""
        return cls({name: faults for name in endpoints}, seed)

    @classmethod
    def none(cls) -> FaultConfig:
        return cls()

    def for_endpoint(self, name: str) -> EndpointFaults:
        return self.endpoints.get(name, _NONE)

    def with_endpoint(self, name: str, faults: EndpointFaults) -> FaultConfig:
        return replace(self, endpoints={**self.endpoints, name: faults})


@dataclass(frozen=True)
class FaultPlan:
    """What to do to one request."""

    delay_s: float = 0.0
    status: int | None = None  # answer with this status instead of the real response
    throttled: bool = False  # the status is a throttle (429 / S3 SlowDown)
    retry_after: int | None = None
    reset_at: float | None = None  # fraction of the body to send before a connection reset
    truncate_at: float | None = None  # fraction of the body to send before closing
    lying_total: bool = False  # a paged answer misstates its total (see EndpointFaults)

    @property
    def breaks_body(self) -> bool:
        return self.reset_at is not None or self.truncate_at is not None


class FaultInjector:
    """Draws a `FaultPlan` per request from the current config; thread-safe and reproducible."""

    def __init__(self, config: FaultConfig | None = None) -> None:
        self._lock = threading.Lock()
        self._config = config or FaultConfig()
        self._rng = random.Random(self._config.seed)
        self._seen: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()

    @property
    def config(self) -> FaultConfig:
        with self._lock:
            return self._config

    def set_config(self, config: FaultConfig) -> None:
        """Swap the config; restarts the random sequence and the `fail_first` counts."""
        with self._lock:
            self._config = config
            self._rng = random.Random(config.seed)
            self._seen.clear()

    def count(self, name: str) -> None:
        with self._lock:
            self.counters[name] += 1

    def plan(self, endpoint: str, path: str) -> FaultPlan:
        """The plan for one request to `endpoint` at `path` (counted in `counters`)."""
        with self._lock:
            self.counters[f"{endpoint}.requests"] += 1
            f = self._config.for_endpoint(endpoint)
            if not f.active or (f.match is not None and f.match not in path):
                return FaultPlan()
            rng = self._rng
            self._seen[endpoint] += 1
            delay = f.latency_s
            if f.spike_rate and rng.random() < f.spike_rate:
                delay += f.spike_s
                self.counters[f"{endpoint}.spikes"] += 1
            if self._seen[endpoint] <= f.fail_first or (f.error_rate and rng.random() < f.error_rate):
                self.counters[f"{endpoint}.errors"] += 1
                return FaultPlan(delay_s=delay, status=f.error_status)
            if f.throttle_rate and rng.random() < f.throttle_rate:
                self.counters[f"{endpoint}.throttled"] += 1
                status = 503 if endpoint == "s3" else 429
                return FaultPlan(delay_s=delay, status=status, throttled=True, retry_after=f.retry_after)
            if f.reset_rate and rng.random() < f.reset_rate:
                self.counters[f"{endpoint}.resets"] += 1
                return FaultPlan(delay_s=delay, reset_at=rng.uniform(0.1, 0.9))
            if f.truncate_rate and rng.random() < f.truncate_rate:
                self.counters[f"{endpoint}.truncated"] += 1
                return FaultPlan(delay_s=delay, truncate_at=rng.uniform(0.1, 0.9))
            if delay:
                self.counters[f"{endpoint}.delayed"] += 1
            if f.lying_total:
                self.counters[f"{endpoint}.lying_total"] += 1
            return FaultPlan(delay_s=delay, lying_total=f.lying_total)

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counters)
