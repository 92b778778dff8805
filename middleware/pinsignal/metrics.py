"""Prometheus metrics of the delivery worker, and ``/healthz`` on the same port.

The worker owns one :class:`Metrics` (its own registry, so tests can run several) and serves it
with :class:`MetricsServer`, a few lines of asyncio rather than a thread::

    metrics = Metrics()
    server = await MetricsServer(metrics, port=9108, health=lambda: (True, "ok")).start()
    ...
    await server.close()

Counters are per process (Prometheus sums them across workers); depths, dead letters,
duplicates dropped at enqueue and paused accounts are read from Redis into ``metrics.shared``
by the worker every few seconds, so every worker reports the same cluster-wide values.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from pinsignal.insight import InsightMetrics
from pinsignal.pinterest.fields import MATCH_KEY_FIELDS, MATCH_KEYS

__all__ = ["MATCH_KEYS", "Metrics", "MetricsServer", "SharedState", "match_key_mask", "match_keys"]

logger = logging.getLogger("pinsignal.metrics")

# bit -> the user_data key a match key needs, or the keys when it needs several (IP and user agent):
# the single ones are tested with one dict lookup each, without a generator per key (11 calls an event)
_MASK_SINGLE = tuple((1 << bit, keys[0]) for bit, (_, keys) in enumerate(MATCH_KEY_FIELDS) if len(keys) == 1)
_MASK_SEVERAL = tuple((1 << bit, keys) for bit, (_, keys) in enumerate(MATCH_KEY_FIELDS) if len(keys) != 1)


def match_keys(event: dict[str, Any]) -> Iterator[str]:
    """The match keys an event carries, among :data:`MATCH_KEYS` (IP and user agent count together)."""
    mask = match_key_mask(event)
    return (key for bit, key in enumerate(MATCH_KEYS) if mask >> bit & 1)


def match_key_mask(event: dict[str, Any]) -> int:
    """:func:`match_keys` as a bit mask (bit i = ``MATCH_KEYS[i]``, from the field table), computed at enqueue.

    Computed once per shape of ``user_data``: a pipeline writes the same keys in the same order for
    every event, so when every value is set (the usual case, tested in C by ``all``) the mask of
    that tuple of keys is remembered (:func:`_mask_of` is the computation; ``tests/test_metrics_mask.py``
    checks both agree).
    """
    user = event.get("user_data")
    if type(user) is not dict:
        return _mask_of(user) if isinstance(user, dict) else 0
    if not all(user.values()):
        return _mask_of(user)
    names = tuple(user)
    mask = _MASKS.get(names)
    if mask is None:
        if len(_MASKS) >= 256:
            _MASKS.clear()
        mask = _MASKS[names] = _mask_of(user)
    return mask


# a tuple of user_data keys, all set -> its mask
_MASKS: dict[tuple[str, ...], int] = {}


def _mask_of(user: dict[str, Any]) -> int:
    mask = 0
    get = user.get
    for bit, key in _MASK_SINGLE:
        if get(key):
            mask |= bit
    for bit, several in _MASK_SEVERAL:
        for key in several:
            if not get(key):
                break
        else:
            mask |= bit
    return mask


@dataclass
class SharedState:
    """Cluster-wide values read from Redis (see ``pinsignal.status``)."""

    queue_depth: dict[str, int] = field(default_factory=dict)
    in_flight: dict[str, int] = field(default_factory=dict)
    dead_letters: dict[tuple[str, str], int] = field(default_factory=dict)  # (account, reason) -> count
    duplicates: dict[str, int] = field(default_factory=dict)
    paused: dict[str, str] = field(default_factory=dict)


class _SharedCollector(Collector):
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        shared = self.metrics.shared
        depth = GaugeMetricFamily("pinsignal_queue_depth", "Events waiting in the queue.", labels=["account"])
        for account, value in sorted(shared.queue_depth.items()):
            depth.add_metric([account], value)
        yield depth
        flight = GaugeMetricFamily("pinsignal_in_flight", "Events read by a worker, not yet done.", labels=["account"])
        for account, value in sorted(shared.in_flight.items()):
            flight.add_metric([account], value)
        yield flight
        dead = GaugeMetricFamily("pinsignal_dead_letters", "Events in the dead-letter store.",
                                 labels=["account", "reason"])
        for (account, reason), value in sorted(shared.dead_letters.items()):
            dead.add_metric([account, reason], value)
        yield dead
        dups = CounterMetricFamily("pinsignal_events_deduplicated", "Events dropped at enqueue as duplicates "
                                   "(same event_name and event_id within 48 h), all processes.",
                                   labels=["event_name"])
        for name, value in sorted(shared.duplicates.items()):
            dups.add_metric([name], value)
        yield dups
        paused = GaugeMetricFamily("pinsignal_account_paused", "1 while delivery to the account is paused "
                                   "(401/403 from Pinterest).", labels=["account", "status"])
        for account, status in sorted(shared.paused.items()):
            paused.add_metric([account, status], 1)
        yield paused


class CountedHistogram(Collector):
    """A histogram that takes ``observe(value, count)``: a batch's events share a handful of enqueue
    times, so one call per distinct latency replaces a thousand ``Histogram.observe`` calls."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = list(buckets)
        self.counts = [0] * (len(buckets) + 1)
        self.total = 0.0

    def observe(self, value: float, count: int = 1) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += count
        self.total += value * count

    def collect(self) -> Iterator[Any]:
        cumulative, running = [], 0
        for bound, count in zip([*self.bounds, float("inf")], self.counts, strict=True):
            running += count
            cumulative.append(("+Inf" if bound == float("inf") else repr(float(bound)), running))
        yield HistogramMetricFamily(self.name, self.documentation, buckets=cumulative, sum_value=self.total)


