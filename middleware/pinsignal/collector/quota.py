"""Per-client quotas on the collector: a token bucket per client address, in this process.

Anonymous posts are what a visitor's browser sends, and anyone can send them. Without a limit, one
client can post events as fast as the collector takes them and fill Redis (issue 18, item 8). Each
client address gets ``PINSIGNAL_CLIENT_EVENTS_PER_MINUTE`` tokens a minute (1,200 by default, 20 a
second) and may save up ``PINSIGNAL_CLIENT_BURST`` (400). A post is refused with ``429`` and
``Retry-After`` while its client's bucket is empty; otherwise it costs one token, and each event
of a browser batch (``POST /_ps/e``, and the Segment routes' browser posts) one more, so a bucket
may go into debt by one batch and the next post waits for it to be paid back::

    quota = ClientQuota(per_minute=1200, burst=400)
    wait = quota.check("203.0.113.9")        # 0.0: go ahead (one token taken); else seconds to wait
    quota.charge("203.0.113.9", 100)         # the events of the post

The client is the address the collector believes (the peer, or ``X-Forwarded-For`` from a trusted
proxy); IPv6 addresses share a bucket per ``/64``, which is what one customer is usually given. A
Segment-route post from a server library (``Authorization`` with a write key, and neither ``Origin``
nor ``Sec-Fetch-Site``, DESIGN 8.1) is not counted: a back end sends every visitor's events from one
address, and its key is checked before the body is read (a wrong one is ``401``). A browser's
post is counted whatever it carries. The buckets live in this process (a few hundred bytes per client, at
most ``max_clients`` of them, the least recently seen forgotten first), so with several web
processes a client gets each process's quota; that is the point of an in-process limit: it costs no
round trip, and it holds when Redis is what is in trouble.
"""

from __future__ import annotations

import math
import socket
import time

from pinsignal.config import Config

__all__ = ["ClientQuota"]

_MAX_CLIENTS = 50_000


class ClientQuota:
    """Token buckets by client address; ``per_minute`` tokens a minute, up to ``burst`` saved."""

    def __init__(self, *, per_minute: int, burst: int, max_clients: int = _MAX_CLIENTS) -> None:
        if per_minute <= 0 or burst <= 0:
            raise ValueError(f"a quota needs a positive rate and burst, got {per_minute} and {burst}")
        self.rate = per_minute / 60.0
        self.burst = float(burst)
        self._max_clients = max_clients
        # client -> [tokens, last refill]; insertion order is the order clients were last seen
        self._buckets: dict[str | bytes, list[float]] = {}

    def _bucket(self, client: str | None, now: float) -> list[float]:
        key = _client_key(client)
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = [self.burst, now]
            if len(self._buckets) >= self._max_clients:
                del self._buckets[next(iter(self._buckets))]  # the least recently seen client
        else:
            bucket[0] = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
            bucket[1] = now
        self._buckets[key] = bucket
        return bucket

    def check(self, client: str | None, *, now: float | None = None) -> float:
        """``0.0`` and one token taken when ``client`` may post now; else the seconds until it may."""
        bucket = self._bucket(client, time.monotonic() if now is None else now)
        if bucket[0] < 1.0:
            return (1.0 - bucket[0]) / self.rate
        bucket[0] -= 1.0
        return 0.0

    def charge(self, client: str | None, events: int, *, now: float | None = None) -> None:
        """Take ``events`` tokens for a post's events (the bucket may go into debt)."""
        if events > 0:
            self._bucket(client, time.monotonic() if now is None else now)[0] -= events

    @classmethod
    def from_config(cls, config: Config) -> ClientQuota | None:
        """The quota ``PINSIGNAL_CLIENT_EVENTS_PER_MINUTE`` and ``_CLIENT_BURST`` ask for; ``None`` when off."""
        if not config.client_events_per_minute:
            return None
        return cls(per_minute=config.client_events_per_minute, burst=config.client_burst)

    @staticmethod
    def retry_after(wait: float) -> bytes:
        """A ``Retry-After`` value for ``wait`` seconds: whole seconds, at least 1."""
        return str(max(1, math.ceil(wait))).encode("ascii")


def _client_key(client: str | None) -> str | bytes:
    """The bucket's key: an IPv4 address as it is, an IPv6 address by its ``/64`` (the first 8 bytes)."""
    if not client or ":" not in client:
        return client or ""
    try:
        return socket.inet_pton(socket.AF_INET6, client)[:8]  # in C: ipaddress took ten times as long
    except OSError:  # a zone id ("fe80::1%eth0") or not an address at all: keyed as it is
        return client
