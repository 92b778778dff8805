"""The shared token bucket and the dead-letter store, against real Redis."""

from __future__ import annotations

import time

import orjson
import pytest
import redis.asyncio as aioredis
from delivery_helpers import make_event

from pinsignal import keys
from pinsignal.dlq import DeadLetter, DeadLetters, parse_duration
from pinsignal.ratelimit import TokenBucket


@pytest.mark.anyio
async def test_bucket_is_shared_by_every_client_and_refills(redis_url: str) -> None:
    one, two = aioredis.Redis.from_url(redis_url), aioredis.Redis.from_url(redis_url)
    try:
        first, second = TokenBucket(one, 600, burst=5), TokenBucket(two, 600, burst=5)   # 10 calls a second
        waits = [await (first if n % 2 else second).try_acquire("1") for n in range(6)]
        assert waits[:5] == [0, 0, 0, 0, 0]
        assert 0 < waits[5] <= 0.1                   # the sixth call must wait for the refill
        assert await first.try_acquire("2") == 0     # another account has its own bucket
        deadline = time.monotonic() + 5
        while await first.try_acquire("1") > 0:      # refills at 10/s
            assert time.monotonic() < deadline
    finally:
        await one.aclose()
        await two.aclose()


@pytest.mark.anyio
async def test_back_off_holds_every_worker_and_is_never_shortened(redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    try:
        bucket = TokenBucket(redis, 4800)
        await bucket.back_off("1", 5)
        await bucket.back_off("1", 0.5)              # a shorter one does not cut the longer one
        wait = await TokenBucket(redis, 4800).try_acquire("1")
        assert 4 < wait <= 5
        assert await bucket.try_acquire("2") == 0
    finally:
        await redis.aclose()


def test_default_rate_stays_under_pinterests_limit() -> None:
    from pinsignal.ratelimit import DEFAULT_CALLS_PER_MINUTE

    assert DEFAULT_CALLS_PER_MINUTE < 5000


def test_parse_duration() -> None:
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("12h") == 43200
    assert parse_duration("90m") == 5400
    assert parse_duration("45") == 45
    with pytest.raises(ValueError, match="'soon' is not a duration"):
        parse_duration("soon")


@pytest.mark.anyio
async def test_dead_letters_list_replay_and_purge(redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    letters = DeadLetters(redis)
    try:
        old = DeadLetter.new("549755885175", make_event(1), "expired", "too old", 1, time.time() - 90000)
        old.dead_at -= 40 * 86400
        rejected = [DeadLetter.new("549755885175", make_event(n), "rejected", "Invalid event_name", 2, time.time())
                    for n in (2, 3)]
        await letters.add([old, *rejected])
        assert await letters.counts() == {"expired": 1, "rejected": 2}
        newest = await letters.recent()
        assert [letter.event_id for letter in newest] == ["ev-3", "ev-2", "ev-1"]
        assert [letter.event_id for letter in await letters.recent(reason="expired")] == ["ev-1"]
        assert newest[0].attempts == 2 and newest[0].message == "Invalid event_name"

        replayed = await letters.replay(letter_id=rejected[0].id)
        assert [letter.event_id for letter in replayed] == ["ev-2"]
        entries = await redis.xrange(keys.stream("549755885175"))
        assert [orjson.loads(fields[b"e"])["event_id"] for _, fields in entries] == ["ev-2"]
        assert await letters.counts() == {"expired": 1, "rejected": 1}

        assert await letters.purge(older_than=30 * 86400) == 1
        assert await letters.counts() == {"rejected": 1}
        assert len(await letters.replay(reason="rejected")) == 1
        assert await letters.total() == 0
    finally:
        await redis.aclose()
