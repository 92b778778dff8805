"""EventQueue against real Redis: dedup, coalescing, the default stream, shared counters."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from delivery_helpers import make_event
from redis.exceptions import ConnectionError as RedisConnectionError, ResponseError

from pinsignal import keys
from pinsignal.config import Config
from pinsignal.errors import QueueUnavailable
from pinsignal.queue import DEDUP_SECONDS, EventQueue

ACCOUNT = "549755885175"


async def _queue(redis_url: str, account: str | None = ACCOUNT) -> EventQueue:
    return await EventQueue.connect(Config(redis_url=redis_url, ad_account_id=account))


@pytest.mark.anyio
async def test_enqueue_dedups_by_event_name_and_id_for_48_hours(redis_url: str) -> None:
    queue = await _queue(redis_url)
    try:
        first = await queue.enqueue([make_event(1), make_event(2)])
        again = await queue.enqueue([make_event(1), make_event(1, name="add_to_cart"), make_event(3), make_event(3)])
        assert (first.queued, first.duplicates) == (["ev-1", "ev-2"], [])
        # same id under another event_name is another event; a repeat inside one call is a duplicate
        assert (again.queued, again.duplicates) == (["ev-1", "ev-3"], ["ev-1", "ev-3"])
        assert await queue.redis.xlen(keys.stream(ACCOUNT)) == 4
        ttl = await queue.redis.ttl(keys.seen(ACCOUNT, "checkout", "ev-1"))
        assert DEDUP_SECONDS - 60 < ttl <= DEDUP_SECONDS
        counters = await queue.redis.hgetall(keys.account_counters(ACCOUNT))
        assert counters[b"enqueued"] == b"4" and counters[b"duplicates"] == b"2"
        assert counters[b"duplicates:checkout"] == b"2"
        assert await queue.enqueue([]) == type(first)()
    finally:
        await queue.close()


@pytest.mark.anyio
async def test_concurrent_calls_are_coalesced_and_two_processes_never_both_queue(redis_url: str) -> None:
    one, two = await _queue(redis_url), await _queue(redis_url)
    calls = 0
    original = one._run_script

    async def counting(*args: object, **kwargs: object) -> object:
        nonlocal calls
        calls += 1
        return await original(*args, **kwargs)  # type: ignore[arg-type]

    one._run_script = counting  # type: ignore[method-assign]
    try:
        results = await asyncio.gather(*[q.enqueue([make_event(n)]) for n in range(600) for q in (one, two)])
        queued = [event_id for result in results for event_id in result.queued]
        duplicates = [event_id for result in results for event_id in result.duplicates]
        assert sorted(queued) == sorted(f"ev-{n}" for n in range(600))       # each exactly once
        assert len(duplicates) == 600
        assert calls < 20, f"600 concurrent enqueues took {calls} round trips"
        assert await one.redis.xlen(keys.stream(ACCOUNT)) == 600
    finally:
        await one.close()
        await two.close()


@pytest.mark.anyio
async def test_no_account_queues_to_the_default_stream_and_counters_are_shared(redis_url: str) -> None:
    queue = await _queue(redis_url, account=None)
    try:
        assert (await queue.enqueue([make_event(1)])).queued == ["ev-1"]
        assert await queue.redis.xlen(keys.stream("default")) == 1
        await queue.incr("dropped_consent")
        await queue.incr("dropped_consent", 4)
        assert await queue.redis.hget(keys.COUNTERS, "dropped_consent") == b"5"
    finally:
        await queue.close()


@pytest.mark.anyio
async def test_enqueue_raises_queue_unavailable_when_redis_is_unreachable(tmp_path: object) -> None:
    client = aioredis.Redis.from_url(f"unix://{tmp_path}/nothing.sock")
    queue = EventQueue(client, ACCOUNT)
    try:
        for attempt in (queue.enqueue([make_event(1)]), queue.incr("dropped_consent")):
            with pytest.raises(QueueUnavailable, match="Redis failed while") as caught:
                await attempt
            assert isinstance(caught.value.__cause__, RedisConnectionError)
    finally:
        await queue.close()


@pytest.mark.anyio
async def test_a_redis_out_of_memory_is_queue_unavailable_for_every_waiter(redis_url: str) -> None:
    """Redis refusing writes (OOM) is an outage too: every coalesced caller hears of it, nothing is queued."""
    queue = await _queue(redis_url)
    admin = aioredis.Redis.from_url(redis_url)
    await admin.config_set("maxmemory", 1)
    try:
        results = await asyncio.gather(*[queue.enqueue([make_event(n)]) for n in range(5)], return_exceptions=True)
        assert all(isinstance(result, QueueUnavailable) for result in results), results
        assert all("OOM" in str(result) and isinstance(result.__cause__, ResponseError) for result in results)
    finally:
        await admin.config_set("maxmemory", 0)
        await admin.aclose()
    try:
        assert await queue.redis.xlen(keys.stream(ACCOUNT)) == 0
        assert (await queue.enqueue([make_event(1)])).queued == ["ev-1"]          # and it recovers
    finally:
        await queue.close()


@pytest.mark.anyio
async def test_enqueue_survives_a_flushed_script_cache_and_a_dropped_connection(redis_url: str) -> None:
    """A Redis restart empties the script cache and drops connections: the next enqueue still queues."""
    queue = await _queue(redis_url)
    try:
        assert (await queue.enqueue([make_event(1)])).queued == ["ev-1"]
        await queue.redis.script_flush()
        assert (await queue.enqueue([make_event(2)])).queued == ["ev-2"]
        await queue.redis.client_kill_filter(_type="normal", skipme=True)  # every connection but this one
        assert (await queue.enqueue([make_event(3)])).queued == ["ev-3"]
        assert await queue.redis.xlen(keys.stream(ACCOUNT)) == 3
    finally:
        await queue.close()
