"""The queue's dedup gives a server event precedence over a browser event with its name and id (DESIGN 8.1)."""

from __future__ import annotations

import asyncio

import pytest
from delivery_helpers import make_event

from pinsignal import keys
from pinsignal.config import Config
from pinsignal.queue import DEDUP_SECONDS, EventQueue

ACCOUNT = "549755885175"
pytestmark = pytest.mark.anyio


async def test_a_server_event_is_queued_over_a_browser_one_and_then_holds_the_id(redis_url: str) -> None:
    queue = await EventQueue.connect(Config(redis_url=redis_url, ad_account_id=ACCOUNT))
    try:
        forged = await queue.enqueue([make_event(1)])
        real = await queue.enqueue([make_event(1)], trusted=True)
        repeat = await queue.enqueue([make_event(1)], trusted=True)
        late_browser = await queue.enqueue([make_event(1)])
        # server first: a browser copy after it is a duplicate
        server_first = await queue.enqueue([make_event(2)], trusted=True)
        browser_after = await queue.enqueue([make_event(2)])
        assert (forged.queued, real.queued, repeat.duplicates, late_browser.duplicates) == (
            ["ev-1"], ["ev-1"], ["ev-1"], ["ev-1"])
        assert (server_first.queued, browser_after.duplicates) == (["ev-2"], ["ev-2"])
        assert await queue.redis.xlen(keys.stream(ACCOUNT)) == 3
        held = await queue.redis.get(keys.seen_prefix(ACCOUNT) + "checkout:ev-1")
        assert held == b"s"
        ttl = await queue.redis.ttl(keys.seen_prefix(ACCOUNT) + "checkout:ev-1")
        assert DEDUP_SECONDS - 60 < ttl <= DEDUP_SECONDS
        # a dedup key written before sources were recorded ('1') is final for both
        await queue.redis.set(keys.seen_prefix(ACCOUNT) + "checkout:ev-3", "1")
        assert (await queue.enqueue([make_event(3)], trusted=True)).duplicates == ["ev-3"]
    finally:
        await queue.close()


async def test_coalesced_calls_keep_each_call_its_own_source(redis_url: str) -> None:
    queue = await EventQueue.connect(Config(redis_url=redis_url, ad_account_id=ACCOUNT))
    try:
        # in flight together: one round trip, the flags must line up with each call's events
        browser, server, other = await asyncio.gather(
            queue.enqueue([make_event(10), make_event(11)]),
            queue.enqueue([make_event(10), make_event(12)], trusted=True),
            queue.enqueue([make_event(11)]))
        assert browser.queued == ["ev-10", "ev-11"]
        assert server.queued == ["ev-10", "ev-12"]
        assert other.duplicates == ["ev-11"]
    finally:
        await queue.close()
