"""The delivery loop: read batches from the account's stream, send them, settle every event.

A :class:`Delivery` runs inside the worker process (see ``pinsignal.worker``) as a few concurrent
loops sharing one Redis consumer-group consumer. Each loop:

1. takes a batch: entries of dead consumers idle longer than ``reclaim_after`` (a SIGKILLed
   worker's batch), then new entries, waiting at most ``batch_max_wait`` after the oldest one so
   that light traffic still leaves within about a second;
2. dead-letters events older than Pinterest accepts (``expired``);
3. takes a token from the shared bucket and posts the batch;
4. settles it by Pinterest's answer, as the client's :class:`~pinsignal.retry.RetryPolicy` reads
   it: per-event statuses (200/422) ack the processed events and dead-letter the failed ones with
   Pinterest's message; a 400 splits the batch in halves until the bad events are isolated;
   429/5xx/timeouts/connection errors back the whole account off (:meth:`RetryPolicy.backoff`)
   and retry; 401/403/404 pause the account: the batch goes back to the queue, one line is
   logged, and one probe a ``probe_interval`` tries again until Pinterest accepts, which resumes
   delivery.

Entries in hand have their idle time reset every second (``XCLAIM ... JUSTID``), so only a dead
worker's entries are ever reclaimed: on the happy path no event is sent twice. Acks, deletions,
dead letters and counters of one batch are written in one MULTI (all of them keys of the account, so
one slot on a Redis Cluster); the unassigned stream's acks, in another slot, follow it.

On a Redis Cluster one XREADGROUP cannot read two streams of different slots, so a delivery of the
default account reads its own stream and the unassigned one in turn (:meth:`Delivery._read`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, defaultdict
from typing import Any, cast

import orjson
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from pinsignal import keys, store
from pinsignal.config import Config
from pinsignal.dlq import DeadLetter, DeadLetters, Reason
from pinsignal.errors import ConfigError
from pinsignal.insight import DeliveryTrace
from pinsignal.metrics import MATCH_KEYS, Metrics, match_key_mask
from pinsignal.pinterest.client import PinterestClient, SendResult
from pinsignal.queue import awaited
from pinsignal.ratelimit import TokenBucket
from pinsignal.trace import TraceWriter

__all__ = ["Delivery", "Entry"]

logger = logging.getLogger("pinsignal.delivery")


# KEYS[1] stream, ARGV[1] group, ARGV[2..] entry ids: ack and delete them (one id list on the wire, not two).
_DONE_LUA = """
local ids = {}
for i = 2, #ARGV do ids[#ids + 1] = ARGV[i] end
redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
return redis.call('XDEL', KEYS[1], unpack(ids))
"""


class Entry:
    """One queued event in hand: where it lives in Redis and what it is.

    The event itself is parsed only when it is dead-lettered: name, time and match keys come from
    the ``m`` field written at enqueue, which keeps a 1000-event batch cheap to handle.
    """

    __slots__ = ("_event", "attempts", "done", "enqueued_at", "event_id", "event_name", "event_time", "id", "keys",
                 "meta", "raw", "stream")

    def __init__(self, stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        # Runs for every event of every batch: keep it to a few dict lookups and one split.
        self.stream = stream
        self.id = entry_id
        self.raw = fields[b"e"]
        attempts = fields.get(b"n")
        self.attempts = int(attempts) if attempts else 0
        stamp = fields.get(b"t")
        self.enqueued_at = float(stamp) if stamp else int(entry_id[:entry_id.index(b"-")]) * 0.001
        self.done = False
        self._event: dict[str, Any] | None = None
        ident = fields.get(b"i")  # the event_id, written by the enqueue script (None: an older entry)
        self.event_id = ident.decode() if ident is not None else None
        meta = self.meta = fields.get(b"m")
        if meta:
            name, event_time, mask = meta.split(b"|")
            self.event_name = name.decode()
            self.event_time = int(event_time) if event_time else None
            self.keys = int(mask)
        else:  # queued by something that did not write ``m`` (an older version): read the event
            event = self.event
            self.event_name = str(event.get("event_name", "unknown"))
            self.event_time = event["event_time"] if type(event.get("event_time")) is int else None
            self.keys = match_key_mask(event)

    @property
    def event(self) -> dict[str, Any]:
        if self._event is None:
            self._event = orjson.loads(self.raw)
        return self._event


def _entry(stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> Entry:
    return Entry(stream, entry_id, fields)


class Delivery:
    """Delivers one ad account's queue (and, unless ``unassigned=False``, the unassigned queue) to Pinterest.

    Retries, back-off and the maximum age follow ``client.policy``.
    """

    def __init__(self, redis: store.Client, config: Config, client: PinterestClient, *, consumer: str,
                 metrics: Metrics | None = None, bucket: TokenBucket | None = None,
                 reclaim_after: float = 5.0, probe_interval: float = 5.0, unassigned: bool = True) -> None:
        if not config.ad_account_id:
            raise ConfigError("PINTEREST_AD_ACCOUNT_ID is not set; the worker needs the account to deliver to.")
        self.redis = redis
        self.client = client
        self.policy = client.policy
        self.account = config.ad_account_id
        self.consumer = consumer
        self.metrics = metrics or Metrics()
        self.bucket = bucket or TokenBucket(redis)
        self.letters = DeadLetters(redis)
        self.trace = DeliveryTrace(TraceWriter(redis, config.trace_maxlen), self.metrics.insight, self.account)
        self._done_script = cast(Any, redis).register_script(_DONE_LUA)
        self.batch_size = config.batch_size
        self.max_wait = config.batch_max_wait
        self.reclaim_after = reclaim_after
        self.probe_interval = probe_interval
        # ``unassigned``: also deliver the stream of web processes without an account (the default account's
        # job; the other accounts of PINSIGNAL_ACCOUNTS read only their own)
        self.streams = list(dict.fromkeys([keys.stream(self.account),
                                           *([keys.stream(keys.UNASSIGNED_ACCOUNT)] if unassigned else [])]))
        self.stop = asyncio.Event()
        self.in_hand: dict[str, set[bytes]] = defaultdict(set)
        self.last_progress = time.monotonic()
        self._read_lock = asyncio.Lock()
        self._last_reclaim = 0.0
        self._failures = 0
        self._paused_at = 0.0
        self._paused: bool = False
        self._redis_down = False
        self._down_logged = 0.0
        self._cluster = store.is_cluster(redis)
        self._turn = 0

    @property
    def redis_down(self) -> bool:
        """True while the last Redis call of a loop failed (``/healthz`` reports it)."""
        return self._redis_down

    # ------------------------------------------------------------------ set-up and loops

    async def setup(self) -> None:
        """Create the consumer groups (idempotent) and register the accounts for ``status``."""
        for stream in self.streams:
            with contextlib.suppress(ResponseError):  # BUSYGROUP: it exists
                await self.redis.xgroup_create(stream, keys.GROUP, id="0", mkstream=True)
        await awaited(self.redis.sadd(keys.ACCOUNTS, *[keys.account_of(stream) for stream in self.streams]))

    async def run_loop(self) -> None:
        """Deliver until :attr:`stop` is set; Redis outages are waited out, never fatal."""
        while not self.stop.is_set():
            try:
                if self._redis_down:
                    await self.setup()
                    self._redis_down = False
                    logger.warning("Redis is reachable again; delivery continues")
                if await self._paused_now() and not await self._probe_turn():
                    await self._sleep(min(1.0, self.probe_interval))
                    continue
                batch = await self._take()
                if batch:
                    await self._deliver(batch)
            except (RedisError, OSError, RedisClusterException) as exc:  # the last: a cluster unreachable
                now = time.monotonic()
                if not self._redis_down or now - self._down_logged > 30:
                    logger.warning("Redis is unreachable (%s: %s); retrying", type(exc).__name__, exc)
                    self._down_logged = now
                self._redis_down = True
                await self._sleep(self.policy.redis_down_wait * (1 + random.random()))
            self.last_progress = time.monotonic()

    async def close(self) -> None:
        """Write what the trace still holds and close its connection; call once the loops have stopped."""
        await self.trace.writer.close()

    async def heartbeat(self) -> None:
        """Keep entries in hand from looking abandoned to other workers."""
        while not self.stop.is_set():
            await self._sleep(min(1.0, self.reclaim_after / 4))
            for stream, ids in list(self.in_hand.items()):
                if not ids:
                    continue
                with contextlib.suppress(RedisError, OSError, RedisClusterException):
                    await self.redis.xclaim(stream, keys.GROUP, self.consumer, 0, list(ids), justid=True)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), timeout=seconds)

    # ------------------------------------------------------------------ taking a batch

    async def _take(self) -> list[Entry]:
        async with self._read_lock:
            if self.stop.is_set():
                return []
            entries = await self._reclaim(self.batch_size)
            if len(entries) < self.batch_size:
                entries += await self._read(self.batch_size - len(entries), block_ms=None if entries else 1000)
            while entries and len(entries) < self.batch_size and not self.stop.is_set():
                wait = min(entry.enqueued_at for entry in entries) + self.max_wait - time.time()
                if wait < 0.002:
                    break
                entries += await self._read(self.batch_size - len(entries), block_ms=max(1, int(wait * 1000)))
            self._hold(entries)
            return entries

    async def _read(self, count: int, block_ms: int | None) -> list[Entry]:
        if self._cluster and len(self.streams) > 1:
            return await self._read_each(count, block_ms)
        return await self._read_from(self.streams, count, block_ms)

    async def _read_each(self, count: int, block_ms: int | None) -> list[Entry]:
        """Each stream in turn (a cluster cannot read streams of two slots at once): what each holds,
        else a wait of at most 200 ms on one of them, a different one each time."""
        entries: list[Entry] = []
        for stream in self.streams:
            entries += await self._read_from([stream], count - len(entries), None)
            if len(entries) >= count:
                return entries
        if entries or block_ms is None:
            return entries
        self._turn += 1
        return await self._read_from([self.streams[self._turn % len(self.streams)]], count, min(block_ms, 200))

    async def _read_from(self, streams: list[str], count: int, block_ms: int | None) -> list[Entry]:
        reply = await self.redis.xreadgroup(keys.GROUP, self.consumer, dict.fromkeys(streams, ">"),
                                            count=count, block=block_ms)
        entries = []
        for stream, items in reply or []:
            name = stream.decode()
            entries += [_entry(name, entry_id, fields) for entry_id, fields in items]
        return entries

    async def _reclaim(self, count: int) -> list[Entry]:
        now = time.monotonic()
        if now - self._last_reclaim < 1.0:
            return []
        self._last_reclaim = now
        idle_ms = int(self.reclaim_after * 1000)
        entries: list[Entry] = []
        for stream in self.streams:
            try:
                rows = await self.redis.xpending_range(stream, keys.GROUP, "-", "+", count, idle=idle_ms)
            except ResponseError:  # Redis < 6.2 has no IDLE filter
                rows = await self.redis.xpending_range(stream, keys.GROUP, "-", "+", count)
            held = self.in_hand.get(stream, set())
            ids = [row["message_id"] for row in rows
                   if row["time_since_delivered"] >= idle_ms and row["message_id"] not in held]
            if not ids:
                continue
            claimed = await self.redis.xclaim(stream, keys.GROUP, self.consumer, idle_ms, ids)
            gone = []
            for entry_id, fields in claimed:
                if fields:
                    entries.append(_entry(stream, entry_id, fields))
                elif entry_id is not None:
                    gone.append(entry_id)
            if gone:  # deleted while pending (Redis < 7 keeps them in the PEL): forget them
                await self.redis.xack(stream, keys.GROUP, *gone)
            if entries:
                logger.info("reclaimed %d events from a stopped worker on %s", len(entries), stream)
            if len(entries) >= count:
                break
        return entries[:count] if len(entries) > count else entries

    def _hold(self, entries: list[Entry]) -> None:
        for entry in entries:
            self.in_hand[entry.stream].add(entry.id)

    def _release(self, entries: list[Entry]) -> None:
        for entry in entries:
            self.in_hand[entry.stream].discard(entry.id)

    # ------------------------------------------------------------------ delivering a batch

    async def _deliver(self, entries: list[Entry]) -> None:
        try:
            while True:
                pending = [entry for entry in entries if not entry.done]
                if not pending:
                    return
                now = time.time()
                expired = [entry for entry in pending if self.policy.expired(entry.event_time, now)]
                if expired:
                    days = self.policy.max_age // 86400
                    await self._settle([], [(e, "expired", f"event_time is older than {days} days; Pinterest "
                                             f"refuses it") for e in expired])
                    continue
                result = await self._send(pending)
                if result is None:
                    continue
                if result.action == "pause":
                    await self._pause(result)
                    await self._give_back(pending, tried=True)
                    return
                if result.reason == "shutdown":
                    await self._give_back(pending, tried=False)
                    return
                await self._retry_later(pending, result)
        finally:
            self._release(entries)

    async def _send(self, entries: list[Entry]) -> SendResult | None:
        """Send (splitting on 400); ``None`` when every entry is settled, else what stopped us."""
        if not await self.bucket.acquire(self.account, self.stop):
            return SendResult("retry", None, "shutdown")
        body = b'{"data":[' + b",".join(entry.raw for entry in entries) + b"]}"
        started = time.perf_counter()
        result = await self.client.send(self.account, body, len(entries))
        self.trace.attempt(entries, result)
        self.metrics.request_seconds.observe(time.perf_counter() - started)
        self.metrics.requests.labels(self.account, str(result.status or result.reason)).inc()
        if result.action == "ok":
            self._failures = 0
            await self._resume_if_paused()
            statuses = result.events
            delivered: list[Entry] = []
            dead: list[tuple[Entry, Reason, str]] = []
            for index, entry in enumerate(entries):
                status = statuses[index] if statuses else None
                if status is None or status.processed:
                    delivered.append(entry)
                else:
                    dead.append((entry, "rejected", status.error_message or result.message))
            self.metrics.batch_size.observe(len(entries))
            await self._settle(delivered, dead)
            return None
        if result.action == "split":
            await self._resume_if_paused()
            if len(entries) == 1:
                await self._settle([], [(entries[0], "bad_request", result.message)])
                return None
            middle = len(entries) // 2
            for half in (entries[:middle], entries[middle:]):
                stopped = await self._send(half)
                if stopped is not None:
                    return stopped
            return None
        return result

    async def _settle(self, delivered: list[Entry], dead: list[tuple[Entry, Reason, str]]) -> None:
        """Ack and delete what is done, store dead letters and count, in one MULTI of the account's keys;
        then ack the unassigned stream's (another slot: a crash in between retries those events, and a
        duplicate has its event id)."""
        letters = [DeadLetter.new(self.account, entry.event, reason, message, entry.attempts + 1, entry.enqueued_at)
                   for entry, reason, message in dead]
        finished = delivered + [entry for entry, _, _ in dead]
        by_stream: dict[str, list[bytes]] = defaultdict(list)
        for entry in finished:
            by_stream[entry.stream].append(entry.id)
        own = self.streams[0]
        counters = keys.account_counters(self.account)
        async with store.transaction(self.redis, own) as pipe:
            if own in by_stream:
                await self._done_script(keys=[own], args=[keys.GROUP, *by_stream.pop(own)], client=pipe)
            DeadLetters.add_to(pipe, letters)
            if delivered:
                pipe.hincrby(counters, "delivered", len(delivered))
            for reason, count in Counter(reason for _, reason, _ in dead).items():
                pipe.hincrby(counters, "failed", count)
                pipe.hincrby(counters, f"failed:{reason}", count)
            await pipe.execute()
        for stream, ids in by_stream.items():
            await self._done_script(keys=[stream], args=[keys.GROUP, *ids])
        for entry in finished:
            entry.done = True
        self._count(delivered, dead)
        self.trace.settled(delivered, dead)

    def _count(self, delivered: list[Entry], dead: list[tuple[Entry, Reason, str]]) -> None:
        now = time.time()
        names: Counter[str] = Counter()
        masks: Counter[int] = Counter()
        stamps: Counter[float] = Counter()
        for entry in delivered:
            names[entry.event_name] += 1
            masks[entry.keys] += 1
            stamps[entry.enqueued_at] += 1
        for stamp, count in stamps.items():
            self.metrics.latency.observe(now - stamp, count)
        for name, count in names.items():
            self.metrics.delivered.labels(self.account, name).inc(count)
        for bit, key in enumerate(MATCH_KEYS):
            count = sum(n for mask, n in masks.items() if mask >> bit & 1)
            if count:
                self.metrics.match_keys.labels(key).inc(count)
        for (name, reason), count in Counter((entry.event_name, reason) for entry, reason, _ in dead).items():
            self.metrics.failed.labels(self.account, name, reason).inc(count)
        if dead:
            logger.warning("dead-lettered %d events (%s)", len(dead),
                           ", ".join(f"{r}: {c}" for r, c in Counter(reason for _, reason, _ in dead).items()))

    async def _retry_later(self, entries: list[Entry], result: SendResult) -> None:
        self._failures += 1
        delay = self.policy.backoff(self._failures, result.delay)
        for entry in entries:
            entry.attempts += 1
        for name, count in Counter(entry.event_name for entry in entries).items():
            self.metrics.retried.labels(self.account, name, result.reason).inc(count)
        await awaited(self.redis.hincrby(keys.account_counters(self.account), "retried", len(entries)))
        logger.warning("Pinterest delivery of %d events will be retried in %.1f s: %s (%s)", len(entries), delay,
                       result.reason, result.message or result.status)
        await self.bucket.back_off(self.account, delay)

    async def _give_back(self, entries: list[Entry], *, tried: bool) -> None:
        """Return entries to the end of their queue (new ids, same events), atomically per stream."""
        by_stream: dict[str, list[Entry]] = defaultdict(list)
        for entry in entries:
            by_stream[entry.stream].append(entry)
        for stream, held in by_stream.items():
            async with store.transaction(self.redis, stream) as pipe:
                for entry in held:
                    attempts = entry.attempts + (1 if tried else 0)
                    fields: dict[str, Any] = {"e": entry.raw, "n": attempts, "t": repr(entry.enqueued_at)}
                    if entry.meta:
                        fields["m"] = entry.meta
                    if entry.event_id is not None:
                        fields["i"] = entry.event_id
                    pipe.xadd(stream, fields)
                ids = [entry.id for entry in held]
                pipe.xack(stream, keys.GROUP, *ids)
                pipe.xdel(stream, *ids)
                await pipe.execute()
            for entry in held:
                entry.done = True

    # ------------------------------------------------------------------ pause and resume

    async def _paused_now(self) -> bool:
        # Read at most once a second: every loop of every worker polls this while paused.
        if time.monotonic() - self._paused_at >= 1.0:
            self._paused = bool(await awaited(self.redis.hexists(keys.PAUSED, self.account)))
            self._paused_at = time.monotonic()
        return self._paused

    async def _probe_turn(self) -> bool:
        """One loop among all workers gets to probe each ``probe_interval``."""
        return bool(await self.redis.set(keys.probe(self.account), self.consumer, nx=True,
                                         px=max(1, int(self.probe_interval * 1000))))

    async def _pause(self, result: SendResult) -> None:
        info = orjson.dumps({"status": result.status, "reason": result.reason, "message": result.message,
                             "since": time.time()}).decode()
        if await awaited(self.redis.hsetnx(keys.PAUSED, self.account, info)):
            logger.error("Pinterest answered HTTP %s (%s) for ad account %s: delivery to this account is PAUSED, "
                         "nothing is dropped; check PINTEREST_ACCESS_TOKEN and the account's access. A probe "
                         "every %.0f s resumes delivery by itself once Pinterest accepts.",
                         result.status, result.message, self.account, self.probe_interval)
        await self.redis.set(keys.probe(self.account), self.consumer,
                             px=max(1, int(self.probe_interval * 1000)))
        self._paused, self._paused_at = True, time.monotonic()

    async def _resume_if_paused(self) -> None:
        if not self._paused:
            return
        if await awaited(self.redis.hdel(keys.PAUSED, self.account)):
            logger.warning("Pinterest accepts ad account %s again: delivery RESUMED", self.account)
        self._paused, self._paused_at = False, time.monotonic()
