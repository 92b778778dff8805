"""A token bucket in Redis: every worker, on every machine, shares one bucket per ad account.

Pinterest allows 5,000 calls per minute per ad account; the bucket refills at a little less than
that (4,800 a minute by default) so that clock drift and the odd probe never reach the limit. The
same script honours an account-wide back-off set after a 429 or a 5xx, so one worker's
``Retry-After`` slows every worker down, not only itself::

    bucket = TokenBucket(redis)
    await bucket.acquire("549755885175")           # waits until a call may be made
    await bucket.back_off("549755885175", 2.5)     # nobody calls this account for 2.5 s
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from pinsignal import keys

__all__ = ["DEFAULT_CALLS_PER_MINUTE", "TokenBucket"]

logger = logging.getLogger("pinsignal.ratelimit")

DEFAULT_CALLS_PER_MINUTE = 4800

# KEYS[1] bucket hash, KEYS[2] back-off key. ARGV[1] tokens per second, ARGV[2] capacity.
# Returns 0 when a token was taken, else the milliseconds to wait before asking again.
# Time comes from the Redis server so that workers with skewed clocks still share one bucket.
_ACQUIRE_LUA = """
local backoff = redis.call('PTTL', KEYS[2])
if backoff > 0 then return backoff end
local rate = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
  tokens = capacity
  at = now
end
if now > at then tokens = math.min(capacity, tokens + (now - at) * rate / 1000) end
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(math.max(now, at)))
redis.call('PEXPIRE', KEYS[1], math.ceil(capacity * 1000 / rate) + 60000)
return wait
"""

# KEYS[1] back-off key, ARGV[1] milliseconds: extend the back-off, never shorten it.
_BACK_OFF_LUA = """
local left = redis.call('PTTL', KEYS[1])
if left < tonumber(ARGV[1]) then redis.call('SET', KEYS[1], '1', 'PX', ARGV[1]) end
return 0
"""


class TokenBucket:
    """At most ``calls_per_minute`` calls per account, across all processes sharing ``redis``."""

    def __init__(self, redis: Any, calls_per_minute: int = DEFAULT_CALLS_PER_MINUTE,
                 burst: int | None = None) -> None:
        if calls_per_minute <= 0:
            raise ValueError(f"calls_per_minute must be positive, got {calls_per_minute}.")
        self.rate = calls_per_minute / 60.0
        # A small burst: a minute's worth would let a restart spike past Pinterest's own window.
        self.capacity = burst if burst is not None else max(1, min(100, calls_per_minute // 60))
        self._acquire = redis.register_script(_ACQUIRE_LUA)
        self._back_off = redis.register_script(_BACK_OFF_LUA)

    async def try_acquire(self, account: str) -> float:
        """Take a token if one is there: returns 0.0, else the seconds to wait."""
        wait_ms = await self._acquire(keys=[keys.ratelimit(account), keys.backoff(account)],
                                      args=[repr(self.rate), self.capacity])
        return int(wait_ms) / 1000.0

    async def acquire(self, account: str, stop: asyncio.Event | None = None) -> bool:
        """Wait for a token. Returns ``False`` (without a token) if ``stop`` is set meanwhile."""
        while True:
            wait = await self.try_acquire(account)
            if wait <= 0:
                return True
            if stop is None:
                await asyncio.sleep(wait)
                continue
            try:
                await asyncio.wait_for(stop.wait(), timeout=wait)
            except TimeoutError:
                continue
            return False

    async def back_off(self, account: str, seconds: float) -> None:
        """Hold every worker off ``account`` for at least ``seconds``."""
        milliseconds = max(1, int(seconds * 1000))
        await self._back_off(keys=[keys.backoff(account)], args=[milliseconds])
