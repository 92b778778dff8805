"""When delivery tries again, how long it waits, and when it gives up: one policy.

The Pinterest client reads from it what an answer means, the delivery loops how long to hold an
account off and when an event is too old to send, the queue and the worker how to ride out a
Redis outage::

    policy = RetryPolicy()                           # the defaults below
    policy.action(429)                               # 'retry'
    policy.asked_delay(response.headers, rate_limited=True)   # Retry-After / X-RateLimit-Reset
    policy.backoff(failures=3, asked=2.0)            # seconds every worker holds the account off
    policy.expired(event_time, time.time())          # too old: dead letter 'expired', never sent

``Delivery``, ``PinterestClient``, ``EventQueue.connect`` and ``worker_settings`` take a
``policy``; tests pass a quicker one (``RetryPolicy(backoff_base=0.1)``).
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pinsignal.pinterest.contract import MAX_EVENT_AGE

__all__ = ["Action", "RetryPolicy"]

# What the delivery loop does with a batch after Pinterest's answer:
# ``ok`` settle each event by its status, ``split`` halve the batch to isolate the bad events,
# ``pause`` stop sending to the account (nothing is dropped), ``retry`` back off and send again.
Action = Literal["ok", "split", "pause", "retry"]


@dataclass(frozen=True)
class RetryPolicy:
    """Which answers retry, the back-off, the maximum age, and the Redis outage policy.

    Pinterest's answers (200 and a 422 that lists per-event statuses are settled event by event
    by the client, whatever this says):

    - ``pause_statuses`` (401, 403, 404): the token or the account is wrong; pause the account.
    - ``retry_statuses`` (408, 409, 425, 429), every 5xx, timeouts and connection errors: retry
      the whole batch after :meth:`backoff`, shared by every worker of the account.
    - anything else (400, 413, a 422 without statuses...): split the batch.

    Events whose ``event_time`` is older than ``max_age`` seconds (Pinterest's 7 days) are
    dead-lettered as ``expired`` instead of being sent.

    Redis outages: a web process retries a failed enqueue ``enqueue_retries`` times (exponential
    from ``redis_retry_base``, capped at ``enqueue_retry_cap``) before ``QueueUnavailable`` is
    raised and the collector answers ``503``; the worker's arq connection retries
    ``worker_redis_retries`` times (capped at ``worker_redis_retry_cap``, about 90 s in all)
    before the process exits for its supervisor to restart it; a delivery loop whose Redis call
    failed waits ``redis_down_wait`` to twice that, then tries again, forever.
    """

    pause_statuses: frozenset[int] = frozenset({401, 403, 404})
    retry_statuses: frozenset[int] = frozenset({408, 409, 425, 429})
    backoff_base: float = 0.5
    backoff_cap: float = 60.0
    max_asked_delay: float = 300.0  # never trust a header asking us to sleep longer than five minutes
    max_age: int = MAX_EVENT_AGE
    redis_retry_base: float = 0.05
    enqueue_retries: int = 4
    enqueue_retry_cap: float = 0.5  # a Redis restart takes well under a second: ride it out
    worker_redis_retries: int = 90
    worker_redis_retry_cap: float = 1.0
    redis_down_wait: float = 0.5

    def action(self, status: int) -> Action:
        """What to do with a batch Pinterest answered ``status`` without per-event statuses."""
        if status in self.pause_statuses:
            return "pause"
        if status in self.retry_statuses or status >= 500:
            return "retry"
        return "split"

    def backoff(self, failures: int, asked: float | None = None) -> float:
        """Seconds to hold the account off after ``failures`` failed sends in a row.

        Exponential with full jitter (a random wait up to ``backoff_base * 2**failures``, capped
        at ``backoff_cap``), never shorter than what the answer ``asked`` for.
        """
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** min(failures, 16))
        return max(asked or 0.0, random.uniform(0, ceiling))

    def asked_delay(self, headers: Mapping[str, str], *, rate_limited: bool, now: float | None = None
                    ) -> float | None:
        """The wait asked for by ``Retry-After`` or, when ``rate_limited``, ``X-RateLimit-Reset``.

        Seconds, an HTTP date or an epoch timestamp, capped at ``max_asked_delay``; ``None`` when
        no header asks. ``X-RateLimit-Reset`` comes on every answer and only says when the window
        rolls over: it is a request to wait only when the limit was hit (a 429).
        """
        now = time.time() if now is None else now
        for name in ("retry-after", "x-ratelimit-reset") if rate_limited else ("retry-after",):
            seconds = self._header_seconds(headers.get(name), now)
            if seconds is not None:
                return seconds
        return None

    def _header_seconds(self, value: str | None, now: float) -> float | None:
        if not value:
            return None
        value = value.strip()
        try:
            # X-RateLimit-* may list several windows ("58, 58;w=60"): the first is the one that bites.
            seconds = float(value.split(",")[0].strip())
        except ValueError:
            try:
                parsed = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                return None
            seconds = parsed.timestamp() - now
        else:
            if seconds > 1e9:  # an epoch timestamp rather than a number of seconds
                seconds -= now
        return min(max(seconds, 0.0), self.max_asked_delay)

    def expired(self, event_time: int | None, now: float) -> bool:
        """True when an event is too old to send (``None``: the time is unknown, send it)."""
        return event_time is not None and event_time < now - self.max_age