class Metrics:
    """Every metric the worker exports."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.shared = SharedState()
        self.delivered = Counter("pinsignal_events_delivered", "Events Pinterest processed.",
                                 ["account", "event_name"], registry=self.registry)
        self.failed = Counter("pinsignal_events_failed", "Events dead-lettered.",
                              ["account", "event_name", "reason"], registry=self.registry)
        self.retried = Counter("pinsignal_events_retried", "Event sends retried later.",
                               ["account", "event_name", "reason"], registry=self.registry)
        self.requests = Counter("pinsignal_requests", "Requests to Pinterest by outcome.",
                                ["account", "status"], registry=self.registry)
        self.match_keys = Counter("pinsignal_match_keys", "Delivered events carrying each match key.",
                                  ["key"], registry=self.registry)
        self.batch_size = Histogram("pinsignal_batch_size", "Events per request to Pinterest.",
                                    buckets=(1, 5, 20, 50, 100, 250, 500, 1000), registry=self.registry)
        self.latency = CountedHistogram("pinsignal_delivery_latency_seconds",
                                        "From enqueue to Pinterest's answer, per delivered event.",
                                        (0.05, 0.1, 0.25, 0.5, 1, 1.5, 2.5, 5, 10, 30, 60, 300, 3600))
        self.registry.register(self.latency)
        self.request_seconds = Histogram("pinsignal_request_seconds", "Duration of one request to Pinterest.",
                                         registry=self.registry)
        self.registry.register(_SharedCollector(self))
        self.insight = InsightMetrics(self.registry)  # warnings, match keys per event, refusals (DESIGN 8.3)
        for key in MATCH_KEYS:  # present at zero so coverage ratios exist from the start
            self.match_keys.labels(key)

    def render(self) -> bytes:
        return generate_latest(self.registry)


HealthCheck = Callable[[], tuple[bool, str]]


class MetricsServer:
    """``GET /metrics`` (Prometheus text) and ``GET /healthz`` (200 when healthy, else 503)."""

    def __init__(self, metrics: Metrics, port: int, host: str = "127.0.0.1",
                 health: HealthCheck | None = None) -> None:
        self.metrics = metrics
        self.port = port
        self.host = host
        self.health = health or (lambda: (True, "ok"))
        self._server: asyncio.Server | None = None

    async def start(self) -> MetricsServer:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("metrics on http://%s:%d/metrics, liveness on /healthz", self.host, self.port)
        return self

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=10)
            method, _, rest = request.partition(b" ")
            path = rest.split(b" ", 1)[0].split(b"?", 1)[0]
            if method not in (b"GET", b"HEAD"):
                status, body, kind = "405 Method Not Allowed", b"use GET\n", "text/plain"
            elif path == b"/metrics":
                status, body, kind = "200 OK", self.metrics.render(), CONTENT_TYPE_LATEST
            elif path == b"/healthz":
                ok, detail = self.health()
                status = "200 OK" if ok else "503 Service Unavailable"
                body, kind = (detail + "\n").encode(), "text/plain; charset=utf-8"
            else:
                status, body, kind = "404 Not Found", b"try /metrics or /healthz\n", "text/plain"
            head = (f"HTTP/1.1 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
                    f"Connection: close\r\n\r\n").encode()
            writer.write(head if method == b"HEAD" else head + body)
            await writer.drain()
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
