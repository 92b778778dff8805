"""The queue's dedup state for browser ids is bounded (issue 18, item 8).

Anyone can post new browser ids, and each one used to leave a 48-hour dedup key behind, without
limit: under ``maxmemory-policy noeviction`` they fill Redis. At most ``PINSIGNAL_BROWSER_DEDUP_MAX``
browser entries are now made per 48-hour window and account; past that, browser events are still
caught by the entries that exist, and still queued, but make none. Server events are not capped.
"""

from __future__ import annotations

import pytest
from delivery_helpers import make_event

from pinsignal import keys
from pinsignal.config import Config
from pinsignal.errors import ConfigError
from pinsignal.queue import DEDUP_SECONDS, EventQueue

ACCOUNT = "549755885175"
pytestmark = pytest.mark.anyio


async def dedup_keys(queue: EventQueue) -> list[bytes]:
    return [key async for key in queue.redis.scan_iter(match=keys.seen_prefix(ACCOUNT) + "*", count=1000)]


async def test_regression_item8_browser_dedup_entries_are_capped_and_the_events_still_queued(redis_url: str) -> None:
    queue = await EventQueue.connect(Config(redis_url=redis_url, ad_account_id=ACCOUNT, browser_dedup_max=100))
    try:
        first = await queue.enqueue([make_event(n) for n in range(60)])
        flood = await queue.enqueue([make_event(n) for n in range(60, 1000)])
        assert len(first.queued) == 60 and len(flood.queued) == 940
        assert len(await dedup_keys(queue)) == 100  # not 1,000
        counted = [key async for key in queue.redis.scan_iter(match=keys.browser_seen_count(ACCOUNT, 0)[:-1] + "*")]
        [counter] = counted
        assert int(await queue.redis.get(counter)) == 100
        assert DEDUP_SECONDS < await queue.redis.ttl(counter) <= 2 * DEDUP_SECONDS
        # what the cap kept is still a duplicate; what it did not keep cannot be caught
        again = await queue.enqueue([make_event(5), make_event(99), make_event(500)])
        assert again.duplicates == ["ev-5", "ev-99"] and again.queued == ["ev-500"]
        # server events are not capped, and still take precedence over a browser id
        server = await queue.enqueue([make_event(5), make_event(2000)], trusted=True)
        assert server.queued == ["ev-5", "ev-2000"]
        assert (await queue.enqueue([make_event(2000)])).duplicates == ["ev-2000"]
        assert len(await dedup_keys(queue)) == 101
    finally:
        await queue.close()


async def test_a_cap_of_zero_keeps_no_browser_entries_and_no_cap_keeps_them_all(redis_url: str) -> None:
    none = await EventQueue.connect(Config(redis_url=redis_url, ad_account_id=ACCOUNT, browser_dedup_max=0))
    try:
        result = await none.enqueue([make_event(n) for n in range(50)])
        assert len(result.queued) == 50 and await dedup_keys(none) == []
    finally:
        await none.close()
    uncapped = EventQueue(none.redis.__class__.from_url(redis_url), ACCOUNT, browser_dedup_max=None)
    try:
        await uncapped.enqueue([make_event(n) for n in range(100, 400)])
        assert len(await dedup_keys(uncapped)) == 300
    finally:
        await uncapped.close()


def test_the_cap_is_a_setting() -> None:
    assert Config().browser_dedup_max == 100_000
    assert Config.from_env({"PINSIGNAL_BROWSER_DEDUP_MAX": "5000"}).browser_dedup_max == 5000
    with pytest.raises(ConfigError, match="PINSIGNAL_BROWSER_DEDUP_MAX"):
        Config(browser_dedup_max=-1)
