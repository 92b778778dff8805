"""A Redis written by a pinsignal from before issue 17 (keys without hash tags) is moved to today's names
at start-up: nothing lost, streams keep their group and pending entries, marks keep their time to live,
and what was queued is delivered."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
import redis
import redis.asyncio as aioredis
from delivery_helpers import cli, make_event

from pinsignal import keys
from pinsignal.config import Config
from pinsignal.delivery import Delivery
from pinsignal.migrate import migrate
from pinsignal.pinterest.client import PinterestClient
from pinsignal.queue import EventQueue
from pinsignal.retry import RetryPolicy
from pinsignal.status import read_status

ACCOUNT, OTHER = "549755885175", "549755885176"
OLD = "pinsignal:"  # the old names, spelled out: they are what an older version wrote


def _old_entry(event: dict[str, Any]) -> dict[str, Any]:
    return {"e": orjson.dumps(event), "m": f"{event['event_name']}|{event['event_time']}|3", "i": event["event_id"]}


def write_old_layout(url: str) -> dict[str, list[str]]:
    """What a worker and collector of the old layout leave behind; returns the event ids per account."""
    client = redis.Redis.from_url(url)
    ids: dict[str, list[str]] = {ACCOUNT: [], keys.UNASSIGNED_ACCOUNT: [], OTHER: []}
    try:
        own = f"{OLD}events:{ACCOUNT}"
        for n in range(5):
            event = make_event(n, prefix="own")
            client.xadd(own, _old_entry(event))
            ids[ACCOUNT].append(event["event_id"])
        client.xgroup_create(own, keys.GROUP, id="0")
        client.xreadgroup(keys.GROUP, "old-worker-killed", {own: ">"}, count=2)  # two in flight, never acked
        unassigned = f"{OLD}events:default"
        for n in range(3):
            event = make_event(n, prefix="unassigned")
            client.xadd(unassigned, _old_entry(event))
            ids[keys.UNASSIGNED_ACCOUNT].append(event["event_id"])
        other = f"{OLD}events:{OTHER}"
        for n in range(2):
            event = make_event(n, prefix="other-old")
            client.xadd(other, _old_entry(event))
            ids[OTHER].append(event["event_id"])
        # a worker of this version already made the other account's new stream: the old entries are copied
        client.xgroup_create(keys.stream(OTHER), keys.GROUP, id="0", mkstream=True)
        fresh = make_event(9, prefix="other-new")
        client.xadd(keys.stream(OTHER), _old_entry(fresh))
        ids[OTHER].append(fresh["event_id"])
        client.sadd(f"{OLD}streams", own, unassigned, other)
        client.set(f"{OLD}seen:{ACCOUNT}:checkout:own-0", "s", ex=1000)
        client.set(f"{OLD}seen:default:checkout:unassigned-0", "b", ex=2000)
        client.set(keys.seen(OTHER, "checkout", "other-new-9"), "b", ex=500)
        client.set(f"{OLD}seen:{OTHER}:checkout:other-new-9", "b", ex=900)  # held by both: the new one stays
        client.set(f"{OLD}seen-count:{ACCOUNT}:12345", 7, ex=5000)
        client.set(f"{OLD}imported:{ACCOUNT}:checkout:o-1", "1", ex=3000)
        client.hset(f"{OLD}counters", mapping={"enqueued": 10, "duplicates": 2, "dropped_consent": 3})
        letters = [{"id": "a1", "account": ACCOUNT, "event": make_event(7, prefix="dead"), "reason": "rejected",
                    "message": "bad", "attempts": 1, "enqueued_at": time.time(), "dead_at": time.time() - 10},
                   {"id": "b2", "account": OTHER, "event": make_event(8, prefix="dead"), "reason": "expired",
                    "message": "old", "attempts": 2, "enqueued_at": time.time(), "dead_at": time.time() - 5}]
        for letter in letters:
            client.hset(f"{OLD}dlq", letter["id"], orjson.dumps(letter))
            client.zadd(f"{OLD}dlq:index", {letter["id"]: letter["dead_at"]})
        client.hset(f"{OLD}dlq:reasons", mapping={"rejected": 1, "expired": 1})
        client.hset(f"{OLD}paused", OTHER, orjson.dumps({"status": 401, "message": "bad token", "since": 1}))
        client.hset(f"{OLD}quarantine", "q1", orjson.dumps({"id": "q1", "at": time.time(), "reason": "invalid_event"}))
        client.zadd(f"{OLD}quarantine:index", {"q1": time.time()})
        client.expire(f"{OLD}quarantine", 7000)
        client.xadd(f"{OLD}trace", {"r": b'{"stage":"queued"}'})
        client.hset(f"{OLD}warnings", "checkout|x", 4)
        client.hset(f"{OLD}ratelimit:{ACCOUNT}", mapping={"tokens": "3", "at": "1"})
        client.set(f"{OLD}visitor:abc", "{}", ex=600)
    finally:
        client.close()
    return ids


def _names(client: redis.Redis) -> set[str]:
    return {key.decode() for key in client.scan_iter(count=1000)}


def _stream_ids(client: redis.Redis, account: str) -> list[str]:
    return [fields[b"i"].decode() for _, fields in client.xrange(keys.stream(account))]


@pytest.mark.anyio
async def test_an_older_layout_is_moved_at_start_up_and_nothing_is_lost(redis_url: str, sandbox_server: Any) -> None:
    ids = write_old_layout(redis_url)
    queue = await EventQueue.connect(Config(redis_url=redis_url))  # what a web process does at start-up
    await queue.close()

    client = redis.Redis.from_url(redis_url)
    try:
        names = _names(client)
        untagged = {name for name in names if "{" not in name}
        assert untagged == {keys.ACCOUNTS, keys.PAUSED, f"{OLD}visitor:abc"}, untagged
        # streams renamed with their group and pending entries; the other account's copied across
        assert _stream_ids(client, ACCOUNT) == ids[ACCOUNT]
        assert _stream_ids(client, keys.UNASSIGNED_ACCOUNT) == ids[keys.UNASSIGNED_ACCOUNT]
        assert sorted(_stream_ids(client, OTHER)) == sorted(ids[OTHER])
        pending = client.xpending(keys.stream(ACCOUNT), keys.GROUP)
        assert pending["pending"] == 2 and pending["consumers"][0]["name"] == b"old-worker-killed"
        copied = client.xrange(keys.stream(OTHER))
        assert all(b"t" in fields for _, fields in copied if fields[b"i"].startswith(b"other-old"))  # kept from the id
        # marks keep their value and time to live
        assert client.get(keys.seen(ACCOUNT, "checkout", "own-0")) == b"s"
        assert 900 < client.ttl(keys.seen(ACCOUNT, "checkout", "own-0")) <= 1000
        assert 1900 < client.ttl(keys.seen(keys.UNASSIGNED_ACCOUNT, "checkout", "unassigned-0")) <= 2000
        assert client.ttl(keys.seen(OTHER, "checkout", "other-new-9")) <= 500  # the new one was kept
        assert client.get(keys.browser_seen_count(ACCOUNT, 12345)) == b"7"
        assert 2900 < client.ttl(keys.imported(ACCOUNT, "checkout", "o-1")) <= 3000
        assert client.hgetall(keys.ratelimit(ACCOUNT)) == {b"tokens": b"3", b"at": b"1"}
        # globals
        assert client.hgetall(keys.COUNTERS) == {b"enqueued": b"10", b"duplicates": b"2", b"dropped_consent": b"3"}
        assert client.hget(keys.WARNINGS, "checkout|x") == b"4"
        assert client.xlen(keys.TRACE) == 1
        assert client.hexists(keys.QUARANTINE, "q1") and client.zscore(keys.QUARANTINE_INDEX, "q1")
        assert 6900 < client.ttl(keys.QUARANTINE) <= 7000
        assert client.smembers(keys.ACCOUNTS) == {ACCOUNT.encode(), OTHER.encode(), b"default"}
        # dead letters split by account
        assert set(client.hkeys(keys.dlq(ACCOUNT))) == {b"a1"} and set(client.hkeys(keys.dlq(OTHER))) == {b"b2"}
        assert client.hgetall(keys.dlq_reasons(OTHER)) == {b"expired": b"1"}
    finally:
        client.close()

    async with aioredis.Redis.from_url(redis_url) as redis_async:
        status = await read_status(redis_async)
        assert status.counters["enqueued"] == 10 and status.dead_letters == {"rejected": 1, "expired": 1}
        assert {account.account: account.dead_letters for account in status.accounts}[OTHER] == {"expired": 1}
        assert await migrate(redis_async) == 0  # done: nothing left to move

    # what was queued under the old names is delivered, the two a killed old worker held included
    config = Config(redis_url=redis_url, ad_account_id=sandbox_server.account_id, access_token=sandbox_server.token,
                    api_url=sandbox_server.url, batch_max_wait=0.05)
    async with aioredis.Redis.from_url(redis_url) as redis_async:
        client_http = PinterestClient(config, policy=RetryPolicy(backoff_base=0.1))
        delivery = Delivery(redis_async, config, client_http, consumer="new", reclaim_after=0.5)
        await delivery.setup()
        tasks = [asyncio.create_task(delivery.run_loop()) for _ in range(2)]
        try:
            expected = set(ids[ACCOUNT]) | set(ids[keys.UNASSIGNED_ACCOUNT])
            deadline = time.monotonic() + 30
            while {event["event"]["event_id"] for event in sandbox_server.events()} < expected:
                assert time.monotonic() < deadline, "the moved events were not delivered"
                await asyncio.sleep(0.1)
        finally:
            delivery.stop.set()
            await asyncio.gather(*tasks)
            await delivery.close()
            await client_http.aclose()


@pytest.mark.anyio
async def test_processes_starting_together_move_the_keys_once(redis_url: str) -> None:
    """Several processes racing at start-up: one takes the lock and moves everything, the others go on."""
    ids = write_old_layout(redis_url)
    clients = [aioredis.Redis.from_url(redis_url) for _ in range(4)]
    try:
        moved = await asyncio.gather(*(migrate(each) for each in clients))
        assert sum(1 for count in moved if count) == 1
        assert await migrate(clients[0]) == 0
    finally:
        for each in clients:
            await each.aclose()
    client = redis.Redis.from_url(redis_url)
    try:
        assert _stream_ids(client, ACCOUNT) == ids[ACCOUNT]
        assert sorted(_stream_ids(client, OTHER)) == sorted(ids[OTHER])
        assert not client.exists(f"{OLD}counters", f"{OLD}streams", f"{OLD}dlq", keys.MIGRATING)
    finally:
        client.close()


@pytest.mark.anyio
async def test_a_redis_without_old_keys_is_left_alone(redis_url: str) -> None:
    async with aioredis.Redis.from_url(redis_url) as client:
        await client.set(keys.seen(ACCOUNT, "checkout", "x"), "b")
        assert await migrate(client) == 0
        assert not await client.exists(keys.MIGRATING)


def test_status_and_dlq_show_an_older_layout_before_any_worker_or_web_process_has_run(redis_url: str) -> None:
    # Before 5 Dec they read only today's names, so an upgraded Redis looked empty until a worker
    # or a web process had started and moved the keys.
    write_old_layout(redis_url)
    env = {"REDIS_URL": redis_url}
    done = cli(env, "status", "--json")
    assert done.returncode == 0, done.stderr
    status = orjson.loads(done.stdout)
    assert status["dead_letters"] == {"rejected": 1, "expired": 1}
    # the old streams' entries, under today's names (two of them still in flight with a dead worker)
    assert (status["queued"], status["in_flight"]) == (5 + 3 + 2 + 1 - 2, 2)
    listed = cli(env, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert sorted(orjson.loads(line)["id"] for line in listed.stdout.splitlines()) == ["a1", "b2"]
    client = redis.Redis.from_url(redis_url)
    try:
        assert not client.exists(f"{OLD}dlq", f"{OLD}counters")
    finally:
        client.close()
