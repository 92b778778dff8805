"""Enqueueing Pinterest events for the delivery worker.

Contract used by the collector and ``track()``::

    queue = await EventQueue.connect(config)        # one per process, opened on lifespan or lazily
    result = await queue.enqueue([event, ...])      # v5 event dicts, already hashed and validated
    result.queued, result.duplicates                # event ids
    await queue.incr("dropped_consent")             # shared counters shown by ``pinsignal status``
    await queue.close()

Redis trouble (unreachable, out of memory, read-only...) is raised as
:class:`~pinsignal.errors.QueueUnavailable`, by the queue and by the readers of the same Redis
(``pinsignal.status``, ``pinsignal.dlq``), with the Redis error as its cause.

Each ad account has one Redis Stream of events (``pinsignal:{<account>}:events``) read by the workers
through one consumer group. A single Lua script per round trip drops ``(event_name, event_id)``
pairs seen within 48 hours and appends the new events, atomically for every event of the call, so
two web processes can never both queue the same event. Concurrent ``enqueue`` calls of one process
are coalesced into one round trip, which is what lets a collector reach tens of thousands of events
per second. Only hashed v5 events reach Redis; raw PII never does.

A web process without ``PINTEREST_AD_ACCOUNT_ID`` queues into the unassigned stream
(``pinsignal:{default}:events``), which the default account's worker delivers.
Every Redis name is in ``pinsignal.keys``.

On a Redis Cluster (``pinsignal.store``) the script runs on the master that owns the account's slot,
and an acknowledged call has waited for a replica to hold the events (``WAIT``): a failover loses
nothing that was answered ``202``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import orjson
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import (
    ConnectionError as RedisConnectionError,
    NoScriptError,
    RedisClusterException,
    ResponseError,
    TimeoutError as RedisTimeoutError,
)

from pinsignal import keys, store
from pinsignal.config import Config
from pinsignal.errors import QueueUnavailable
from pinsignal.metrics import match_key_mask
from pinsignal.retry import RetryPolicy

__all__ = [
    "DEDUP_SECONDS",
    "DEFAULT_BROWSER_DEDUP_MAX",
    "EnqueueResult",
    "EventQueue",
    "encode_records",
    "entry_meta",
    "unavailable",
]

logger = logging.getLogger("pinsignal.queue")

DEDUP_SECONDS = 48 * 3600
# Browser dedup entries made per 48 h window and account (PINSIGNAL_BROWSER_DEDUP_MAX, 100,000): about
# 180 bytes each, so at most two windows' worth, 36 MB, are alive at once.
DEFAULT_BROWSER_DEDUP_MAX: int = Config.browser_dedup_max
_MAX_EVENTS_PER_CALL = 2000  # keeps one script run short so Redis stays responsive to everyone else

# KEYS[1] stream, KEYS[2] the account's counters hash (every key of the script shares the account's hash tag,
# so it runs on a Redis Cluster too; the dedup keys it builds from ARGV[2] carry the same tag). ARGV[1] dedup
# seconds, ARGV[2] dedup key prefix, ARGV[3] the events, one record each: the byte lengths of event_name,
# event_id, meta and payload as four big-endian 32-bit integers (Redis's Lua has the struct library), then
# those four. One argument for the whole call because redis-py re-copies its output buffer for every small
# argument (quadratic up to 6 KB), which cost more than the script itself; an argument over 6 KB is sent as
# is. Returns one flag per event: 1 queued, 0 duplicate. ARGV[4], when given, has one byte per event: 's' for
# a server event, which takes precedence (DESIGN 8.1): it is queued when only a browser event ('b') held its
# id, and then holds it. A key written before sources were recorded ('1') counts as a server's. Browser ids
# are bounded (issue 18, item 8): anyone can post new ones, so at most ARGV[5] browser dedup entries (ARGV[4]
# is then always given) are made per 48 h window, counted in KEYS[3] (expiring after two windows, by when
# every entry it counted has expired); past that, a browser event is still caught by an entry that exists, but
# makes none. Without ARGV[5], browser entries are not capped.
_ENQUEUE_LUA = """
local flags = {}
local queued = 0
local ttl = ARGV[1]
local prefix = ARGV[2]
local blob = ARGV[3]
local sources = ARGV[4] or ''
local capped = ARGV[5] ~= nil
local budget = 0
local made = 0
if capped then budget = tonumber(ARGV[5]) - tonumber(redis.call('GET', KEYS[3]) or '0') end
local pos = 1
local size = #blob
local n = 0
while pos <= size do
  local ln, li, lm, lp, at = struct.unpack('>I4I4I4I4', blob, pos)
  local name = string.sub(blob, at, at + ln - 1)
  at = at + ln
  local id = string.sub(blob, at, at + li - 1)
  at = at + li
  local meta = string.sub(blob, at, at + lm - 1)
  at = at + lm
  pos = at + lp
  n = n + 1
  local key = prefix .. name .. ':' .. id
  local fresh
  if string.byte(sources, n) == 115 then
    local held = redis.call('GET', key)
    fresh = (not held) or held == 'b'
    if fresh then redis.call('SET', key, 's', 'EX', ttl) end
  elseif not capped or made < budget then
    fresh = redis.call('SET', key, 'b', 'NX', 'EX', ttl)
    if fresh then made = made + 1 end
  else
    fresh = redis.call('EXISTS', key) == 0
  end
  if fresh then
    redis.call('XADD', KEYS[1], '*', 'e', string.sub(blob, at, pos - 1), 'm', meta, 'i', id)
    flags[#flags + 1] = 1
    queued = queued + 1
  else
    flags[#flags + 1] = 0
    redis.call('HINCRBY', KEYS[2], 'duplicates:' .. name, 1)
  end
end
if queued > 0 then redis.call('HINCRBY', KEYS[2], 'enqueued', queued) end
local dups = #flags - queued
if dups > 0 then redis.call('HINCRBY', KEYS[2], 'duplicates', dups) end
if capped and made > 0 then
  redis.call('INCRBY', KEYS[3], made)
  redis.call('EXPIRE', KEYS[3], 2 * tonumber(ttl))
end
return flags
"""


T = TypeVar("T")


def awaited(value: Awaitable[T] | T) -> Awaitable[T]:
    """redis-py types its commands as sync-or-async; this tells mypy they are async here."""
    return cast(Awaitable[T], value)


def entry_meta(event: dict[str, Any]) -> str:
    """What the worker needs without parsing the event: ``event_name|event_time|match-key mask``."""
    event_time = event.get("event_time")
    return f"{event['event_name']}|{event_time if type(event_time) is int else ''}|{match_key_mask(event)}"


_LENGTHS = struct.Struct(">IIII")


def encode_records(events: Sequence[dict[str, Any]], encode: Callable[[Any], bytes]) -> bytes:
    """ARGV[3] of the enqueue script: per event the four lengths (``>IIII``) then event_name,
    event_id, :func:`entry_meta` and the JSON payload, in bytes; ``encode`` is what redis-py does
    to a value.

    One call per round trip, with :func:`entry_meta` written out in the loop and the lengths
    packed in C rather than formatted as decimals: that was most of the Python work per event
    (``tests/delivery/test_queue_records.py`` proves the records are those of the two functions).
    """
    dumps = orjson.dumps
    lengths = _LENGTHS.pack
    parts: list[bytes] = []
    for event in events:
        # Pipelines write the name and id as strings: encoded inline, without a call for each.
        name, event_id = event["event_name"], event["event_id"]
        name_bytes = name.encode() if type(name) is str else encode(name)
        id_bytes = event_id.encode() if type(event_id) is str else encode(event_id)
        event_time = event.get("event_time")
        meta = f"{name}|{event_time if type(event_time) is int else ''}|{match_key_mask(event)}".encode()
        payload = dumps(event)
        parts += (lengths(len(name_bytes), len(id_bytes), len(meta), len(payload)), name_bytes, id_bytes, meta, payload)
    return b"".join(parts)


# What Redis answers when it cannot take or give events: unreachable, timed out, or refusing the
# command (OOM, READONLY, LOADING...). A socket can also fail before redis-py wraps the error.
_REDIS_FAILURES = (RedisConnectionError, RedisTimeoutError, ResponseError, OSError, store.NotReplicated,
                   RedisClusterException)


@contextlib.contextmanager
def unavailable(doing: str) -> Iterator[None]:
    """Raise :class:`QueueUnavailable` (from the Redis error) when Redis fails in the block.

    The one translation of Redis failures, used by :class:`EventQueue`, ``pinsignal.status`` and
    ``pinsignal.dlq``: ``with unavailable("reading the queue's status"): ...``.
    """
    try:
        yield
    except _REDIS_FAILURES as exc:
        raise _unavailable(doing, exc) from exc


def _unavailable(doing: str, exc: BaseException) -> QueueUnavailable:
    return QueueUnavailable(f"Redis failed while {doing} ({type(exc).__name__}: {exc}); check that Redis is "
                            "running and has memory, then try again.")


@dataclass
class EnqueueResult:
    """What happened to each event of an ``enqueue`` call, by ``event_id``."""

    queued: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)


@dataclass
class _Pending:
    events: Sequence[dict[str, Any]]
    future: asyncio.Future[EnqueueResult]
    trusted: bool = False
    account: str = keys.UNASSIGNED_ACCOUNT


class EventQueue:
    """The producer side of the delivery queue; one per process.

    >>> queue = await EventQueue.connect(Config.from_env())
    >>> await queue.enqueue([{"event_name": "checkout", "event_id": "o-1", ...}])
    EnqueueResult(queued=['o-1'], duplicates=[])
    """

    def __init__(self, redis: store.Client, account: str, *,
                 browser_dedup_max: int | None = DEFAULT_BROWSER_DEDUP_MAX) -> None:
        self.redis = redis
        self.account = account
        self._browser_cap = browser_dedup_max  # None: browser dedup entries are not capped
        self._script = cast(Any, redis).register_script(_ENQUEUE_LUA)
        encoder = cast(Any, redis).get_encoder()
        # What redis-py would send for the value (str as UTF-8, int as its digits...), done here so
        # that the events go in one argument.
        self._encode: Callable[[Any], bytes] = (
            lambda value: value.encode() if type(value) is str else bytes(encoder.encode(value)))
        self._pending: deque[_Pending] = deque()
        self._flusher: asyncio.Task[None] | None = None
        self._direct = store.Direct(redis)  # the flusher's own connections, made at first use
        self._registered: set[str] = set()  # accounts this process has added to keys.ACCOUNTS

    @classmethod
    async def connect(cls, config: Config, policy: RetryPolicy | None = None) -> EventQueue:
        """Connect to ``REDIS_URL`` (or the embedded Redis, started on demand).

        A Redis restart is ridden out with ``policy``'s enqueue retries rather than failing the
        request. Retrying the script is safe: a repeat finds its own dedup keys and reports duplicates.
        """
        from pinsignal.migrate import migrate

        policy = policy or RetryPolicy()
        retry = Retry(ExponentialBackoff(cap=policy.enqueue_retry_cap, base=policy.redis_retry_base),
                      policy.enqueue_retries)
        client = await store.connect(config, socket_connect_timeout=5, health_check_interval=30, retry=retry,
                                     retry_on_error=[RedisConnectionError, OSError])
        try:
            await migrate(client)
        except _REDIS_FAILURES as exc:  # Redis is down: the first enqueue rides it out, a later start moves them
            logger.warning("could not look for an older version's keys (%s: %s)", type(exc).__name__, exc)
        return cls(client, config.ad_account_id or keys.UNASSIGNED_ACCOUNT, browser_dedup_max=config.browser_dedup_max)

    async def enqueue(self, events: Sequence[dict[str, Any]], *, trusted: bool = False,
                      account: str | None = None) -> EnqueueResult:
        """Queue hashed, validated v5 events; ``(event_name, event_id)`` seen in 48 h is a duplicate.

        ``account``: the ad account they go to (``pinsignal.accounts`` routes them), else this
        queue's own; each account has its own stream and dedup window.

        ``trusted=True`` (a server source's events): a pair that only a browser event holds is not a
        duplicate; the server event is queued and holds the pair from then on.

        Raises :class:`QueueUnavailable` when Redis cannot take them: the caller must not answer
        as if the events were accepted.
        """
        if not events:
            return EnqueueResult()
        future: asyncio.Future[EnqueueResult] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(events, future, trusted, account or self.account))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush())
        try:  # (not ``with unavailable(...)``: this runs for every request)
            return await future
        except _REDIS_FAILURES as exc:
            raise _unavailable("queueing events", exc) from exc

    async def _flush(self) -> None:
        # Everything that arrived while the previous round trip was in flight goes in the next one.
        while self._pending:
            chunk: list[_Pending] = []
            size = 0
            account = self._pending[0].account  # one account per round trip: its keys share one slot
            while self._pending and self._pending[0].account == account and (
                    not chunk or size + len(self._pending[0].events) <= _MAX_EVENTS_PER_CALL):
                item = self._pending.popleft()
                chunk.append(item)
                size += len(item.events)
            records = encode_records([event for item in chunk for event in item.events], self._encode)
            args: list[Any] = [DEDUP_SECONDS, keys.seen_prefix(account), records]
            if self._browser_cap is not None or any(item.trusted for item in chunk):
                args.append(b"".join((b"s" if item.trusted else b"b") * len(item.events) for item in chunk))
            try:
                if self._browser_cap is not None:
                    args.append(self._browser_cap)
                window = int(time.time()) // DEDUP_SECONDS
                flags = await self._run_script([keys.stream(account), keys.account_counters(account),
                                                keys.browser_seen_count(account, window)], args)
            except BaseException as exc:  # noqa: B036 - every waiter must hear about it, then re-raise
                for item in chunk:
                    if not item.future.done():
                        item.future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            if account not in self._registered:  # ``status`` lists the accounts of this set (another slot)
                await self._register(account)
            position = 0
            for item in chunk:
                result = EnqueueResult()
                for event in item.events:
                    event_id = event["event_id"]
                    (result.queued if flags[position] else result.duplicates).append(
                        event_id if type(event_id) is str else str(event_id))
                    position += 1
                if not item.future.done():
                    item.future.set_result(result)

    async def _register(self, account: str) -> None:
        # Once per process and account, after its first events are queued; a failure here fails no
        # caller (their events are queued) and is tried again with the next round trip.
        try:
            await awaited(self.redis.sadd(keys.ACCOUNTS, account))
        except _REDIS_FAILURES:
            return
        self._registered.add(account)

    async def _run_script(self, key_names: list[str], args: list[Any]) -> list[int]:
        """The enqueue script, on the flusher's own connection, with the client's retries.

        Only the flusher task sends it, one round trip at a time, so one connection is enough and
        the pool is skipped: its check-out (a lock, a probe read of the socket) and the client's
        command dispatch add 55% to 120% to the round trip (callgrind, instructions per round trip
        against those through ``Script``: 167k against 258k on CPython 3.13 with redis-py 6.4,
        125k against 274k on 3.11 with redis-py 5.3). The connection still connects on demand, pings
        when idle past the health-check interval, and is dropped and retried on connection errors
        as the client's are. On a Redis Cluster it is a connection to the master of the account's
        slot, followed by ``WAIT`` for a replica (:class:`pinsignal.store.Direct`).
        """
        sha = self._script.sha

        async def evalsha(connection: Any) -> list[int]:
            try:
                await connection.send_command("EVALSHA", sha, len(key_names), *key_names, *args)
                return cast(list[int], await connection.read_response())
            except NoScriptError:  # Redis restarted (or SCRIPT FLUSH, or a replica promoted): load it, send again
                await connection.send_command("SCRIPT", "LOAD", _ENQUEUE_LUA)
                await connection.read_response()
                await connection.send_command("EVALSHA", sha, len(key_names), *key_names, *args)
                return cast(list[int], await connection.read_response())

        return await self._direct.run(key_names[0], evalsha, durable=True)

    async def incr(self, counter_name: str, amount: int = 1) -> None:
        """Add to a shared counter (``dropped_consent``, ``dropped_bot``...) shown by ``pinsignal status``."""
        with unavailable("counting"):
            await awaited(self.redis.hincrby(keys.COUNTERS, counter_name, amount))

    async def close(self) -> None:
        """Wait for queued round trips, then close the connection pool."""
        if self._flusher is not None and not self._flusher.done():
            await asyncio.wait([self._flusher])
        await self._direct.aclose()
        await self.redis.aclose()
