"""Visitors remembered in Redis (``RedisVisitors``): the lookup and its count, on any Redis layout."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from pinsignal import keys
from pinsignal.config import Config
from pinsignal.visitors import RedisVisitors, VisitorContext


@pytest.mark.anyio
async def test_regression_a_lookup_counts_found_and_unknown_without_a_cross_slot_script(redis_url: str) -> None:
    """The lookup was one script over the visitor's key and the global counters: two hash slots, which a
    Redis Cluster refuses. Now a GET and a count: the same answers and counters on a single Redis."""
    store = RedisVisitors(Config(redis_url=redis_url, secret="s" * 32))
    try:
        await store.put("cart-1", VisitorContext(click_id="dj0yJnU9", traits={"em": "a" * 64}, at=1.0))
        found = await store.get("cart-1")
        assert found is not None and found.click_id == "dj0yJnU9" and found.traits == {"em": "a" * 64}
        assert await store.get("cart-unknown") is None
    finally:
        await store.close()
    async with aioredis.Redis.from_url(redis_url) as client:
        counters = await client.hgetall(keys.COUNTERS)
        assert (counters[b"visitor_key_found"], counters[b"visitor_key_unknown"]) == (b"1", b"1")
        assert [key async for key in client.scan_iter(match=keys.visitor("*"))] != []  # kept under its HMAC
